"""A pure-Python reference model of vtep: the oracle the C engine is tested
against (tests/unit/test_differential.py).

Written from RFC 7348 (VXLAN), RFC 7637 (NVGRE), RFC 5517 (private VLANs),
RFC 791/8200/768/1071 and /work/shared/DESIGN.md sections 2-4, with plain
struct packing and dicts: slow and obvious on purpose.  Where the C engine's
behaviour is a choice the spec leaves open (the order in which a frame's
checks run, which copy's reason becomes a flood's verdict, where counters go),
the model makes the same choice, so that a difference means a bug; those
places say so.  Standard library only.

The API follows dataplane._engine.Engine loosely: add_segment, add_port,
add_remote, set_neighbour, segment_add_remote, fdb_add, fdb_entries,
fdb_expire, access, underlay, counters.  Errors are OSError with the errno
the engine uses."""
import errno
import ipaddress
import struct
from dataclasses import dataclass, field

# Drop reasons in the counters' ABI order (csrc/vtep_error.def); index 0 is "none".
DROP_REASONS = (
    "none", "runt", "bad_header", "ip_options", "fragment", "bad_checksum", "bad_flags",
    "not_tunnel", "not_local", "unknown_vni", "unknown_remote", "vlan_tagged", "bad_src_mac",
    "no_port", "pvlan_deny", "no_destination", "hairpin", "split_horizon", "mtu",
    "no_neighbour", "ring_full", "foreign_src_mac", "bum_rate_limit",
)
DROP = {name: i for i, name in enumerate(DROP_REASONS)}

# PVLAN classes: community c (0-based) is COMMUNITY + c.
UNKNOWN, PROMISCUOUS, ISOLATED, COMMUNITY = 0, 1, 2, 3
MAX_COMMUNITIES = 64

ETH_IPV4, ETH_IPV6, ETH_TEB = 0x0800, 0x86DD, 0x6558
VLAN_TPIDS = (0x8100, 0x88A8)
PROTO_TCP, PROTO_UDP, PROTO_GRE = 6, 17, 47
IPV6_EXTENSIONS = (0, 43, 44, 50, 51, 60)  # hop-by-hop, routing, fragment, ESP, AH, dst opts
PKT_CSUM_OK = 1  # vtep.h VTEP_PKT_CSUM_OK: the kernel vouched for the UDP checksum
VXLAN_I = 0x08
GRE_K = 0x2000
VNI_MAX = 0xFFFFFF
M32 = 0xFFFFFFFF
BUM_RATE_MAX = 10_000_000  # vtep.h VTEP_BUM_RATE_MAX


def pvlan_class(role, community=None):
    if role is None:
        return UNKNOWN
    if role == "community":
        return COMMUNITY + community
    return {"promiscuous": PROMISCUOUS, "isolated": ISOLATED}[role]


def role_of_class(cls):
    if cls == UNKNOWN:
        return None, None
    if cls == PROMISCUOUS:
        return "promiscuous", None
    if cls == ISOLATED:
        return "isolated", None
    return "community", cls - COMMUNITY


def pvlan_allows(frm, to):
    """RFC 5517, DESIGN.md section 2.  An unknown role (a remote MAC no one
    told us about) is let through: the receiving VTEP knows it and decides."""
    if frm == UNKNOWN or to == UNKNOWN:
        return True
    if frm == PROMISCUOUS or to == PROMISCUOUS:
        return True
    if frm == ISOLATED or to == ISOLATED:
        return False
    return frm == to  # two communities: only the same one


def mac_bytes(mac):
    return bytes.fromhex(mac.replace(":", "")) if isinstance(mac, str) else bytes(mac)


def mac_str(raw):
    return ":".join(f"{b:02x}" for b in raw)


def is_multicast(mac):
    return mac[0] & 1 == 1


def be16(b, off=0):
    return struct.unpack_from("!H", b, off)[0]


def be32(b, off=0):
    return struct.unpack_from("!I", b, off)[0]


