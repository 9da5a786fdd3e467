"""Everything a person reads, made from the JSON of a run and nothing else:
the table on stdout, perf/RESULTS.md and the PNG plots.  No figure is ever
typed by hand: `perf/bench_system.py report` regenerates all three."""
import os
import statistics

from .frames import SIZES, mean_size
from .search import ratio

SYSTEM_ORDER = ("vtepd", "nullfwd", "kernel", "ovs")
LABELS = {"vtepd": "vtepd", "nullfwd": "null forwarder", "kernel": "kernel bridge+VXLAN (RPS)",
          "ovs": "OVS userspace (netdev)"}
BASE = {"workers": 1, "fdb": 100, "pvlan": False}
BASE_FLOWS = 256


# -- looking things up in the results --------------------------------------------------------

def _is(point, system, **setup):
    want = dict(BASE, **setup)
    if point["system"] != system:
        return False
    if system != "vtepd":
        want.pop("fdb"), want.pop("pvlan")
    return all(point[k] == v for k, v in want.items())


def main_points(data):
    """The points of the main plan: the tables and plots show these."""
    return [p for p in data.get("points", []) if not p.get("round")]


def find_point(data, system, direction, size, flows=BASE_FLOWS, round_no=0, **setup):
    for p in data.get("points", []):
        if (_is(p, system, **setup) and p["direction"] == direction and p["size"] == size and p["flows"] == flows
                and p.get("round", 0) == round_no):
            return p
    return None


def rounds(data):
    return sorted({p.get("round", 0) for p in data.get("points", [])})


def capped(point):
    return bool(point) and (point.get("zero_loss") or {}).get("bound") == "generator"


def zero_loss(point):
    """Zero-loss throughput (frames/s) of a point, or None when it failed."""
    if not point or point.get("error") or not point.get("zero_loss"):
        return None
    return point["zero_loss"]["offered"]


def bounded(point):
    """The 0.5 %-loss throughput: never below the zero-loss one, which meets
    the bound too (a noisy confirmation can end the 0.5 % search lower)."""
    if not point or point.get("error") or not point.get("bounded_loss"):
        return None
    return max(point["bounded_loss"]["offered"], zero_loss(point) or 0.0)


def mbits(pps, size):
    return None if pps is None else pps * mean_size(size) * 8 / 1e6


def setup_label(p):
    parts = [LABELS.get(p["system"], p["system"])]
    if p["workers"] != 1:
        parts.append(f"{p['workers']} workers")
    if p["system"] == "vtepd" and p["fdb"] != 100:
        parts.append(f"FDB {p['fdb']:,}")
    if p["system"] == "vtepd" and p["pvlan"]:
        parts.append("PVLAN")
    return ", ".join(parts)


def _fmt(value, spec=".1f", none="-"):
    return none if value is None else format(value, spec)


def _x(value):
    return "-" if value is None else f"{value:.2f}x"


# -- the table -----------------------------------------------------------------------------------

def rows(data):
    """One row per point: the setup, direction, size, flows, zero-loss and
    0.5 %-loss rates, and for vtepd its ratios to the references at the same
    direction, size and flows (the null forwarder with as many workers)."""
    out = []
    for p in main_points(data):
        z = zero_loss(p)
        row = {"setup": setup_label(p), "system": p["system"], "direction": p["direction"], "size": p["size"],
               "flows": p["flows"], "kpps": None if z is None else z / 1e3, "mbits": mbits(z, p["size"]),
               "kpps_05": None if bounded(p) is None else bounded(p) / 1e3,
               "bound": (p.get("zero_loss") or {}).get("bound"), "error": p.get("error"),
               "ceiling_kpps": (p.get("ceiling") or {}).get("offered", 0) / 1e3 if p.get("ceiling") else None,
               "vs_null": None, "vs_kernel": None, "vs_ovs": None}
        if p["system"] == "vtepd":
            args = (p["direction"], p["size"], p["flows"])
            row["vs_null"] = ratio(z, zero_loss(find_point(data, "nullfwd", *args, workers=p["workers"])))
            row["vs_kernel"] = ratio(z, zero_loss(find_point(data, "kernel", *args)))
            row["vs_ovs"] = ratio(z, zero_loss(find_point(data, "ovs", *args)))
        out.append(row)
    return out


