"""The tx and rx scenarios of perf/micro.c, run through the Cython engine
from a Python loop: Bursts are loaded once, then timed as

    for burst in bursts:
        n += engine.access_burst(port, burst, NOW)

so each figure is micro.c's plus Python's cost per call, spread over the
batch.  The engines, MACs and frames are micro.c's, built by the same
generator with the same seeds (the "Frames" section mirrors micro.c's).

Every run is checked like micro.c's: one untimed pass with every output
compared with the FDB, every timed burst's outputs counted, every verdict
and the engine's counters read afterwards.  A mismatch raises BenchError.

Run alone: .venv/bin/python perf/micro_engine.py --fdb 10000 --batch 32
(JSON on stdout); perf/report.py uses Pipe and call_overhead() itself."""
import argparse
import gc
import json
import statistics
import struct
import sys
import time

from dataplane._engine import Burst, Engine
from dataplane.packet import Tunnel, checksum

NOW = 1000
FRAME_LEN = 64
OUTER_LEN = FRAME_LEN + 50
N_REMOTES = 4
N_RX_PORTS = 8
VNI_PRIMARY, VNI_ISOLATED, VNI_COMMUNITY0, VNI_COMMUNITY1 = 100, 101, 102, 103
MAC_REMOTE_HOST, MAC_LOCAL_HOST, MAC_TX_SENDER, MAC_RX_SENDER = 0x10, 0x20, 0x30, 0x40
UNDERLAY_MAC = bytes([2, 0, 0, 0, 0, 0])
NEXT_HOP_MAC = bytes([2, 0, 0, 0, 0, 0xFE])
M64, M32 = (1 << 64) - 1, (1 << 32) - 1


class BenchError(RuntimeError):
    """The engine did not do what the scenario expects: the figure is void."""


# ---- Frames: mirrors micro.c exactly. ----

class Rng:
    """splitmix64."""

    def __init__(self, seed):
        self.s = seed

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & M64
        z = self.s
        z = ((z ^ z >> 30) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ z >> 27) * 0x94D049BB133111EB) & M64
        return z ^ z >> 31


def mix32(x):
    x = (x * 0x9E3779B1) & M32
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & M32
    return x ^ x >> 13


def make_mac(family, i):
    return bytes((2, family)) + mix32(i).to_bytes(4, "big")


def make_frame(dst, src, r):
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, FRAME_LEN - 14, 0, 0, 64, 17, 0,
                     bytes((198, 18)) + (r & 0xFFFF).to_bytes(2, "big"),
                     bytes((198, 19)) + (r >> 16 & 0xFFFF).to_bytes(2, "big"))
    ip = ip[:10] + checksum(ip).to_bytes(2, "big") + ip[12:]
    udp = struct.pack("!HHHH", r >> 32 & 0xFFFF, r >> 48, FRAME_LEN - 34, 0)
    return (dst + src + b"\x08\x00" + ip + udp).ljust(FRAME_LEN, b"\0")


def pool_size(fdb, pool=None):
    if pool:
        return pool
    n = 8192
    while n < fdb // 4 and n < 1 << 18:
        n *= 2
    return n


# ---- Engines ----

def engine_new(fdb):
    """micro.c's engine_new(): the engine's defaults, local 198.18.0.1, one
    segment (primary + isolated + 2 communities), 4 resolved remotes."""
    e = Engine("198.18.0.1", underlay_mac=UNDERLAY_MAC)
    seg = e.add_segment("vxlan", VNI_PRIMARY, VNI_ISOLATED, [VNI_COMMUNITY0, VNI_COMMUNITY1],
                        mac_learning=True, fdb_ageing_sec=300, maximum_fdb_entries=fdb)
    for r in range(N_REMOTES):
        rid = e.add_remote(f"198.18.0.{2 + r}")
        assert rid == r
        e.set_neighbour(rid, NEXT_HOP_MAC)
        e.segment_add_remote(seg, rid)
    return e, seg


