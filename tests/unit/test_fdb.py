"""The MAC table of a segment, driven through the engine: learning, ageing,
static entries, the per-segment limit, moves, and a table of 1,000,000."""
import errno
import random

import pytest

from dataplane._engine import Engine, VtepError
from dataplane.packet import DROP_REASONS, Tunnel

BROADCAST = "ff:ff:ff:ff:ff:ff"


def mac(n):
    return f"02:00:00:{n >> 16 & 0xff:02x}:{n >> 8 & 0xff:02x}:{n & 0xff:02x}"


def mac_bytes(m):
    return m if isinstance(m, bytes) else bytes.fromhex(m.replace(":", ""))


def frame(dst, src):
    """A 60-byte frame; past the MACs its contents do not matter here."""
    return mac_bytes(dst) + mac_bytes(src) + b"\x08\x06" + bytes(46)


class Vtep:
    """One engine with one plain segment, three ports and one resolved remote."""

    def __init__(self, **segment):
        self.e = Engine("198.18.0.1", max_ports=8, max_segments=2, max_remotes=4)
        self.seg = self.e.add_segment("vxlan", 5000, **segment)
        self.ports = [self.e.add_port(self.seg, "promiscuous") for _ in range(3)]
        self.remote = self.e.add_remote("198.18.0.2")
        self.e.set_neighbour(self.remote, "02:00:00:00:99:02")
        self.e.segment_add_remote(self.seg, self.remote)
        self.peer = Engine("198.18.0.2", max_ports=2, max_segments=1, max_remotes=2)
        peer_seg = self.peer.add_segment("vxlan", 5000)
        self.peer_port = self.peer.add_port(peer_seg, "promiscuous")
        back = self.peer.add_remote("198.18.0.1")
        self.peer.set_neighbour(back, "02:00:00:00:99:01")
        self.peer.segment_add_remote(peer_seg, back)

    def send(self, port, dst, src, now=0):
        """Frame from local "port"; returns (verdict name, [(kind, target)])."""
        verdicts, outs = self.e.access(port, [frame(dst, src)], now)
        return DROP_REASONS[verdicts[0]], [(kind, target) for _, kind, target, _ in outs]

    def receive(self, dst, src, now=0):
        """Frame sent by a host behind the remote VTEP, through the underlay."""
        _, outs = self.peer.access(self.peer_port, [frame(dst, src)], now)
        (packet,) = [data for _, kind, _, data in outs if kind == "underlay"]
        verdicts, outs = self.e.underlay([packet], now)
        return DROP_REASONS[verdicts[0]], [(kind, target) for _, kind, target, _ in outs]

    def entry(self, m, now=0):
        return self.e.fdb_get(self.seg, m, now)

    def refused(self):
        return self.e.counters("segment", self.seg)["learn_refused"]


def test_learns_source_mac_and_stops_flooding():
    v = Vtep()
    p0, p1, p2 = v.ports
    verdict, outs = v.send(p0, mac(2), mac(1))
    assert verdict == "none"
    assert sorted(outs) == [("port", p1), ("port", p2), ("underlay", v.remote)]  # unknown: flooded
    assert v.entry(mac(1)) == {"mac": mac(1), "kind": "local", "target": p0, "static": False,
                               "role": "promiscuous", "community": None, "last_seen": 0}
    assert v.send(p1, mac(1), mac(2)) == ("none", [("port", p0)])  # known: straight to p0


def test_learns_remote_mac_with_the_role_its_vni_carries():
    v = Vtep()
    assert v.receive(BROADCAST, mac(7))[0] == "none"
    entry = v.entry(mac(7))
    assert (entry["kind"], entry["target"], entry["role"]) == ("remote", v.remote, "promiscuous")
    assert v.send(v.ports[0], mac(7), mac(1)) == ("none", [("underlay", v.remote)])


def test_learning_off_learns_nothing():
    v = Vtep(mac_learning=False)
    v.send(v.ports[0], BROADCAST, mac(1))
    v.receive(BROADCAST, mac(7))
    assert v.e.fdb_count(v.seg) == 0


