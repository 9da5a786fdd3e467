"""The pure parts of the system benchmark (perf/bench): the RFC 2544 rate
search against simulated devices, the frames and IMIX it sends, the plan,
and the arithmetic and verdicts of the report."""
import os
import struct
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "perf"))

from bench import frames, generators, plan, report, search, topology, trials  # noqa: E402


def device(capacity, noise=None):
    """A device that forwards up to "capacity" frames/s and loses the excess;
    "noise(rate, calls)" may add loss.  Records the rates asked."""
    asked = []

    def trial(rate):
        asked.append(rate)
        offered = rate
        loss = max(0.0, (offered - capacity) / offered) if offered else 0.0
        if noise:
            loss = max(loss, noise(rate, asked.count(rate)))
        return {"offered": offered, "loss": loss}

    trial.asked = asked
    return trial


def test_zero_loss_search_finds_capacity_within_resolution():
    trial = device(300_000)
    result = search.throughput(trial, ceiling=500_000, resolution=0.01, min_step=1000, confirm=3)
    zero = result["zero_loss"]
    assert 297_000 <= zero["rate"] <= 300_000
    assert zero["loss"] == 0 and zero["repeats"] == 2 and zero["bound"] == "device"   # 2 of 3 decide
    # 0.5 % loss holds up to capacity / 0.995 = 301,508; resolution 2 % from there.
    bounded = result["bounded_loss"]
    assert zero["rate"] <= bounded["rate"] <= 301_508
    assert bounded["loss"] <= 0.005
    assert len(result["trials"]) < 30


def test_search_stops_at_the_generator_ceiling():
    trial = device(900_000)
    result = search.throughput(trial, ceiling=400_000, confirm=2)
    assert result["zero_loss"]["rate"] == 400_000
    assert result["zero_loss"]["bound"] == "generator"
    assert max(trial.asked) == 400_000


def test_a_rate_that_passes_once_but_not_again_is_not_the_answer():
    # Single trials pass up to 300k, but above 270k only the first one does:
    # the confirmation's median fails there and the answer steps down.
    flaky = device(300_000, noise=lambda rate, n: 0.001 if rate > 270_000 and n > 1 else 0.0)
    zero = search.throughput(flaky, ceiling=500_000, confirm=3)["zero_loss"]
    assert 200_000 < zero["rate"] <= 270_000
    assert zero["loss"] == 0


def test_a_device_that_always_loses_has_zero_throughput():
    broken = device(300_000, noise=lambda rate, n: 0.01)
    result = search.throughput(broken, ceiling=500_000, min_step=5000)
    assert result["zero_loss"]["rate"] == 0.0
    assert result["zero_loss"]["offered"] == 0.0


def test_passes_is_strict_for_zero_loss():
    assert search.passes(0, 0) and search.passes(-1e-6, 0)
    assert not search.passes(1e-9, 0)
    assert search.passes(0.005, 0.005) and not search.passes(0.0051, 0.005)


def test_percentile_and_ratio():
    values = list(range(1, 101))
    assert search.percentile(values, 50) == pytest.approx(50.5)
    assert search.percentile(values, 99) == pytest.approx(99.01)
    assert search.percentile(reversed(values), 90) == pytest.approx(90.1)
    assert search.percentile([], 50) is None
    assert search.ratio(3, 2) == 1.5
    assert search.ratio(None, 2) is None and search.ratio(1, 0) is None


# -- frames ------------------------------------------------------------------------------------

def test_imix_is_7_4_1_and_spread_out():
    pattern = frames.imix_pattern()
    assert sorted(pattern) == [64] * 7 + [594] * 4 + [1518]
    assert all(a != b or a == 64 for a, b in zip(pattern, pattern[1:]))   # no two big frames in a row
    assert frames.mean_size("imix") == pytest.approx((7 * 64 + 4 * 594 + 1518) / 12)
    assert frames.frame_count("imix", 256) == 768
    sizes = [len(f) + frames.FCS for f in frames.inner_frames("encap", "imix", 256, 50)]
    assert len(sizes) == 768 and sizes.count(64) == 448 and sizes.count(1518) == 64


