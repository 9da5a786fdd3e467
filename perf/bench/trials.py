"""One trial: the generator offers a load for a fixed time, the sink's
interface counts what came out of the device under test, and the CPU the
device used is read from /proc.

Throughput trials count at the sink with the veth's rx_packets (IFLA_STATS64),
not with a receiving program: a receive ring there would put its copy on the
device's CPU (the veth hands frames over on the sender's CPU).  Loss is what
the generator sent minus what arrived, read after the trial has drained.
Latency trials use vtep-sink, which reads the generator's timestamps."""
import json
import os
import select
import shlex
import subprocess
import time
from dataclasses import dataclass

TICK = os.sysconf("SC_CLK_TCK")
# /proc/stat's per-CPU columns (after the name), in USER_HZ ticks.
STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def proc_cpu(pid):
    """(user, system) seconds that process "pid" (all its threads) has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK   # utime, stime (fields 14, 15)


def cpu_times():
    """{"cpu0": {"user": s, "system": s, ...}, ...} from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                out[name] = {k: int(v) / TICK for k, v in zip(STAT_FIELDS, values)}
    return out


class CpuProbe:
    """CPU used between start() and stop(): by the processes "pids", and by
    each CPU (from /proc/stat: user, system, softirq...)."""

    def __init__(self, pids):
        self.pids = list(pids)

    def start(self):
        self._procs = {pid: proc_cpu(pid) for pid in self.pids}
        self._cpus = cpu_times()

    def stop(self):
        procs = {pid: proc_cpu(pid) for pid in self.pids}
        cpus = cpu_times()
        user = sum(procs[p][0] - self._procs[p][0] for p in self.pids)
        system = sum(procs[p][1] - self._procs[p][1] for p in self.pids)
        per_cpu = {c: {k: round(cpus[c][k] - self._cpus[c][k], 3) for k in STAT_FIELDS} for c in cpus}
        return {"process_user_s": round(user, 3), "process_system_s": round(system, 3), "cpus": per_cpu}


@dataclass
class Tools:
    gen: str
    sink: str
    gen_cpus: str = "0"
    batch: int = 64

    def gen_argv(self, dev, pcap, rate, duration, stamp=False):
        argv = [self.gen, "--dev", dev, "--pcap", pcap, "--rate", str(int(rate)), "--duration", f"{duration:g}",
                "--batch", str(self.batch)]
        return argv + (["--stamp"] if stamp else [])

    def sink_argv(self, dev, duration):
        return ["chrt", "-f", "10", self.sink, "--dev", dev, "--duration", f"{duration:g}"]

    def command(self, argv):
        """The command line as it runs (taskset included), for the results."""
        return shlex.join(["taskset", "-c", self.gen_cpus] + list(argv))


def _json_line(text, what):
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"{what}: no JSON on stdout: {text.strip()[-500:]!r}")


@dataclass
class Path:
    """One direction through one device: where the generator sends, with
    which pcap, and where the sink counts."""
    gen_ns: object
    gen_dev: str
    sink_ns: object
    sink_dev: str
    pcap: str
    dut_ns: object = None   # the device's namespace and its ingress and egress links: where frames
    dut_in: str = ""        # were lost (before, in or after the device) comes from their counters
    dut_out: str = ""


def trial(tools, path, rate, duration, *, pids=(), drain=0.2):
    """Offer "rate" frames/s (0: flat out) for "duration" s; the result dict."""
    before = path.sink_ns.stats(path.sink_dev)
    dut_before = _dut_stats(path)
    probe = CpuProbe(pids)
    probe.start()
    argv = tools.gen_argv(path.gen_dev, path.pcap, rate, duration)
    done = path.gen_ns.run(argv, cpus=tools.gen_cpus, timeout=duration + 30)
    gen = _json_line(done.stdout, "vtep-gen")
    time.sleep(drain)
    cpu = probe.stop()
    after = path.sink_ns.stats(path.sink_dev)
    dut_after = _dut_stats(path)
    received = after["rx_packets"] - before["rx_packets"]
    sent = gen["sent"]
    lost = sent - received
    result = {"asked": rate, "offered": gen["sent"] / gen["seconds"] if gen["seconds"] else 0.0, "sent": sent,
              "received": received, "lost": lost, "loss": lost / sent if sent else 1.0,
              "gen_errors": gen.get("errors", 0), "seconds": gen["seconds"],
              "sink_rx_dropped": after.get("rx_dropped", 0) - before.get("rx_dropped", 0), "cpu": cpu}
    if dut_before:
        into, out_of = (dut_after[k] - dut_before[k] for k in ("in", "out"))
        result["lost_where"] = {"before": sent - into, "in": into - out_of, "after": out_of - received}
    return result


