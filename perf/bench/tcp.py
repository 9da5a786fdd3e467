"""TCP and round trips through the overlay, between two hosts behind two VTEPs:

    H1 eth0 ──veth── p  VA  ul ══ underlay veth ══ ul  VB  p ──veth── eth0 H2
    198.19.1.1/24        198.18.1.1/24        198.18.1.2/24        198.19.1.2/24

The VTEPs are vtepd on both ends (AF_PACKET ports p), or the kernel's
VXLAN device in a bridge with p on both ends.  iperf3 (one stream, then
four) from H1 to H2; ping and a UDP request/response (one 64-byte request
at a time, in Python, the same for both) from H1 to H2 for the round-trip
percentiles.  The hosts' programs run on gen_cpus; the VTEPs on dut_cpus
(vtepd with taskset; the kernel with RPS on p and ul of both VTEP
namespaces); the hosts' own receive work is steered to gen_cpus by RPS on
their eth0, the same for both systems.

Round trips under load: the zero-loss rate of 64-byte frames from H1 to H2
through both VTEPs (vtep-gen on H1's eth0, counted on H2's; the same RFC 2544
search as the throughput points), then ping and the UDP request/response
again while vtep-gen offers 10, 50 and 90 % of it.  The load goes to H2's MAC
and another host's IP address, so H2's kernel drops it without an answer.
The probes share the hosts' CPU with vtep-gen at its normal priority: run
SCHED_FIFO they kept it to a third of its rate (measured here), and nice
-20 changed nothing; their tails include waiting for that CPU."""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

from dataplane import control

from . import frames, search, trials
from .search import percentile
from .systems import ROOT, VNI
from .topology import cpu_mask, wait_for
from .trials import wait_ready

HOST_MTU = 1450
LOADS = (0.1, 0.5, 0.9)     # of the zero-loss rate, for the round trips under load
VA, VB = "198.18.1.1", "198.18.1.2"
H1, H2 = "198.19.1.1", "198.19.1.2"
UDP_PORT = 7000

UDP_SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", file=sys.stderr, flush=True)
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
"""

UDP_CLIENT = r"""
import json, socket, sys, time
server, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
s.connect((server, port))
payload = bytes(64 - 42)
rtts, lost = [], 0
for i in range(count + 100):
    t0 = time.perf_counter_ns()
    s.send(payload)
    try:
        s.recv(2048)
    except socket.timeout:
        lost += 1
        continue
    if i >= 100:                      # the first 100 warm up caches and neighbours
        rtts.append(time.perf_counter_ns() - t0)
print(json.dumps({"rtt_ns": rtts, "lost": lost}))
"""


class TwoHosts:
    def __init__(self, lab, system, opts):
        self.lab, self.system, self.opts = lab, system, opts
        self.commands, self.notes, self.vtepds = [], [], []
        tag = f"tcp-{system}"
        self.h1, self.va, self.vb, self.h2 = (lab.ns(f"{tag}-{r}") for r in ("h1", "va", "vb", "h2"))
        lab.veth(self.h1, "eth0", self.va, "p", mtu=HOST_MTU)
        lab.veth(self.va, "ul", self.vb, "ul")
        lab.veth(self.vb, "p", self.h2, "eth0", mtu=HOST_MTU)
        self.va.addr("ul", VA, 24)
        self.vb.addr("ul", VB, 24)
        self.va.neigh("ul", VB, self.vb.mac("ul"))
        self.vb.neigh("ul", VA, self.va.mac("ul"))
        self.h1.addr("eth0", H1, 24)
        self.h2.addr("eth0", H2, 24)
        gen_mask = cpu_mask(opts.gen_cpus)
        for host in (self.h1, self.h2):
            host.sysfs_write("/sys/class/net/eth0/queues/rx-0/rps_cpus", gen_mask)
            if not opts.host_offloads:
                host.tx_checksum("eth0", False)
        self.commands.append(f"hosts: RPS {gen_mask} on eth0; transmit checksum offload "
                             f"{'as the kernel has it' if opts.host_offloads else 'off (ethtool -K eth0 tx off)'}")
        self.dir = tempfile.mkdtemp(prefix=f"{lab.prefix}{tag}-")

    def start(self):
        if self.system == "vtepd":
            for ns, local, remote in ((self.va, VA, VB), (self.vb, VB, VA)):
                self.vtepds.append(self._vtepd(ns, local, remote))
        else:
            dut_mask = cpu_mask(self.opts.dut_cpus)
            for ns, local, remote in ((self.va, VA, VB), (self.vb, VB, VA)):
                ul = ns.index("ul")
                ns.ipr.link("add", ifname="vx0", kind="vxlan", vxlan_id=VNI, vxlan_port=4789, vxlan_link=ul,
                            vxlan_local=local, vxlan_group=remote, mtu=HOST_MTU)
                ns.ipr.link("add", ifname="br0", kind="bridge", br_stp_state=0)
                ns.up("br0")
                ns.up("vx0", master=ns.index("br0"))
                ns.up("p", master=ns.index("br0"))
                for ifname in ("p", "ul"):
                    ns.sysfs_write(f"/sys/class/net/{ifname}/queues/rx-0/rps_cpus", dut_mask)
            self.commands.append(f"kernel VTEPs: vx0 (vxlan id {VNI} dstport 4789, local/remote the ul addresses) "
                                 f"and p in bridge br0; RPS {dut_mask} on p and ul")
        # The first exchange resolves the overlay neighbour (ARP crosses the tunnel).
        if not wait_for(lambda: self.h1.run(["ping", "-c", "1", "-W", "1", H2], check=False).returncode == 0, 15,
                        interval=0.2):
            raise RuntimeError(f"{self.system}: H1 cannot ping H2 through the overlay")

    def _vtepd(self, ns, local, remote):
        name = ns.name
        config = f"""[vtep]