def test_learned_entry_ages_out_after_ageing_seconds_without_traffic():
    v = Vtep(fdb_ageing_sec=10)
    p0, p1, _ = v.ports
    v.send(p0, BROADCAST, mac(1), now=100)
    assert v.entry(mac(1), now=110) is not None
    assert v.send(p1, mac(1), mac(2), now=110) == ("none", [("port", p0)])
    assert v.entry(mac(1), now=111) is None
    assert len(v.send(p1, mac(1), mac(2), now=111)[1]) == 3  # aged: flooded again
    assert v.e.fdb_count(v.seg) == 2  # held until expired
    assert v.e.fdb_expire(v.seg, 200) == 2
    assert v.e.fdb_count(v.seg) == 0


def test_traffic_refreshes_a_learned_entry():
    v = Vtep(fdb_ageing_sec=10)
    v.send(v.ports[0], BROADCAST, mac(1), now=100)
    v.send(v.ports[0], BROADCAST, mac(1), now=108)
    assert v.entry(mac(1), now=118)["last_seen"] == 108
    assert v.entry(mac(1), now=119) is None


def test_ageing_zero_never_ages():
    v = Vtep(fdb_ageing_sec=0)
    v.send(v.ports[0], BROADCAST, mac(1), now=1)
    assert v.entry(mac(1), now=4_000_000_000) is not None
    assert v.e.fdb_expire(v.seg, 4_000_000_000) == 0


def test_expired_entry_is_relearned_where_the_mac_now_is():
    v = Vtep(fdb_ageing_sec=10)
    v.send(v.ports[0], BROADCAST, mac(1), now=100)
    v.send(v.ports[1], BROADCAST, mac(1), now=200)
    assert v.entry(mac(1), now=200)["target"] == v.ports[1]
    assert v.e.fdb_count(v.seg) == 1


def test_mac_moves_between_ports_and_to_and_from_the_underlay():
    v = Vtep()
    p0, p1, _ = v.ports
    v.send(p0, BROADCAST, mac(1))
    v.send(p1, BROADCAST, mac(1))
    assert v.entry(mac(1))["target"] == p1
    v.receive(BROADCAST, mac(1))
    assert v.entry(mac(1))["kind"] == "remote"
    v.send(p0, BROADCAST, mac(1))
    assert (v.entry(mac(1))["kind"], v.entry(mac(1))["target"]) == ("local", p0)
    assert v.e.fdb_count(v.seg) == 1
    assert v.refused() == 0


def test_static_entry_never_moves_and_never_ages():
    v = Vtep(fdb_ageing_sec=10)
    p0, p1, _ = v.ports
    v.e.fdb_add(v.seg, mac(1), port=p0)
    v.send(p1, BROADCAST, mac(1), now=5)
    v.receive(BROADCAST, mac(1), now=6)
    entry = v.entry(mac(1), now=1_000_000)
    assert (entry["kind"], entry["target"], entry["static"]) == ("local", p0, True)
    assert v.refused() == 2  # both move attempts counted
    v.send(p0, BROADCAST, mac(1), now=7)  # seen where it belongs: no refusal
    assert v.refused() == 2
    assert v.e.fdb_expire(v.seg, 1_000_000) == 0


def test_static_remote_entry_keeps_its_role():
    v = Vtep()
    v.e.fdb_add(v.seg, mac(9), remote=v.remote, role="isolated")
    entry = v.entry(mac(9))
    assert (entry["kind"], entry["role"], entry["static"]) == ("remote", "isolated", True)


def test_limit_refuses_new_macs_but_keeps_forwarding_them():
    v = Vtep(maximum_fdb_entries=4)
    p0, p1, _ = v.ports
    for n in range(4):
        v.send(p0, BROADCAST, mac(n + 1))
    assert v.send(p1, mac(1), mac(5)) == ("none", [("port", p0)])
    assert v.entry(mac(5)) is None
    assert v.refused() == 1
    assert v.e.fdb_count(v.seg) == 4
    with pytest.raises(VtepError) as err:
        v.e.fdb_add(v.seg, mac(6), port=p1)
    assert err.value.errno == errno.ENOSPC
    # Known MACs still move and refresh when the table is full.
    v.send(p1, BROADCAST, mac(1))
    assert v.entry(mac(1))["target"] == p1


