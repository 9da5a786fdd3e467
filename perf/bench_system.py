"""The system benchmark: where vtepd stands against a null forwarder, the
kernel's bridge + VXLAN device and Open vSwitch's userspace datapath,
measured side by side in one run (perf/README.md, "System benchmark").

    sudo .venv/bin/python perf/bench_system.py                 # the default plan (~30 min)
    sudo .venv/bin/python perf/bench_system.py --quick         # 64 bytes only (~5 min)
    sudo .venv/bin/python perf/bench_system.py --systems vtepd,nullfwd --sizes 64,1518 --directions encap
    .venv/bin/python perf/bench_system.py report                # RESULTS.md, plots and table again from the JSON

Writes build/bench-system.json (every trial), perf/RESULTS.md and
perf/plots/*.png, and prints the table.  Needs root (namespaces) and the
tools build/vtep-gen, build/vtep-sink and build/nullfwd (make bench-system
builds them).  Everything it creates is named vtb<pid>-* and removed on
exit, on Ctrl-C and on failure."""
import argparse
import atexit
import json
import os
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [HERE, ROOT]

import machine  # noqa: E402
from bench import frames, generators, plan, report, search, systems, tcp, topology, trials  # noqa: E402

LATENCY_FRACTIONS = (0.1, 0.5, 0.9)
CPU_LOAD_FRACTION = 0.8


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", nargs="?", choices=("run", "report"), default="run",
                   help="run the benchmark (default), or only remake the report from the JSON")
    p.add_argument("--quick", action="store_true", help="64 bytes and the base point only, shorter trials (~5 min)")
    p.add_argument("--systems", default=",".join(plan.SYSTEMS), help="comma list of nullfwd,vtepd,kernel,ovs")
    p.add_argument("--directions", default="encap,decap")
    p.add_argument("--sizes", default=None, help="comma list of inner frame sizes and/or imix (default: all)")
    p.add_argument("--dimensions", default=",".join(plan.DIMENSIONS),
                   help="which dimensions to vary: " + ",".join(plan.DIMENSIONS))
    p.add_argument("--trial", type=float, default=None, help="seconds per trial (default 1, --quick 1)")
    p.add_argument("--confirm", type=int, default=None, help="trials at the answer, median taken (default 3)")
    p.add_argument("--resolution", type=float, default=0.01, help="relative resolution of the rate search")
    p.add_argument("--min-step", type=float, default=5000, help="frames/s: the search stops at this gap too")
    p.add_argument("--rounds", type=int, default=None,
                   help=f"times the target points are measured in all, the systems in turn (default {plan.ROUNDS}, "
                        "--quick 1)")
    p.add_argument("--budget", type=int, default=8,
                   help="trials a zero-loss search may spend before it stops bisecting (half for 0.5%%)")
    p.add_argument("--no-cpu", action="store_true")
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--no-tcp", action="store_true")
    p.add_argument("--tcp-seconds", type=int, default=None, help="iperf3 -t (default 10, --quick 3)")
    p.add_argument("--gen-cpus", default="0", help="taskset list for the generator and sink")
    p.add_argument("--dut-cpus", default="1", help="taskset list for the device under test")
    p.add_argument("--rps", choices=("kernel", "all"), default="kernel",
                   help="steer the device's ingress veths to --dut-cpus with RPS for the kernel only "
                        "(default) or for every system")
    p.add_argument("--offloads", choices=("auto", "on", "off"), default="auto",
                   help="transmit checksum offload on the veths that feed vtepd's ports: auto = on when "
                        "vtepd takes the kernel's offload metadata (PACKET_VNET_HDR), else off")
    p.add_argument("--gen", default=os.path.join(ROOT, "build/vtep-gen"))
    p.add_argument("--sink", default=os.path.join(ROOT, "build/vtep-sink"))
    p.add_argument("--nullfwd", default=os.path.join(ROOT, "build/nullfwd"))
    p.add_argument("--json", default=os.path.join(ROOT, "build/bench-system.json"))
    p.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    p.add_argument("--plots", default=os.path.join(HERE, "plots"))
    a = p.parse_args(argv)
    a.trial = a.trial or 1.0
    a.confirm = a.confirm or (2 if a.quick else 3)
    a.rounds = a.rounds or (1 if a.quick else plan.ROUNDS)
    a.tcp_seconds = a.tcp_seconds or (3 if a.quick else 10)
    return a


