"""The vtepd configuration file (TOML; DESIGN.md section 4).

load() checks the whole file and returns a Config, or raises ConfigError
naming the first bad key ("segment[1].vni") and why.  Nothing is applied
before everything is valid.  Unknown keys are errors: a typo must not
silently turn a setting off."""
import ipaddress
import json
import re
import string
import tomllib
from dataclasses import dataclass, field

ENCAPSULATIONS = ("vxlan", "nvgre")
BACKENDS = ("tap", "afpacket")
ROLES = ("promiscuous", "isolated", "community")
VNI_MAX = (1 << 24) - 1
IFNAMSIZ = 16  # Linux interface names: at most 15 bytes
SUN_PATH_MAX = 107  # Unix socket paths: sizeof(sockaddr_un.sun_path) less the NUL
MAX_COMMUNITIES = 64  # csrc/vtep.h VTEP_MAX_COMMUNITIES
BUM_RATE_MAX = 10_000_000  # csrc/vtep.h VTEP_BUM_RATE_MAX: frames per second


class ConfigError(ValueError):
    def __init__(self, key, reason):
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class Vtep:
    underlay: str
    local: ipaddress.IPv4Address | ipaddress.IPv6Address
    destination_port: int = 4789
    port_range: tuple[int, int] = (49152, 65535)
    ttl: int = 64
    udp_checksum: bool = False
    workers: int = 1
    control_socket: str = "/run/vtepd/vtepd.sock"
    metrics: tuple[str, int] | None = None
    bum_rate_limit: int = 0  # the ports' default; 0: unlimited
    generic_segmentation_offload: bool = True  # UDP super-packets on the underlay (csrc/offload.h)


@dataclass(frozen=True)
class Segment:
    name: str
    vni: int
    encapsulation: str = "vxlan"
    isolated_vni: int | None = None
    community_vni: dict[str, int] = field(default_factory=dict)
    remote: tuple = ()
    mac_learning: bool = True
    fdb_ageing_sec: int = 300
    maximum_fdb_entries: int = 65536

    def vnis(self):
        """Every VNI of the segment, primary first."""
        extra = [] if self.isolated_vni is None else [self.isolated_vni]
        return [self.vni, *extra, *self.community_vni.values()]


@dataclass(frozen=True)
class Port:
    name: str
    segment: str
    backend: str = "tap"
    role: str = "promiscuous"
    community: str | None = None
    bum_rate_limit: int = 0  # BUM frames per second from this port (the [vtep] default applied); 0: unlimited


@dataclass(frozen=True)
class FdbEntry:
    segment: str
    mac: str
    remote: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    port: str | None = None
    role: str | None = None
    community: str | None = None


@dataclass(frozen=True)
class Config:
    vtep: Vtep
    segments: tuple[Segment, ...]
    ports: tuple[Port, ...]
    fdb: tuple[FdbEntry, ...]