class Pipe:
    """One tx or rx setup: engine, FDB and pool of frames (with the target
    each must reach), as micro.c's tx_setup() / rx_setup()."""

    def __init__(self, tx, fdb, pool=None):
        self.tx, self.fdb, self.pool = tx, fdb, pool_size(fdb, pool)
        t0 = time.perf_counter()
        self.e, self.seg = engine_new(fdb)
        (self._tx_tables if tx else self._rx_tables)()
        self.fdb_build_s = time.perf_counter() - t0
        if self.e.fdb_count(self.seg) != fdb:
            raise BenchError(f"FDB holds {self.e.fdb_count(self.seg)} entries, not {fdb}")
        t0 = time.perf_counter()
        self.frames, self.expect = (self._tx_frames if tx else self._rx_frames)()
        self.pool_build_s = time.perf_counter() - t0
        self.frames_run = 0
        self._bursts = {}  # batch -> loaded and validated Bursts

    def _tx_tables(self):
        e, seg = self.e, self.seg
        self.port = e.add_port(seg, "community", 0)
        e.fdb_add(seg, make_mac(MAC_TX_SENDER, 0), port=self.port, static=False, last_seen=NOW)
        add = e.fdb_add
        for i in range(self.fdb - 1):
            add(seg, make_mac(MAC_REMOTE_HOST, i), remote=i % N_REMOTES, role="promiscuous", last_seen=NOW)

    def _tx_frames(self):
        rng, n_dst = Rng(0x7478000000000000 ^ self.fdb), self.fdb - 1
        src = make_mac(MAC_TX_SENDER, 0)
        frames, expect = [], []
        for _ in range(self.pool):
            i = rng.next() % n_dst
            frames.append(make_frame(make_mac(MAC_REMOTE_HOST, i), src, rng.next()))
            expect.append(i % N_REMOTES)
        return frames, expect

    def _rx_tables(self):
        e, seg = self.e, self.seg
        self.ports = [e.add_port(seg, "promiscuous" if q % 2 else "community", None if q % 2 else 0)
                      for q in range(N_RX_PORTS)]
        for r in range(N_REMOTES):
            e.fdb_add(seg, make_mac(MAC_RX_SENDER, r), remote=r, role="community", community=0,
                      static=False, last_seen=NOW)
        add, ports = e.fdb_add, self.ports
        for i in range(self.fdb - N_REMOTES):
            add(seg, make_mac(MAC_LOCAL_HOST, i), port=ports[i % N_RX_PORTS], last_seen=NOW)

    def _rx_frames(self):
        tunnels = [Tunnel("vxlan", f"198.18.0.{2 + r}", "198.18.0.1", src_mac=NEXT_HOP_MAC, dst_mac=UNDERLAY_MAC)
                   for r in range(N_REMOTES)]
        rng, n_dst = Rng(0x7278000000000000 ^ self.fdb), self.fdb - N_REMOTES
        frames, expect = [], []
        for _ in range(self.pool):
            i = rng.next() % n_dst
            r = rng.next() % N_REMOTES
            inner = make_frame(make_mac(MAC_LOCAL_HOST, i), make_mac(MAC_RX_SENDER, r), rng.next())
            frames.append(tunnels[r].encap(VNI_COMMUNITY0, inner))
            expect.append(self.ports[i % N_RX_PORTS])
        return frames, expect

    def bursts(self, batch):
        """The pool as preloaded Bursts of "batch" frames, room for one output
        each; loaded and validated once, kept for later rounds."""
        if batch not in self._bursts:
            if self.pool % batch:
                raise ValueError(f"batch {batch} does not divide the pool ({self.pool})")
            bursts = []
            for first in range(0, self.pool, batch):
                b = Burst(batch, batch)
                b.load(self.frames[first:first + batch])
                bursts.append(b)
            self.validate(bursts, self.runner(bursts))
            self._bursts[batch] = bursts
        return self._bursts[batch]

    def figure(self, batch, reps, min_time):
        """Time the pool in bursts of "batch"; a dict shaped like micro.c's JSON."""
        bursts = self.bursts(batch)
        ns, passes, total, cpu_share = measure(self.runner(bursts), self.pool, reps, min_time)
        if total != (passes * reps + 2) * self.pool:
            raise BenchError(f"{total} outputs over the timed passes, expected one per frame")
        self.frames_run += total
        self.check_verdicts(bursts)
        self.check_counters()
        return {"scenario": "tx" if self.tx else "rx", "batch": batch, "fdb": self.fdb, "pool": self.pool,
                "passes": passes, "median_ns": statistics.median(ns), "min_ns": min(ns),
                "cpu_share": round(cpu_share, 3), "fdb_build_s": round(self.fdb_build_s, 3),
                "pool_build_s": round(self.pool_build_s, 3), "reps_ns": [round(x, 3) for x in ns]}

    def runner(self, bursts):
        """A timed pass: the loop whose cost per frame is the figure."""
        e, port = self.e, getattr(self, "port", 0)
        if self.tx:
            access = e.access_burst

            def run():
                n = 0
                for b in bursts:
                    n += access(port, b, NOW)
                return n
        else:
            underlay = e.underlay_burst

            def run():
                n = 0
                for b in bursts:
                    n += underlay(b, NOW)
                return n
        return run

    def validate(self, bursts, run):
        """One untimed pass, every output compared with what the FDB says."""
        if run() != self.pool:
            raise BenchError("a burst did not give one output per frame")
        self.frames_run += self.pool
        batch = bursts[0].n
        for bi, b in enumerate(bursts):
            for j, (pkt, kind, target, data) in enumerate(b.outputs()):
                k = bi * batch + j
                frame = self.frames[k]
                if self.tx:
                    ok = (kind == "underlay" and len(data) == OUTER_LEN and data[50:] == frame
                          and data[33] == 2 + target and checksum(data[14:34]) == 0
                          and int.from_bytes(data[46:49], "big") == VNI_COMMUNITY0)
                else:
                    ok = kind == "port" and data == frame[50:]
                if not (ok and pkt == j and target == self.expect[k]):
                    raise BenchError(f"output {j} of burst {bi} is wrong: {kind} {target}")
        self.check_verdicts(bursts)

    def check_verdicts(self, bursts):
        for bi, b in enumerate(bursts):
            if b.n_out != b.n or any(b.verdicts):
                raise BenchError(f"burst {bi}: {b.n_out} outputs for {b.n} frames, verdicts {b.verdicts}")

    def check_counters(self):
        """Every frame run is in the counters, sent, and nothing dropped or refused."""
        c_in = self.e.counters("port", self.port) if self.tx else self.e.counters("underlay")
        c_seg = self.e.counters("segment", self.seg)
        if (c_in["rx_packets"] != self.frames_run or c_seg["tx_packets"] != self.frames_run
                or any(c_in["drops"]) or any(c_seg["drops"]) or c_seg["learn_refused"]):
            raise BenchError(f"counters after {self.frames_run} frames: in {c_in}, segment {c_seg}")


