"""Private VLAN isolation (RFC 5517), the whole matrix: every sender role
against every receiver role, unicast and broadcast, on one VTEP and across
the underlay, for VXLAN and NVGRE.  The expected answers are DESIGN.md
section 2's table, written out below, not computed by the code under test."""
import struct

import pytest

from dataplane._engine import Burst, Engine
from dataplane.packet import DROP_REASONS, decap

# DESIGN.md section 2: may a sender of the row's role reach a receiver of the column's?
# community_a -> community_a is "same community", community_a -> community_b "other community".
ALLOWED = {
    "promiscuous": {"promiscuous": True, "isolated": True, "community_a": True, "community_b": True},
    "isolated": {"promiscuous": True, "isolated": False, "community_a": False, "community_b": False},
    "community_a": {"promiscuous": True, "isolated": False, "community_a": True, "community_b": False},
    "community_b": {"promiscuous": True, "isolated": False, "community_a": False, "community_b": True},
}
PAIRS = [(s, r) for s in ALLOWED for r in ALLOWED[s]]
ROLE_ARGS = {"promiscuous": ("promiscuous",), "isolated": ("isolated",),
             "community_a": ("community", 0), "community_b": ("community", 1)}
# The VNI (VSID) each sender role puts on the wire.
VNI = {"promiscuous": 5000, "isolated": 5001, "community_a": 5002, "community_b": 5003}
A, B = "198.18.0.1", "198.18.0.2"
MAC_A, MAC_B = "02:00:00:00:aa:01", "02:00:00:00:bb:01"  # the VTEPs' underlay interfaces
SENDER, RECEIVER = "02:00:00:00:00:01", "02:00:00:00:00:02"
BROADCAST = "ff:ff:ff:ff:ff:ff"
ENCAPS = pytest.mark.parametrize("encap", ["vxlan", "nvgre"])


def raw(mac):
    return bytes.fromhex(mac.replace(":", ""))


def frame(dst, src=SENDER):
    """Broadcast: an ARP request.  Unicast: a UDP datagram 192.0.2.1 -> 192.0.2.2."""
    if dst == BROADCAST:
        arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + raw(src) + bytes([192, 0, 2, 1]) + bytes(6)
        return raw(dst) + raw(src) + b"\x08\x06" + arp + bytes([192, 0, 2, 2]) + bytes(18)
    udp = struct.pack("!HHHH", 40000, 9, 8 + 18, 0) + bytes(18)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                     bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]))
    return raw(dst) + raw(src) + b"\x08\x00" + ip + udp


def vtep(encap, local, peer=None, peer_mac=None, *, learning=True):
    """An engine with one PVLAN segment (isolated and two communities) and,
    if "peer" is given, that VTEP resolved on the segment's remote list."""
    e = Engine(local, underlay_mac=MAC_A if local == A else MAC_B, max_ports=8, max_segments=1,
               max_remotes=2)
    seg = e.add_segment(encap, VNI["promiscuous"], VNI["isolated"],
                        [VNI["community_a"], VNI["community_b"]], mac_learning=learning)
    if peer:
        rid = e.add_remote(peer)
        e.set_neighbour(rid, peer_mac)
        e.segment_add_remote(seg, rid)
    return e, seg


def pair(encap, *, learning=True):
    """VTEP A and VTEP B, each other's only remote."""
    return vtep(encap, A, B, MAC_B, learning=learning), vtep(encap, B, A, MAC_A, learning=learning)


def verdict(verdicts):
    (v,) = verdicts
    return DROP_REASONS[v]


def drops(e, kind, id=0):
    return {DROP_REASONS[i]: n for i, n in enumerate(e.counters(kind, id)["drops"]) if n}


def only_underlay_output(outs, role):
    """The one packet in "outs", which must go to the underlay with "role"'s VNI."""
    assert [(k, t) for _, k, t, _ in outs] == [("underlay", 0)]
    assert decap(outs[0][3]).vni == VNI[role]
    return outs[0][3]


# ---- two ports on one VTEP ----

