"""Interop with Open vSwitch's userspace tunnels, both ways, over IPv4 and
IPv6 underlays: NVGRE (OVS gre/ip6gre with a key, Ethernet payload) and VXLAN.  OVS checks the VSID/VNI we send
and sets the one it sends with OpenFlow rules (ovs.py)."""
import select
import socket

import pytest
from pyroute2 import netns

from dataplane.packet import DROP_REASONS, decap

from .kernel_vtep import (ETH_P_ALL, KERNEL_HOST, KERNEL_PORT, OUR_HOST, OUR_HOST_MAC, ipv4_udp_frame, mac_of,
                          our_vtep)
from .ovs import Ovs

pytestmark = pytest.mark.root
UNDERLAY = {4: ("198.18.0.1", "198.18.0.2", 24), 6: ("2001:db8:f::1", "2001:db8:f::2", 64)}
VNI = 5000
IFA_F_NODAD = 0x02
# OVS port type by (encapsulation, family), and the OpenFlow tunnel key:
# NVGRE's 32-bit GRE key is VSID << 8 | FlowID, and the FlowID varies with
# the flow, so the receive rule masks it off.
PORT_TYPES = {("nvgre", 4): "gre", ("nvgre", 6): "ip6gre", ("vxlan", 4): "vxlan", ("vxlan", 6): "vxlan"}
KEYS = {"nvgre": (f"{VNI << 8:#x}/0xffffff00", f"{VNI << 8:#x}"), "vxlan": (f"{VNI:#x}", f"{VNI:#x}")}


