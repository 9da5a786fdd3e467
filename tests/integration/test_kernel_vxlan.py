"""Interop with the Linux kernel's VXLAN device, the reference peer (STYLE.md 16).

The kernel VTEP is in namespace K (kernel_vtep.py); on u0 in U a raw socket
stands in for vtep's packet I/O and our engine does the rest.  Frames go
both ways: the kernel's encapsulation through our decapsulation to a port,
and our encapsulation through the kernel's decapsulation to a UDP socket."""
import ipaddress
import select
import socket
import struct

import pytest

from dataplane._engine import PKT_CSUM_OK
from dataplane.packet import DROP_REASONS, decap

from .kernel_vtep import (KERNEL_HOST, OUR_HOST, OUR_HOST_MAC, PACKET_AUXDATA, SOL_PACKET, VNI,
                          ipv4_udp_frame, our_vtep)

pytestmark = pytest.mark.root
TP_STATUS_CSUMNOTREADY, TP_STATUS_CSUM_VALID = 1 << 3, 1 << 7


def ours(lab, udp_checksum=False):
    """Our engine on u0, with the kernel VTEP as its one remote."""
    return our_vtep(lab["our_ip"], lab["u0_mac"], "vxlan", VNI, lab["kernel_ip"], lab["k0_mac"], udp_checksum)


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


def test_kernel_encapsulation_reaches_our_port(lab):
    vtep = ours(lab)
    lab["udp"].sendto(b"hello from linux", (OUR_HOST, 9999))
    packet, flags = receive_tunnel_packet(lab["raw"], bytes.fromhex(OUR_HOST_MAC.replace(":", "")))

    verdicts, outputs = vtep.engine.underlay([packet], flags=[flags])
    assert DROP_REASONS[verdicts[0]] == "none"
    [(_, kind, target, inner)] = outputs
    assert (kind, target) == ("port", vtep.port)
    # The inner frame is the kernel's, to our host's MAC and address, whole.
    assert inner[:6] == bytes.fromhex(OUR_HOST_MAC.replace(":", ""))
    assert inner[30:34] == ipaddress.ip_address(OUR_HOST).packed
    assert inner.endswith(b"hello from linux")
    outer = decap(packet, verify_checksum=False)
    assert (outer.vni, str(outer.src), str(outer.dst)) == (VNI, lab["kernel_ip"], lab["our_ip"])
    # And the engine learned where vx0's MAC lives, with the role its VNI carries.
    entry = vtep.engine.fdb_get(vtep.seg, lab["vx0_mac"])
    assert (entry["kind"], entry["target"], entry["role"]) == ("remote", vtep.remote, "promiscuous")


@pytest.mark.parametrize("udp_checksum", [False, True], ids=["no-udp-checksum", "udp-checksum"])
def test_our_encapsulation_reaches_a_kernel_socket(lab, udp_checksum):
    """Decapsulated by Linux (which verifies a nonzero UDP checksum), our
    frames reach a UDP socket behind vx0: flooded first, then known unicast."""
    vtep = ours(lab, udp_checksum)
    frame = ipv4_udp_frame(lab["vx0_mac"], OUR_HOST_MAC, OUR_HOST, KERNEL_HOST, 9999, 7777, b"hello from vtep")
    for known in (False, True):
        if known:
            vtep.engine.fdb_add(vtep.seg, lab["vx0_mac"], remote=vtep.remote)
        verdicts, outputs = vtep.engine.access(vtep.port, [frame])
        assert DROP_REASONS[verdicts[0]] == "none"
        [(_, kind, target, packet)] = outputs
        assert (kind, target) == ("underlay", vtep.remote)
        udp_check = packet[40:42] if lab["family"] == 4 else packet[60:62]
        assert (udp_check != b"\0\0") == (udp_checksum or lab["family"] == 6)
        lab["raw"].send(packet)
        assert lab["udp"].recvfrom(100) == (b"hello from vtep", (OUR_HOST, 9999))
