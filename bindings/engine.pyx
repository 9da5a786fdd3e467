# cython: language_level=3
"""The engine the daemon drives: tables, bursts, counters.

Thin: each method validates its arguments, makes one C call and turns a
negative return into an exception in one place, check().  Burst work runs
with the GIL released."""
import ipaddress
import os
import socket

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

from vtep cimport *

ROLES = ("promiscuous", "isolated", "community")
ENCAPSULATIONS = ("vxlan", "nvgre")
CLASS_UNKNOWN = VTEP_CLASS_UNKNOWN
CLASS_PROMISCUOUS = VTEP_CLASS_PROMISCUOUS
CLASS_ISOLATED = VTEP_CLASS_ISOLATED
CLASS_COMMUNITY = VTEP_CLASS_COMMUNITY
MAX_COMMUNITIES = VTEP_MAX_COMMUNITIES
DROP_COUNT = VTEP_DROP_COUNT
OUT_PORT = VTEP_OUT_PORT
OUT_UNDERLAY = VTEP_OUT_UNDERLAY
PKT_CSUM_OK = VTEP_PKT_CSUM_OK
PKT_VLAN = VTEP_PKT_VLAN
BUM_RATE_MAX = VTEP_BUM_RATE_MAX


class VtepError(OSError):
    """A table operation the engine refused (errno says why)."""


cdef int check(int rc) except -1:
    if rc < 0:
        raise VtepError(-rc, os.strerror(-rc))
    return rc


def pvlan_class(role, community=None):
    """The engine's one-byte class for a role (and community index)."""
    if role == "promiscuous":
        return VTEP_CLASS_PROMISCUOUS
    if role == "isolated":
        return VTEP_CLASS_ISOLATED
    if role == "community":
        if community is None or not 0 <= community < VTEP_MAX_COMMUNITIES:
            raise ValueError(f"community index must be 0..{VTEP_MAX_COMMUNITIES - 1}")
        return VTEP_CLASS_COMMUNITY + community
    raise ValueError(f"role must be one of {ROLES}, not {role!r}")


def role_of_class(int cls):
    """(role, community index) of a class; role None for unknown."""
    if cls == VTEP_CLASS_UNKNOWN:
        return None, None
    if cls == VTEP_CLASS_PROMISCUOUS:
        return "promiscuous", None
    if cls == VTEP_CLASS_ISOLATED:
        return "isolated", None
    return "community", cls - VTEP_CLASS_COMMUNITY


def pvlan_allows(int frm, int to):
    return bool(vtep_pvlan_allows(frm, to))


cdef vtep_addr_t to_addr(address) except *:
    cdef vtep_addr_t a
    ip = ipaddress.ip_address(address)
    memset(&a, 0, sizeof(a))
    a.family = ip.version
    packed = ip.packed
    memcpy(a.bytes, <const char *>packed, len(packed))
    return a


cdef int copy_mac(uint8_t *dst, mac) except -1:
    """Store "aa:bb:cc:dd:ee:ff" (or 6 bytes) at "dst"."""
    cdef bytes raw
    if isinstance(mac, (bytes, bytearray)):
        raw = bytes(mac)
    else:
        raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    memcpy(dst, <const char *>raw, 6)
    return 0


cdef inline int hex_digit(Py_UCS4 c):
    cdef int n = <int>c
    if 48 <= n <= 57:     # 0-9
        return n - 48
    if 97 <= n <= 102:    # a-f
        return n - 87
    if 65 <= n <= 70:     # A-F
        return n - 55
    return -1


cdef int copy_mac_fast(uint8_t *dst, mac) except -1:
    """copy_mac, without its string copies for the common "aa:bb:cc:dd:ee:ff"
    (bulk FDB loads parse a million of them)."""
    cdef str text
    cdef int i, hi, lo
    if type(mac) is str and len(<str>mac) == 17:
        text = <str>mac
        for i in range(6):
            hi = hex_digit(text[3 * i])
            lo = hex_digit(text[3 * i + 1])
            if hi < 0 or lo < 0 or (i < 5 and text[3 * i + 2] != u':' and text[3 * i + 2] != u'-'):
                break
            dst[i] = <uint8_t>(hi << 4 | lo)
        else:
            return 0
    return copy_mac(dst, mac)