def load(path):
    """Read and check "path"; raises ConfigError (OSError for unreadable files)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(str(path), f"not UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), f"not valid TOML: {e}") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays and tables
        raise ConfigError(str(path), "not valid TOML: nested too deeply") from None
    return parse(doc)


def parse(doc):
    _only(doc, "", {"vtep", "segment", "port", "fdb"})
    if "vtep" not in doc:
        raise ConfigError("vtep", "missing section [vtep]")
    vtep = _vtep(_table(doc["vtep"], "vtep"))
    segments = tuple(_segment(t, f"segment[{i}]", vtep) for i, t in enumerate(_tables(doc, "segment")))
    _unique((s.name for s in segments), "segment", "name")
    _vnis_unique(segments)
    by_name = {s.name: s for s in segments}
    ports = tuple(_port(t, f"port[{i}]", by_name, vtep) for i, t in enumerate(_tables(doc, "port")))
    _unique((p.name for p in ports), "port", "name")
    ports_by_name = {p.name: p for p in ports}
    fdb = tuple(_fdb(t, f"fdb[{i}]", vtep, by_name, ports_by_name) for i, t in enumerate(_tables(doc, "fdb")))
    _unique(((e.segment, e.mac) for e in fdb), "fdb", "mac")
    return Config(vtep, segments, ports, fdb)


def _vtep(t):
    _only(t, "vtep", {"underlay", "local", "destination_port", "port_range", "ttl", "udp_checksum",
                      "workers", "control_socket", "metrics", "bum_rate_limit",
                      "generic_segmentation_offload"})
    port_range = _get(t, "vtep", "port_range", list, [49152, 65535])
    if len(port_range) != 2 or not all(type(p) is int and 0 < p < 65536 for p in port_range) \
            or port_range[0] > port_range[1]:
        raise ConfigError("vtep.port_range", f"must be [low, high] within 1..65535, got {port_range!r}")
    metrics = _get(t, "vtep", "metrics", str, None)
    return Vtep(
        underlay=_ifname(_get(t, "vtep", "underlay", str), "vtep.underlay"),
        local=_ip(_get(t, "vtep", "local", str), "vtep.local"),
        destination_port=_int(t, "vtep", "destination_port", 4789, 1, 65535),
        port_range=tuple(port_range),
        ttl=_int(t, "vtep", "ttl", 64, 1, 255),
        udp_checksum=_get(t, "vtep", "udp_checksum", bool, False),
        workers=_int(t, "vtep", "workers", 1, 1, 64),
        control_socket=_socket_path(_get(t, "vtep", "control_socket", str, "/run/vtepd/vtepd.sock"),
                                    "vtep.control_socket"),
        metrics=None if metrics is None else _host_port(metrics, "vtep.metrics"),
        bum_rate_limit=_int(t, "vtep", "bum_rate_limit", 0, 0, BUM_RATE_MAX),
        generic_segmentation_offload=_get(t, "vtep", "generic_segmentation_offload", bool, True),
    )


def _segment(t, key, vtep):
    _only(t, key, {"name", "encapsulation", "vni", "isolated_vni", "community_vni", "remote",
                   "mac_learning", "fdb_ageing_sec", "maximum_fdb_entries"})
    encapsulation = _get(t, key, "encapsulation", str, "vxlan")
    if encapsulation not in ENCAPSULATIONS:
        raise ConfigError(f"{key}.encapsulation", f"must be one of {', '.join(ENCAPSULATIONS)}")
    communities = _get(t, key, "community_vni", dict, {})
    if len(communities) > MAX_COMMUNITIES:
        raise ConfigError(f"{key}.community_vni", f"at most {MAX_COMMUNITIES} communities")
    for name, vni in communities.items():
        _vni(vni, _key(f"{key}.community_vni", name))
    remotes = tuple(_ip(r, f"{key}.remote[{i}]") if isinstance(r, str) else _bad(f"{key}.remote[{i}]", "an address")
                    for i, r in enumerate(_get(t, key, "remote", list, [])))
    for i, r in enumerate(remotes):
        if r.version != vtep.local.version:
            raise ConfigError(f"{key}.remote[{i}]", f"must be IPv{vtep.local.version} like vtep.local")
        if r == vtep.local:
            raise ConfigError(f"{key}.remote[{i}]", "is this VTEP's own address")
    _unique(remotes, key, "remote")
    isolated = _get(t, key, "isolated_vni", int, None)
    segment = Segment(
        name=_name(_get(t, key, "name", str), f"{key}.name"),
        vni=_vni(_get(t, key, "vni", int), f"{key}.vni"),
        encapsulation=encapsulation,
        isolated_vni=None if isolated is None else _vni(isolated, f"{key}.isolated_vni"),
        community_vni=dict(communities),
        remote=remotes,
        mac_learning=_get(t, key, "mac_learning", bool, True),
        fdb_ageing_sec=_int(t, key, "fdb_ageing_sec", 300, 0, 1 << 31),
        maximum_fdb_entries=_int(t, key, "maximum_fdb_entries", 65536, 1, 1 << 26),
    )
    vnis = segment.vnis()
    if len(set(vnis)) != len(vnis):
        raise ConfigError(key, "vni, isolated_vni and community_vni must all differ")
    return segment


def _port(t, key, segments, vtep):
    _only(t, key, {"name", "backend", "segment", "role", "community", "bum_rate_limit"})
    name = _ifname(_get(t, key, "name", str), f"{key}.name")
    backend = _get(t, key, "backend", str, "tap")
    if backend not in BACKENDS:
        raise ConfigError(f"{key}.backend", f"must be one of {', '.join(BACKENDS)}")
    segment = _ref(_get(t, key, "segment", str), segments, f"{key}.segment", "segment")
    role, community = _role(t, key, segment, _get(t, key, "role", str, "promiscuous"))
    return Port(name=name, segment=segment.name, backend=backend, role=role, community=community,
                bum_rate_limit=_int(t, key, "bum_rate_limit", vtep.bum_rate_limit, 0, BUM_RATE_MAX))


def _fdb(t, key, vtep, segments, ports):
    _only(t, key, {"segment", "mac", "remote", "port", "role", "community"})
    segment = _ref(_get(t, key, "segment", str), segments, f"{key}.segment", "segment")
    mac = _mac(_get(t, key, "mac", str), f"{key}.mac")
    remote, port = _get(t, key, "remote", str, None), _get(t, key, "port", str, None)
    if (remote is None) == (port is None):
        raise ConfigError(key, "needs exactly one of remote and port")
    if port is not None:
        if ports.get(port) is None or ports[port].segment != segment.name:
            raise ConfigError(f"{key}.port", f"no port {port!r} in segment {segment.name!r}")
        if "role" in t or "community" in t:
            raise ConfigError(f"{key}.role", "a local MAC has its port's role")
        return FdbEntry(segment=segment.name, mac=mac, port=port)
    address = _ip(remote, f"{key}.remote")
    if address.version != vtep.local.version:
        raise ConfigError(f"{key}.remote", f"must be IPv{vtep.local.version} like vtep.local")
    role, community = (None, None)
    if "role" in t:
        role, community = _role(t, key, segment, _get(t, key, "role", str))
    elif "community" in t:
        raise ConfigError(f"{key}.community", "only with role = \"community\"")
    return FdbEntry(segment=segment.name, mac=mac, remote=address, role=role, community=community)


def _role(t, key, segment, role):
    """(role, community) of a port or remote MAC in "segment"."""
    if role not in ROLES:
        raise ConfigError(f"{key}.role", f"must be one of {', '.join(ROLES)}")
    community = _get(t, key, "community", str, None)
    if role == "community":
        if community not in segment.community_vni:
            known = ", ".join(segment.community_vni) or "none"
            raise ConfigError(f"{key}.community", f"must name a community of segment {segment.name!r} ({known})")
    elif community is not None:
        raise ConfigError(f"{key}.community", "only with role = \"community\"")
    if role == "isolated" and segment.isolated_vni is None:
        raise ConfigError(f"{key}.role", f"segment {segment.name!r} has no isolated_vni")
    return role, community


def _vnis_unique(segments):
    seen = {}
    for i, s in enumerate(segments):
        for vni in s.vnis():
            other = seen.setdefault((s.encapsulation, vni), s.name)
            if other != s.name:
                raise ConfigError(f"segment[{i}]", f"{s.encapsulation} VNI {vni} is also used by segment {other!r}")


# -- small checkers ------------------------------------------------------------------------------

_MISSING = object()
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "a table"}


def _get(t, where, name, kind, default=_MISSING):
    key = f"{where}.{name}" if where else name
    if name not in t:
        if default is _MISSING:
            raise ConfigError(key, "is required")
        return default
    value = t[name]
    # bool is an int in Python; a TOML boolean is never a number here.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(key, f"must be {_TYPE_NAMES[kind]}, got {value!r}")
    return value


def _int(t, where, name, default, low, high):
    value = _get(t, where, name, int, default)
    if not low <= value <= high:
        raise ConfigError(f"{where}.{name}", f"must be {low}..{high}, got {value}")
    return value


def _only(t, where, allowed):
    for name in t:
        if name not in allowed:
            raise ConfigError(_key(where, name), "unknown key")


def _key(where, name):
    """The key "name" in table "where", quoted as TOML quotes it when it is not a bare key
    (an empty name, spaces, dots, other scripts), so that the message shows which one."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        name = json.dumps(name)
    return f"{where}.{name}" if where else name


