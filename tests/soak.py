"""The soak test (`make soak`; root; not part of `make test`): SOAK_SECONDS
(default 3600) of mixed traffic and changes through one vtepd, then two
verdicts:

- **Memory is flat.**  vtepd's RSS (VmRSS) is sampled every SAMPLE_SEC.
  The changes repeat every CYCLE seconds and move RSS on purpose (port h3's
  rings are ~10 MiB while it exists), so the check compares samples taken
  at the same point of every cycle (RSS_PHASE: h3 removed, no FDB batch in
  place).  The first quarter of the run is warm-up (allocator arenas,
  Python's caches); the median of the last quarter may exceed the median
  of the second quarter by at most RSS_SLACK_MIB + RSS_SLACK (2 MiB + 2%).
  A leak of 100 bytes per change or per thousand frames grows past that
  within the hour; noise stays well inside it.
- **Counters are consistent: every frame received is either forwarded or
  counted as dropped with a reason.**  The engine counts per ingress block
  (each port, the underlay, each segment): rx_packets; forwarded, the
  frames of which at least one copy was handed to a link (a flood of N
  copies is one frame); and drops by reason, one per lost copy.  So for
  every block,  forwarded <= rx_packets  and
  rx_packets - forwarded <= sum(drops):  each frame not forwarded has at
  least one drop with a reason.  It is an inequality, not an equality,
  because a flooded frame can lose some copies (one drop each) while others
  go out, and the kernel's RX ring drops are counted (ring_full) without
  ever being received.  The "surplus" (sum(drops) - (rx - forwarded)) is
  reported.  It is checked strictly at the end, with the traffic stopped,
  and during the run with a slack of one burst per block (a counter read
  can fall between a burst's rx and its forwarded).

Traffic: numbered UDP flows (tests/integration/traffic.py), both
directions, between host H1 and the two kernel VTEPs K and K2 (tunnel),
between H1 and H2 (local switching), between the kernel of V on TAP vm1
and K (TAP), and broadcasts from H1 and from K.  Changes, on a schedule:
FDB batches of FDB_BATCH entries added and deleted again through the
control socket, SIGHUP reloads that add and remove port h3, flaps of h3's
link, and of K2's underlay link (K2 vanishing: its flows lose traffic,
which is expected).  The other flows must lose nothing but what the
kernel counted as dropped on a link (a veth's full backlog on this shared
machine: vtepd had handed those frames over).  Never `counters clear`:
the identity needs the counters from the start.

Writes build/soak.json (samples, changes, flows, checks) and prints a
summary; exit status 0 when every check passed."""
import functools
import itertools
import json
import os
import pathlib
import signal
import socket
import statistics
import sys
import time


from tests.integration import two_remotes as topo
from tests.integration import vtepd as v
from tests.integration.traffic import Flow

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE_SEC = 5
RSS_SLACK_MIB, RSS_SLACK = 2.0, 0.02
FLOW_RATE = 100           # datagrams a second, each unicast flow
BROADCAST_RATE = 20
FDB_BATCH = 2000
BURST = 256               # the most frames one burst counts (vtep_loop_new's limit)
EVERY = {"fdb": 10, "reload": 30, "port_flap": 20, "remote_flap": 60}  # seconds between changes
CYCLE, RSS_PHASE = 60, 5  # the schedule repeats every CYCLE s; RSS compared RSS_PHASE s into each

H2_IP, H2_MAC = "192.0.2.2", "02:00:00:00:01:02"
H3_IP, H3_MAC = "192.0.2.3", "02:00:00:00:01:03"
VM1_IP = topo.VM1_IP
PORT_H2 = '\n[[port]]\nname = "h2"\nbackend = "afpacket"\nsegment = "plain"\n' \
          f'\n[[fdb]]\nsegment = "plain"\nmac = "{H2_MAC}"\nport = "h2"\n'
PORT_H3 = '\n[[port]]\nname = "h3"\nbackend = "afpacket"\nsegment = "plain"\n'


def config(with_h3):
    return topo.CONFIG + PORT_H2 + (PORT_H3 if with_h3 else "")


