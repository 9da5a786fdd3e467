"""Run the C micro-benchmark (perf/micro.c) and the same scenarios through the
Cython engine (perf/micro_engine.py) side by side, print one table and write
every figure, with the machine it ran on, as JSON.

The two are measured side by side: for each FDB size and scenario the C
driver runs, then the engine (or the other way round, by turns), and with
--rounds N the whole alternation repeats N times and each figure is the
median of all its repetitions.  On a shared, noisy machine compare the
medians and the ratio engine/C of one report, not figures from different runs.

    .venv/bin/python perf/report.py --c-driver build/micro --json build/bench.json [--quick]"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import machine
import micro_engine

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ACCEPTANCE = ("tx", 32, 10000, 50.0)  # scenario, batch, FDB size, C median ns/pkt at most


def c_driver(path, scenarios, fdbs, batches, reps, min_time, pool, layout="worker"):
    """Results of one run of the C driver (it prints JSON on stdout, progress on stderr)."""
    cmd = [path, "--scenarios", ",".join(scenarios), "--reps", str(reps), "--min-time", str(min_time),
           "--layout", layout]
    if fdbs:
        cmd += ["--fdb", ",".join(map(str, fdbs)), "--batch", ",".join(map(str, batches))]
    if pool:
        cmd += ["--pool", str(pool)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode:
        sys.exit(f"report: {' '.join(cmd)} failed (status {proc.returncode}): the figures are void")
    return json.loads(proc.stdout)["results"]


def key(r):
    return r["scenario"], r["batch"], r["fdb"]


def merge(results):
    """One figure per key from several rounds: the median and minimum of all
    their repetitions; CPU share the lowest of the rounds."""
    merged = {}
    for r in results:
        m = merged.setdefault(key(r), dict(r, reps_ns=[], passes=[], cpu_share=1.0))
        m["reps_ns"] += r["reps_ns"]
        m["passes"].append(r["passes"])
        m["cpu_share"] = min(m["cpu_share"], r["cpu_share"])
    for m in merged.values():
        m["median_ns"] = round(statistics.median(m["reps_ns"]), 3)
        m["min_ns"] = min(m["reps_ns"])
    return list(merged.values())


def table(c_results, e_results, call_ns):
    """One row per figure.  "call/batch" is what the engine should add per
    frame if Python costs only a constant per burst (the empty-burst call
    spread over the batch): compare it with engine - C.  "cpu" is the lower
    CPU share of the two measurements: well below 100%, others took our CPU
    and the row is noise-bound."""
    engine = {key(r): r for r in e_results}
    head = (f"{'scenario':<8} {'batch':>5} {'FDB':>9} {'C med':>8} {'C min':>8} {'engine med':>10} "
            f"{'engine/C':>8} {'eng-C':>7} {'call/batch':>10} {'cpu':>5}")
    lines = [head, "-" * len(head)]
    for c in c_results:
        e = engine.get(key(c))
        row = f"{c['scenario']:<8} {c['batch'] or '-':>5} {c['fdb'] or '-':>9} {c['median_ns']:8.2f} {c['min_ns']:8.2f}"
        if e:
            row += (f" {e['median_ns']:10.2f} {e['median_ns'] / c['median_ns']:8.2f}"
                    f" {e['median_ns'] - c['median_ns']:7.2f} {call_ns / c['batch']:10.2f}")
        else:
            row += f" {'-':>10} {'-':>8} {'-':>7} {'-':>10}"
        cpu = min(c["cpu_share"], e["cpu_share"]) if e else c["cpu_share"]
        lines.append(row + f" {100 * cpu:4.0f}%")
    lines.append(f"ns per 64-byte inner frame, wall clock; median and minimum over the repetitions. "
                 f"Engine call on an empty burst: {call_ns:.0f} ns.")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--c-driver", default=os.path.join(ROOT, "build", "micro"))
    ap.add_argument("--json", help="write all figures here")
    ap.add_argument("--quick", action="store_true", help="FDB 10,000 only, 1 round of 3 repetitions of 0.1 s")
    ap.add_argument("--reps", type=int, help="repetitions per figure (default 5, quick 3)")
    ap.add_argument("--min-time", type=float, help="seconds per repetition (default 0.2, quick 0.1)")
    ap.add_argument("--fdb", help="FDB sizes, comma-separated (default 100,10000,1000000)")
    ap.add_argument("--batch", default="32,256", help="batch sizes, comma-separated")
    ap.add_argument("--pool", type=int, help="frames per pool (default: see micro.c pool_size())")
    ap.add_argument("--rounds", type=int, help="alternate C and engine this many times (default 3, quick 1)")
    ap.add_argument("--c-layout", choices=("worker", "engine"), default="worker",
                    help="C driver's memory layout (see micro.c); engine: as the engine's Bursts")
    ap.add_argument("--no-engine", action="store_true", help="C driver only")
    a = ap.parse_args()
    reps = a.reps or (3 if a.quick else 5)
    min_time = a.min_time or (0.1 if a.quick else 0.2)
    rounds = a.rounds or (1 if a.quick else 3)
    fdbs = [int(x) for x in (a.fdb or ("10000" if a.quick else "100,10000,1000000")).split(",")]
    batches = [int(x) for x in a.batch.split(",")]

    info = machine.describe(ROOT)
    t0 = time.monotonic()
    print(f"vtep micro-benchmark: {info['cpu']}, {info['cpus']} CPUs, load {info['loadavg_start']:.2f}, "
          f"{info['date']}, commit {(info['git_commit'] or '?')[:12]}{' (dirty)' if info['git_dirty'] else ''}",
          file=sys.stderr)
    c_results, e_results = [], []
    for _ in range(rounds):
        c_results += c_driver(a.c_driver, ["encap", "decap"], [], [], reps, min_time, None)
    call_ns = micro_engine.call_overhead(reps, min_time)
    turn = 0
    for fdb in fdbs:
        # Engines and loaded Bursts are built once per FDB size and kept for
        # every round; the C driver builds its own each time (it is quick).
        pipes = {} if a.no_engine else {sc: micro_engine.Pipe(sc == "tx", fdb, a.pool) for sc in ("tx", "rx")}
        for _ in range(rounds):
            for sc in ("tx", "rx"):
                turn += 1  # who goes first alternates, so a drift in the machine's load favours neither
                for side in ("c", "engine") if turn % 2 else ("engine", "c"):
                    if side == "c":
                        c_results += c_driver(a.c_driver, [sc], [fdb], batches, reps, min_time, a.pool, a.c_layout)
                    elif pipes:
                        for batch in batches:
                            e_results.append(pipes[sc].figure(batch, reps, min_time))
                            micro_engine.show(e_results[-1])
        del pipes
    c_results, e_results = merge(c_results), merge(e_results)
    info["loadavg_end"] = os.getloadavg()[0]
    info["wall_s"] = round(time.monotonic() - t0, 1)

    print()
    print(table(c_results, e_results, call_ns))
    sc, batch, fdb, limit = ACCEPTANCE
    acc = next((r for r in c_results if key(r) == (sc, batch, fdb)), None)
    if acc:
        verdict = "met" if acc["median_ns"] <= limit else "NOT met"
        print(f"\nacceptance: {sc} FDB {fdb} batch {batch}, C driver: median {acc['median_ns']:.2f} ns/pkt "
              f"(target <= {limit:.0f}): {verdict}")
    print(f"load average {info['loadavg_start']:.2f} at start, {info['loadavg_end']:.2f} at end; "
          f"{info['wall_s']} s in all")

    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({"machine": info, "command": sys.argv, "reps": reps, "rounds": rounds, "min_time_s": min_time,
                       "c_layout": a.c_layout, "unit": "ns per 64-byte inner frame", "engine_call_ns": round(call_ns, 1),
                       "c": c_results, "engine": e_results}, f, indent=1)
            f.write("\n")
        print(f"figures written to {a.json}")


if __name__ == "__main__":
    main()