def table(data):
    """The stdout table, as text."""
    head = ("system", "dir", "size", "flows", "0-loss kpps", "Mbit/s", "0.5% kpps", "vs null", "vs kernel", "vs OVS")
    lines = []
    for r in rows(data):
        mark = "*" if r["bound"] == "generator" else ""
        lines.append((r["setup"], r["direction"], str(r["size"]), f"{r['flows']:,}",
                      (_fmt(r["kpps"]) + mark) if not r["error"] else "FAILED", _fmt(r["mbits"], ".0f"),
                      _fmt(r["kpps_05"]), _x(r["vs_null"]), _x(r["vs_kernel"]), _x(r["vs_ovs"])))
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 4 else f"{{:>{w}}}" for i, w in enumerate(widths))
    text = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    text += [fmt.format(*line) for line in lines]
    text.append("* = the generator's ceiling: the device lost nothing at the highest rate it could be offered.")
    text.append("Sizes are inner Ethernet frames with FCS; Mbit/s counts those inner frames.")
    return "\n".join(text)


# -- targets -------------------------------------------------------------------------------------

def cpu_entry(data, system, direction):
    for c in data.get("cpu", []):
        if c["system"] == system and c["direction"] == direction and not c.get("error"):
            return c
    return None


def tcp_entry(data, system, streams, offloads=None):
    for t in data.get("tcp", []):
        if t["system"] == system and (offloads is None or t.get("offloads") == offloads) and not t.get("error"):
            for r in t.get("iperf3", []):
                if r["streams"] == streams and "gbit_s" in r:
                    return r["gbit_s"]
    return None


def targets(data):
    """Each target of the issue: what was compared, the ratio, the bound, met or missed."""
    out = []

    def add(name, value, op, bound, note=""):
        met = None if value is None else (value >= bound if op == ">=" else value <= bound)
        out.append({"target": name, "ratio": value, "op": op, "bound": bound, "met": met, "note": note})

    for d in ("encap", "decap"):
        for ref, bound in (("nullfwd", 0.95), ("kernel", 1.0), ("ovs", 2.0)):
            value, note = round_ratio(data, lambda r: find_point(data, "vtepd", d, 64, round_no=r),
                                      lambda r: find_point(data, ref, d, 64, round_no=r), LABELS[ref])
            add(f"64-byte zero-loss throughput, {d}: vtepd / {LABELS[ref]}", value, ">=", bound, note)
    for d in ("encap", "decap"):
        v, n = cpu_entry(data, "vtepd", d), cpu_entry(data, "nullfwd", d)
        value = ratio(v and v["process_ns_per_packet"], n and n["process_ns_per_packet"])
        load = f"at {v['load'] / 1e3:.0f} kpps offered" if v else ""
        add(f"CPU per packet (user+system), {d}: vtepd / null forwarder {load}", value, "<=", 1.1)
    for d in ("encap", "decap"):
        value, note = round_ratio(data, lambda r: find_point(data, "vtepd", d, 64, 65536, round_no=r, fdb=1_000_000),
                                  lambda r: find_point(data, "vtepd", d, 64, 65536, round_no=r), "FDB 100",
                                  subject="FDB 1,000,000")
        add(f"FDB 1,000,000 / FDB 100, vtepd 64 bytes {d} (65,536 flows)", value, ">=", 0.9, note)
    for streams in (1, 4):
        add(f"TCP iperf3 {streams} stream{'s' if streams > 1 else ''}: vtepd / kernel VXLAN",
            ratio(tcp_entry(data, "vtepd", streams, "on" if data["options"].get("host_offloads") else "off"),
                  tcp_entry(data, "kernel", streams, "on" if data["options"].get("host_offloads") else "off")),
            ">=", 0.5)
    for d in ("encap", "decap"):
        v1, v2 = find_point(data, "vtepd", d, 64), find_point(data, "vtepd", d, 64, workers=2)
        n1, n2 = find_point(data, "nullfwd", d, 64), find_point(data, "nullfwd", d, 64, workers=2)
        out.append({"target": f"two workers vs one, {d}: vtepd 2w/1w, null forwarder 2w/1w, vtepd 2w / null 2w",
                    "ratio": None, "shown": [ratio(zero_loss(v2), zero_loss(v1)), ratio(zero_loss(n2), zero_loss(n1)),
                                             ratio(zero_loss(v2), zero_loss(n2))],
                    "op": "shown", "bound": None, "met": None,
                    "note": "both workers share the DUT CPU(s) given by --dut-cpus; "
                            "without a generator limit: make bench-scaling (perf/README.md)"})
    return out


