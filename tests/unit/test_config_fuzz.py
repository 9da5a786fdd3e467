"""The config loader (dataplane/config.py) on hostile input, with hypothesis:
documents built from the real keys with wrong types, wrong values, missing
and extra keys, and arbitrary text and bytes as the file.  The only outcomes
allowed are a Config whose values are what the contract says, or a
ConfigError whose key names a key of the document (or the file, for text
that is not TOML): never another exception."""
import datetime
import ipaddress
import json
import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dataplane import config

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SCALARS = st.one_of(
    st.integers(min_value=-(2 ** 70), max_value=2 ** 70), st.booleans(), st.floats(), st.text(max_size=12),
    st.datetimes(), st.dates(), st.times())
ANY = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                   max_leaves=8)


def near(good, bad=()):
    """A key's values: (valid ones, its edge cases)."""
    return good, bad


VTEP = {
    "underlay": near(["eth1", "u", "x" * 15, "é" * 7], ["x" * 16, "a/b", "a b", "", ".", "a:b", "a\0b"]),
    "local": near(["198.18.0.1"], ["2001:db8::1", "198.18.0.256", "fe80::1%eth0", "1.2.3"]),
    "destination_port": near([4789, 1, 65535], [0, 65536, True]),
    "port_range": near([[49152, 65535], [1, 1]], [[2, 1], [True, 5], [0, 10], [1], [1, 2, 3], ["1", 2]]),
    "ttl": near([64, 1, 255], [0, 256]),
    "udp_checksum": near([True, False], [1]),
    "workers": near([1, 64], [65, 0]),
    "control_socket": near(["/run/vtepd/x.sock", "relative.sock"], ["", "/" + "x" * 120, "a\0b"]),
    "metrics": near(["127.0.0.1:9477", "[::1]:80"],
                    ["127.0.0.1:0", "host:80", ":80", "1.2.3.4", "1.2.3.4:+80", "1.2.3.4: 80", "1.2.3.4:8_0",
                     "1.2.3.4:\u0668\u0660"]),
    "bum_rate_limit": near([0, 100], [-1, 10 ** 8]),
}
SEGMENT = {
    "name": near(["a", "b"], ["", " "]),
    "encapsulation": near(["vxlan", "nvgre"], ["gre"]),
    "vni": near([5000, 6000, 0, 2 ** 24 - 1], [2 ** 24, -1]),
    "isolated_vni": near([5001, 6001], [5000]),
    "community_vni": near([{"web": 5002}, {"web": 6002, "db": 6003}, {}], [{"x": "y"}, {"web": 5000}]),
    "remote": near([["198.18.0.2"], [], ["198.18.0.2", "198.18.0.3"]],
                   [["198.18.0.1"], ["2001:db8::2"], ["198.18.0.2", "198.18.0.2"], [1], "198.18.0.2"]),
    "mac_learning": near([True, False]),
    "fdb_ageing_sec": near([0, 300, 2 ** 31], [-1, 2 ** 31 + 1]),
    "maximum_fdb_entries": near([1, 1024], [0, 2 ** 26 + 1]),
}
PORT = {
    "name": near(["vm1", "vm2"], ["x" * 16, "a:b"]),
    "backend": near(["tap", "afpacket"], ["x"]),
    "segment": near(["a", "b"], ["c"]),
    "role": near(["promiscuous", "isolated", "community"], ["x"]),
    "community": near(["web", "db"], ["x"]),
    "bum_rate_limit": near([0, 100], [-1]),
}
FDB = {
    "segment": near(["a", "b"]),
    "mac": near(["02:00:00:00:00:01", "02-00-00-00-00-02", "0A:00:00:00:00:01"],
                ["01:00:00:00:00:01", "00:00:00:00:00:00", "02:00:00:00:00", "+2:00:00:00:00:01",
                 " 2:00:00:00:00:01", "zz:00:00:00:00:01", "\u0660\u0662:00:00:00:00:01"]),
    "remote": near(["198.18.0.2"], ["2001:db8::2", "x"]),
    "port": near(["vm1", "vm2"]),
    "role": near(["promiscuous", "isolated", "community"]),
    "community": near(["web", "db"]),
}
KNOWN_KEYS = {"vtep", "segment", "port", "fdb", *VTEP, *SEGMENT, *PORT, *FDB}