def checksum(data):
    """RFC 1071: one's complement of the one's complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


# ---- flow hash: mirrors vtep_flow_hash_inline() in csrc/tunnel.h bit for bit ----

def _mix(h, w):
    h = ((h ^ w) * 0x9E3779B1) & M32
    return h ^ (h >> 16)


def _mix_words(h, b):
    for i in range(0, len(b), 4):
        h = _mix(h, be32(b, i))
    return h


def flow_hash(frame):
    frame = bytes(frame)
    h = 0x2545F491
    if len(frame) < 14:
        return h
    h = _mix_words(h, frame[:12])  # both MACs
    etype = be16(frame, 12)
    h = _mix(h, etype)
    l3 = frame[14:]
    if etype == ETH_IPV4 and len(l3) >= 20:
        h = _mix_words(h, l3[12:20])  # source and destination address
        proto = l3[9]
        if be16(l3, 6) & 0x3FFF:  # MF or an offset: a fragment has no ports to hash
            proto = 0
        l4 = l3[(l3[0] & 0xF) * 4:]  # IHL taken as is, even if below 5
    elif etype == ETH_IPV6 and len(l3) >= 40:
        h = _mix_words(h, l3[8:40])
        proto = l3[6]
        l4 = l3[40:]
    else:
        proto = None
    if proto is not None:
        h = _mix(h, proto)
        if proto in (PROTO_TCP, PROTO_UDP) and len(l4) >= 4:
            h = _mix(h, be32(l4))  # both ports
    h ^= h >> 13
    h = (h * 0x85EBCA6B) & M32
    return h ^ (h >> 16)


def source_port(hash_, port_range):
    """VXLAN UDP source port: the hash scaled into the range (no modulo bias)."""
    lo, hi = port_range
    return lo + ((hash_ * (hi - lo + 1)) >> 32)


def flow_id(hash_):
    return hash_ & 0xFF


# ---- encapsulation, from the RFCs ----

@dataclass(frozen=True)
class TunnelParams:
    encapsulation: str  # "vxlan" | "nvgre"
    local: str
    remote: str
    src_mac: str = "02:00:00:00:00:01"
    dst_mac: str = "02:00:00:00:00:02"
    destination_port: int = 4789
    port_range: tuple = (49152, 65535)
    ttl: int = 64
    udp_checksum: bool = False  # IPv4 only; IPv6 always computes it


def inner_dscp(frame):
    """DSCP of the inner IP header as a TOS byte with the ECN bits clear, or 0."""
    if len(frame) < 16:
        return 0
    etype = be16(frame, 12)
    if etype == ETH_IPV4:
        return frame[15] & 0xFC
    if etype == ETH_IPV6:
        return (be16(frame, 14) >> 4) & 0xFC  # traffic class sits in bits 4..11 of the first word
    return 0


def _pseudo_header(src, dst, proto, length):
    if len(src) == 4:  # RFC 768
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!I3xB", length, proto)  # RFC 8200 section 8.1


def encap(p, vni, frame):
    """The underlay Ethernet frame carrying "frame" with VNI/VSID "vni"."""
    frame = bytes(frame)
    src = ipaddress.ip_address(p.local).packed
    dst = ipaddress.ip_address(p.remote).packed
    v6 = len(src) == 16
    h = flow_hash(frame)
    dscp = inner_dscp(frame)
    if p.encapsulation == "vxlan":
        proto = PROTO_UDP
        vxlan = struct.pack("!B3xI", VXLAN_I, vni << 8)  # flags, reserved, VNI, reserved
        length = 8 + len(vxlan) + len(frame)
        udp = struct.pack("!HHHH", source_port(h, p.port_range), p.destination_port, length, 0)
        l4 = udp + vxlan + frame
        if v6 or p.udp_checksum:
            c = checksum(_pseudo_header(src, dst, proto, length) + l4) or 0xFFFF  # 0 means none
            l4 = l4[:6] + struct.pack("!H", c) + l4[8:]
    else:
        proto = PROTO_GRE
        l4 = struct.pack("!HHI", GRE_K, ETH_TEB, vni << 8 | flow_id(h)) + frame
    if v6:
        ip = struct.pack("!IHBB", 6 << 28 | dscp << 20, len(l4), proto, p.ttl) + src + dst
        etype = ETH_IPV6
    else:
        ip = struct.pack("!BBHHHBBH", 0x45, dscp, 20 + len(l4), 0, 0x4000, p.ttl, proto, 0) + src + dst
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]  # DF set, ID 0 (RFC 6864)
        etype = ETH_IPV4
    return mac_bytes(p.dst_mac) + mac_bytes(p.src_mac) + struct.pack("!H", etype) + ip + l4


# ---- strict decapsulation ----

@dataclass(frozen=True)
class Decapsulated:
    encapsulation: str
    vni: int
    inner: bytes
    src: object  # ipaddress address: the sending VTEP
    dst: object
    source_port: int  # VXLAN only, else 0
    flow_id: int  # NVGRE only, else 0
    tos: int
    ttl: int


def _is_tunnel(l4, proto, destination_port):
    """UDP to our port, or GRE carrying Ethernet: traffic that is ours to refuse."""
    if len(l4) < 4:
        return False
    if proto == PROTO_UDP:
        return be16(l4, 2) == destination_port
    return proto == PROTO_GRE and be16(l4, 2) == ETH_TEB


def _ipv6_extensions(rest, nh, destination_port):
    """Tunnel traffic behind IPv6 extension headers is refused (ip_options,
    or fragment); the host's own (MLD has hop-by-hop options) is not_tunnel."""
    why = "ip_options"
    for _ in range(8):
        if nh not in IPV6_EXTENSIONS:
            break
        if nh == 50 or len(rest) < 8:  # ESP, or cut short: cannot tell
            return "not_tunnel"
        if nh == 44:  # fragment header
            if be16(rest, 2) & 0xFFF8:
                return "not_tunnel"  # a later fragment: no upper header to see
            why, size = "fragment", 8
        elif nh == 51:  # AH counts 4-byte words
            size = (rest[1] + 2) * 4
        else:
            size = (rest[1] + 1) * 8
        if len(rest) < size:
            return "not_tunnel"
        nh, rest = rest[0], rest[size:]
    return why if _is_tunnel(rest, nh, destination_port) else "not_tunnel"