def _dut_stats(path):
    """Frames that reached the device's ingress link and left by its egress
    link: with the generator's and sink's counts, where any loss happened."""
    if path.dut_ns is None:
        return None
    return {"in": path.dut_ns.stats(path.dut_in)["rx_packets"], "out": path.dut_ns.stats(path.dut_out)["tx_packets"]}


def latency_trial(tools, path, rate, duration, *, settle=1.0):
    """One-way latency at "rate" with stamped frames: vtep-sink's percentiles
    (ns) and what it received."""
    # SCHED_FIFO: the generator spins on the same CPU between frames, and a
    # sink that waits for the scheduler's tick would measure the tick.
    sink = path.sink_ns.popen(tools.sink_argv(path.sink_dev, duration + settle), cpus=tools.gen_cpus, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    lab = path.sink_ns.lab
    try:
        if not wait_ready(sink, 10):
            raise RuntimeError(f"vtep-sink not ready: {sink.stderr.read() if sink.poll() is not None else ''}")
        argv = tools.gen_argv(path.gen_dev, path.pcap, rate, duration, stamp=True)
        done = path.gen_ns.run(argv, cpus=tools.gen_cpus, timeout=duration + 30)
        gen = _json_line(done.stdout, "vtep-gen")
        out, err = sink.communicate(timeout=duration + settle + 30)
        result = _json_line(out, "vtep-sink")
    finally:
        lab.stop(sink)
    return {"asked": rate, "offered": gen["sent"] / gen["seconds"] if gen["seconds"] else 0.0,
            "sent": gen["sent"], "received": result.get("received"), "stamped": result.get("stamped"),
            "latency_ns": result.get("latency_ns")}


def wait_ready(proc, timeout):
    """Until "proc" says "ready" on stderr; False if it exits or time runs out."""
    deadline = time.monotonic() + timeout
    buf = ""
    fd = proc.stderr.fileno()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, 4096).decode(errors="replace")
            if not chunk:
                return False
            buf += chunk
            if "ready" in buf:
                return True
        elif proc.poll() is not None:
            return False
    return False



ETH_P_ALL = 3


def check_output(tools, path, direction, vnis, inner_src, rate=2000, duration=0.3):
    """Whether the device really does its job: a few frames at a low rate,
    captured at the sink with a raw socket and decoded.  Encap: IPv4/UDP to
    port 4789, VXLAN with the I flag and a VNI of "vnis", around an inner
    frame from "inner_src"; decap: the inner frame itself.  Returns a
    description of the first frame seen; raises RuntimeError otherwise."""
    from pyroute2 import netns
    import socket as so
    sock = netns.create_socket(path.sink_ns.name, so.AF_PACKET, so.SOCK_RAW, so.htons(ETH_P_ALL))
    try:
        sock.bind((path.sink_dev, 0))
        sock.settimeout(2.0)
        path.gen_ns.run(tools.gen_argv(path.gen_dev, path.pcap, rate, duration), cpus=tools.gen_cpus,
                        timeout=duration + 30)
        seen = []
        try:
            while len(seen) < 50:
                seen.append(sock.recv(4096))
                sock.settimeout(0.2)
        except TimeoutError:
            pass
    finally:
        sock.close()
    src = bytes.fromhex(inner_src.replace(":", ""))
    for frame in seen:
        if direction == "decap" and frame[6:12] == src:
            return f"inner frame of {len(frame)} bytes from {inner_src}"
        if (direction == "encap" and len(frame) >= 64 and frame[12:14] == b"\x08\x00" and frame[23] == 17
                and frame[36:38] == (4789).to_bytes(2, "big") and frame[42] & 0x08
                and int.from_bytes(frame[46:49], "big") in vnis and frame[50 + 6:50 + 12] == src):
            return f"VXLAN VNI {int.from_bytes(frame[46:49], 'big')}, {len(frame)} bytes, inner from {inner_src}"
    raise RuntimeError(f"{direction}: none of the {len(seen)} frames at the sink is what the device should send"
                       + (f" (first: {seen[0][:64].hex()})" if seen else ""))
