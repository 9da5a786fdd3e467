"""The generators' own ceilings: each one flat out straight into the sink
(G g0 ──veth── s0 S, nothing between), 64-byte frames to a MAC that is not
s0's, on the generator's CPU.  The benchmark drives every device with
vtep-gen (perf/gen.c); trafgen (Debian netsniff-ng) runs beside it here so
that the choice is measured, not assumed.

Both are measured the same way: started flat out, left 0.5 s to set up,
then the sink veth's rx_packets over "trial" seconds; the median of
TRIALS."""
import os
import shutil
import signal
import statistics
import subprocess
import time

from . import frames

TRIALS = 3
SETTLE = 0.5
FLOWS = 256


def trafgen_config(frame_list):
    """trafgen's packet configuration: one { bytes } block per frame, sent round robin."""
    return "".join("{ " + ", ".join(f"0x{b:02x}" for b in f) + " }\n" for f in frame_list)


def flat_out(gen_ns, sink_ns, argv, cpus, trial):
    """Frames/s the sink received while "argv" ran flat out."""
    # A session of its own: trafgen's sending is a child process, which only
    # a signal to the whole group stops.
    proc = gen_ns.popen(argv, cpus=cpus, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                        start_new_session=True)
    try:
        time.sleep(SETTLE)
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited with {proc.returncode}: {proc.stderr.read()[-500:]}")
        before, t0 = sink_ns.stats("s0")["rx_packets"], time.monotonic()
        time.sleep(trial)
        after, t1 = sink_ns.stats("s0")["rx_packets"], time.monotonic()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        gen_ns.lab.stop(proc)
    return (after - before) / (t1 - t0)


def measure(lab, tools, workdir, trial, log):
    """[{"tool", "command", "kpps", "trials_kpps"} or {"tool", "error"}] for vtep-gen and trafgen."""
    g, s = lab.ns("gen-g"), lab.ns("gen-s")
    lab.veth(g, "g0", s, "s0")
    frame_list = frames.inner_frames("encap", 64, FLOWS, FLOWS)
    pcap, config = f"{workdir}/generators.pcap", f"{workdir}/generators.trafgen"
    frames.write_pcap(pcap, frame_list)
    with open(config, "w") as f:
        f.write(trafgen_config(frame_list))
    trafgen = shutil.which("trafgen") or "trafgen"
    commands = {
        "vtep-gen": tools.gen_argv("g0", pcap, 0, 3600),
        # One process (on the CPU taskset gives); the host's socket memory
        # limits and interrupt affinity left alone.
        "trafgen": [trafgen, "--dev", "g0", "--conf", config, "--cpus", "1", "--no-sock-mem", "--notouch-irq",
                    "--no-cpu-stats"],
    }
    out = []
    try:
        for tool, argv in commands.items():
            entry = {"tool": tool, "command": tools.command(argv) + f"  (flat out; s0's rx_packets over {trial:g} s)"}
            try:
                rates = [flat_out(g, s, argv, tools.gen_cpus, trial) for _ in range(TRIALS)]
                entry.update(kpps=statistics.median(rates) / 1e3, trials_kpps=[r / 1e3 for r in rates])
                log(f"  {tool}: {entry['kpps']:.1f} kpps straight into the sink")
            except (OSError, RuntimeError) as e:
                entry["error"] = f"{type(e).__name__}: {e}"
                log(f"  {tool}: FAILED: {entry['error']}")
            out.append(entry)
    finally:
        lab.remove(g)
        lab.remove(s)
    return out