def decap(pkt, destination_port=4789, verify_udp=True):
    """(None, Decapsulated) or (drop reason name, None).  What is checked
    follows DESIGN.md section 3 and the RFCs; the order of the checks (which
    reason wins when several apply) is the C's, vtep_decap_inline().
    "verify_udp" False: the kernel vouched for the UDP checksum."""
    pkt = bytes(pkt)
    if len(pkt) < 14:
        return "runt", None
    etype = be16(pkt, 12)
    l3 = pkt[14:]  # may include Ethernet padding
    if etype == ETH_IPV4:
        if len(l3) < 20:
            return "runt", None
        version, hlen = l3[0] >> 4, (l3[0] & 0xF) * 4
        if version != 4 or hlen < 20:
            return "bad_header", None
        proto = l3[9]
        if proto not in (PROTO_UDP, PROTO_GRE):
            return "not_tunnel", None
        if len(l3) < hlen:
            return "runt", None
        total = be16(l3, 2)
        if not hlen <= total <= len(l3):
            return "bad_header", None
        if checksum(l3[:hlen]) != 0:
            return "bad_checksum", None
        frag = be16(l3, 6)
        if hlen != 20 or frag & 0x3FFF:  # options, MF or a fragment offset
            # Refused on tunnel traffic; a later fragment shows no upper header.
            if frag & 0x1FFF or not _is_tunnel(l3[hlen:total], proto, destination_port):
                return "not_tunnel", None
            return ("ip_options" if hlen != 20 else "fragment"), None
        src, dst = l3[12:16], l3[16:20]
        tos, ttl = l3[1], l3[8]
        l4 = l3[20:total]
    elif etype == ETH_IPV6:
        if len(l3) < 40:
            return "runt", None
        if l3[0] >> 4 != 6:
            return "bad_header", None
        proto = l3[6]
        if proto in IPV6_EXTENSIONS:
            return _ipv6_extensions(l3[40:], proto, destination_port), None
        if proto not in (PROTO_UDP, PROTO_GRE):
            return "not_tunnel", None
        plen = be16(l3, 4)
        if plen > len(l3) - 40:
            return "bad_header", None
        src, dst = l3[8:24], l3[24:40]
        tos, ttl = (be16(l3, 0) >> 4) & 0xFF, l3[7]
        l4 = l3[40:40 + plen]
    else:
        return "not_tunnel", None

    if proto == PROTO_UDP:
        if len(l4) < 8:
            return "runt", None
        sport, dport, ulen, csum = struct.unpack_from("!HHHH", l4)
        if dport != destination_port:
            return "not_tunnel", None
        if ulen != len(l4):
            return "bad_header", None
        # Zero means "no checksum": IPv4 may omit it, and so may tunnels over
        # IPv6 (RFC 6935; DESIGN.md: accept 0, verify a nonzero one).
        if csum != 0 and verify_udp and checksum(_pseudo_header(src, dst, PROTO_UDP, len(l4)) + l4) != 0:
            return "bad_checksum", None
        if len(l4) < 16:
            return "runt", None
        # Strict: exactly the I flag, every reserved bit clear (vxlan.h says why).
        if l4[8] != VXLAN_I or l4[9:12] != b"\0\0\0" or l4[15] != 0:
            return "bad_flags", None
        enc, vni, fid, inner = "vxlan", be32(l4, 12) >> 8, 0, l4[16:]
    else:
        if len(l4) < 4:
            return "runt", None
        if be16(l4, 2) != ETH_TEB:
            return "not_tunnel", None
        if be16(l4, 0) != GRE_K:  # K set; C, S, reserved and version all zero
            return "bad_flags", None
        if len(l4) < 8:
            return "runt", None
        key = be32(l4, 4)
        enc, vni, fid, inner, sport = "nvgre", key >> 8, key & 0xFF, l4[8:], 0
    if len(inner) < 14:
        return "runt", None
    return None, Decapsulated(enc, vni, inner, ipaddress.ip_address(src), ipaddress.ip_address(dst),
                              sport, fid, tos, ttl)