@ENCAPS
@pytest.mark.parametrize("dst", [RECEIVER, BROADCAST], ids=["unicast", "broadcast"])
@pytest.mark.parametrize("sender,receiver", PAIRS)
def test_local(encap, dst, sender, receiver):
    e, seg = vtep(encap, A)
    ps, pr = e.add_port(seg, *ROLE_ARGS[sender]), e.add_port(seg, *ROLE_ARGS[receiver])
    e.fdb_add(seg, RECEIVER, port=pr)  # a known destination
    f = frame(dst)
    verdicts, outs = e.access(ps, [f], 1)
    if ALLOWED[sender][receiver]:
        assert (verdict(verdicts), outs) == ("none", [(0, "port", pr, f)])
        assert drops(e, "port", ps) == {}
    else:
        assert (verdict(verdicts), outs) == ("pvlan_deny", [])
        assert drops(e, "port", ps) == drops(e, "segment", seg) == {"pvlan_deny": 1}
    assert e.counters("port", pr)["tx_packets"] == int(ALLOWED[sender][receiver])


# ---- port on VTEP A -> underlay -> port on VTEP B ----

@ENCAPS
@pytest.mark.parametrize("dst", [RECEIVER, BROADCAST], ids=["unicast", "broadcast"])
@pytest.mark.parametrize("sender,receiver", PAIRS)
def test_via_underlay(encap, dst, sender, receiver):
    """A knows the receiver only as "behind B, role unknown", so A sends and
    B, which learns the sender's role from the VNI, decides."""
    (a, seg_a), (b, seg_b) = pair(encap)
    ps, pr = a.add_port(seg_a, *ROLE_ARGS[sender]), b.add_port(seg_b, *ROLE_ARGS[receiver])
    a.fdb_add(seg_a, RECEIVER, remote=0)
    b.fdb_add(seg_b, RECEIVER, port=pr)
    f = frame(dst)
    verdicts, outs = a.access(ps, [f], 1)
    assert verdict(verdicts) == "none"
    packet = only_underlay_output(outs, sender)
    verdicts, outs = b.underlay([packet], 1)
    if ALLOWED[sender][receiver]:
        assert (verdict(verdicts), outs) == ("none", [(0, "port", pr, f)])
    else:
        assert (verdict(verdicts), outs) == ("pvlan_deny", [])
        assert drops(b, "underlay") == drops(b, "segment", seg_b) == {"pvlan_deny": 1}


@ENCAPS
@pytest.mark.parametrize("sender,receiver", PAIRS)
def test_remote_role_known_forbidden_unicast_stops_at_the_sender(encap, sender, receiver):
    (a, seg_a), (b, seg_b) = pair(encap)
    ps, pr = a.add_port(seg_a, *ROLE_ARGS[sender]), b.add_port(seg_b, *ROLE_ARGS[receiver])
    a.fdb_add(seg_a, RECEIVER, remote=0, role=ROLE_ARGS[receiver][0], community=(ROLE_ARGS[receiver] + (None,))[1])
    b.fdb_add(seg_b, RECEIVER, port=pr)
    f = frame(RECEIVER)
    verdicts, outs = a.access(ps, [f], 1)
    if ALLOWED[sender][receiver]:
        packet = only_underlay_output(outs, sender)
        assert b.underlay([packet], 1) == ([0], [(0, "port", pr, f)])
    else:
        assert (verdict(verdicts), outs) == ("pvlan_deny", [])
        assert drops(a, "port", ps) == {"pvlan_deny": 1}
        assert a.counters("underlay")["tx_packets"] == 0