def test_limit_frees_up_after_expiry():
    v = Vtep(maximum_fdb_entries=2, fdb_ageing_sec=10)
    v.send(v.ports[0], BROADCAST, mac(1), now=0)
    v.send(v.ports[0], BROADCAST, mac(2), now=0)
    v.send(v.ports[0], BROADCAST, mac(3), now=50)
    assert v.entry(mac(3), now=50) is None
    assert v.e.fdb_expire(v.seg, 50) == 2
    v.send(v.ports[0], BROADCAST, mac(3), now=51)
    assert v.entry(mac(3), now=51) is not None


def test_flush_keeps_static_entries_unless_asked():
    v = Vtep()
    v.e.fdb_add(v.seg, mac(1), port=v.ports[0])
    v.send(v.ports[1], BROADCAST, mac(2))
    v.send(v.ports[1], BROADCAST, mac(3))
    assert v.e.fdb_flush(v.seg) == 2
    assert [e["mac"] for e in v.e.fdb_entries(v.seg)] == [mac(1)]
    assert v.e.fdb_flush(v.seg, with_static=True) == 1
    assert v.e.fdb_count(v.seg) == 0


def test_removing_a_port_removes_its_entries():
    v = Vtep()
    v.send(v.ports[0], BROADCAST, mac(1))
    v.send(v.ports[1], BROADCAST, mac(2))
    v.e.fdb_add(v.seg, mac(3), port=v.ports[0])
    v.e.del_port(v.ports[0])
    assert [e["mac"] for e in v.e.fdb_entries(v.seg)] == [mac(2)]