# ---- the engine ----

def _err(code):
    return OSError(code, errno.errorcode.get(code, "?"))


def new_counters():
    return {"rx_packets": 0, "rx_bytes": 0, "tx_packets": 0, "tx_bytes": 0, "learn_refused": 0,
            "forwarded": 0,  # counted by worker loops only, never by a bare burst
            "drops": [0] * len(DROP_REASONS)}


@dataclass
class Entry:
    kind: str  # "local" (target: port id) or "remote" (target: remote id)
    target: int
    static: bool
    cls: int
    last_seen: int


@dataclass
class Segment:
    encapsulation: str
    class_vni: dict  # class -> VNI
    mac_learning: bool
    ageing: int
    limit: int
    ports: list = field(default_factory=list)  # flood order: the order ports were added
    remotes: list = field(default_factory=list)  # head-end replication list, in order added
    fdb: dict = field(default_factory=dict)  # MAC bytes -> Entry, aged ones kept until expired

    def live(self, e, now):
        # uint32 clock: "now" before "last_seen" reads as very old, as in C.
        return e.static or self.ageing == 0 or (now - e.last_seen) & M32 <= self.ageing

    def lookup(self, mac, now):
        e = self.fdb.get(mac)
        return e if e is not None and self.live(e, now) else None

    def claim(self, mac, kind, target, cls, now):
        """The MAC-move policy (docs/fastpath.md): "foreign" if a live entry
        gives the MAC another role (an entry of unknown role claims none),
        "refused" if a static entry holds it elsewhere, else "ok"."""
        e = self.lookup(mac, now)
        if e is None:
            return "ok"
        if e.cls not in (UNKNOWN, cls):
            return "foreign"
        if e.static and (e.kind, e.target) != (kind, target):
            return "refused"  # a static entry never moves
        return "ok"

    def learn(self, mac, kind, target, cls, now):
        """claim(), and on "ok" the entry learned, refreshed or moved within
        its role; "refused" too when the table is full.  Aged entries still
        take room until expired (vtep.h: count holds them)."""
        verdict = self.claim(mac, kind, target, cls, now)
        e = self.fdb.get(mac)
        if verdict != "ok" or (e is not None and e.static):
            return verdict
        if e is None and len(self.fdb) >= self.limit:
            return "refused"
        self.fdb[mac] = Entry(kind, target, False, cls, now)  # new, refreshed, moved, or an aged one reused
        return "ok"