def round_ratio(data, subject_at, reference_at, reference, subject="vtepd"):
    """The median over the rounds of subject / reference zero-loss
    throughput, each ratio within one round, and a note that says what it
    is made of (the rounds' ratios, and where the generator capped a side,
    which makes that side's figure a lower bound)."""
    per_round, capped_subject, capped_reference = [], 0, 0
    for r in rounds(data):
        s, ref = subject_at(r), reference_at(r)
        value = ratio(zero_loss(s), zero_loss(ref))
        if value is None:
            continue
        per_round.append(value)
        capped_subject += capped(s)
        capped_reference += capped(ref)
    if not per_round:
        return None, ""
    n = len(per_round)
    note = [f"median of {n} rounds: " + ", ".join(_x(v) for v in per_round)] if n > 1 else []
    for who, k in ((subject, capped_subject), (reference, capped_reference)):
        if k:
            at = "" if n == 1 else (" in every round" if k == n else f" in {k} of {n} rounds")
            note.append(f"{who} reached the generator's ceiling{at}: a lower bound there")
    return statistics.median(per_round), "; ".join(note)


def targets_text(data):
    lines = []
    for t in targets(data):
        if t["op"] == "shown":
            lines.append(f"  {t['target']}: " + ", ".join(_x(v) for v in t["shown"]))
            continue
        verdict = "n/a" if t["met"] is None else ("met" if t["met"] else "MISSED")
        lines.append(f"  {t['target']}: {_x(t['ratio'])} (target {t['op']} {t['bound']}x): {verdict}"
                     + (f" [{t['note']}]" if t["note"] else ""))
    return "\n".join(lines)


# -- RESULTS.md ----------------------------------------------------------------------------------

def _md_table(head, body):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(out)


def _point_rows(data, predicate):
    body = []
    for r, p in zip(rows(data), main_points(data)):
        if not predicate(p):
            continue
        if r["error"]:
            body.append([r["setup"], r["direction"], r["size"], f"{r['flows']:,}", "failed: " + r["error"][:80],
                         "", "", "", "", "", ""])
            continue
        body.append([r["setup"], r["direction"], r["size"], f"{r['flows']:,}",
                     _fmt(r["kpps"]) + (" *" if r["bound"] == "generator" else ""), _fmt(r["mbits"], ".0f"),
                     _fmt(r["kpps_05"]), _fmt(r["ceiling_kpps"]), _x(r["vs_null"]), _x(r["vs_kernel"]),
                     _x(r["vs_ovs"])])
    return body


def rounds_md(data):
    """The target points round by round: one row per setup, direction and
    flows; a column per round and their median."""
    numbers = rounds(data)
    if len(numbers) < 2:
        return []
    repeated = {(p["system"], p["workers"], p["fdb"], p["pvlan"], p["direction"], p["flows"])
                for p in data["points"] if p.get("round")}
    body = []
    for p in main_points(data):
        key = (p["system"], p["workers"], p["fdb"], p["pvlan"], p["direction"], p["flows"])
        if key not in repeated or p["size"] != 64:
            continue
        setup = {k: p[k] for k in ("workers", "fdb", "pvlan")}
        each = [find_point(data, p["system"], p["direction"], 64, p["flows"], round_no=r, **setup) for r in numbers]
        figures = [zero_loss(q) for q in each]
        body.append([setup_label(p), p["direction"], f"{p['flows']:,}"]
                    + [_fmt(z and z / 1e3) + (" *" if capped(q) else "") for z, q in zip(figures, each)]
                    + [_fmt(statistics.median(z for z in figures if z is not None) / 1e3
                            if any(z is not None for z in figures) else None)])
    head = ("system", "direction", "flows") + tuple(f"round {r + 1} kpps" for r in numbers) + ("median kpps",)
    return ["## Target points, round by round (64 bytes)", "",
            "The 64-byte points the throughput targets compare, measured again after the main plan, the systems "
            "in turn (backwards every other round); a target's figure is the median of its ratios within each "
            "round. Round 1 is the main plan's figure.", "", _md_table(head, body), "",
            "`*` the generator's ceiling: nothing was lost at the highest rate it could offer.", ""]