@pytest.mark.parametrize("bad", ["ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "00:00:00:00:00:00"])
def test_fdb_refuses_group_and_zero_macs(bad):
    v = Vtep()
    with pytest.raises(VtepError) as err:
        v.e.fdb_add(v.seg, bad, port=v.ports[0])
    assert err.value.errno == errno.EINVAL


def test_fdb_refuses_targets_that_do_not_exist():
    v = Vtep()
    other = v.e.add_segment("vxlan", 6000)
    stranger = v.e.add_port(other, "promiscuous")
    for kwargs in ({"port": 7}, {"port": stranger}, {"remote": 3}):
        with pytest.raises(VtepError):
            v.e.fdb_add(v.seg, mac(1), **kwargs)
    assert v.e.fdb_count(v.seg) == 0


def test_segments_have_separate_tables():
    v = Vtep()
    other = v.e.add_segment("vxlan", 6000)
    port = v.e.add_port(other, "promiscuous")
    v.send(port, BROADCAST, mac(1))
    assert v.entry(mac(1)) is None
    assert v.e.fdb_get(other, mac(1))["target"] == port


@pytest.mark.slow
def test_a_million_entries_stay_exact():
    """1,000,000 remote entries: every one found, deletes keep the rest
    reachable (backward-shift deletion), and the limit holds."""
    count = 1_000_000
    e = Engine("198.18.0.1", max_ports=2, max_segments=1, max_remotes=16)
    seg = e.add_segment("vxlan", 5000, maximum_fdb_entries=count)
    port = e.add_port(seg, "promiscuous")
    remotes = [e.add_remote(f"198.18.1.{i}") for i in range(16)]
    for r in remotes:
        e.set_neighbour(r, "02:00:00:00:99:99")
    for n in range(1, count + 1):  # MAC 0 is not a MAC
        e.fdb_add(seg, n.to_bytes(6, "big"), remote=remotes[n % 16])
    assert e.fdb_count(seg) == count
    with pytest.raises(VtepError):
        e.fdb_add(seg, (count + 1).to_bytes(6, "big"), remote=0)

    rng = random.Random(7)
    for n in rng.sample(range(1, count), 2000):
        assert e.fdb_get(seg, n.to_bytes(6, "big"))["target"] == remotes[n % 16]
    # Forwarding finds them too: known unicast goes to exactly one remote.
    targets = [rng.randrange(1, count) for _ in range(256)]
    frames = [frame(n.to_bytes(6, "big"), "02:aa:00:00:00:01") for n in targets]
    verdicts, outs = e.access(port, frames)
    assert verdicts == [0] * 256
    assert [(o[0], o[2]) for o in outs] == [(i, remotes[n % 16]) for i, n in enumerate(targets)]

    for n in range(1, count, 2):
        e.fdb_del(seg, n.to_bytes(6, "big"))
    assert e.fdb_count(seg) == count // 2
    for n in rng.sample(range(1, count + 1), 2000):
        found = e.fdb_get(seg, n.to_bytes(6, "big"))
        assert (found is None) == (n % 2 == 1)
    assert len(e.fdb_entries(seg)) == count // 2


# ---- the MAC-move policy: a MAC has one role in a segment ----

class PvlanVtep:
    """One PVLAN segment (5000, isolated 5001, communities 5002 and 5003)
    with a port of every role, and a peer VTEP that sends on any of its VNIs."""

    VNI = {"promiscuous": 5000, "isolated": 5001, "web": 5002, "db": 5003}

    def __init__(self, **segment):
        self.e = Engine("198.18.0.1", max_ports=8, max_segments=1, max_remotes=4)
        self.seg = self.e.add_segment("vxlan", 5000, 5001, [5002, 5003], **segment)
        self.port = {"promiscuous": self.e.add_port(self.seg, "promiscuous"),
                     "isolated": self.e.add_port(self.seg, "isolated"),
                     "web": self.e.add_port(self.seg, "community", 0),
                     "db": self.e.add_port(self.seg, "community", 1)}
        self.remote = self.e.add_remote("198.18.0.2")
        self.e.set_neighbour(self.remote, "02:00:00:00:99:02")
        self.e.segment_add_remote(self.seg, self.remote)
        self.tunnel = Tunnel("vxlan", "198.18.0.2", "198.18.0.1")

    def send(self, role, dst, src, now=0, probe=False):
        verdicts, outs = self.e.access(self.port[role], [frame(dst, src)], now, probe=probe)
        return DROP_REASONS[verdicts[0]], sorted((kind, target) for _, kind, target, _ in outs)

    def receive(self, role, dst, src, now=0):
        """A frame from the peer VTEP on the VNI of "role"."""
        verdicts, outs = self.e.underlay([self.tunnel.encap(self.VNI[role], frame(dst, src))], now)
        return DROP_REASONS[verdicts[0]], sorted((kind, target) for _, kind, target, _ in outs)

    def entry(self, m, now=0):
        e = self.e.fdb_get(self.seg, m, now)
        return e and (e["kind"], e["target"], e["role"], e["community"])

    def counts(self, where="segment", id=None):
        c = self.e.counters(where, self.seg if id is None else id)
        return c["learn_refused"], c["drops"][DROP_REASONS.index("foreign_src_mac")]


def test_a_learned_mac_moves_within_its_role_local_or_remote():
    v = PvlanVtep()
    other_isolated = v.e.add_port(v.seg, "isolated")
    v.send("isolated", BROADCAST, mac(1))
    assert v.e.access(other_isolated, [frame(BROADCAST, mac(1))])[0] == [0]
    assert v.entry(mac(1)) == ("local", other_isolated, "isolated", None)
    assert v.receive("isolated", BROADCAST, mac(1))[0] == "none"  # migrated behind the peer
    assert v.entry(mac(1)) == ("remote", v.remote, "isolated", None)
    assert v.counts() == (0, 0)


@pytest.mark.parametrize("owner, forger", [("promiscuous", "isolated"), ("web", "db"), ("isolated", "promiscuous"),
                                           ("web", "isolated")])
def test_a_local_port_cannot_take_a_mac_of_another_role(owner, forger):
    v = PvlanVtep()
    v.send(owner, BROADCAST, mac(1))
    assert v.send(forger, mac(9), mac(1)) == ("foreign_src_mac", [])  # dropped, not forwarded
    assert v.entry(mac(1))[:2] == ("local", v.port[owner])
    assert v.counts() == (0, 1)
    assert v.counts("port", v.port[forger]) == (0, 1)
    # The owner's traffic still goes to the owner.
    assert v.send("promiscuous" if owner != "promiscuous" else "web", mac(1), mac(2))[1] == [("port", v.port[owner])]


def test_the_underlay_cannot_take_a_mac_of_another_role():
    v = PvlanVtep()
    v.send("promiscuous", BROADCAST, mac(1))
    assert v.receive("isolated", BROADCAST, mac(1)) == ("foreign_src_mac", [])
    assert v.receive("web", mac(1), mac(1)) == ("foreign_src_mac", [])
    assert v.entry(mac(1)) == ("local", v.port["promiscuous"], "promiscuous", None)
    # A remote MAC learned on the isolated VNI cannot be taken by a local community port.
    v.receive("isolated", BROADCAST, mac(2))
    assert v.send("web", BROADCAST, mac(2))[0] == "foreign_src_mac"
    assert v.entry(mac(2)) == ("remote", v.remote, "isolated", None)
    assert v.counts() == (0, 3)


def test_a_vtep_no_table_knows_is_judged_too():
    """With no remote list, a VTEP we have no id for is not learned from,
    but its frames still may not claim a MAC of another role."""
    v = PvlanVtep()
    v.e.segment_del_remote(v.seg, v.remote)
    stranger = Tunnel("vxlan", "198.18.0.99", "198.18.0.1")
    v.send("promiscuous", BROADCAST, mac(1))
    verdicts, _ = v.e.underlay([stranger.encap(5001, frame(BROADCAST, mac(1)))])
    assert DROP_REASONS[verdicts[0]] == "foreign_src_mac"
    verdicts, _ = v.e.underlay([stranger.encap(5001, frame(BROADCAST, mac(3)))])
    assert DROP_REASONS[verdicts[0]] == "none" and v.entry(mac(3)) is None


def test_a_static_entry_of_another_role_drops_and_of_the_same_role_only_refuses():
    v = PvlanVtep()
    v.e.fdb_add(v.seg, mac(1), port=v.port["web"])
    v.e.fdb_add(v.seg, mac(2), remote=v.remote, role="promiscuous")
    assert v.send("db", BROADCAST, mac(1))[0] == "foreign_src_mac"
    assert v.receive("isolated", BROADCAST, mac(2))[0] == "foreign_src_mac"
    assert v.counts() == (0, 2)
    # Same role, another place: forwarded, not learned (learn_refused).
    assert v.send("promiscuous", BROADCAST, mac(2))[0] == "none"
    assert v.entry(mac(2)) == ("remote", v.remote, "promiscuous", None)
    assert v.counts() == (1, 2)


def test_an_entry_of_unknown_role_claims_none():
    v = PvlanVtep()
    v.e.fdb_add(v.seg, mac(1), remote=v.remote, static=False)  # pushed without a role, may age
    assert v.send("isolated", BROADCAST, mac(1))[0] == "none"
    assert v.entry(mac(1)) == ("local", v.port["isolated"], "isolated", None)
    v.e.fdb_add(v.seg, mac(2), remote=v.remote)  # static, no role: never moves, drops nothing
    assert v.send("isolated", BROADCAST, mac(2))[0] == "none"
    assert v.counts() == (1, 0)


def test_a_host_that_changes_role_is_learned_once_its_entry_ages_out():
    v = PvlanVtep(fdb_ageing_sec=10)
    v.send("web", BROADCAST, mac(1), now=100)
    assert v.send("isolated", BROADCAST, mac(1), now=110)[0] == "foreign_src_mac"
    assert v.send("isolated", BROADCAST, mac(1), now=111)[0] == "none"
    assert v.entry(mac(1), now=111)[:3] == ("local", v.port["isolated"], "isolated")


def test_forged_frames_do_not_refresh_the_owners_entry():
    v = PvlanVtep(fdb_ageing_sec=10)
    v.send("promiscuous", BROADCAST, mac(1), now=100)
    for now in range(101, 111):
        v.send("isolated", BROADCAST, mac(1), now=now)
    assert v.e.fdb_get(v.seg, mac(1), 110)["last_seen"] == 100


def test_a_probe_sees_the_policy_but_counts_and_learns_nothing():
    v = PvlanVtep()
    v.send("promiscuous", BROADCAST, mac(1))
    assert v.send("isolated", BROADCAST, mac(1), probe=True)[0] == "foreign_src_mac"
    assert v.send("isolated", BROADCAST, mac(5), probe=True)[0] == "none"
    assert v.entry(mac(5)) is None and v.counts() == (0, 0)


def test_learning_off_leaves_forged_sources_to_the_pvlan_rules():
    """Without learning nothing can move: a forged source is just a frame
    from its port's role."""
    v = PvlanVtep(mac_learning=False)
    v.e.fdb_add(v.seg, mac(1), port=v.port["promiscuous"])
    assert v.send("isolated", mac(2), mac(1)) == ("none", [("port", v.port["promiscuous"]),
                                                          ("underlay", v.remote)])
    assert v.entry(mac(1))[:2] == ("local", v.port["promiscuous"])
