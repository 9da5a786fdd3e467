"""The per-port BUM rate limit, driven through the engine with a clock the
test sets (clock_ns): broadcast, unknown unicast and multicast from a
limited port pass at the configured rate with bursts up to the configured
size; known unicast and other ports are never limited."""
import errno

import pytest

from dataplane._engine import BUM_RATE_MAX, Engine, VtepError
from dataplane.packet import DROP_REASONS

from .recording_io import RecordingIo

BROADCAST = "ff:ff:ff:ff:ff:ff"
MULTICAST = "01:00:5e:00:00:01"
SECOND = 1_000_000_000
LIMITED = DROP_REASONS.index("bum_rate_limit")


def mac(n):
    return f"02:00:00:00:00:{n:02x}"


def frame(dst, src):
    return bytes.fromhex((dst + src).replace(":", "")) + b"\x88\xb5" + bytes(46)


class Vtep:
    def __init__(self, rate=0, burst=0):
        self.e = Engine("198.18.0.1", max_ports=4, max_segments=1, max_remotes=2)
        self.seg = self.e.add_segment("vxlan", 5000)
        self.limited, self.other, self.known = (self.e.add_port(self.seg, "promiscuous") for _ in range(3))
        self.e.fdb_add(self.seg, mac(3), port=self.known)
        if rate:
            self.e.set_bum_limit(self.limited, rate, burst)

    def passed(self, port, frames, clock_ns):
        """How many of "frames" went out; the rest must be bum_rate_limit drops."""
        verdicts, _ = self.e.access(port, frames, clock_ns // SECOND, clock_ns=clock_ns)
        assert set(verdicts) <= {0, LIMITED}
        return verdicts.count(0)

    def limited_drops(self, where="port", id=None):
        return self.e.counters(where, self.limited if id is None else id)["drops"][LIMITED]


def storm(n, src=1):
    return [frame(BROADCAST, mac(src))] * n


def test_no_limit_by_default():
    v = Vtep()
    assert v.passed(v.limited, storm(256), 0) == 256


def test_a_burst_passes_then_the_rate():
    v = Vtep(rate=100, burst=5)
    assert v.passed(v.limited, storm(20), 0) == 5
    assert v.limited_drops() == 15
    assert v.limited_drops("segment", v.seg) == 15
    assert v.passed(v.limited, storm(20), SECOND // 100 - 1) == 0  # the next one is due at 10 ms
    assert v.passed(v.limited, storm(20), SECOND // 100) == 1
    assert v.passed(v.limited, storm(20), 2 * SECOND) == 5  # idle: the burst is back, no more


def test_over_a_second_of_storm_the_rate_plus_one_burst_pass():
    """A frame every 100 us (10,000 pps) for one second against 1000 pps,
    burst 100: exactly 1000 + 100 pass, as a token bucket lets through."""
    v = Vtep(rate=1000, burst=100)
    sent = passed = 0
    for t in range(0, SECOND, 100_000):
        passed += v.passed(v.limited, storm(1), t)
        sent += 1
    assert sent == 10_000
    assert passed == 1000 + 100 - 1  # at t = 0 the schedule starts; the frame at 1 s is outside
    assert v.limited_drops() == sent - passed


def test_default_burst_is_a_tenth_of_a_second():
    v = Vtep(rate=1000)
    assert v.passed(v.limited, storm(256), 0) == 100
    v.e.set_bum_limit(v.limited, 5)
    assert v.passed(v.limited, storm(10), 0) == 1  # at least one


@pytest.mark.parametrize("dst", [BROADCAST, MULTICAST, mac(9)], ids=["broadcast", "multicast", "unknown-unicast"])
def test_every_kind_of_bum_is_limited(dst):
    v = Vtep(rate=10, burst=2)
    assert v.passed(v.limited, [frame(dst, mac(1))] * 10, 0) == 2


def test_known_unicast_and_other_ports_are_never_limited():
    v = Vtep(rate=10, burst=1)
    assert v.passed(v.limited, storm(10), 0) == 1
    verdicts, outs = v.e.access(v.limited, [frame(mac(3), mac(1))] * 50, 0, clock_ns=0)
    assert verdicts == [0] * 50 and {(k, t) for _, k, t, _ in outs} == {("port", v.known)}
    assert v.passed(v.other, storm(200, src=2), 0) == 200
    assert v.limited_drops("port", v.other) == 0


def test_a_new_limit_applies_at_once_with_a_full_burst_and_zero_removes_it():
    v = Vtep(rate=10, burst=1)
    assert v.passed(v.limited, storm(5), 0) == 1
    v.e.set_bum_limit(v.limited, 1000, 3)
    assert v.passed(v.limited, storm(5), 0) == 3
    v.e.set_bum_limit(v.limited, 0)
    assert v.passed(v.limited, storm(300), 0) == 300


def test_a_port_added_again_starts_without_a_limit():
    v = Vtep(rate=10, burst=1)
    v.e.del_port(v.limited)
    again = v.e.add_port(v.seg, "promiscuous")
    assert again == v.limited
    assert v.passed(again, storm(20), 0) == 20


def test_a_probe_sees_the_limit_but_takes_no_token():
    v = Vtep(rate=10, burst=2)
    for _ in range(5):
        verdicts, _ = v.e.access(v.limited, storm(1), 0, probe=True, clock_ns=0)
        assert verdicts == [0]
    assert v.passed(v.limited, storm(5), 0) == 2
    verdicts, _ = v.e.access(v.limited, storm(1), 0, probe=True, clock_ns=0)
    assert verdicts == [LIMITED]
    assert v.limited_drops() == 3


def test_frames_from_the_underlay_are_not_limited_by_a_port():
    """The limit is of what enters from a port; underlay BUM goes on."""
    from dataplane.packet import Tunnel
    v = Vtep(rate=10, burst=1)
    remote = v.e.add_remote("198.18.0.2")
    v.e.segment_add_remote(v.seg, remote)
    tunnel = Tunnel("vxlan", "198.18.0.2", "198.18.0.1")
    verdicts, outs = v.e.underlay([tunnel.encap(5000, f) for f in storm(20, src=7)], 0, clock_ns=0)
    assert verdicts == [0] * 20
    assert sum(1 for _, _, t, _ in outs if t == v.limited) == 20


@pytest.mark.parametrize("port, rate, code", [(0, BUM_RATE_MAX + 1, errno.EINVAL), (3, 10, errno.ENOENT),
                                               (9, 10, errno.ENOENT)])
def test_bad_limits_are_refused(port, rate, code):
    v = Vtep()
    with pytest.raises(VtepError) as err:
        v.e.set_bum_limit(port, rate)
    assert err.value.errno == code


@pytest.mark.parametrize("rate", [BUM_RATE_MAX, 7_000_000, 3_000_000])
def test_high_rates_are_accurate(rate):
    """Near VTEP_BUM_RATE_MAX the ns schedule rounds by at most 0.5%: a
    10 ms storm, polled every 10 us, passes rate * 10 ms plus one burst."""
    v = Vtep(rate=rate, burst=100)
    passed = sum(v.passed(v.limited, storm(256), t) for t in range(0, SECOND // 100, 10_000))
    expected = rate // 100 + 100
    assert abs(passed - expected) <= expected * 0.005


# ---- from the config: reload changes a limit in place ----

def limited_config(vtep_default=None, **port_limits):
    from dataplane import config
    vtep = {"underlay": "ul0", "local": "198.18.0.1"}
    if vtep_default is not None:
        vtep["bum_rate_limit"] = vtep_default
    ports = [{"name": n, "segment": "a"} | ({"bum_rate_limit": port_limits[n]} if n in port_limits else {})
             for n in ("p1", "p2")]
    return config.parse({"vtep": vtep, "segment": [{"name": "a", "vni": 100}], "port": ports})


def storm_passes(t, port, n=50, clock_ns=0):
    verdicts, _ = t.engine.access(t.ports[port], storm(n), clock_ns // SECOND, clock_ns=clock_ns)
    return verdicts.count(0)


def test_config_limits_reach_the_engine_and_reload_changes_them_in_place():
    from dataplane.tables import Tables
    t, io = Tables.build(limited_config(p1=100)), RecordingIo()
    assert (storm_passes(t, "p1"), storm_passes(t, "p2")) == (10, 50)  # burst: a tenth of a second
    ports = dict(t.ports)
    changes = t.apply(limited_config(vtep_default=20, p1=0), io)
    assert changes == ["port p1: bum_rate_limit unlimited", "port p2: bum_rate_limit 20"]
    assert io.calls == [] and t.ports == ports  # no port was reopened
    assert (storm_passes(t, "p1", clock_ns=SECOND), storm_passes(t, "p2", clock_ns=SECOND)) == (50, 2)
    assert t.apply(limited_config(vtep_default=20, p1=0), io) == []