def _table(value, key):
    if not isinstance(value, dict):
        raise ConfigError(key, "must be a table")
    return value


def _tables(doc, name):
    value = doc.get(name, [])
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ConfigError(name, f"must be written [[{name}]]")
    return value


def _bad(key, what):
    raise ConfigError(key, f"must be {what}")


def _unique(values, where, what):
    seen = set()
    for v in values:
        if v in seen:
            raise ConfigError(where, f"{what} {v if isinstance(v, str) else v!s} appears twice")
        seen.add(v)


def _ref(name, table, key, what):
    if name not in table:
        raise ConfigError(key, f"no {what} named {name!r}")
    return table[name]


def _ip(text, key):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(key, f"not an IP address: {text!r}") from None


def _vni(value, key):
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= VNI_MAX:
        raise ConfigError(key, f"must be an integer 0..{VNI_MAX}, got {value!r}")
    return value


def _mac(text, key):
    parts = text.replace("-", ":").split(":")
    # Hex digits only: int(p, 16) would also take "+2", " 2" and other scripts' digits.
    if len(parts) != 6 or not all(len(p) == 2 and all(c in string.hexdigits for c in p) for p in parts):
        raise ConfigError(key, f"not a MAC address: {text!r}")
    try:
        raw = bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ConfigError(key, f"not a MAC address: {text!r}") from None
    if raw[0] & 1 or raw == bytes(6):
        raise ConfigError(key, f"must be a unicast, nonzero MAC, got {text}")
    return ":".join(f"{b:02x}" for b in raw)