def test_inner_frames_sizes_checksums_and_room_for_the_stamp():
    fs = frames.inner_frames("decap", 64, 4, 3)
    assert [len(f) for f in fs] == [60] * 4
    for k, f in enumerate(fs):
        assert f[12:14] == b"\x08\x00"
        assert frames.checksum(f[14:34]) == 0                       # a valid IPv4 header checksum
        udp_len, udp_sum = struct.unpack("!HH", f[38:42])
        assert udp_sum == 0 and udp_len == len(f) - 34 and udp_len - 8 >= frames.STAMP
        assert f[26:30] == bytes([198, 19, 0, k])                    # flow k's source address
        assert f[0:6] == bytes.fromhex(frames.fdb_mac(frames.LOCAL_KIND, k % 3).replace(":", ""))
        assert f[6:12] == bytes.fromhex(frames.DECAP_SRC.replace(":", ""))
    assert len(frames.inner_frame("02:00:00:00:00:01", "02:00:00:00:00:02", 0, 1518)) == 1514
    with pytest.raises(ValueError):
        frames.inner_frame("02:00:00:00:00:01", "02:00:00:00:00:02", 0, 50)


def test_fdb_macs_are_distinct_unicast_and_split():
    macs = {frames.fdb_mac(frames.REMOTE_KIND, i) for i in range(10000)}
    assert len(macs) == 10000
    assert all(int(m[:2], 16) & 1 == 0 for m in macs)
    assert frames.fdb_split(1_000_000) == (500_000, 500_000) and frames.fdb_split(101) == (50, 51)


# -- plan --------------------------------------------------------------------------------------

def test_default_plan_covers_every_dimension_once_per_point():
    points = plan.make()
    keys = [p.key() for p in points]
    assert len(keys) == len(set(keys))
    sizes = {p.size for p in points if p.setup.system == "ovs" and p.direction == "decap"}
    assert sizes == set(frames.SIZES)
    assert {p.flows for p in points if p.setup.system == "kernel"} == {1, 256, 65536}
    assert any(p.setup.fdb == 1_000_000 for p in points)
    assert any(p.setup.pvlan for p in points)
    assert {p.setup.system for p in points if p.setup.workers == 2} == {"vtepd", "nullfwd"}
    base = [p for p in points if p.key() == (plan.Setup("vtepd"), "encap", 64, 256)][0]
    assert set(base.dimensions) == {"size", "flows", "pvlan", "workers"}
    # One start per setup, in system order, the base setup first.
    setups = [s for s, _ in plan.by_setup(points)]
    assert setups[0] == plan.Setup("nullfwd") and len(setups) == len(set(setups)) == 8


def test_quick_plan_is_64_bytes_at_the_base_point():
    points = plan.make(quick=True)
    assert {(p.size, p.flows) for p in points} == {(64, 256)}
    assert len(points) == 8


# -- report ------------------------------------------------------------------------------------

def point(system, direction, kpps, size=64, flows=256, bound="device", **setup):
    base = dict(workers=1, fdb=100, pvlan=False)
    base.update(setup)
    return dict(base, system=system, direction=direction, size=size, flows=flows, dimensions=["size"],
                zero_loss={"offered": kpps * 1e3, "bound": bound},
                bounded_loss={"offered": kpps * 1.1e3}, ceiling={"offered": 900e3})


def results():
    points = []
    for d in ("encap", "decap"):
        points += [point("vtepd", d, 500), point("nullfwd", d, 510), point("kernel", d, 400, bound="generator"),
                   point("ovs", d, 300), point("vtepd", d, 480, flows=65536),
                   point("vtepd", d, 400, flows=65536, fdb=1_000_000)]
    return {"machine": {"cpu": "test"}, "started": "2025-01-01T00:00:00+00:00", "complete": True,
            "options": {"gen_cpus": "0", "dut_cpus": "1", "rps": "kernel", "resolution": 0.01, "min_step": 5000,
                        "trial": 1.0, "confirm": 3, "offloads_used": "off", "host_offloads": False,
                        "tcp_seconds": 10},
            "points": points,
            "cpu": [{"system": "vtepd", "direction": "encap", "load": 4e5, "process_ns_per_packet": 120.0,
                     "loss": 0.0},
                    {"system": "nullfwd", "direction": "encap", "load": 4e5, "process_ns_per_packet": 100.0,
                     "loss": 0.0}],
            "tcp": [{"system": "vtepd", "offloads": "off", "iperf3": [{"streams": 1, "gbit_s": 1.0}]},
                    {"system": "kernel", "offloads": "off", "iperf3": [{"streams": 1, "gbit_s": 3.0}]}]}