underlay = "ul"
local = "{local}"
control_socket = "{self.dir}/{name}.sock"
[[segment]]
name = "plain"
vni = {VNI}
remote = ["{remote}"]
[[port]]
name = "p"
backend = "afpacket"
segment = "plain"
role = "promiscuous"
"""
        path = f"{self.dir}/{name}.toml"
        with open(path, "w") as f:
            f.write(config)
        argv = [sys.executable, "-m", "dataplane.daemon", "-c", path]
        self.commands.append(shlex.join(ns.argv(argv, self.opts.dut_cpus)))
        log = open(f"{self.dir}/{name}.log", "wb")
        proc = ns.popen(argv, cpus=self.opts.dut_cpus, stdout=log, stderr=log, cwd=ROOT)
        log.close()
        sock = f"{self.dir}/{name}.sock"
        ok = wait_for(lambda: proc.poll() is not None or _answers(sock), 20, interval=0.1)
        if not ok or proc.poll() is not None:
            with open(f"{self.dir}/{name}.log", errors="replace") as f:
                raise RuntimeError(f"vtepd in {name} did not start: {f.read()[-2000:]}")
        wait_for(lambda: all(r["next_hop"] for r in control.request(sock, "show-remotes")), 10)
        return proc

    def iperf3(self, streams, seconds):
        server = self.h2.popen(["iperf3", "-s", "-1", "-B", H2], cpus=self.opts.gen_cpus,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            argv = ["iperf3", "-c", H2, "-t", str(seconds), "-P", str(streams), "-J", "--connect-timeout", "3000"]
            self.commands.append(shlex.join(self.h1.argv(argv, self.opts.gen_cpus)))
            for _ in range(20):
                done = self.h1.run(argv, cpus=self.opts.gen_cpus, timeout=seconds + 30, check=False)
                try:
                    result = json.loads(done.stdout)
                except ValueError:
                    result = {"error": done.stderr.strip() or f"exit {done.returncode}"}
                if "refused" not in str(result.get("error", "")):
                    break
                time.sleep(0.1)
        finally:
            self.lab.stop(server)
        if result.get("error"):
            return {"streams": streams, "error": result["error"]}
        end = result["end"]
        return {"streams": streams, "seconds": seconds,
                "gbit_s": end["sum_received"]["bits_per_second"] / 1e9,
                "retransmits": end["sum_sent"].get("retransmits")}

    def ping(self, count=500, interval=0.005):
        argv = ["ping", "-n", "-c", str(count), "-i", f"{interval:g}", "-W", "1", H2]
        self.commands.append(shlex.join(self.h1.argv(argv, self.opts.gen_cpus)))
        done = self.h1.run(argv, cpus=self.opts.gen_cpus, timeout=count * interval + 30, check=False)
        rtts = [float(m) * 1e3 for m in re.findall(r"time=([\d.]+) ms", done.stdout)]
        return _percentiles("ping", rtts, count - len(rtts))

    def udp_rr(self, count=5000):
        server = self.h2.popen([sys.executable, "-c", UDP_SERVER, H2, str(UDP_PORT)], cpus=self.opts.gen_cpus,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            if not wait_ready(server, 10):
                raise RuntimeError("UDP echo server did not start")
            argv = [sys.executable, "-c", "UDP_CLIENT (perf/bench/tcp.py)", H2, str(UDP_PORT), str(count)]
            self.commands.append(shlex.join(self.h1.argv(argv, self.opts.gen_cpus)))
            argv[2] = UDP_CLIENT
            done = self.h1.run(argv, cpus=self.opts.gen_cpus, timeout=120)
            result = json.loads(done.stdout)
        finally:
            self.lab.stop(server)
        return _percentiles("udp request/response", [r / 1e3 for r in result["rtt_ns"]], result["lost"])

    # -- round trips under load ------------------------------------------------------------------

    def load_path(self):
        """64-byte frames from H1 to H2's MAC, 256 flows, for another host's IP."""
        pcap = os.path.join(self.dir, "load.pcap")
        h1_mac, h2_mac = self.h1.mac("eth0"), self.h2.mac("eth0")
        frames.write_pcap(pcap, [frames.inner_frame(h2_mac, h1_mac, k % 256, 64)
                                 for k in range(frames.frame_count(64, 256))])
        return trials.Path(self.h1, "eth0", self.h2, "eth0", pcap, self.va, "p", "ul")

    def zero_loss_rate(self, tools, path):
        """The zero-loss rate H1 -> H2 (frames/s) and the search's answer."""
        def trial(rate):
            return trials.trial(tools, path, rate, self.opts.trial, pids=[p.pid for p in self.vtepds])
        flat = trial(0)
        s = search.Search(trial, flat["offered"], resolution=self.opts.resolution, min_step=self.opts.min_step,
                          confirm=self.opts.confirm)
        s.record(flat["offered"], flat)
        forwarded = flat["received"] / flat["seconds"] if flat["seconds"] else 0
        answer = s.find(0.0, guess=min(flat["offered"], forwarded), budget=self.opts.budget)
        return answer["offered"], dict(answer, ceiling=flat["offered"], trials=len(s.trials))

    def loaded_round_trips(self, tools, path, fraction, rate):
        """Ping and UDP request/response while vtep-gen offers "rate"; what
        the load really offered and lost in that time."""
        argv = tools.gen_argv(path.gen_dev, path.pcap, rate, 60)
        self.commands.append(shlex.join(self.h1.argv(argv, self.opts.gen_cpus)) + "  (the load, stopped after)")
        gen = self.h1.popen(argv, cpus=self.opts.gen_cpus, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)                      # the generator's start-up
            sent0, got0 = self.h1.stats("eth0")["tx_packets"], self.h2.stats("eth0")["rx_packets"]
            t0 = time.monotonic()
            out = {"fraction": fraction, "rate": rate, "ping": self.ping(count=200), "udp_rr": self.udp_rr(2000)}
        finally:
            self.lab.stop(gen)
        seconds = time.monotonic() - t0
        time.sleep(0.2)
        # The probes' own packets are in these counts too: a few thousand among the load's.
        sent = self.h1.stats("eth0")["tx_packets"] - sent0
        got = self.h2.stats("eth0")["rx_packets"] - got0
        out.update(offered=sent / seconds, loss=max(0, sent - got) / sent if sent else None)
        return out

    def close(self):
        for proc in self.vtepds:
            self.lab.stop(proc)
        for ns in (self.h1, self.va, self.vb, self.h2):
            self.lab.remove(ns)
        shutil.rmtree(self.dir, ignore_errors=True)


