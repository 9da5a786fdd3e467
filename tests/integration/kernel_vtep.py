"""A Linux kernel VTEP in a namespace, the reference peer for integration
tests (STYLE.md 16).

Namespace K holds the kernel VTEP: a veth end k0 with the underlay address
and a vxlan device vx0 (VNI 5000) with an overlay address and a UDP socket
on it.  Namespace U holds only the other veth end, u0, where a raw socket
(or a traffic generator) stands in for vtep's packet I/O.  our_vtep() sets
our engine up against such a peer (this one, or Open vSwitch: ovs.py)."""
import ipaddress
import socket
import struct
from dataclasses import dataclass

from pyroute2 import netns

from dataplane._engine import Engine

VNI = 5000
UNDERLAY = {4: ("198.18.0.1", "198.18.0.2", 24), 6: ("2001:db8:f::1", "2001:db8:f::2", 64)}
KERNEL_HOST, OUR_HOST = "192.0.2.1", "192.0.2.2"  # overlay: vx0, and a host on our side
OUR_HOST_MAC = "02:00:00:00:00:02"
KERNEL_PORT = 7777  # the UDP socket behind vx0
ETH_P_ALL, SOL_PACKET, PACKET_AUXDATA = 3, 263, 8
IFA_F_NODAD = 0x02


def mac_of(ns, index):
    return ns.get_links(index)[0].get_attr("IFLA_ADDRESS")


def build(family, namespaces):
    """Set the lab up in two fresh namespaces; returns a dict of what tests
    need (sockets, addresses, MACs, namespace names).  The caller closes the
    sockets; the namespaces fixture removes the rest."""
    kernel_ip, our_ip, prefix = UNDERLAY[family]
    (k_name, k), (u_name, u) = namespaces("k"), namespaces("u")
    k.link("add", ifname="k0", kind="veth", peer={"ifname": "u0", "net_ns_fd": u_name})
    k0, u0 = k.link_lookup(ifname="k0")[0], u.link_lookup(ifname="u0")[0]
    u.link("set", index=u0, state="up")
    # No duplicate address detection: the address is usable at once.
    k.addr("add", index=k0, address=kernel_ip, prefixlen=prefix, flags=IFA_F_NODAD)
    k.link("set", index=k0, state="up")
    # The kernel need not resolve us: a permanent neighbour entry says where we are.
    k.neigh("add", dst=our_ip, lladdr=mac_of(u, u0), ifindex=k0, state="permanent")
    ends = {"vxlan_local": kernel_ip, "vxlan_group": our_ip} if family == 4 else \
        {"vxlan_local6": kernel_ip, "vxlan_group6": our_ip}
    k.link("add", ifname="vx0", kind="vxlan", vxlan_id=VNI, vxlan_port=4789, vxlan_link=k0, **ends)
    vx0 = k.link_lookup(ifname="vx0")[0]
    k.addr("add", index=vx0, address=KERNEL_HOST, prefixlen=24)
    k.link("set", index=vx0, state="up")
    k.neigh("add", dst=OUR_HOST, lladdr=OUR_HOST_MAC, ifindex=vx0, state="permanent")

    raw = netns.create_socket(u_name, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    raw.bind(("u0", 0))
    raw.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    udp = netns.create_socket(k_name, socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((KERNEL_HOST, KERNEL_PORT))
    udp.settimeout(3)
    return {"family": family, "raw": raw, "udp": udp, "kernel_ip": kernel_ip, "our_ip": our_ip,
            "k0_mac": mac_of(k, k0), "u0_mac": mac_of(u, u0), "vx0_mac": mac_of(k, vx0),
            "u_netns": u_name, "k_netns": k_name}


def ipv4_udp_frame(dst_mac, src_mac, src, dst, sport, dport, payload):
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                         ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
    total = sum(struct.unpack("!10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    header = header[:10] + struct.pack("!H", ~(total + (total >> 16)) & 0xFFFF) + header[12:]
    mac = lambda m: bytes.fromhex(m.replace(":", ""))  # noqa: E731
    return mac(dst_mac) + mac(src_mac) + b"\x08\x00" + header + udp


@dataclass
class OurVtep:
    """Our engine on the underlay end: one segment, one promiscuous port,
    and the peer VTEP as its one remote."""
    engine: Engine
    seg: int
    remote: int
    port: int


def our_vtep(local, underlay_mac, encapsulation, vni, peer, peer_mac, udp_checksum=False):
    engine = Engine(local, underlay_mac=underlay_mac, udp_checksum=udp_checksum)
    seg = engine.add_segment(encapsulation, vni)
    remote = engine.add_remote(peer)
    engine.set_neighbour(remote, peer_mac)
    engine.segment_add_remote(seg, remote)
    return OurVtep(engine, seg, remote, engine.add_port(seg, "promiscuous"))