def mac_str(raw):
    return ":".join(f"{b:02x}" for b in raw)


cdef class Burst:
    """Up to "capacity" frames held in C memory, with room for "max_out"
    outputs: load once, run many times (benchmarks), or run and read back
    (tests).  Frames are copied in; outputs point into them."""
    cdef vtep_pkt_t *pkts
    cdef uint8_t *buf
    cdef vtep_out_t *outs
    cdef uint8_t *_verdicts
    cdef readonly uint32_t capacity, max_out, n, n_out

    def __cinit__(self, uint32_t capacity=256, uint32_t max_out=0):
        self.capacity = capacity
        self.max_out = max_out or capacity * 4
        self.pkts = <vtep_pkt_t *>malloc(capacity * sizeof(vtep_pkt_t))
        self.outs = <vtep_out_t *>malloc(self.max_out * sizeof(vtep_out_t))
        self._verdicts = <uint8_t *>malloc(capacity)
        self.buf = NULL
        if not self.pkts or not self.outs or not self._verdicts:
            raise MemoryError()

    def __dealloc__(self):
        free(self.pkts)
        free(self.outs)
        free(self._verdicts)
        free(self.buf)

    def load(self, frames, flags=None):
        """Copy "frames" in; "flags" gives each frame's PKT_* flags (default 0)."""
        frames = [bytes(f) for f in frames]
        flags = [0] * len(frames) if flags is None else list(flags)
        if len(flags) != len(frames):
            raise ValueError("one flags value per frame")
        if len(frames) > self.capacity:
            raise ValueError(f"{len(frames)} frames for a burst of {self.capacity}")
        total = sum(len(f) for f in frames)
        free(self.buf)
        self.buf = <uint8_t *>malloc(total or 1)
        if not self.buf:
            raise MemoryError()
        cdef size_t off = 0
        for i, f in enumerate(frames):
            memcpy(self.buf + off, <const char *>f, len(f))
            memset(&self.pkts[i], 0, sizeof(vtep_pkt_t))
            self.pkts[i].data = self.buf + off
            self.pkts[i].len = len(f)
            self.pkts[i].flags = flags[i]
            off += len(f)
        self.n = len(frames)
        self.n_out = 0

    @property
    def verdicts(self):
        return [self._verdicts[i] for i in range(self.n)]

    def outputs(self):
        """[(frame index, "port"|"underlay", target, bytes)] of the last run."""
        result = []
        cdef vtep_out_t *o
        for i in range(self.n_out):
            o = &self.outs[i]
            data = o.hdr[:o.hdr_len] + o.data[:o.data_len]
            result.append((o.pkt, "port" if o.kind == VTEP_OUT_PORT else "underlay", o.target, data))
        return result


