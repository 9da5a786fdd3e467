"""Interop with the Linux kernel's VXLAN device, the reference peer (STYLE.md 16).

Namespace K holds a kernel VTEP: a veth end k0 with the underlay address and
a vxlan device vx0 with an overlay address.  Namespace U holds only the
other veth end, u0, where a raw socket stands in for vtep's packet I/O and
our engine does the rest.  Frames go both ways: the kernel's encapsulation
through our decapsulation to a port, and our encapsulation through the
kernel's decapsulation to a UDP socket."""
import ipaddress
import select
import socket
import struct

import pytest
from pyroute2 import netns

from dataplane._engine import PKT_CSUM_OK, Engine
from dataplane.packet import DROP_REASONS, decap

pytestmark = pytest.mark.root

VNI = 5000
UNDERLAY = {4: ("198.18.0.1", "198.18.0.2", 24), 6: ("2001:db8:f::1", "2001:db8:f::2", 64)}
KERNEL_HOST, OUR_HOST = "192.0.2.1", "192.0.2.2"  # overlay: vx0, and a host behind our port
OUR_HOST_MAC = "02:00:00:00:00:02"
ETH_P_ALL, SOL_PACKET, PACKET_AUXDATA = 3, 263, 8
TP_STATUS_CSUMNOTREADY, TP_STATUS_CSUM_VALID = 1 << 3, 1 << 7
IFA_F_NODAD = 0x02


def mac_of(ns, index):
    return ns.get_links(index)[0].get_attr("IFLA_ADDRESS")


@pytest.fixture(params=[4, 6], ids=["ipv4-underlay", "ipv6-underlay"])
def lab(request, namespaces):
    """The kernel VTEP in K, the veth end in U; returns what the tests need."""
    family = request.param
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
    udp.bind((KERNEL_HOST, 7777))
    udp.settimeout(3)

    try:
        yield {"family": family, "raw": raw, "udp": udp, "kernel_ip": kernel_ip, "our_ip": our_ip,
               "k0_mac": mac_of(k, k0), "u0_mac": mac_of(u, u0), "vx0_mac": mac_of(k, vx0)}
    finally:
        raw.close()
        udp.close()


class OurVtep:
    """The engine on u0, with the kernel VTEP as its one remote."""

    def __init__(self, lab, udp_checksum=False):
        self.engine = Engine(lab["our_ip"], underlay_mac=lab["u0_mac"], udp_checksum=udp_checksum)
        self.seg = self.engine.add_segment("vxlan", VNI)
        self.remote = self.engine.add_remote(lab["kernel_ip"])
        self.engine.set_neighbour(self.remote, lab["k0_mac"])
        self.engine.segment_add_remote(self.seg, self.remote)
        self.port = self.engine.add_port(self.seg, "promiscuous")


def receive_tunnel_packet(raw, inner_dst):
    """The next VXLAN packet on u0 whose inner frame is for MAC "inner_dst",
    and its PKT_* flags (from the kernel's tp_status).  Others pass by: the
    kernel also floods its own traffic (MLD reports from vx0) to us."""
    while True:
        ready, _, _ = select.select([raw], [], [], 3)
        assert ready, "no VXLAN packet from the kernel within 3 s"
        data, ancillary, _, _ = raw.recvmsg(65535, socket.CMSG_SPACE(32))
        status = next(struct.unpack_from("I", cdata)[0] for level, kind, cdata in ancillary
                      if (level, kind) == (SOL_PACKET, PACKET_AUXDATA))
        # Across a veth the kernel's own packets arrive with the UDP checksum
        # unfinished, and says so: the I/O layer passes that on.
        flags = PKT_CSUM_OK if status & (TP_STATUS_CSUMNOTREADY | TP_STATUS_CSUM_VALID) else 0
        try:
            inner = decap(data, verify_checksum=not flags).inner
        except ValueError:
            continue  # not tunnel traffic: neighbour discovery and the like
        if inner[:6] == inner_dst:
            return data, flags


def ipv4_udp_frame(dst_mac, src_mac, src, dst, sport, dport, payload):
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                         ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
    total = sum(struct.unpack("!10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    header = header[:10] + struct.pack("!H", ~(total + (total >> 16)) & 0xFFFF) + header[12:]
    mac = lambda m: bytes.fromhex(m.replace(":", ""))  # noqa: E731
    return mac(dst_mac) + mac(src_mac) + b"\x08\x00" + header + udp


def test_kernel_encapsulation_reaches_our_port(lab):
    ours = OurVtep(lab)
    lab["udp"].sendto(b"hello from linux", (OUR_HOST, 9999))
    packet, flags = receive_tunnel_packet(lab["raw"], bytes.fromhex(OUR_HOST_MAC.replace(":", "")))

    verdicts, outputs = ours.engine.underlay([packet], flags=[flags])
    assert DROP_REASONS[verdicts[0]] == "none"
    [(_, kind, target, inner)] = outputs
    assert (kind, target) == ("port", ours.port)
    # The inner frame is the kernel's, to our host's MAC and address, whole.
    assert inner[:6] == bytes.fromhex(OUR_HOST_MAC.replace(":", ""))
    assert inner[30:34] == ipaddress.ip_address(OUR_HOST).packed
    assert inner.endswith(b"hello from linux")
    outer = decap(packet, verify_checksum=False)
    assert (outer.vni, str(outer.src), str(outer.dst)) == (VNI, lab["kernel_ip"], lab["our_ip"])
    # And the engine learned where vx0's MAC lives, with the role its VNI carries.
    entry = ours.engine.fdb_get(ours.seg, lab["vx0_mac"])
    assert (entry["kind"], entry["target"], entry["role"]) == ("remote", ours.remote, "promiscuous")


@pytest.mark.parametrize("udp_checksum", [False, True], ids=["no-udp-checksum", "udp-checksum"])
def test_our_encapsulation_reaches_a_kernel_socket(lab, udp_checksum):
    """Decapsulated by Linux (which verifies a nonzero UDP checksum), our
    frames reach a UDP socket behind vx0: flooded first, then known unicast."""
    ours = OurVtep(lab, udp_checksum)
    frame = ipv4_udp_frame(lab["vx0_mac"], OUR_HOST_MAC, OUR_HOST, KERNEL_HOST, 9999, 7777, b"hello from vtep")
    for known in (False, True):
        if known:
            ours.engine.fdb_add(ours.seg, lab["vx0_mac"], remote=ours.remote)
        verdicts, outputs = ours.engine.access(ours.port, [frame])
        assert DROP_REASONS[verdicts[0]] == "none"
        [(_, kind, target, packet)] = outputs
        assert (kind, target) == ("underlay", ours.remote)
        udp_check = packet[40:42] if lab["family"] == 4 else packet[60:62]
        assert (udp_check != b"\0\0") == (udp_checksum or lab["family"] == 6)
        lab["raw"].send(packet)
        assert lab["udp"].recvfrom(100) == (b"hello from vtep", (OUR_HOST, 9999))