def generators_md(data):
    gens = data.get("generators") or []
    if not gens:
        return []
    body = [[g["tool"], "failed: " + g["error"][:80] if g.get("error") else _fmt(g["kpps"]),
             ", ".join(_fmt(k) for k in g.get("trials_kpps", [])), f"`{g['command']}`"] for g in gens]
    return ["## Generators straight into the sink", "",
            "Each generator flat out into a veth whose peer only counts (no device between), 64-byte frames, "
            "256 flows, on the generator's CPU; the sink's rx_packets over one trial after 0.5 s of start-up, "
            "median of 3. vtep-gen drives every device: it paces to a given rate, stamps frames for the latency "
            "trials and reports what it sent; this table is how its ceiling compares with trafgen's.", "",
            _md_table(("generator", "median kpps", "trials kpps", "command"), body), ""]


def _rtt(entry):
    return "/".join(_fmt((entry or {}).get("rtt_us", {}).get(p)) for p in ("p50", "p90", "p99"))


def loaded_md(data):
    """Round trips under load, per system of the TCP topology."""
    body = []
    for t in data.get("tcp", []):
        zero = (t.get("zero_loss") or {}).get("offered")
        for r in t.get("loaded", []):
            body.append([f"{LABELS.get(t['system'], t['system'])} (host offloads {t.get('offloads')})",
                         _fmt(zero and zero / 1e3), f"{r['fraction'] * 100:.0f}%", _fmt(r["offered"] / 1e3),
                         "-" if r.get("loss") is None else f"{r['loss'] * 100:.3f}%", _rtt(r["ping"]),
                         _rtt(r["udp_rr"])])
    if not body:
        return []
    return ["### Round trips under load", "",
            "The zero-loss rate of 64-byte frames from H1 to H2 through both VTEPs (the same search as the "
            "throughput points, vtep-gen on H1, counted on H2), then ping (200 at 5 ms) and UDP request/response "
            "(2,000) while vtep-gen offers 10, 50 and 90% of it (offered: what it sent while the probes ran). The "
            "probes share the hosts' CPU with vtep-gen, so their tails include waiting for it. Load lost: of the "
            "frames sent while the probes ran.", "",
            _md_table(("VTEPs", "zero-loss kpps", "load", "offered kpps", "load lost", "ping RTT p50/p90/p99 µs",
                       "UDP RR RTT p50/p90/p99 µs"), body), ""]


POINT_HEAD = ("system", "direction", "size (bytes)", "flows", "zero-loss kpps", "Mbit/s", "0.5%-loss kpps",
              "generator max kpps", "vtepd / null", "vtepd / kernel", "vtepd / OVS")