def test_targets_compute_ratios_and_verdicts():
    ts = {t["target"]: t for t in report.targets(results())}

    def get(prefix):
        [t] = [t for name, t in ts.items() if name.startswith(prefix)]
        return t

    null = get("64-byte zero-loss throughput, encap: vtepd / null")
    assert null["ratio"] == pytest.approx(500 / 510) and null["met"] is True
    kernel = get("64-byte zero-loss throughput, decap: vtepd / kernel")
    assert kernel["ratio"] == pytest.approx(1.25) and kernel["met"] is True
    assert "kernel" in kernel["note"] and "lower bound" in kernel["note"]
    ovs = get("64-byte zero-loss throughput, encap: vtepd / OVS")
    assert ovs["ratio"] == pytest.approx(500 / 300) and ovs["met"] is False
    cpu = get("CPU per packet (user+system), encap")
    assert cpu["ratio"] == pytest.approx(1.2) and cpu["met"] is False
    assert get("CPU per packet (user+system), decap")["met"] is None        # not measured
    fdb = get("FDB 1,000,000 / FDB 100, vtepd 64 bytes encap")
    assert fdb["ratio"] == pytest.approx(400 / 480) and fdb["met"] is False
    tcp = get("TCP iperf3 1 stream")
    assert tcp["ratio"] == pytest.approx(1 / 3) and tcp["met"] is False


def test_table_and_results_md_show_the_figures():
    data = results()
    text = report.table(data)
    assert "0.98x" in text and "1.25x" in text and "400.0*" in text
    md = report.results_md(data)
    assert "## Targets" in md and "**missed**" in md and "| met |" in md
    assert "500.0" in md and "Do not edit by hand" in md
    assert report.mbits(1e6, 64) == pytest.approx(512.0)
    assert report.mbits(1e3, "imix") == pytest.approx(1e3 * frames.mean_size("imix") * 8 / 1e6)


def test_the_half_percent_rate_is_never_below_the_zero_loss_rate():
    p = point("vtepd", "encap", 100)
    p["bounded_loss"]["offered"] = 90e3          # its own search ended lower
    assert report.bounded(p) == 100e3
    assert report.bounded(dict(p, error="start failed")) is None


def test_cpu_lists_read_as_taskset_reads_them():
    assert topology.cpu_set("1") == {1}
    assert topology.cpu_set("0,2-3") == {0, 2, 3}
    assert topology.cpu_mask("0,1") == "3" and topology.cpu_mask("2-3") == "c"


def test_only_the_named_threads_go_to_the_measured_cpus():
    """This process's own threads: the main one is "pytest" or "python"."""
    allowed = os.sched_getaffinity(0)
    cpu = min(allowed)
    try:
        seen = topology.pin_threads(os.getpid(), "no-such-thread", str(cpu + 64), str(cpu))
        assert sum(seen.values()) >= 1 and os.sched_getaffinity(0) == {cpu}
    finally:
        os.sched_setaffinity(0, allowed)


class FakeNs:
    """A namespace whose links' counters move by "moves" when the generator runs."""

    def __init__(self, counters, moves=None, sent=0):
        self.counters, self.moves, self.sent = counters, moves or {}, sent

    def stats(self, ifname):
        return dict(self.counters[ifname])

    def run(self, argv, **kw):
        for ns, ifname, key, n in self.moves:
            ns.counters[ifname][key] += n
        return type("Done", (), {"stdout": f'{{"sent": {self.sent}, "seconds": 1.0}}\n'})()