def table(spec):
    """A table of the keys of "spec" with valid values but for a few damaged ones (an edge case or any
    value), a few left out, sometimes an unknown key; sometimes not a table at all.  So whole
    documents are valid often enough to check what parse() accepts, and each error has a cause."""
    def damaged(key):
        return st.tuples(st.just(key), st.one_of(st.sampled_from(spec[key][1] or (None,)), ANY))

    tables = st.builds(
        lambda full, left_out, damage, extra: {**{k: v for k, v in full.items() if k not in left_out},
                                               **dict(damage), **extra},
        st.fixed_dictionaries({k: st.sampled_from(good) for k, (good, _) in spec.items()}),
        mostly(st.just(set()), st.sets(st.sampled_from(sorted(spec)), min_size=1, max_size=2)),
        mostly(st.just([]), st.lists(st.sampled_from(sorted(spec)).flatmap(damaged), min_size=1, max_size=2)),
        mostly(st.just({}), st.dictionaries(st.text(min_size=1, max_size=6), ANY, min_size=1, max_size=1)))
    return mostly(tables, ANY)


def mostly(usual, other):
    """Strategy "usual" five times in six, else "other"."""
    return st.sampled_from([True] * 5 + [False]).flatmap(lambda u: usual if u else other)


def tables(keys):
    return mostly(st.lists(table(keys), min_size=1, max_size=2), ANY)


DOCUMENTS = st.builds(
    lambda doc, extra: {**doc, **extra},
    st.fixed_dictionaries({"vtep": table(VTEP), "segment": tables(SEGMENT)},
                          optional={"port": tables(PORT), "fdb": tables(FDB)}),
    mostly(st.just({}), st.dictionaries(st.text(max_size=6), ANY, max_size=1)))