def results_md(data, plots_rel="plots"):
    m, o = data["machine"], data["options"]
    out = ["# System benchmark results", "",
           "Generated by `perf/bench_system.py` from `build/bench-system.json`; regenerate with "
           "`perf/bench_system.py report`. Do not edit by hand.", ""]
    out += ["## Machine", "",
            f"- CPU: {m.get('cpu')} ({m.get('cpus')} CPUs); kernel {m.get('kernel')}; Python {m.get('python')}",
            f"- date: {data.get('started')}; git commit {m.get('git_commit')}"
            + (" (with uncommitted changes)" if m.get("git_dirty") else ""),
            f"- load average before/after: {_fmt(m.get('loadavg_start'), '.2f')} / "
            f"{_fmt(data.get('loadavg_end'), '.2f')} "
            "(the machine is shared: other work on it shows as noise)",
            f"- run: `{data.get('command')}`; {data.get('seconds', 0) / 60:.1f} minutes"
            + ("" if data.get("complete") else " (INCOMPLETE: the run stopped early)"), ""]
    out += ["## Method", "",
            "- Topology: namespaces A ─veth─ D ─veth─ U; the device under test in D between the access port "
            "`acc` and the underlay port `ul` (MTU 1600). Encap: the generator sends inner frames from A into "
            "`acc`, U counts tunnel packets (sent to a MAC not U's, so U's kernel drops them on arrival); decap: the generator sends VXLAN packets (made with `vtepctl pcap "
            "encap`) from U into `ul`, A counts inner frames. Addresses in 198.18.0.0/15.",
            "- Generator: vtep-gen (perf/gen.c): pcaps replayed through an AF_PACKET TX ring in batches of 64, "
            "paced by the clock; its own ceiling and trafgen's are under \"Generators straight into the sink\".",
            f"- CPUs: generator (and sink, ovsdb-server) on CPU {o['gen_cpus']}; the device under test on CPU "
            f"{o['dut_cpus']} (taskset; OVS also pmd-cpu-mask). RPS steers the device's ingress veths to CPU "
            f"{o['dut_cpus']} for {'every system' if o['rps'] == 'all' else 'the kernel reference only'}.",
            "- Throughput: RFC 2544 — the highest offered rate with zero loss, searched on the rate "
            f"(resolution {o['resolution'] * 100:g}% or {o['min_step'] / 1e3:g} kpps, or where the trial budget "
            f"ran out), each trial {o['trial']:g} s; the answer must pass in a majority of {o['confirm']} trials "
            "at that rate (their median loses nothing; it steps down otherwise), and its figure is their median "
            "offered rate. Also the highest rate with at most 0.5% loss. Loss = frames the generator sent − the "
            "sink veth's rx_packets growth, read 0.2 s after the trial. \"Generator max\" is the flat-out rate "
            "with that device in place: the generator shares CPU 0 with the device's receive work, so it differs "
            "by device. `*`: the device lost nothing there, so its true figure is higher."
            + (f" The 64-byte points the targets compare are measured in {len(rounds(data))} rounds, and each "
               "target is the median of its ratios within a round (the machine's speed drifts over a run)."
               if len(rounds(data)) > 1 else ""),
            "- Frame sizes are inner Ethernet frames with FCS (a 64-byte frame is 60 bytes on a veth); tunnel "
            "packets are 50 bytes longer. IMIX = 7:4:1 of 64, 594 and 1518-byte inner frames (mean 361.8). "
            "Mbit/s counts inner frames.",
            f"- Offloads: transmit checksum offload of the veths that feed vtepd: {o['offloads_used']}.",
            "- The device's receive work: vtepd keeps the tunnel packets it takes out of D's IP stack with a tcx "
            "program on `ul` (csrc/tunnel_bpf.h), and the null forwarder is given the same (`--stack-bypass`); "
            "the kernel and OVS consume them in their own datapaths.", ""]
    out += ["## Targets", "", _md_table(("target", "measured", "bound", "verdict", "note"), [
        [t["target"], ", ".join(_x(v) for v in t["shown"]) if t["op"] == "shown" else _x(t["ratio"]),
         "" if t["op"] == "shown" else f"{t['op']} {t['bound']}x",
         "shown" if t["op"] == "shown" else ("n/a" if t["met"] is None else ("met" if t["met"] else "**missed**")),
         t["note"]] for t in targets(data)]), ""]
    out += generators_md(data)
    sections = (
        ("Throughput by frame size", lambda p: "size" in p["dimensions"]),
        ("Flows (64 bytes)", lambda p: "flows" in p["dimensions"]),
        ("FDB size (vtepd, 64 bytes, 65,536 flows)", lambda p: "fdb" in p["dimensions"]),
        ("PVLAN (vtepd, 64 bytes; community port, remote MACs promiscuous)", lambda p: "pvlan" in p["dimensions"]),
        ("Workers (64 bytes)", lambda p: "workers" in p["dimensions"]),
    )
    out += rounds_md(data)
    for title, pred in sections:
        body = _point_rows(data, pred)
        if body:
            out += [f"## {title}", "", _md_table(POINT_HEAD, body), "",
                    "`*` the generator's ceiling: nothing was lost at the highest rate it could offer.", ""]
    if data.get("cpu"):
        out += ["## CPU per packet at one common offered load", "",
                "Offered load: 80% of the lower of the null forwarder's and vtepd's 64-byte zero-loss rates, "
                "per direction, for every system. Process = user and system time of the device's process "
                "(/proc/PID/stat); CPU = busy time of the device's CPU from /proc/stat (user+system+softirq+irq; "
                "the only measure for the kernel, and it includes the sink's receive, which runs there).", "",
                _md_table(("system", "direction", "offered kpps", "loss", "process user ns/pkt",
                           "process system ns/pkt", "process ns/pkt", "DUT CPU ns/pkt"),
                          [[LABELS.get(c["system"], c["system"]), c["direction"], _fmt(c.get("load", 0) / 1e3),
                            "failed: " + c["error"][:60] if c.get("error") else f"{c['loss'] * 100:.3f}%",
                            _fmt(c.get("user_ns_per_packet")), _fmt(c.get("system_ns_per_packet")),
                            _fmt(c.get("process_ns_per_packet")), _fmt(c.get("dut_cpu_ns_per_packet"))]
                           for c in data["cpu"]]), ""]
    if data.get("latency"):
        out += ["## One-way latency (64 bytes, stamped frames)", "",
                "At 10, 50 and 90% of each system's own 64-byte zero-loss rate; vtep-gen stamps, vtep-sink "
                "reads (same clock).", "",
                _md_table(("system", "direction", "load", "offered kpps", "received", "p50 µs", "p90 µs", "p99 µs",
                           "max µs"),
                          [[LABELS.get(r["system"], r["system"]), r["direction"], f"{r['fraction'] * 100:.0f}%",
                            _fmt(r.get("offered", 0) / 1e3)]
                           + ([f"failed: {r['error'][:60]}", "", "", "", ""] if r.get("error") else
                              [r.get("received")] + [_fmt((r["latency_ns"] or {}).get(k, None) and
                                                          r["latency_ns"][k] / 1e3, ".1f")
                                                     for k in ("p50", "p90", "p99", "max")])
                           for r in data["latency"]]), ""]
    if data.get("tcp"):
        body = []
        for t in data["tcp"]:
            name = f"{LABELS.get(t['system'], t['system'])} (host offloads {t.get('offloads')})"
            if t.get("error"):
                body.append([name, "failed: " + t["error"][:80], "", "", ""])
                continue
            g = {r["streams"]: r for r in t.get("iperf3", [])}
            body.append([name] + [_fmt(g.get(s, {}).get("gbit_s"), ".2f") for s in (1, 4)]
                        + [_rtt(t.get(k)) for k in ("ping", "udp_rr")])
        out += ["## TCP and round trips through the overlay", "",
                "H1 ─ VTEP A ═ underlay veth ═ VTEP B ─ H2, vtepd on both ends or the kernel's VXLAN on both "
                f"ends; iperf3 -t {o['tcp_seconds']}; ping (500 at 5 ms) and UDP request/response (5,000, one at a "
                "time) round trips.", "",
                _md_table(("VTEPs", "iperf3 1 stream Gbit/s", "iperf3 4 streams Gbit/s",
                           "ping RTT p50/p90/p99 µs", "UDP RR RTT p50/p90/p99 µs"), body), ""]
        out += loaded_md(data)
    out += ["## Plots", ""]
    for name, what in (("throughput_kpps.png", "zero-loss throughput by frame size"),
                       ("throughput_mbits.png", "the same in Mbit/s of inner frames"),
                       ("latency.png", "one-way latency percentiles"), ("rtt.png", "round-trip percentiles, idle and under load")):
        out.append(f"- {what}: ![{what}]({plots_rel}/{name})")
    out.append("")
    notes = data.get("notes", []) + [f"{k}: {n}" for k, s in data.get("systems", {}).items() for n in s["notes"]]
    failures = data.get("failures", [])
    if notes or failures:
        out += ["## Notes and failures", ""] + [f"- {n}" for n in notes + failures] + [""]
    out += ["## Exact commands", "", "Generator and sink (one line per kind; rate, pcap and duration vary):", "",
            "```"] + data.get("tool_commands", []) + ["```", "", "Tunnel pcaps:", "", "```"] \
        + data.get("pcap_commands", []) + ["```", ""]
    for key, s in data.get("systems", {}).items():
        out += [f"{key}:", "", "```"] + s["commands"] + ["```", ""]
    for t in data.get("tcp", []):
        out += [f"TCP topology, {t['system']} (host offloads {t.get('offloads')}):", "", "```"] \
            + t.get("commands", []) + ["```", ""]
    return "\n".join(out)