def _name(text, key):
    if not text.strip():
        raise ConfigError(key, "must not be empty")
    return text


def _ifname(text, key):
    # The kernel's dev_valid_name(), and no NUL: it would end the name.
    if not 0 < len(text.encode()) < IFNAMSIZ or text in (".", "..") \
            or any(c.isspace() or c in "/:\0" for c in text):
        raise ConfigError(key, f"not a Linux interface name (1..{IFNAMSIZ - 1} bytes, no '/', ':' or spaces): "
                               f"{text!r}")
    return text


def _host_port(text, key):
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ConfigError(key, f"must be ADDRESS:PORT, got {text!r}") from None
    # ASCII digits only: int() would also take "+80", " 80", "8_0" and other scripts' digits.
    if not sep or not port.isascii() or not port.isdigit() or not 0 < number < 65536:
        raise ConfigError(key, f"must be ADDRESS:PORT, got {text!r}")
    return host, number


def _socket_path(text, key):
    if not text or "\0" in text or len(text.encode()) > SUN_PATH_MAX:
        raise ConfigError(key, f"must be a socket path of 1..{SUN_PATH_MAX} bytes, got {text!r}")
    return text


def fdb_entry(table, key, current):
    """One [[fdb]] table checked against config "current", as the file's
    entries are (the control socket's `fdb add` uses it)."""
    return _fdb(_table(table, key), key, current.vtep, {s.name: s for s in current.segments},
                {p.name: p for p in current.ports})


def mac(text, key):
    """A unicast MAC in canonical form, or ConfigError naming "key"."""
    if not isinstance(text, str):
        raise ConfigError(key, f"not a MAC address: {text!r}")
    return _mac(text, key)