def build(namespaces):
    """two_remotes' site plus hosts H2 and H3 behind ports h2 and h3."""
    site = topo.build(namespaces)
    for name, ip, mac in (("h2", H2_IP, H2_MAC), ("h3", H3_IP, H3_MAC)):
        H = site[name.upper()] = namespaces(name)
        v.veth(site["V"], name, H, "eth0", mtu=1450)
        v.link_up(H, "eth0", address=mac)
        v.address(H, "eth0", ip, 24)
    for a, b, ip in (("H1", "H2", H2_IP), ("H2", "H1", topo.H1_IP)):
        ns = site[a][1]
        ns.neigh("add", dst=ip, lladdr=H2_MAC if b == "H2" else topo.H1_MAC,
                 ifindex=ns.link_lookup(ifname="eth0")[0], state="permanent")
    return site


def flows(site):
    """Every flow of the soak, started; the names of those no change touches."""
    K, K2, H1, H2, V = site["K"], site["K2"], site["H1"], site["H2"], site["V"]
    made = {}

    def add(name, src, dst, ip, rate=FLOW_RATE, bind_ip=None):
        made[name] = Flow(src, dst, ip, 7100 + len(made), rate, name=name, bind_ip=bind_ip)

    add("H1->K", H1, K, topo.K_HOST)
    add("K->H1", K, H1, topo.H1_IP)
    add("H1->K2", H1, K2, topo.K2_HOST)
    add("K2->H1", K2, H1, topo.H1_IP)
    add("H1->H2", H1, H2, H2_IP)
    add("H2->H1", H2, H1, topo.H1_IP)
    add("vm1->K", V, K, topo.K_HOST)
    add("K->vm1", K, V, VM1_IP)
    add("H1->bcast@K", H1, K, "192.0.2.255", BROADCAST_RATE, bind_ip="")
    add("K->bcast@H2", K, H2, "192.0.2.255", BROADCAST_RATE, bind_ip="")
    for f in made.values():
        f.start()
    stable = [n for n in made if "K2" not in n]
    return made, stable


def link_drops(site):
    """{namespace/link: rx_dropped + tx_dropped} of every link of the site:
    frames the kernel dropped after vtepd handed them over (a veth peer's
    full backlog) or before vtepd could see them."""
    out = {}
    for name, (_, ns) in site.items():
        for link in ns.get_links():
            stats = link.get_attr("IFLA_STATS64") or {}
            out[f"{name}/{link.get_attr('IFLA_IFNAME')}"] = stats.get("rx_dropped", 0) + stats.get("tx_dropped", 0)
    return out


def ctl_many(path, requests):
    """Send "requests" [(command, args)] on one connection, each answered
    before the next; the results (ControlError-like RuntimeError on an error)."""
    results = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(path)
        replies = sock.makefile("rb")
        for command, args in requests:
            sock.sendall(json.dumps({"command": command, "args": args}).encode() + b"\n")
            reply = json.loads(replies.readline())
            if not reply["ok"]:
                raise RuntimeError(f"{command}: {reply['error']}")
            results.append(reply["result"])
    return results


def identity(counters, slack=0):
    """The counters' identity for every block: {block: facts}, "ok" among them."""
    blocks = {f"port {n}": c for n, c in counters["ports"].items()}
    blocks["underlay"] = counters["underlay"]
    blocks.update({f"segment {n}": c for n, c in counters["segments"].items()})
    out = {}
    for name, c in blocks.items():
        rx, forwarded, drops = c["rx_packets"], c["forwarded"], sum(c["drops"].values())
        out[name] = {"rx": rx, "forwarded": forwarded, "not_forwarded": rx - forwarded, "drops": drops,
                     "surplus": drops - (rx - forwarded),
                     "ok": forwarded <= rx + slack and rx - forwarded <= drops + slack}
    return out