def clock_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def measure(run, frames, reps, min_time):
    """micro.c's measure(): a warm-up pass, a pass to size a repetition at
    >= min_time, then "reps" timed repetitions; ns per frame each.  The
    garbage collector stays off while timing (the loop makes no garbage
    that needs it).  Also returns CPU time / wall time while timing: below
    ~0.95, the machine's other work took our CPU for a while."""
    gc.disable()
    try:
        total = run()
        t0 = clock_ns()
        total += run()
        passes = int(min_time * 1e9 / max(clock_ns() - t0, 1)) + 1
        ns = []
        wall0, cpu0 = clock_ns(), time.thread_time_ns()
        for _ in range(reps):
            t0 = clock_ns()
            for _ in range(passes):
                total += run()
            ns.append((clock_ns() - t0) / (passes * frames))
        cpu_share = (time.thread_time_ns() - cpu0) / (clock_ns() - wall0)
    finally:
        gc.enable()
    return ns, passes, total, cpu_share


def call_overhead(reps=5, min_time=0.2):
    """ns per engine.access_burst call in the timed loop, on an empty burst:
    Python's per-burst constant, with nothing for the C pipeline to do."""
    e, seg = engine_new(100)
    port = e.add_port(seg, "community", 0)
    empty = Burst(1, 1)
    empty.load([])
    bursts, access = [empty] * 1024, e.access_burst

    def run():
        n = 0
        for b in bursts:
            n += access(port, b, NOW)
        return n

    ns, _, total, _ = measure(run, len(bursts), reps, min_time)
    if total:
        raise BenchError("an empty burst gave outputs")
    return statistics.median(ns)


def run(scenarios=("tx", "rx"), fdbs=(100, 10000, 1000000), batches=(32, 256), reps=5, min_time=0.2,
        pool=None, progress=None):
    """All (scenario, FDB size, batch) figures, as a list of dicts shaped like micro.c's JSON."""
    results = []
    for fdb in fdbs:
        for scenario in ("tx", "rx"):
            if scenario in scenarios:
                p = Pipe(scenario == "tx", fdb, pool)
                for batch in batches:
                    results.append(p.figure(batch, reps, min_time))
                    if progress:
                        progress(results[-1])
                del p
    return results


def show(r):
    print(f"  engine {r['scenario']:<6} batch {r['batch']:4}  fdb {r['fdb']:8}  pool {r['pool']:6}  "
          f"median {r['median_ns']:7.2f}  min {r['min_ns']:7.2f} ns/pkt  cpu {100 * r['cpu_share']:3.0f}%  "
          f"(FDB built in {r['fdb_build_s']:.2f} s, frames in {r['pool_build_s']:.2f} s)", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", default="tx,rx")
    ap.add_argument("--fdb", default="100,10000,1000000")
    ap.add_argument("--batch", default="32,256")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.2)
    ap.add_argument("--pool", type=int)
    a = ap.parse_args()
    results = run(a.scenarios.split(","), [int(x) for x in a.fdb.split(",")],
                  [int(x) for x in a.batch.split(",")], a.reps, a.min_time, a.pool, show)
    json.dump({"driver": "engine", "reps": a.reps, "min_time_s": a.min_time, "results": results},
              sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