@ENCAPS
@pytest.mark.parametrize("sender,receiver", PAIRS)
def test_learning_only_isolation_holds_at_the_receiving_vtep(encap, sender, receiver):
    """No static entry anywhere.  B learns the receiver from its ARP request;
    A has not heard of it, floods the unicast to B, and B must still refuse
    what the sender's role (the VNI) may not reach."""
    (a, seg_a), (b, seg_b) = pair(encap)
    ps, pr = a.add_port(seg_a, *ROLE_ARGS[sender]), b.add_port(seg_b, *ROLE_ARGS[receiver])
    verdicts, outs = b.access(pr, [frame(BROADCAST, RECEIVER)], 1)
    only_underlay_output(outs, receiver)  # not delivered to A: A stays ignorant
    assert b.fdb_get(seg_b, RECEIVER, 1)["target"] == pr
    f = frame(RECEIVER)
    verdicts, outs = a.access(ps, [f], 2)
    assert verdict(verdicts) == "none"  # unknown unicast: flooded to B
    verdicts, outs = b.underlay([only_underlay_output(outs, sender)], 2)
    if ALLOWED[sender][receiver]:
        assert (verdict(verdicts), outs) == ("none", [(0, "port", pr, f)])
    else:
        assert (verdict(verdicts), outs) == ("pvlan_deny", [])


@ENCAPS
@pytest.mark.parametrize("sender,receiver", PAIRS)
def test_learning_only_both_ways(encap, sender, receiver):
    """The receiver's ARP request crosses to A (delivered to the sender as
    the table says, receiver -> sender); A learns the receiver's role from
    the VNI, so a forbidden reply is dropped at A, an allowed one crosses."""
    (a, seg_a), (b, seg_b) = pair(encap)
    ps, pr = a.add_port(seg_a, *ROLE_ARGS[sender]), b.add_port(seg_b, *ROLE_ARGS[receiver])
    request = frame(BROADCAST, RECEIVER)
    _, outs = b.access(pr, [request], 1)
    verdicts, outs = a.underlay([only_underlay_output(outs, receiver)], 1)
    if ALLOWED[receiver][sender]:
        assert (verdict(verdicts), outs) == ("none", [(0, "port", ps, request)])
    else:
        assert (verdict(verdicts), outs) == ("pvlan_deny", [])
    learned = a.fdb_get(seg_a, RECEIVER, 1)
    assert (learned["kind"], learned["role"], learned["community"]) == \
        ("remote",) + (ROLE_ARGS[receiver] + (None,))[:2]
    f = frame(RECEIVER)
    verdicts, outs = a.access(ps, [f], 2)
    if ALLOWED[sender][receiver]:
        assert b.underlay([only_underlay_output(outs, sender)], 2) == ([0], [(0, "port", pr, f)])
    else:
        assert (verdict(verdicts), outs) == ("pvlan_deny", [])


# ---- one broadcast, a room full of roles ----

# Who of B's ports hears a broadcast from each role, literally.
ROOM = ["promiscuous", "isolated", "isolated", "community_a", "community_a", "community_b"]
HEARD_BY = {
    "promiscuous": [0, 1, 2, 3, 4, 5],
    "isolated": [0],
    "community_a": [0, 3, 4],
    "community_b": [0, 5],
}


def one_frame(run, f):
    """Run one frame through "run" (a bound access_burst or underlay_burst)
    with room for a copy to every port: Engine.access() gives a one-frame
    burst room for only four outputs."""
    burst = Burst(1, max_out=16)
    burst.load([f])
    run(burst, 1)
    return verdict(burst.verdicts), burst.outputs()


@ENCAPS
@pytest.mark.parametrize("sender", list(HEARD_BY))
def test_broadcast_reaches_exactly_the_allowed_ports(encap, sender):
    (a, seg_a), (b, seg_b) = pair(encap)
    ps = a.add_port(seg_a, *ROLE_ARGS[sender])
    room = [b.add_port(seg_b, *ROLE_ARGS[role]) for role in ROOM]
    f = frame(BROADCAST)
    _, outs = a.access(ps, [f], 1)
    packet = only_underlay_output(outs, sender)
    assert one_frame(b.underlay_burst, packet) == ("none", [(0, "port", room[i], f) for i in HEARD_BY[sender]])

    # The same room on one VTEP, the sender being one more port in it.
    local, seg = vtep(encap, A)
    room = [local.add_port(seg, *ROLE_ARGS[role]) for role in ROOM]
    ps = local.add_port(seg, *ROLE_ARGS[sender])
    run = lambda burst, now: local.access_burst(ps, burst, now)  # noqa: E731
    assert one_frame(run, f) == ("none", [(0, "port", room[i], f) for i in HEARD_BY[sender]])