cdef class Engine:
    """One VTEP's tables and a worker to run bursts through them."""
    cdef vtep_engine_t *e
    cdef vtep_worker_t *w
    cdef vtep_worker_t *probe   # for probe=True runs: learns nothing, counts for no one
    cdef readonly object local
    cdef readonly int destination_port
    cdef dict _fanout       # segment id -> ports + remotes: the most copies a frame can make
    cdef dict _port_segment

    def __cinit__(self, local, *, underlay_mac="02:00:00:00:00:00", int underlay_mtu=1500,
                  int destination_port=4789, port_range=(49152, 65535), int ttl=64,
                  bint udp_checksum=False, int max_ports=1024, int max_segments=256,
                  int max_remotes=1024):
        cdef vtep_engine_params_t p
        cdef int err = 0
        memset(&p, 0, sizeof(p))
        p.local = to_addr(local)
        copy_mac(p.underlay_mac, underlay_mac)
        if not 0 < destination_port < 65536 or not 0 < port_range[0] <= port_range[1] < 65536:
            raise ValueError("ports must be 1..65535 and port_range ordered")
        if not 0 < ttl < 256 or not 68 <= underlay_mtu < 65536:
            raise ValueError("ttl must be 1..255 and underlay_mtu 68..65535")
        p.underlay_mtu = underlay_mtu
        p.destination_port = destination_port
        p.port_min, p.port_max = port_range
        p.ttl = ttl
        p.udp_checksum = udp_checksum
        p.max_ports, p.max_segments, p.max_remotes = max_ports, max_segments, max_remotes
        self.e = vtep_engine_new(&p, &err)
        if self.e == NULL:
            check(err)
        self.w = vtep_worker_new(self.e)
        self.probe = vtep_worker_new_probe(self.e)
        if self.w == NULL or self.probe == NULL:
            raise MemoryError()
        self.local = ipaddress.ip_address(local)
        self.destination_port = destination_port
        self._fanout = {}
        self._port_segment = {}

    def __dealloc__(self):
        vtep_engine_free(self.e)  # frees the worker too

    def set_underlay(self, mac, int mtu):
        cdef uint8_t m[6]
        copy_mac(m, mac)
        check(vtep_engine_set_underlay(self.e, m, mtu))

    def add_segment(self, encapsulation, uint32_t vni, isolated_vni=None, communities=(), *,
                    bint mac_learning=True, uint32_t fdb_ageing_sec=300,
                    uint32_t maximum_fdb_entries=65536):
        """Returns the segment id; "communities" lists the community VNIs,
        community index i being communities[i]."""
        cdef vtep_segment_params_t p
        memset(&p, 0, sizeof(p))
        p.encapsulation = ENCAPSULATIONS.index(encapsulation)
        p.vni = vni
        p.isolated_vni = VTEP_VNI_NONE if isolated_vni is None else isolated_vni
        communities = list(communities)
        if len(communities) > VTEP_MAX_COMMUNITIES:
            raise ValueError(f"at most {VTEP_MAX_COMMUNITIES} communities")
        p.n_communities = len(communities)
        for i, c in enumerate(communities):
            p.community_vni[i] = c
        p.mac_learning = mac_learning
        p.fdb_ageing_sec = fdb_ageing_sec
        p.maximum_fdb_entries = maximum_fdb_entries
        seg = check(vtep_segment_add(self.e, &p))
        self._fanout[seg] = 0
        return seg

    def del_segment(self, uint32_t seg):
        check(vtep_segment_del(self.e, seg))
        del self._fanout[seg]

    def add_remote(self, address):
        cdef vtep_addr_t a = to_addr(address)
        return check(vtep_remote_add(self.e, &a))

    def set_neighbour(self, uint32_t remote, mac):
        """Next-hop MAC of a remote VTEP; None marks it unresolved."""
        cdef uint8_t m[6]
        if mac is None:
            check(vtep_remote_set_neighbour(self.e, remote, NULL))
        else:
            copy_mac(m, mac)
            check(vtep_remote_set_neighbour(self.e, remote, m))

    def segment_add_remote(self, uint32_t seg, uint32_t remote):
        check(vtep_segment_add_remote(self.e, seg, remote))
        self._fanout[seg] += 1

    def segment_del_remote(self, uint32_t seg, uint32_t remote):
        check(vtep_segment_del_remote(self.e, seg, remote))
        self._fanout[seg] -= 1

    def pause(self):
        """Hold every worker loop between bursts until resume(): changes
        made meanwhile take effect together.  Nests.  Prefer paused()."""
        vtep_engine_pause(self.e)

    def resume(self):
        vtep_engine_resume(self.e)

    def paused(self):
        return _Paused(self)

    def add_port(self, uint32_t seg, role, community=None):
        port = check(vtep_port_add(self.e, seg, pvlan_class(role, community)))
        self._fanout[seg] += 1
        self._port_segment[port] = seg
        return port

    def del_port(self, uint32_t port):
        check(vtep_port_del(self.e, port))
        self._fanout[self._port_segment.pop(port)] -= 1

    def set_bum_limit(self, uint32_t port, uint32_t rate, uint32_t burst=0):
        """At most "rate" broadcast, unknown unicast and multicast frames a
        second from access "port", in bursts of up to "burst" (0: a tenth of
        a second's worth); rate 0: no limit."""
        check(vtep_port_set_bum_limit(self.e, port, rate, burst))

    def fdb_add(self, uint32_t seg, mac, *, port=None, remote=None, role=None, community=None,
                bint static=True, uint32_t last_seen=0):
        """A MAC behind local "port" or behind "remote" (with its "role" if known)."""
        cdef vtep_fdb_entry_t en
        if (port is None) == (remote is None):
            raise ValueError("give exactly one of port and remote")
        memset(&en, 0, sizeof(en))
        copy_mac(en.mac, mac)
        en.kind = VTEP_FDB_LOCAL if remote is None else VTEP_FDB_REMOTE
        en.target = port if remote is None else remote
        en.pvlan_class = VTEP_CLASS_UNKNOWN if role is None else pvlan_class(role, community)
        en.is_static = static
        en.last_seen = last_seen
        check(vtep_fdb_add(self.e, seg, &en))

    def fdb_add_many(self, uint32_t seg, macs, *, port=None, remote=None, role=None, community=None):
        """Static entries for every MAC of "macs", all behind the same local
        "port" or "remote" (and "role"), as fdb_add makes them one by one;
        returns how many were added.  On a refused entry, VtepError (or
        ValueError for a malformed MAC) with "added" set to the entries
        added before it."""
        cdef vtep_fdb_entry_t en
        cdef int rc
        cdef Py_ssize_t added = 0
        if (port is None) == (remote is None):
            raise ValueError("give exactly one of port and remote")
        memset(&en, 0, sizeof(en))
        en.kind = VTEP_FDB_LOCAL if remote is None else VTEP_FDB_REMOTE
        en.target = port if remote is None else remote
        en.pvlan_class = VTEP_CLASS_UNKNOWN if role is None else pvlan_class(role, community)
        en.is_static = True
        try:
            for mac in macs:
                copy_mac_fast(en.mac, mac)
                rc = vtep_fdb_add(self.e, seg, &en)
                if rc < 0:
                    check(rc)
                added += 1
        except (VtepError, ValueError) as e:
            e.added = added
            raise
        return added

    def fdb_del(self, uint32_t seg, mac):
        cdef uint8_t m[6]
        copy_mac(m, mac)
        check(vtep_fdb_del(self.e, seg, m))

    def fdb_get(self, uint32_t seg, mac, uint32_t now=0):
        """The live entry for "mac" as a dict, or None."""
        cdef vtep_fdb_entry_t en
        cdef uint8_t m[6]
        copy_mac(m, mac)
        if vtep_fdb_get(self.e, seg, m, now, &en) < 0:
            return None
        return _entry_dict(&en)

    def fdb_flush(self, uint32_t seg, bint with_static=False):
        return check(vtep_fdb_flush(self.e, seg, with_static))

    def fdb_expire(self, uint32_t seg, uint32_t now):
        return check(vtep_fdb_expire(self.e, seg, now))

    def fdb_count(self, uint32_t seg):
        return check(vtep_fdb_count(self.e, seg))

    def fdb_entries(self, uint32_t seg):
        cdef vtep_fdb_entry_t chunk[256]
        cdef uint64_t cursor = 0
        entries = []
        while True:
            n = check(vtep_fdb_dump(self.e, seg, &cursor, chunk, 256))
            if n == 0:
                return entries
            entries.extend(_entry_dict(&chunk[i]) for i in range(n))

    def counters(self, kind, uint32_t id=0):
        """Counters of a "port", the "underlay" or a "segment", summed over
        workers: a dict, with "drops" a list indexed by drop reason."""
        cdef vtep_counters_t c
        kinds = {"port": VTEP_COUNTERS_PORT, "underlay": VTEP_COUNTERS_UNDERLAY,
                 "segment": VTEP_COUNTERS_SEGMENT}
        check(vtep_counters_read(self.e, kinds[kind], id, &c))
        return {"rx_packets": c.rx_packets, "rx_bytes": c.rx_bytes,
                "tx_packets": c.tx_packets, "tx_bytes": c.tx_bytes,
                "learn_refused": c.learn_refused, "forwarded": c.forwarded,
                "drops": [c.drops[i] for i in range(VTEP_DROP_COUNT)]}

    cdef vtep_worker_t *_worker(self, uint32_t now, bint probe, clock_ns):
        """The worker to run on, its rate-limit clock set: "clock_ns", or by
        default "now" in nanoseconds (tests drive both clocks)."""
        cdef vtep_worker_t *w = self.probe if probe else self.w
        vtep_worker_set_clock(w, <uint64_t>now * 1000000000 if clock_ns is None else clock_ns)
        return w

    def access_burst(self, uint32_t port, Burst burst, uint32_t now=0, bint probe=False, clock_ns=None):
        """Run the burst's frames as received on access "port"; returns the
        number of outputs.  Runs without the GIL.  A "probe" run learns
        nothing and counts nothing: it only answers what would happen."""
        cdef int rc
        cdef vtep_worker_t *w = self._worker(now, probe, clock_ns)
        with nogil:
            rc = vtep_access_burst(w, port, burst.pkts, burst.n, now, burst.outs,
                                   burst.max_out, burst._verdicts)
        burst.n_out = check(rc)
        return rc

    def underlay_burst(self, Burst burst, uint32_t now=0, bint probe=False, clock_ns=None):
        cdef int rc
        cdef vtep_worker_t *w = self._worker(now, probe, clock_ns)
        with nogil:
            rc = vtep_underlay_burst(w, burst.pkts, burst.n, now, burst.outs, burst.max_out,
                                     burst._verdicts)
        burst.n_out = check(rc)
        return rc

    def access(self, uint32_t port, frames, uint32_t now=0, bint probe=False, clock_ns=None):
        """Convenience for tests and tools: run "frames" from "port" and return
        (verdicts, outputs) as Burst.verdicts and Burst.outputs() give them.
        There is room for every copy, so nothing is lost as ring_full."""
        burst = self._burst_for(frames)
        self.access_burst(port, burst, now, probe, clock_ns)
        return burst.verdicts, burst.outputs()

    def underlay(self, frames, uint32_t now=0, flags=None, bint probe=False, clock_ns=None):
        burst = self._burst_for(frames, flags)
        self.underlay_burst(burst, now, probe, clock_ns)
        return burst.verdicts, burst.outputs()

    def _burst_for(self, frames, flags=None):
        n = max(len(frames), 1)
        burst = Burst(n, n * max(1, max(self._fanout.values(), default=0)))
        burst.load(frames, flags)
        return burst