def test_a_trial_says_where_frames_were_lost():
    """1000 sent; 990 reached the device, 960 left it, 955 reached the sink."""
    sink = FakeNs({"u0": {"rx_packets": 7, "rx_dropped": 0}})
    dut = FakeNs({"acc": {"rx_packets": 100, "tx_packets": 0}, "ul": {"rx_packets": 0, "tx_packets": 50}})
    gen = FakeNs({}, moves=[(dut, "acc", "rx_packets", 990), (dut, "ul", "tx_packets", 960),
                            (sink, "u0", "rx_packets", 955)], sent=1000)
    path = trials.Path(gen, "a0", sink, "u0", "x.pcap", dut, "acc", "ul")
    result = trials.trial(trials.Tools(gen="gen", sink="sink"), path, 1000, 1.0, drain=0)
    assert (result["sent"], result["received"], result["lost"]) == (1000, 955, 45)
    assert result["lost_where"] == {"before": 10, "in": 30, "after": 5}
    assert "lost_where" not in trials.trial(trials.Tools(gen="gen", sink="sink"),
                                            trials.Path(gen, "a0", sink, "u0", "x.pcap"), 1000, 1.0, drain=0)


def test_target_rounds_alternate_the_order_and_the_targets_take_the_median():
    first, second = plan.target_points(plan.SYSTEMS, plan.DIRECTIONS, 1), plan.target_points(plan.SYSTEMS, plan.DIRECTIONS, 2)
    order = lambda points: [s for s, _ in plan.by_setup(points)]  # noqa: E731
    assert order(first) == order(second)[::-1]
    assert order(second) == [plan.Setup("nullfwd"), plan.Setup("vtepd"), plan.Setup("vtepd", fdb=plan.BIG_FDB),
                             plan.Setup("kernel")]
    assert {p.round for p in first} == {1} and all(p.size == 64 for p in first)

    data = results()
    for r, (vtepd, null) in enumerate(((520, 500), (450, 500)), start=1):   # a noisy round each way
        for d in ("encap", "decap"):
            data["points"] += [dict(point("vtepd", d, vtepd, bound="generator"), round=r),
                               dict(point("nullfwd", d, null), round=r)]
    [t] = [t for t in report.targets(data) if t["target"].startswith("64-byte zero-loss throughput, encap: vtepd / null")]
    assert t["ratio"] == pytest.approx(500 / 510)                    # the median of 500/510, 520/500 and 450/500
    assert "median of 3 rounds" in t["note"] and "in 2 of 3 rounds" in t["note"]
    # The main tables keep the main plan's figures; the rounds have a table of their own.
    assert [r["kpps"] for r in report.rows(data) if r["system"] == "vtepd" and r["flows"] == 256] == [500, 500]
    md = report.results_md(data)
    assert "## Target points, round by round" in md and "| 520.0 * | 450.0 * | 500.0 |" in md


def test_round_trips_under_load_have_a_table_of_their_own():
    data = results()
    rtt = lambda p50: {"rtt_us": {"p50": p50, "p90": p50 * 2, "p99": p50 * 3}}  # noqa: E731
    data["tcp"][0].update(zero_loss={"offered": 250e3}, loaded=[
        {"fraction": f, "rate": f * 250e3, "offered": f * 249e3, "loss": 0.0 if f < 0.9 else 0.0125,
         "ping": rtt(100.0 * (1 + f)), "udp_rr": rtt(80.0)} for f in (0.1, 0.5, 0.9)])
    md = report.results_md(data)
    assert "### Round trips under load" in md
    assert "| vtepd (host offloads off) | 250.0 | 90% | 224.1 | 1.250% | 190.0/380.0/570.0 | 80.0/160.0/240.0 |" in md
    assert md.count("| vtepd (host offloads off) | 250.0 |") == 3
    del data["tcp"][0]["loaded"]
    assert "### Round trips under load" not in report.results_md(data)


def test_generators_have_their_ceilings_and_trafgen_gets_the_same_frames():
    config = generators.trafgen_config([b"\x02\x00\xff", b"\x0a"])
    assert config == "{ 0x02, 0x00, 0xff }\n{ 0x0a }\n"
    data = results()
    data["generators"] = [
        {"tool": "vtep-gen", "command": "taskset -c 0 vtep-gen ...", "kpps": 760.0, "trials_kpps": [760.0, 700.0, 770.0]},
        {"tool": "trafgen", "command": "taskset -c 0 trafgen ...", "error": "RuntimeError: trafgen exited with 1"}]
    md = report.results_md(data)
    assert "## Generators straight into the sink" in md
    assert "| vtep-gen | 760.0 | 760.0, 700.0, 770.0 |" in md and "| trafgen | failed: RuntimeError" in md