def _answers(sock):
    if not os.path.exists(sock):
        return False
    try:
        control.request(sock, "version", timeout=1)
        return True
    except OSError:
        return False


def _percentiles(what, rtts_us, lost):
    return {"what": what, "samples": len(rtts_us), "lost": lost,
            "rtt_us": {f"p{p}": (round(percentile(rtts_us, p), 1) if rtts_us else None) for p in (50, 90, 99)}}


def run(lab, system, opts, log, tools):
    """All the TCP-topology figures for one system: a dict."""
    out = {"system": system, "offloads": "on" if opts.host_offloads else "off"}
    hosts = TwoHosts(lab, system, opts)
    try:
        hosts.start()
        out["iperf3"] = []
        for streams in (1, 4):
            r = hosts.iperf3(streams, opts.tcp_seconds)
            log(f"  tcp {system}: {streams} stream(s): {r.get('gbit_s', r.get('error'))}")
            out["iperf3"].append(r)
        out["ping"] = hosts.ping()
        out["udp_rr"] = hosts.udp_rr()
        log(f"  rtt {system}: ping {out['ping']['rtt_us']} udp {out['udp_rr']['rtt_us']} (us)")
        path = hosts.load_path()
        rate, out["zero_loss"] = hosts.zero_loss_rate(tools, path)
        log(f"  {system}: H1 -> H2 zero loss {rate / 1e3:.1f} kpps (64 bytes)")
        out["loaded"] = []
        for fraction in LOADS:
            r = hosts.loaded_round_trips(tools, path, fraction, fraction * rate)
            out["loaded"].append(r)
            log(f"  rtt {system} at {fraction:.0%} ({r['offered'] / 1e3:.1f} kpps, load lost {r['loss'] or 0:.2%}): "
                f"ping {r['ping']['rtt_us']} udp {r['udp_rr']['rtt_us']} (us)")
    except Exception as e:  # noqa: BLE001 - recorded, and the run goes on
        out["error"] = f"{type(e).__name__}: {e}"
        log(f"  tcp {system}: FAILED: {out['error']}")
    finally:
        out["commands"] = hosts.commands
        hosts.close()
    return out