# -- plots ---------------------------------------------------------------------------------------

def plots(data, outdir):
    """PNGs in "outdir"; the file names.  Needs matplotlib (pip install '.[perf]')."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(outdir, exist_ok=True)
    made = []
    systems = [s for s in SYSTEM_ORDER if any(p["system"] == s for p in data.get("points", []))]
    for unit, name in (("kpps", "throughput_kpps.png"), ("Mbit/s", "throughput_mbits.png")):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
        for ax, d in zip(axes, ("encap", "decap")):
            for s in systems:
                xs, ys, capped = [], [], []
                for i, size in enumerate(SIZES):
                    p = find_point(data, s, d, size)
                    z = zero_loss(p)
                    if z is not None:
                        xs.append(i)
                        ys.append(z / 1e3 if unit == "kpps" else mbits(z, size))
                        if p["zero_loss"].get("bound") == "generator":
                            capped.append((xs[-1], ys[-1]))
                if xs:
                    line, = ax.plot(xs, ys, marker="o", label=LABELS[s])
                    if capped:   # the generator's ceiling: the device could do more
                        ax.scatter(*zip(*capped), s=140, marker="^", facecolors="none", edgecolors=line.get_color())
            ax.set_xticks(range(len(SIZES)), [str(s) for s in SIZES])
            ax.set_xlabel("inner frame size (bytes, with FCS)")
            ax.set_title(f"{d}: zero-loss throughput (△ = generator's ceiling)")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel(unit)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"vtep system benchmark, {data['machine'].get('cpu')}, {data.get('started', '')[:10]}",
                     fontsize=9)
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, name), dpi=100)
        plt.close(fig)
        made.append(name)

    lat = [r for r in data.get("latency", []) if not r.get("error") and r.get("latency_ns")]
    if lat:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
        for ax, d in zip(axes, ("encap", "decap")):
            rs = [r for r in lat if r["direction"] == d]
            labels = [f"{r['system']}\n{r['fraction'] * 100:.0f}%" for r in rs]
            for j, pct in enumerate(("p50", "p90", "p99")):
                ax.bar([i + (j - 1) * 0.27 for i in range(len(rs))],
                       [r["latency_ns"][pct] / 1e3 for r in rs], width=0.27, label=pct)
            ax.set_xticks(range(len(rs)), labels, fontsize=7)
            ax.set_yscale("log")
            ax.set_title(f"{d}: one-way latency at 10/50/90% of zero-loss rate")
            ax.grid(alpha=0.3, axis="y")
        axes[0].set_ylabel("µs")
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, "latency.png"), dpi=100)
        plt.close(fig)
        made.append("latency.png")

    # Each system idle, then under each load.
    rtts = [(f"{t['system']}\n{label}", r) for t in data.get("tcp", []) if not t.get("error") and t.get("ping")
            for label, r in [("idle", t)] + [(f"{x['fraction'] * 100:.0f}%", x) for x in t.get("loaded", [])]]
    if rtts:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        for ax, key in zip(axes, ("ping", "udp_rr")):
            for j, pct in enumerate(("p50", "p90", "p99")):
                ax.bar([i + (j - 1) * 0.27 for i in range(len(rtts))], [r[key]["rtt_us"][pct] or 0 for _, r in rtts],
                       width=0.27, label=pct)
            ax.set_xticks(range(len(rtts)), [label for label, _ in rtts], fontsize=7)
            ax.set_yscale("log")
            ax.set_title(f"{'ping' if key == 'ping' else 'UDP request/response'} round trip, H1 to H2, "
                         "idle and under load", fontsize=9)
            ax.set_ylabel("µs")
            ax.grid(alpha=0.3, axis="y")
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, "rtt.png"), dpi=100)
        plt.close(fig)
        made.append("rtt.png")
    return made