class _Paused:
    def __init__(self, engine):
        self.engine = engine

    def __enter__(self):
        self.engine.pause()
        return self.engine

    def __exit__(self, *exc):
        self.engine.resume()


cdef class Io:
    """One packet I/O handle (an AF_PACKET socket with its rings, or a TAP
    queue), open and not yet given to a loop.  Loop.attach_* takes it over;
    until then, dropping it closes it."""
    cdef vtep_io_t *io
    cdef readonly str ifname

    def __dealloc__(self):
        vtep_io_close(self.io)

    cdef vtep_io_t *take(self) except NULL:
        if self.io == NULL:
            raise ValueError(f"the handle on {self.ifname} is already attached")
        cdef vtep_io_t *io = self.io
        self.io = NULL
        return io


def open_afpacket(ifname, *, bint underlay=False, local=None, uint16_t destination_port=4789,
                  uint16_t fanout_group=0, uint32_t frame_size=0, uint32_t frames=0, bint offload=False):
    """AF_PACKET rings on existing link "ifname".  An access port takes every
    frame (promiscuous), the underlay only tunnel traffic for "local" and
    "destination_port".  With "offload", a port takes frames with checksums
    and segmentation left to do, and the underlay takes and sends UDP
    super-packets (csrc/offload.h).  Several handles on one link share its
    traffic when they join the same nonzero "fanout_group"."""
    cdef vtep_afpacket_params_t p
    cdef int err = 0
    cdef bytes name = os.fsencode(ifname)
    memset(&p, 0, sizeof(p))
    p.ifname = name
    p.fanout_group = fanout_group
    p.frame_size = frame_size
    p.frames = frames
    if underlay:
        p.tunnel_only = 1
        p.local = to_addr(local)
        p.destination_port = destination_port
    else:
        p.promiscuous = 1
    p.offload = offload
    cdef Io handle = Io.__new__(Io)
    handle.ifname = ifname
    handle.io = vtep_io_afpacket_open(&p, &err)
    if handle.io == NULL:
        raise OSError(-err, f"AF_PACKET on {ifname}: {os.strerror(-err)}")
    return handle