def offloads_decision(mode):
    """(on?, how it was decided)."""
    if mode != "auto":
        return mode == "on", f"{mode} (--offloads {mode})"
    src = os.path.join(ROOT, "csrc")
    handled = any("PACKET_VNET_HDR" in open(os.path.join(src, f), errors="replace").read()
                  for f in os.listdir(src) if f.endswith(".c"))
    return handled, ("on: left as the kernel has it (vtepd reads PACKET_VNET_HDR)" if handled else
                     "off: vtepd cannot finish partial checksums yet (README, Known limits)")


class Runner:
    def __init__(self, args):
        self.a = args
        self.lab = topology.Lab()
        self.workdir = tempfile.mkdtemp(prefix=self.lab.prefix)
        self.pcaps = frames.Pcaps(self.workdir)
        self.tools = trials.Tools(args.gen, args.sink, gen_cpus=args.gen_cpus)
        on, how = offloads_decision(args.offloads)
        args.host_offloads = on
        self.t0 = time.monotonic()
        self.checked = {}
        self.data = {
            "version": 1, "complete": False, "started": machine.now(), "command": shlex.join(sys.argv),
            "machine": machine.describe(ROOT), "options": {
                "quick": args.quick, "trial": args.trial, "confirm": args.confirm, "resolution": args.resolution,
                "min_step": args.min_step, "rounds": args.rounds, "gen_cpus": args.gen_cpus, "dut_cpus": args.dut_cpus, "rps": args.rps,
                "offloads_used": how, "host_offloads": on, "tcp_seconds": args.tcp_seconds,
                "tools": {"gen": args.gen, "sink": args.sink, "nullfwd": args.nullfwd}},
            "points": [], "cpu": [], "latency": [], "tcp": [], "systems": {}, "failures": [], "notes": [],
            "tool_commands": [], "pcap_commands": []}

    # -- bookkeeping -----------------------------------------------------------------------------

    def save(self):
        self.data["seconds"] = round(time.monotonic() - self.t0, 1)
        self.data["pcap_commands"] = self.pcaps.commands
        os.makedirs(os.path.dirname(self.a.json), exist_ok=True)
        tmp = self.a.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1, default=str)
        os.replace(tmp, self.a.json)

    def tool_command(self, argv):
        line = self.tools.command(argv)
        kind = argv[0]
        if not any(kind in c.split()[3:5] for c in self.data["tool_commands"]):
            self.data["tool_commands"].append(line)

    def fail(self, what, err):
        msg = f"{what}: {type(err).__name__}: {err}"
        log("  FAILED " + msg)
        self.data["failures"].append(msg)

    def make(self, setup, tag):
        cls = systems.SYSTEMS[setup.system]
        kwargs = {}
        if setup.system in ("vtepd", "nullfwd"):
            kwargs["workers"] = setup.workers
        if setup.system == "vtepd":
            kwargs.update(fdb=setup.fdb, pvlan=setup.pvlan)
        s = cls(self.lab, tag, self.a, **kwargs)
        try:
            s.start()
            if self.a.rps == "all" and setup.system != "kernel":
                mask = topology.cpu_mask(self.a.dut_cpus)
                for ifname in ("acc", "ul"):
                    s.d.sysfs_write(f"/sys/class/net/{ifname}/queues/rx-0/rps_cpus", mask)
                s.commands.append(f"in D: echo {mask} > /sys/class/net/{{acc,ul}}/queues/rx-0/rps_cpus")
        except BaseException:
            s.close()
            raise
        self.data["systems"].setdefault(setup.label(), s.describe())   # the first start's, with its checks
        return s

    def fdb_macs(self, setup, direction):
        remote, local = frames.fdb_split(setup.fdb)
        return remote if direction == "encap" else local

    def alive(self, s):
        for pid in s.pids():
            if not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] == "Z":
                raise RuntimeError(f"{s.name} (pid {pid}) is gone")

    # -- throughput ------------------------------------------------------------------------------

    def measure(self, s, point):
        path = s.path(point.direction, self.pcaps, point.size, point.flows, self.fdb_macs(point.setup, point.direction))
        self.tool_command(self.tools.gen_argv(path.gen_dev, path.pcap, 0, self.a.trial))

        if (point.setup, point.direction) not in self.checked:
            self.check(s, point, path)

        def trial(rate):
            self.alive(s)
            return trials.trial(self.tools, path, rate, self.a.trial, pids=s.pids())

        flat = trial(0)
        flat.update(rate=0, purpose="flat out")
        ceiling = flat["offered"]
        forwarded = flat["received"] / flat["seconds"] if flat["seconds"] else 0
        srch = search.Search(trial, ceiling, resolution=self.a.resolution, min_step=self.a.min_step,
                             confirm=self.a.confirm)
        srch.record(ceiling, flat)
        zero = srch.find(0.0, guess=min(ceiling, forwarded), budget=self.a.budget)
        failing = sorted(r for r in srch.rates() if r > zero["rate"])
        half = srch.find(0.005, guess=failing[0] if failing else None, lo=zero["rate"],
                         resolution=max(self.a.resolution, 0.03), confirm=max(1, self.a.confirm - 1),
                         budget=max(3, self.a.budget // 2))
        return {"ceiling": flat, "zero_loss": zero, "bounded_loss": half, "trials": srch.trials}

    def check(self, s, point, path):
        """Before the first trial of a setup and direction: the sink gets what
        it should (trials.check_output), so no figure counts the wrong frames."""
        inner = frames.ENCAP_SRC if point.direction == "encap" else frames.DECAP_SRC
        looks_like = point.direction
        vnis = {systems.COMMUNITY_VNI if point.setup.pvlan else systems.VNI}
        if s.name == "nullfwd":   # copies frames as they are: the sink sees the generator's input
            looks_like = {"encap": "decap", "decap": "encap"}[point.direction]
            vnis = {systems.VNI}
        got = trials.check_output(self.tools, path, looks_like, vnis, inner)
        self.checked[(point.setup, point.direction)] = got
        self.data["systems"][point.setup.label()].setdefault("checked", {})[point.direction] = got
        log(f"  {point.direction} output checked: {got}")

    def drops(self, s):
        """vtepd's drop counters ({"port acc/ring_full": n, ...}), or None."""
        if s.name != "vtepd":
            return None
        try:
            c = s.counters()
        except OSError:
            return None
        blocks = [("underlay", c["underlay"])] + [(f"port {n}", b) for n, b in c["ports"].items()]
        return {f"{where}/{reason}": n for where, b in blocks for reason, n in b["drops"].items() if n}

    def throughput(self, points, round_no=0):
        for n, (setup, group) in enumerate(plan.by_setup(points)):
            during = f"round {round_no + 1}/{self.a.rounds}, " if round_no else ""
            log(f"[{self.elapsed()}] {during}{setup.label()}: {len(group)} points")
            try:
                s = self.make(setup, f"r{round_no}s{n}" if round_no else f"s{n}")
            except Exception as e:  # noqa: BLE001 - recorded; the other systems go on
                self.fail(f"{setup.label()}: start", e)
                for p in group:
                    self.data["points"].append(dict(p.as_dict(), error=f"start failed: {e}"))
                self.save()
                continue
            try:
                for p in group:
                    t0 = time.monotonic()
                    before = self.drops(s)
                    try:
                        result = self.measure(s, p)
                        after = self.drops(s)
                        if after is not None and before is not None:
                            result["vtepd_drops"] = {k: n - before.get(k, 0) for k, n in after.items()
                                                     if n - before.get(k, 0)}
                    except Exception as e:  # noqa: BLE001
                        self.fail(f"{setup.label()} {p.direction} {p.size} {p.flows} flows", e)
                        if s.name == "ovs":
                            self.data["notes"].append(f"OVS state at the failure:\n{s.state()[:3000]}")
                        self.data["points"].append(dict(p.as_dict(), error=str(e)))
                        continue
                    self.data["points"].append(dict(p.as_dict(), seconds=round(time.monotonic() - t0, 1), **result))
                    z, h = result["zero_loss"], result["bounded_loss"]
                    log(f"  {p.direction} {p.size} {p.flows} flows: zero loss {z['offered'] / 1e3:.1f} kpps"
                        f"{' (generator ceiling)' if z['bound'] == 'generator' else ''}, 0.5% {h['offered'] / 1e3:.1f}"
                        f" kpps, ceiling {result['ceiling']['offered'] / 1e3:.1f} kpps; "
                        f"{len(result['trials'])} trials, {time.monotonic() - t0:.0f} s")
                    self.save()
            finally:
                if s.name == "nullfwd" and s.proc is not None:
                    s.stop()
                    self.data["systems"][setup.label()]["final"] = s.result
                s.close()

    # -- CPU per packet and latency ------------------------------------------------------------

    def zero_64(self, system, direction):
        return report.zero_loss(report.find_point(self.data, system, direction, 64))

    def cpu_and_latency(self, system_names, directions):
        loads = {}
        for d in directions:
            refs = [r for r in (self.zero_64("nullfwd", d), self.zero_64("vtepd", d)) if r]
            if refs:
                loads[d] = CPU_LOAD_FRACTION * min(refs)
        for n, name in enumerate(system_names):
            setup = plan.Setup(name)
            todo_cpu = not self.a.no_cpu and loads
            todo_lat = not self.a.no_latency and any(self.zero_64(name, d) for d in directions)
            if not (todo_cpu or todo_lat):
                continue
            log(f"[{self.elapsed()}] {name}: CPU per packet and latency")
            try:
                s = self.make(setup, f"c{n}")
            except Exception as e:  # noqa: BLE001
                self.fail(f"{name}: start for CPU/latency", e)
                continue
            try:
                for d in directions:
                    path = s.path(d, self.pcaps, 64, plan.BASE_FLOWS, self.fdb_macs(setup, d))
                    if todo_cpu and d in loads:
                        self.data["cpu"].append(self.cpu(s, path, d, loads[d]))
                    rate = self.zero_64(name, d)
                    if todo_lat and rate:
                        for fraction in (LATENCY_FRACTIONS if not self.a.quick else (0.5,)):
                            self.data["latency"].append(self.latency(s, path, d, fraction, rate))
                    self.save()
            finally:
                s.close()

    def cpu(self, s, path, direction, load):
        entry = {"system": s.name, "direction": direction, "load": load, "trials": []}
        try:
            for _ in range(3):
                self.alive(s)
                entry["trials"].append(trials.trial(self.tools, path, load, self.a.trial * 2, pids=s.pids()))
            per = []
            dut_cpus = [f"cpu{c}" for c in self.a.dut_cpus.split(",")]
            for t in entry["trials"]:
                got = max(t["received"], 1)
                busy = sum(t["cpu"]["cpus"][c][k] for c in dut_cpus for k in ("user", "nice", "system", "softirq", "irq"))
                per.append((t["cpu"]["process_user_s"] / got * 1e9, t["cpu"]["process_system_s"] / got * 1e9,
                            busy / got * 1e9, t["loss"], t["offered"]))
            med = [statistics.median(x) for x in zip(*per)]
            entry.update(user_ns_per_packet=med[0], system_ns_per_packet=med[1],
                         process_ns_per_packet=med[0] + med[1] if s.pids() else None,
                         dut_cpu_ns_per_packet=med[2], loss=med[3], offered=med[4])
            if not s.pids():
                entry["user_ns_per_packet"] = entry["system_ns_per_packet"] = None
            log(f"  cpu {s.name} {direction} at {load / 1e3:.0f} kpps: process {_n(entry['process_ns_per_packet'])} "
                f"ns/pkt, DUT CPU {_n(entry['dut_cpu_ns_per_packet'])} ns/pkt, loss {entry['loss'] * 100:.3f}%")
        except Exception as e:  # noqa: BLE001
            self.fail(f"{s.name} {direction}: CPU trial", e)
            entry["error"] = str(e)
        return entry

    def latency(self, s, path, direction, fraction, rate):
        entry = {"system": s.name, "direction": direction, "fraction": fraction, "rate": fraction * rate}
        try:
            self.alive(s)
            entry.update(trials.latency_trial(self.tools, path, fraction * rate, self.a.trial * 2))
            self.tool_command(self.tools.sink_argv(path.sink_dev, self.a.trial * 2 + 1))
            self.tool_command(self.tools.gen_argv(path.gen_dev, path.pcap, int(fraction * rate), self.a.trial * 2,
                                                  stamp=True))
            lat = entry.get("latency_ns") or {}
            log(f"  latency {s.name} {direction} {fraction * 100:.0f}%: p50 {_n(lat.get('p50'), 1e3)} "
                f"p99 {_n(lat.get('p99'), 1e3)} us")
        except Exception as e:  # noqa: BLE001
            self.fail(f"{s.name} {direction}: latency at {fraction * 100:.0f}%", e)
            entry["error"] = str(e)
        return entry

    # -- TCP ---------------------------------------------------------------------------------------

    def tcp(self, system_names):
        for name in ("vtepd", "kernel"):
            if name not in system_names:
                continue
            log(f"[{self.elapsed()}] TCP and round trips: {name}")
            self.data["tcp"].append(tcp.run(self.lab, name, self.a, log, self.tools))
            self.save()
        if "kernel" in system_names and not self.a.host_offloads and not self.a.quick:
            # The kernel as it would run by itself, for reference: the hosts keep their offloads.
            self.a.host_offloads = True
            try:
                self.data["tcp"].append(tcp.run(self.lab, "kernel", self.a, log, self.tools))
            finally:
                self.a.host_offloads = False
            self.save()

    def elapsed(self):
        s = int(time.monotonic() - self.t0)
        return f"{s // 60:02d}:{s % 60:02d}"

    # -- the run -----------------------------------------------------------------------------------

    def run(self):
        a = self.a
        names = [s for s in a.systems.split(",") if s]
        directions = [d for d in a.directions.split(",") if d]
        sizes = [s if s == "imix" else int(s) for s in a.sizes.split(",")] if a.sizes else None
        points = plan.make(names, directions, sizes, [d for d in a.dimensions.split(",") if d], a.quick)
        log(f"{len(points)} throughput points; namespaces {self.lab.prefix}*; JSON {a.json}")
        self.data["plan"] = [p.as_dict() for p in points]
        log(f"[{self.elapsed()}] generators straight into the sink")
        self.data["generators"] = generators.measure(self.lab, self.tools, self.workdir, a.trial, log)
        self.save()
        self.throughput(points)
        for r in range(1, a.rounds):
            self.throughput(plan.target_points(names, directions, r), r)
        self.cpu_and_latency(names, directions)
        if not a.no_tcp:
            self.tcp(names)
        self.data["complete"] = True
        self.data["finished"] = machine.now()
        self.data["loadavg_end"] = os.getloadavg()[0]
        self.save()

    def close(self):
        if os.getpid() != self.lab.pid:
            return
        self.lab.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _n(value, scale=1.0):
    return "-" if value is None else f"{value / scale:.1f}"


def write_report(a, data):
    print(report.table(data))
    print()
    print("Targets:")
    print(report.targets_text(data))
    try:
        made = report.plots(data, a.plots)
        log(f"plots: {', '.join(os.path.join(a.plots, m) for m in made)}")
    except ImportError:
        log("plots skipped: matplotlib is missing (pip install '.[perf]')")
    plots_rel = os.path.relpath(a.plots, os.path.dirname(os.path.abspath(a.results)))
    with open(a.results, "w") as f:
        f.write(report.results_md(data, plots_rel) + "\n")
    log(f"results: {a.results}")


def main(argv=None):
    a = parse(sys.argv[1:] if argv is None else argv)
    if a.action == "report":
        with open(a.json) as f:
            write_report(a, json.load(f))
        return 0
    if os.geteuid() != 0:
        sys.exit("bench_system: needs root (network namespaces); try sudo")
    for tool in (a.gen, a.sink) + ((a.nullfwd,) if "nullfwd" in a.systems else ()):
        if not os.access(tool, os.X_OK):
            sys.exit(f"bench_system: {tool} is missing: make bench-system builds it")
    stale = topology.remove_stale()
    if stale:
        log(f"removed namespaces of dead runs: {' '.join(stale)}")
    runner = Runner(a)
    atexit.register(runner.close)

    main_pid = os.getpid()

    def on_signal(signum, frame):
        # pyroute2 forks helper children from this process, and stops them with
        # SIGTERM: they inherit this handler, and must just go.
        if os.getpid() != main_pid:
            os._exit(128 + signum)
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        runner.run()
    except KeyboardInterrupt:
        log("interrupted: removing everything; the JSON keeps what was measured")
        runner.data["failures"].append("interrupted")
        return 130
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        runner.fail("run", e)
        return 1
    finally:
        runner.save()
        runner.close()
    write_report(a, runner.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