class _Burst:
    """Outputs of one burst, with the room dataplane._engine.Engine.access
    gives: per frame, as many copies as the largest segment can make."""

    def __init__(self, n, fanout):
        self.max_out = max(n, 1) * max(1, fanout)
        self.outs = []
        self.pkt = 0


class Model:
    def __init__(self, local, *, underlay_mac="02:00:00:00:00:00", underlay_mtu=1500,
                 destination_port=4789, port_range=(49152, 65535), ttl=64, udp_checksum=False,
                 max_ports=1024, max_segments=256, max_remotes=1024):
        self.local = ipaddress.ip_address(local)
        self.underlay_mac = mac_str(mac_bytes(underlay_mac))
        self.underlay_mtu = underlay_mtu
        self.destination_port = destination_port
        self.port_range = tuple(port_range)
        self.ttl = ttl
        self.udp_checksum = udp_checksum
        self.max_ports, self.max_segments, self.max_remotes = max_ports, max_segments, max_remotes
        self.segments = {}  # id -> Segment
        self.ports = {}  # id -> (segment id, class)
        self.remotes = []  # id -> [address, next hop MAC or None]
        self.vnis = {}  # (encapsulation, vni) -> (segment id, sender class)
        self.counter_blocks = {}
        self.bum = {}  # port id -> [interval ns, tolerance ns, theoretical arrival time ns]

    # -- tables --

    def add_segment(self, encapsulation, vni, isolated_vni=None, communities=(), *, mac_learning=True,
                    fdb_ageing_sec=300, maximum_fdb_entries=65536):
        class_vni = {PROMISCUOUS: vni}
        if isolated_vni is not None:
            class_vni[ISOLATED] = isolated_vni
        for i, c in enumerate(communities):
            class_vni[COMMUNITY + i] = c
        values = list(class_vni.values())
        if maximum_fdb_entries == 0 or any(v > VNI_MAX for v in values):
            raise _err(errno.EINVAL)
        if len(set(values)) != len(values) or any((encapsulation, v) in self.vnis for v in values):
            raise _err(errno.EEXIST)
        sid = next((i for i in range(self.max_segments) if i not in self.segments), None)
        if sid is None:
            raise _err(errno.ENOSPC)
        self.segments[sid] = Segment(encapsulation, class_vni, mac_learning, fdb_ageing_sec,
                                     maximum_fdb_entries)
        for cls, v in class_vni.items():
            self.vnis[(encapsulation, v)] = (sid, cls)
        return sid

    def add_remote(self, address):
        ip = ipaddress.ip_address(address)
        if ip.version != self.local.version:
            raise _err(errno.EINVAL)
        for rid, (addr, _) in enumerate(self.remotes):
            if addr == ip:
                return rid
        if len(self.remotes) == self.max_remotes:
            raise _err(errno.ENOSPC)
        self.remotes.append([ip, None])
        return len(self.remotes) - 1

    def set_neighbour(self, remote, mac):
        if remote >= len(self.remotes):
            raise _err(errno.ENOENT)
        self.remotes[remote][1] = None if mac is None else mac_str(mac_bytes(mac))

    def set_underlay(self, mac, mtu):
        if mtu < 68:
            raise _err(errno.EINVAL)
        self.underlay_mac, self.underlay_mtu = mac_str(mac_bytes(mac)), mtu

    def segment_add_remote(self, seg, remote):
        if seg not in self.segments or remote >= len(self.remotes):
            raise _err(errno.ENOENT)
        if remote in self.segments[seg].remotes:
            raise _err(errno.EEXIST)
        self.segments[seg].remotes.append(remote)

    def add_port(self, seg, role, community=None):
        cls = pvlan_class(role, community)
        if seg not in self.segments:
            raise _err(errno.ENOENT)
        if cls not in self.segments[seg].class_vni:
            raise _err(errno.EINVAL)
        pid = next((i for i in range(self.max_ports) if i not in self.ports), None)
        if pid is None:
            raise _err(errno.ENOSPC)
        self.ports[pid] = (seg, cls)
        self.segments[seg].ports.append(pid)
        self.bum.pop(pid, None)
        return pid

    def set_bum_limit(self, port, rate, burst=0):
        """GCRA, a token bucket as a schedule: a BUM frame passes when the
        schedule runs at most (burst - 1) intervals ahead of now."""
        if port not in self.ports:
            raise _err(errno.ENOENT)
        if rate > BUM_RATE_MAX:
            raise _err(errno.EINVAL)
        if rate == 0:
            self.bum.pop(port, None)
            return
        burst = burst or max(rate // 10, 1)
        interval = (1_000_000_000 + rate // 2) // rate
        self.bum[port] = [interval, (burst - 1) * interval, 0]

    def _bum_admit(self, port, now_ns):
        limit = self.bum.get(port)
        if limit is None:
            return True
        interval, tolerance, tat = limit
        due = max(tat, now_ns)
        if due - now_ns > tolerance:
            return False
        limit[2] = due + interval
        return True

    def fdb_add(self, seg, mac, *, port=None, remote=None, role=None, community=None, static=True,
                last_seen=0):
        if (port is None) == (remote is None):
            raise ValueError("give exactly one of port and remote")
        s = self.segments.get(seg)
        if s is None:
            raise _err(errno.ENOENT)
        raw = mac_bytes(mac)
        if is_multicast(raw) or raw == bytes(6):
            raise _err(errno.EINVAL)
        if port is not None:
            if self.ports.get(port, (None,))[0] != seg:
                raise _err(errno.EINVAL)
            kind, target, cls = "local", port, self.ports[port][1]  # a local MAC has its port's role
        else:
            if remote >= len(self.remotes):
                raise _err(errno.EINVAL)
            kind, target, cls = "remote", remote, pvlan_class(role, community)
        if raw not in s.fdb and len(s.fdb) >= s.limit:
            raise _err(errno.ENOSPC)
        s.fdb[raw] = Entry(kind, target, bool(static), cls, last_seen)

    def _segment(self, seg):
        if seg not in self.segments:
            raise _err(errno.ENOENT)
        return self.segments[seg]

    def fdb_entries(self, seg):
        out = []
        for raw, e in self._segment(seg).fdb.items():
            role, community = role_of_class(e.cls)
            out.append({"mac": mac_str(raw), "kind": e.kind, "target": e.target, "static": e.static,
                        "role": role, "community": community, "last_seen": e.last_seen})
        return out

    def fdb_expire(self, seg, now):
        s = self._segment(seg)
        aged = [m for m, e in s.fdb.items() if not s.live(e, now)]
        for m in aged:
            del s.fdb[m]
        return len(aged)

    def fdb_count(self, seg):
        return len(self._segment(seg).fdb)

    def counters(self, kind, id=0):
        if kind == "port" and id >= self.max_ports or kind == "segment" and id >= self.max_segments:
            raise _err(errno.ENOENT)
        c = self._block(kind, id)
        return dict(c, drops=list(c["drops"]))

    def _block(self, kind, id=0):
        return self.counter_blocks.setdefault((kind, 0 if kind == "underlay" else id), new_counters())

    # -- counting --

    def _drop(self, ingress, seg, why):
        """One copy that could not go out: counted on the ingress (port or
        underlay) and, once known, on the segment."""
        ingress["drops"][DROP[why]] += 1
        if seg is not None:
            seg["drops"][DROP[why]] += 1
        return why

    @staticmethod
    def _count(c, direction, nbytes):
        c[direction + "_packets"] += 1
        c[direction + "_bytes"] += nbytes

    def _too_big(self, s, frame):
        """The outer IP packet must fit the underlay MTU: outer IP header, then
        UDP + VXLAN (16) or GRE (8), then the whole inner frame.  For VXLAN
        this is DESIGN.md's 50/70 bytes counted with the outer Ethernet
        header; NVGRE's own overhead is 8 less (docs/fastpath.md)."""
        ip_header = 20 if self.local.version == 4 else 40
        tunnel_header = 16 if s.encapsulation == "vxlan" else 8
        return ip_header + tunnel_header + len(frame) > self.underlay_mtu

    def _emit_port(self, b, seg, port, frame):
        if len(b.outs) == b.max_out:
            return "ring_full"
        b.outs.append((b.pkt, "port", port, frame))
        self._count(self._block("port", port), "tx", len(frame))
        self._count(seg, "tx", len(frame))
        return None

    def _emit_remote(self, b, s, seg, rid, vni, frame):
        addr, next_hop = self.remotes[rid]
        if next_hop is None:
            return "no_neighbour"
        if len(b.outs) == b.max_out:
            return "ring_full"
        p = TunnelParams(s.encapsulation, str(self.local), str(addr), self.underlay_mac, next_hop,
                         self.destination_port, self.port_range, self.ttl, self.udp_checksum)
        pkt = encap(p, vni, frame)
        b.outs.append((b.pkt, "underlay", rid, pkt))
        self._count(self._block("underlay"), "tx", len(pkt))
        self._count(seg, "tx", len(pkt))
        return None

    def _flood(self, b, ingress, s, seg, frm, skip, frame, to_remotes):
        """Copy to every port the sender's class may reach (but "skip"), then,
        from an access port, one copy to each remote of the segment.  Verdict:
        none if a copy went out, else the reason of the last copy lost; with
        no copy at all, pvlan_deny if PVLAN refused a port, else no_destination."""
        sent, denied, lost = 0, False, None
        for q in s.ports:
            if q == skip:
                continue
            if not pvlan_allows(frm, self.ports[q][1]):
                denied = True
                continue
            why = self._emit_port(b, seg, q, frame)
            if why:
                lost = self._drop(ingress, seg, why)
            else:
                sent += 1
        if to_remotes:
            for rid in s.remotes:
                # Every copy that could not go out counts one drop, MTU ones too.
                why = "mtu" if self._too_big(s, frame) else self._emit_remote(
                    b, s, seg, rid, s.class_vni[frm], frame)
                if why:
                    lost = self._drop(ingress, seg, why)
                else:
                    sent += 1
        if sent:
            return None
        if lost:
            return lost
        return self._drop(ingress, seg, "pvlan_deny" if denied else "no_destination")

    # -- bursts --

    def _fanout(self):
        return max((len(s.ports) + len(s.remotes) for s in self.segments.values()), default=0)

    def access(self, port, frames, now=0, clock_ns=None):
        """(verdicts, outputs) as Engine.access returns them; "clock_ns" is
        the rate limits' clock, by default "now" in ns."""
        if port >= self.max_ports:
            raise _err(errno.EINVAL)
        frames = [bytes(f) for f in frames]
        b = _Burst(len(frames), self._fanout())
        ingress = self._block("port", port)
        ingress["rx_packets"] += len(frames)
        ingress["rx_bytes"] += sum(map(len, frames))
        verdicts = []
        for i, f in enumerate(frames):
            b.pkt = i
            if port not in self.ports:
                why = self._drop(ingress, None, "no_port")
            else:
                why = self._access_one(b, ingress, port, f, now, now * 10**9 if clock_ns is None else clock_ns)
            verdicts.append(DROP[why or "none"])
        return verdicts, b.outs

    def _access_one(self, b, ingress, port, f, now, now_ns):
        sid, frm = self.ports[port]
        s, seg = self.segments[sid], self._block("segment", sid)
        self._count(seg, "rx", len(f))
        if len(f) < 14:
            return self._drop(ingress, seg, "runt")
        if len(f) > 0xFFFF:
            return self._drop(ingress, seg, "mtu")  # fits no link, not even a local port
        if be16(f, 12) in VLAN_TPIDS:
            return self._drop(ingress, seg, "vlan_tagged")  # no VLAN hopping
        dst, src = f[:6], f[6:12]
        if is_multicast(src) or src == bytes(6):
            return self._drop(ingress, seg, "bad_src_mac")
        learned = s.learn(src, "local", port, frm, now) if s.mac_learning else "ok"
        if learned == "foreign":
            return self._drop(ingress, seg, "foreign_src_mac")  # a MAC of another role
        if learned == "refused":
            seg["learn_refused"] += 1
        e = None if is_multicast(dst) else s.lookup(dst, now)
        if e is None:
            if not self._bum_admit(port, now_ns):
                return self._drop(ingress, seg, "bum_rate_limit")
            return self._flood(b, ingress, s, seg, frm, port, f, True)
        if e.kind == "remote":
            # A remote MAC with a known role: forbidden unicast stops here.
            if not pvlan_allows(frm, e.cls):
                why = "pvlan_deny"
            elif self._too_big(s, f):
                why = "mtu"
            else:
                why = self._emit_remote(b, s, seg, e.target, s.class_vni[frm], f)
        elif e.target == port:
            why = "hairpin"
        elif not pvlan_allows(frm, self.ports[e.target][1]):
            why = "pvlan_deny"
        else:
            why = self._emit_port(b, seg, e.target, f)
        return self._drop(ingress, seg, why) if why else None

    def underlay(self, frames, now=0, flags=None, clock_ns=None):
        frames = [bytes(f) for f in frames]
        flags = flags or [0] * len(frames)
        b = _Burst(len(frames), self._fanout())
        ingress = self._block("underlay")
        ingress["rx_packets"] += len(frames)
        ingress["rx_bytes"] += sum(map(len, frames))
        verdicts = []
        for i, f in enumerate(frames):
            b.pkt = i
            verdicts.append(DROP[self._underlay_one(b, ingress, f, now, flags[i]) or "none"])
        return verdicts, b.outs

    def _underlay_one(self, b, ingress, f, now, flags):
        why, d = decap(f, self.destination_port, verify_udp=not flags & PKT_CSUM_OK)
        if why:
            return self._drop(ingress, None, why)
        if d.dst != self.local:
            return self._drop(ingress, None, "not_local")
        if (d.encapsulation, d.vni) not in self.vnis:
            return self._drop(ingress, None, "unknown_vni")
        sid, frm = self.vnis[(d.encapsulation, d.vni)]  # the VNI says the sender's role
        s, seg = self.segments[sid], self._block("segment", sid)
        self._count(seg, "rx", len(f))  # the segment counts wire bytes
        rid = next((r for r, (addr, _) in enumerate(self.remotes) if addr == d.src), None)
        if s.remotes and rid not in s.remotes:
            return self._drop(ingress, seg, "unknown_remote")
        inner = d.inner
        dst, src = inner[:6], inner[6:12]
        if be16(inner, 12) in VLAN_TPIDS:
            return self._drop(ingress, seg, "vlan_tagged")  # RFC 7348 section 6.1
        if is_multicast(src) or src == bytes(6):
            return self._drop(ingress, seg, "bad_src_mac")
        # Learn only from a VTEP we have an id for: we could not send to any
        # other.  The MAC-move policy holds for every sender.
        if not s.mac_learning:
            learned = "ok"
        elif rid is None:
            learned = "foreign" if s.claim(src, "remote", None, frm, now) == "foreign" else "ok"
        else:
            learned = s.learn(src, "remote", rid, frm, now)
        if learned == "foreign":
            return self._drop(ingress, seg, "foreign_src_mac")
        if learned == "refused":
            seg["learn_refused"] += 1
        e = None if is_multicast(dst) else s.lookup(dst, now)
        if e is None:
            return self._flood(b, ingress, s, seg, frm, None, inner, False)  # split horizon
        if e.kind == "remote":
            why = "split_horizon"
        elif not pvlan_allows(frm, self.ports[e.target][1]):
            why = "pvlan_deny"
        else:
            why = self._emit_port(b, seg, e.target, inner)
        return self._drop(ingress, seg, why) if why else None