def rss_flat(samples):
    """(ok, second-quarter median, last-quarter median) of the RSS samples
    taken at the same point of each cycle."""
    rss = [s["rss_mib"] for s in samples if s["step"] % CYCLE == RSS_PHASE] or [s["rss_mib"] for s in samples]
    q = max(1, len(rss) // 4)
    second, last = statistics.median(rss[q:2 * q] or rss), statistics.median(rss[-q:])
    return last - second <= RSS_SLACK_MIB + RSS_SLACK * second, second, last


class Changes:
    """The schedule of changes, one step a second."""

    def __init__(self, d, site, every=None):
        self.d, self.site = d, site
        self.every = every or EVERY
        self.batch = None          # the MACs of the FDB batch in place
        self.batches = itertools.count()
        self.with_h3 = False
        self.done = {"fdb_added": 0, "fdb_deleted": 0, "reloads": 0, "port_flaps": 0, "remote_flaps": 0}
        self.errors = []

    def step(self, t):
        for what, period in self.every.items():
            if t and t % period == 0:
                try:
                    getattr(self, what)()
                except Exception as e:  # noqa: BLE001 - a failed change is a finding, not a crash
                    self.errors.append(f"t={t}s {what}: {type(e).__name__}: {e}")

    def fdb(self):
        if self.batch is None:
            n = next(self.batches)
            remote = (topo.K_ADDR, topo.K2_ADDR)[n % 2]
            self.batch = [f"02:20:{n % 256:02x}:00:{i >> 8:02x}:{i & 255:02x}" for i in range(FDB_BATCH)]
            entries = [{"segment": "plain", "mac": m, "remote": remote} for m in self.batch]
            (result,) = ctl_many(self.d.socket, [("fdb-add", {"entries": entries})])
            self.done["fdb_added"] += result["added"]
        else:
            ctl_many(self.d.socket, [("fdb-del", {"segment": "plain", "mac": m}) for m in self.batch])
            self.done["fdb_deleted"] += len(self.batch)
            self.batch = None

    def reload(self):
        self.with_h3 = not self.with_h3
        self.d.write_config(config(self.with_h3))
        self.d.proc.send_signal(signal.SIGHUP)
        want = {"h1", "vm1", "h2"} | ({"h3"} if self.with_h3 else set())
        if not v.wait_for(lambda: {p["name"] for p in self.d.ctl("show-ports")} == want, timeout=5):
            raise RuntimeError(f"reload did not give ports {sorted(want)}")
        self.done["reloads"] += 1

    def port_flap(self):
        self._flap(self.site["V"], "h3", 1.0)
        self.done["port_flaps"] += 1

    def remote_flap(self):
        self._flap(self.site["K2"], "ul0", 3.0)
        self.done["remote_flaps"] += 1

    @staticmethod
    def _flap(ns, ifname, seconds):
        index = ns[1].link_lookup(ifname=ifname)[0]
        ns[1].link("set", index=index, state="down")
        time.sleep(seconds)
        ns[1].link("set", index=index, state="up")


def run(seconds, namespaces, workdir, log=functools.partial(print, flush=True), every=None):
    """The soak; returns the result (what build/soak.json holds).  "every"
    replaces EVERY, the seconds between changes of each kind (a short run
    wants them sooner)."""
    site = build(namespaces)
    workdir.mkdir(parents=True, exist_ok=True)
    d = v.Vtepd(site["V"][0], config(False), workdir)
    try:
        v.address(site["V"], "vm1", VM1_IP, 24)
        v.link_up(site["V"], "vm1")
        made, stable = flows(site)
        # Loss counts from when every flow runs: before, the hosts may still
        # be resolving each other (vm1's kernel side and K use ARP).
        not_flowing = [n for n, f in made.items() if not f.wait_flowing()]
        flowing_at, drops_before = time.monotonic(), link_drops(site)
        changes = Changes(d, site, every)
        samples, worst_transient = [], 0
        start = time.monotonic()
        log(f"soak: {seconds} s, vtepd pid {d.proc.pid}, {len(made)} flows; log {d.log}")
        for t in itertools.count():
            now = time.monotonic() - start
            if now >= seconds:
                break
            time.sleep(max(0.0, t - now))
            changes.step(t)
            if t % SAMPLE_SEC == 0:
                counters = d.counters()
                checked = identity(counters, slack=BURST)
                worst_transient = max(worst_transient, *(-c["surplus"] for c in checked.values()))
                samples.append({"step": t, "t": round(time.monotonic() - start, 1), "rss_mib": v.rss_mib(d.proc.pid),
                                "fdb_entries": d.ctl("show-segments")[0]["fdb_entries"],
                                "identity_ok": all(c["ok"] for c in checked.values())})
                if t % (SAMPLE_SEC * 12) == 0:
                    log(f"  t={t:5d}s rss {samples[-1]['rss_mib']:.1f} MiB, fdb {samples[-1]['fdb_entries']}, "
                        f"changes {changes.done}")
        topo.stop_all(made, drain=1.0)  # the last frames through, then the counters are still
        final = d.counters()
        alive = d.proc.poll() is None
        kernel_drops = {k: n - drops_before.get(k, 0) for k, n in link_drops(site).items()
                        if n - drops_before.get(k, 0)}
    finally:
        status = d.stop()
    checked = identity(final)
    rss_ok, rss_q2, rss_q4 = rss_flat(samples)
    flow_facts = {n: {"sent": f.count(), "received": f.received(), "lost": len(f.lost(start=flowing_at)),
                      "lost_before_flowing": len(f.lost(end=flowing_at)), "duplicates": f.duplicates}
                  for n, f in made.items()}
    stable_lost = sum(flow_facts[n]["lost"] for n in stable)
    checks = {
        "rss_flat": rss_ok,
        "identity_at_end": all(c["ok"] for c in checked.values()),
        "identity_during_run": all(s["identity_ok"] for s in samples),
        "all_flows_started": not not_flowing,
        # A datagram lost on a flow no change touches must be one the kernel
        # counted as dropped on some link: vtepd itself lost none unaccounted.
        "untouched_flows_lose_nothing_unaccounted": stable_lost <= sum(kernel_drops.values()),
        "changes_all_applied": not changes.errors,
        "vtepd_alive_and_stopped_cleanly": alive and status == 0,
    }
    return {"seconds": seconds, "checks": checks, "ok": all(checks.values()),
            "rss_mib": {"second_quarter_median": rss_q2, "last_quarter_median": rss_q4,
                        "min": min(s["rss_mib"] for s in samples), "max": max(s["rss_mib"] for s in samples),
                        "slack": f"{RSS_SLACK_MIB} MiB + {RSS_SLACK:.0%}"},
            "identity": checked, "worst_transient_gap": max(0, worst_transient),
            "untouched_flows_lost": stable_lost, "kernel_link_drops": kernel_drops,
            "changes": changes.done, "change_errors": changes.errors, "flows": flow_facts,
            "untouched_flows": stable, "counters": final, "samples": samples}


def summary(result):
    r, c = result["rss_mib"], result["changes"]
    frames = sum(b["rx"] for n, b in result["identity"].items() if not n.startswith("segment"))
    lines = [f"soak: {result['seconds']} s: {'PASSED' if result['ok'] else 'FAILED'}",
             f"  RSS: second-quarter median {r['second_quarter_median']:.1f} MiB, last-quarter median "
             f"{r['last_quarter_median']:.1f} MiB (min {r['min']:.1f}, max {r['max']:.1f}; slack {r['slack']})",
             f"  changes: {c['fdb_added']} FDB entries added and {c['fdb_deleted']} deleted, {c['reloads']} reloads, "
             f"{c['port_flaps']} port flaps, {c['remote_flaps']} remote flaps; {len(result['change_errors'])} failed",
             f"  counters: {frames} frames received; per block rx = forwarded + not forwarded, "
             f"not forwarded <= drops:"]
    for name, b in result["identity"].items():
        lines.append(f"    {name:14s} rx {b['rx']:9d} forwarded {b['forwarded']:9d} not forwarded "
                     f"{b['not_forwarded']:7d} drops {b['drops']:7d} surplus {b['surplus']:5d} "
                     f"{'ok' if b['ok'] else 'VIOLATED'}")
    for name, f in result["flows"].items():
        mark = "" if name in result["untouched_flows"] else " (touched by remote flaps)"
        lines.append(f"    flow {name:12s} {f['received']}/{f['sent']} received, {f['lost']} lost{mark}")
    lines.append(f"  untouched flows lost {result['untouched_flows_lost']}; the kernel's link drops meanwhile: "
                 f"{result['kernel_link_drops'] or 'none'}")
    lines += [f"  {name}: {'ok' if ok else 'FAILED'}" for name, ok in result["checks"].items()]
    lines += [f"  change error: {e}" for e in result["change_errors"]]
    return "\n".join(lines)


def main():
    if os.geteuid() != 0:
        print("soak: needs root (network namespaces)", file=sys.stderr)
        return 2
    seconds = int(os.environ.get("SOAK_SECONDS", "3600"))
    out = ROOT / "build" / "soak.json"
    with v.fresh_namespaces() as namespaces:
        result = run(seconds, namespaces, ROOT / "build" / "soak")
    out.write_text(json.dumps(result, indent=1))
    print(summary(result))
    print(f"  written: {out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