@pytest.fixture(params=sorted(PORT_TYPES), ids=lambda p: f"{p[0]}-ipv{p[1]}")
def ovs_lab(request, namespaces):
    encapsulation, family = request.param
    ovs_ip, our_ip, prefix = UNDERLAY[family]
    key_match, key_set = KEYS[encapsulation]
    (o_name, o), (u_name, u) = namespaces("o"), namespaces("u")
    o.link("add", ifname="o0", kind="veth", peer={"ifname": "u0", "net_ns_fd": u_name})
    for ns, name in ((o, "o0"), (u, "u0"), (o, "lo")):
        ns.link("set", index=ns.link_lookup(ifname=name)[0], state="up")
    ovs = Ovs(o_name)
    raw = udp = None
    try:
        ovs.vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev")
        ovs.vsctl("add-port", "br-phy", "o0")
        ovs.vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev")
        ovs.vsctl("add-port", "br-int", "tun0", "--", "set", "interface", "tun0",
                  f"type={PORT_TYPES[encapsulation, family]}", f"options:remote_ip={our_ip}", "options:key=flow")
        ovs.vsctl("add-port", "br-int", "vm0", "--", "set", "interface", "vm0", "type=internal")
        br_phy, vm0 = o.link_lookup(ifname="br-phy")[0], o.link_lookup(ifname="vm0")[0]
        o.addr("add", index=br_phy, address=ovs_ip, prefixlen=prefix, flags=IFA_F_NODAD)
        o.link("set", index=br_phy, state="up")
        o.addr("add", index=vm0, address=KERNEL_HOST, prefixlen=24)
        o.link("set", index=vm0, state="up")
        o.neigh("add", dst=OUR_HOST, lladdr=OUR_HOST_MAC, ifindex=vm0, state="permanent")
        u0_mac = mac_of(u, u.link_lookup(ifname="u0")[0])
        ovs.appctl("tnl/neigh/set", "br-phy", our_ip, u0_mac)  # OVS need not resolve us
        ovs.ofctl("br-int", "del-flows")
        ovs.ofctl("br-int", "add-flow", f"in_port=tun0,tun_id={key_match},actions=output:vm0")
        ovs.ofctl("br-int", "add-flow", f"in_port=vm0,actions=set_field:{key_set}->tun_id,output:tun0")

        raw = netns.create_socket(u_name, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        raw.bind(("u0", 0))
        udp = netns.create_socket(o_name, socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((KERNEL_HOST, KERNEL_PORT))
        udp.settimeout(5)
        vtep = our_vtep(our_ip, u0_mac, encapsulation, VNI, ovs_ip, mac_of(o, br_phy))
        yield {"encapsulation": encapsulation, "ovs_ip": ovs_ip, "our_ip": our_ip, "ovs": ovs, "raw": raw,
               "udp": udp, "engine": vtep.engine, "port": vtep.port, "u0_mac": u0_mac,
               "br_phy_mac": mac_of(o, br_phy), "vm0_mac": mac_of(o, vm0)}
    finally:
        for sock in (raw, udp):
            if sock is not None:
                sock.close()
        ovs.close()


def receive_tunnel_packet(raw, inner_dst):
    """The next tunnel packet on u0 whose inner frame is for MAC "inner_dst"."""
    while True:
        ready, _, _ = select.select([raw], [], [], 5)
        assert ready, "no tunnel packet from OVS within 5 s"
        data = raw.recv(65535)
        try:
            inner = decap(data).inner
        except ValueError:
            continue  # OVS's other traffic: ARP, neighbour discovery
        if inner[:6] == inner_dst:
            return data


def test_ovs_encapsulation_reaches_our_port(ovs_lab):
    lab = ovs_lab
    lab["udp"].sendto(b"hello from ovs", (OUR_HOST, 9999))
    packet = receive_tunnel_packet(lab["raw"], bytes.fromhex(OUR_HOST_MAC.replace(":", "")))
    outer = decap(packet)
    assert (outer.encapsulation, outer.vni, str(outer.src)) == (lab["encapsulation"], VNI, lab["ovs_ip"])
    verdicts, outputs = lab["engine"].underlay([packet])
    assert DROP_REASONS[verdicts[0]] == "none"
    [(_, kind, target, inner)] = outputs
    assert (kind, target) == ("port", lab["port"])
    assert inner.endswith(b"hello from ovs")


def test_our_encapsulation_reaches_an_ovs_port(ovs_lab):
    """Several flows, so NVGRE FlowIDs (and VXLAN source ports) vary: OVS must
    take them all, and its rule only matches our VSID/VNI."""
    lab = ovs_lab
    for sport in range(9990, 10000):
        frame = ipv4_udp_frame(lab["vm0_mac"], OUR_HOST_MAC, OUR_HOST, KERNEL_HOST, sport, KERNEL_PORT,
                               f"flow {sport}".encode())
        verdicts, outputs = lab["engine"].access(lab["port"], [frame])
        assert DROP_REASONS[verdicts[0]] == "none"
        [(_, kind, _, packet)] = outputs
        assert kind == "underlay"
        lab["raw"].send(packet)
        data, sender = lab["udp"].recvfrom(100)
        assert (data, sender) == (f"flow {sport}".encode(), (OUR_HOST, sport)), lab["ovs"].log()


def our_packet(lab, vni, payload):
    """What our engine sends to OVS for "payload", on segment "vni"."""
    vtep = our_vtep(lab["our_ip"], lab["u0_mac"], lab["encapsulation"], vni, lab["ovs_ip"], lab["br_phy_mac"])
    frame = ipv4_udp_frame(lab["vm0_mac"], OUR_HOST_MAC, OUR_HOST, KERNEL_HOST, 9999, KERNEL_PORT, payload)
    _, [(_, _, _, packet)] = vtep.engine.access(vtep.port, [frame])
    return packet


def test_ovs_takes_only_the_vsid_or_vni_it_was_given(ovs_lab):
    """The receive rule really checks the key: a frame on another VNI goes
    nowhere, so the first datagram OVS delivers is the one sent after it."""
    lab = ovs_lab
    lab["raw"].send(our_packet(lab, VNI + 1, b"wrong key"))
    lab["raw"].send(our_packet(lab, VNI, b"right key"))
    assert lab["udp"].recvfrom(100)[0] == b"right key"