def keys_in(value):
    """Every table key anywhere in "value"."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_in(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_in(v)}
    return set()


def check_error(e, doc, path=None):
    assert str(e).startswith(f"{e.key}: ") and e.reason
    if path is not None and e.key == str(path):
        return  # the file as a whole: not TOML
    # A key that is not a bare key comes last, quoted: "vtep.\"a b\"".
    if any(e.key.endswith(json.dumps(name)) for name in keys_in(doc)):
        return
    # "segment[1].community_vni.web": every name in it is a known key or one of the document's.
    names = [n for n in re.split(r"\[\d+\]\.?|\.", e.key) if n]
    assert names and all(n in KNOWN_KEYS or n in keys_in(doc) for n in names), e.key


def check_config(cfg):
    """What a Config that parse() accepted must hold."""
    v = cfg.vtep
    assert 0 < len(v.underlay.encode()) < 16 and not re.search(r"[/:\s\0]", v.underlay)
    assert isinstance(v.local, (ipaddress.IPv4Address, ipaddress.IPv6Address))
    assert all(type(p) is int for p in v.port_range) and 0 < v.port_range[0] <= v.port_range[1] < 65536
    assert 0 < v.destination_port < 65536 and 0 < v.ttl < 256 and 1 <= v.workers <= 64
    assert v.control_socket and "\0" not in v.control_socket and len(v.control_socket.encode()) <= 107
    if v.metrics is not None:
        assert 0 < v.metrics[1] < 65536
    names = {s.name for s in cfg.segments}
    for s in cfg.segments:
        vnis = s.vnis()
        assert len(set(vnis)) == len(vnis) and all(type(n) is int and 0 <= n < 2 ** 24 for n in vnis)
        assert all(r.version == v.local.version and r != v.local for r in s.remote)
    for p in cfg.ports:
        assert p.segment in names and 0 < len(p.name.encode()) < 16 and not re.search(r"[/:\s\0]", p.name)
    for e in cfg.fdb:
        assert re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", e.mac) and (e.remote is None) != (e.port is None)


@SETTINGS
@given(DOCUMENTS)
def test_parse_gives_a_config_or_names_the_key(doc):
    try:
        cfg = config.parse(doc)
    except config.ConfigError as e:
        check_error(e, doc)
    else:
        check_config(cfg)


def toml_value(value):
    """"value" written as TOML (inline tables and arrays: any nesting fits on one line)."""
    if value is None:  # TOML has no null
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are TOML's, but for lone surrogates: those are invalid
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(doc):
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in doc.items())


VALID = """\
[vtep]
underlay = "eth1"
local = "198.18.0.1"
[[segment]]
name = "a"
vni = 5000
isolated_vni = 5001
community_vni = { web = 5002 }
remote = ["198.18.0.2"]
[[port]]
name = "vm1"
segment = "a"
role = "community"
community = "web"
[[fdb]]
segment = "a"
mac = "02:00:00:00:00:02"
remote = "198.18.0.2"
"""


def load(tmp_path, data, doc=None):
    """config.load() of "data": the Config, or the ConfigError (checked against "doc", if given)."""
    path = tmp_path / "vtepd.toml"
    path.write_bytes(data)
    try:
        cfg = config.load(path)
    except config.ConfigError as e:
        assert str(e).startswith(f"{e.key}: ") and e.reason
        if doc is not None:
            check_error(e, doc, path)
        return e
    check_config(cfg)
    return cfg


@SETTINGS
@given(DOCUMENTS)
def test_load_of_a_written_document(tmp_path_factory, doc):
    load(tmp_path_factory.mktemp("cfg"), toml_document(doc).encode(), doc)


@SETTINGS
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                 st.integers(0, len(VALID)).flatmap(lambda i: st.binary(max_size=8).map(
                     lambda b: VALID[:i].encode() + b + VALID[i:].encode()))))
@example(b"a = " + b"[" * 5000)          # nested deeper than Python's recursion limit
@example(b"\xff\xfe[vtep]\n")            # not UTF-8
@example(VALID.encode())
def test_load_of_arbitrary_bytes(tmp_path_factory, data):
    load(tmp_path_factory.mktemp("cfg"), data)


def test_the_valid_document_loads(tmp_path):
    cfg = load(tmp_path, VALID.encode())
    assert isinstance(cfg, config.Config) and cfg.fdb[0].mac == "02:00:00:00:00:02"


def test_regress_deep_nesting_and_bad_bytes_are_config_errors(tmp_path):
    """Found by the tests above: tomllib raised RecursionError and UnicodeDecodeError through load()."""
    for data in (b"a = " + b"[" * 5000, b"\xff\xfe = 1\n"):
        e = load(tmp_path, data)
        assert isinstance(e, config.ConfigError) and e.key == str(tmp_path / "vtepd.toml")


def test_regress_loose_numbers_and_names_are_refused():
    """Found by the tests above: int() took "+2", " 2" and other scripts' digits in MACs and ports;
    booleans passed as port numbers; names the kernel refuses passed."""
    base = {"vtep": {"underlay": "eth1", "local": "198.18.0.1"}}
    bad = [("vtep.port_range", {"port_range": [True, 5]}), ("vtep.metrics", {"metrics": "1.2.3.4:+80"}),
           ("vtep.metrics", {"metrics": "1.2.3.4:٨٠"}), ("vtep.underlay", {"underlay": "a:b"}),
           ("vtep.underlay", {"underlay": "a\0b"}), ("vtep.control_socket", {"control_socket": ""}),
           ("vtep.control_socket", {"control_socket": "/" + "x" * 120})]
    for key, change in bad:
        doc = {"vtep": {**base["vtep"], **change}}
        try:
            config.parse(doc)
        except config.ConfigError as e:
            assert e.key == key
        else:
            raise AssertionError(f"{change} was accepted")
    for mac in ("+2:00:00:00:00:01", " 2:00:00:00:00:01", "٠٢:00:00:00:00:01"):
        try:
            config.mac(mac, "mac")
        except config.ConfigError as e:
            assert e.key == "mac"
        else:
            raise AssertionError(f"{mac!r} was accepted")