def stack_bypass(ifname, local, uint16_t destination_port):
    """Keep the tunnel packets for "local" and "destination_port" that
    arrive on "ifname" out of the kernel's IP stack once the packet sockets
    have had them (csrc/tunnel_bpf.h).  Returns the BPF link's file
    descriptor: closing it ends the bypass.  OSError if the kernel will not
    have it (before Linux 6.6, without CAP_BPF)."""
    cdef vtep_addr_t a = to_addr(local)
    cdef int rc = vtep_stack_bypass(socket.if_nametoindex(ifname), &a, destination_port)
    if rc < 0:
        raise OSError(-rc, f"tcx program on {ifname}: {os.strerror(-rc)}")
    return rc


def open_tap(ifname, *, bint multiqueue=False, uint32_t frame_size=0):
    """A queue of TAP "ifname", created if missing (it lives while a queue
    of it is open)."""
    cdef int err = 0
    cdef bytes name = os.fsencode(ifname)
    cdef Io handle = Io.__new__(Io)
    handle.ifname = ifname
    handle.io = vtep_io_tap_open(name, multiqueue, frame_size, &err)
    if handle.io == NULL:
        raise OSError(-err, f"TAP {ifname}: {os.strerror(-err)}")
    return handle


cdef class Loop:
    """A worker thread in C that polls its ports' I/O handles and the
    underlay's and runs their bursts through "engine", without the GIL.
    It owns the handles it is given and closes them on detach() or when it
    is freed."""
    cdef vtep_loop_t *l
    cdef readonly Engine engine  # the engine must outlive its loops

    def __cinit__(self, Engine engine, uint32_t burst=64):
        cdef int err = 0
        self.engine = engine
        self.l = vtep_loop_new(engine.e, burst, &err)
        if self.l == NULL:
            check(err)

    def __dealloc__(self):
        if self.l != NULL:
            with nogil:
                vtep_loop_free(self.l)

    cdef vtep_loop_t *open_loop(self) except NULL:
        if self.l == NULL:
            raise ValueError("the loop is closed")
        return self.l

    def attach_port(self, uint32_t port, Io handle):
        """Handle "handle" as access port "port" on this loop."""
        cdef vtep_loop_t *l = self.open_loop()
        cdef vtep_io_t *io = handle.take()
        rc = vtep_loop_attach_port(l, port, io)
        if rc < 0:
            vtep_io_close(io)
            check(rc)

    def attach_underlay(self, Io handle):
        cdef vtep_loop_t *l = self.open_loop()
        cdef vtep_io_t *io = handle.take()
        rc = vtep_loop_attach_underlay(l, io)
        if rc < 0:
            vtep_io_close(io)
            check(rc)

    def detach_port(self, uint32_t port):
        """Close the port's handle on this loop."""
        check(vtep_loop_detach_port(self.open_loop(), port))

    def start(self):
        check(vtep_loop_start(self.open_loop()))

    def stop(self):
        cdef vtep_loop_t *l = self.open_loop()
        with nogil:
            vtep_loop_stop(l)

    def close(self):
        """Stop the thread and close every handle now."""
        if self.l != NULL:
            with nogil:
                vtep_loop_free(self.l)
            self.l = NULL


cdef dict _entry_dict(vtep_fdb_entry_t *en):
    role, community = role_of_class(en.pvlan_class)
    return {"mac": mac_str(en.mac[:6]),
            "kind": "remote" if en.kind == VTEP_FDB_REMOTE else "local",
            "target": en.target, "static": bool(en.is_static),
            "role": role, "community": community, "last_seen": en.last_seen}
