"""The configuration contract: the documented example loads, every kind of
mistake is refused with the key that is wrong, and vtepd --check says so."""
import copy
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from dataplane import config, daemon, tables

EXAMPLE = Path(__file__).parents[2] / "docs" / "vtepd.example.toml"


@pytest.fixture
def doc():
    return tomllib.loads(EXAMPLE.read_text())


def test_example_loads_with_every_value():
    cfg = config.load(EXAMPLE)
    assert str(cfg.vtep.local) == "198.18.0.1"
    assert cfg.vtep.metrics == ("127.0.0.1", 9477)
    tenant, plain = cfg.segments
    assert (tenant.vni, tenant.isolated_vni, tenant.community_vni) == (5000, 5001, {"web": 5002, "db": 5003})
    assert [str(r) for r in tenant.remote] == ["198.18.0.2", "198.18.0.3"]
    assert (plain.encapsulation, plain.mac_learning, plain.fdb_ageing_sec) == ("vxlan", True, 300)
    assert [(p.name, p.role, p.community) for p in cfg.ports] == [
        ("vm1", "community", "web"), ("gw", "promiscuous", None), ("vm2", "isolated", None),
        ("plain1", "promiscuous", None)]
    assert cfg.fdb[0].role == "promiscuous"
    assert cfg.vtep.bum_rate_limit == 0
    assert [p.bum_rate_limit for p in cfg.ports] == [0, 0, 1000, 0]
    assert cfg.vtep.generic_segmentation_offload is True


def test_example_builds_engine_tables():
    built = tables.build(config.load(EXAMPLE))
    seg = built.segments["tenant-a"]
    entry = built.engine.fdb_get(seg, "02:00:00:00:01:01")
    assert (entry["kind"], entry["role"], entry["static"]) == ("remote", "promiscuous", True)
    assert set(built.remotes) == {config._ip("198.18.0.2", ""), config._ip("198.18.0.3", "")}
    assert built.communities["tenant-a"] == {"web": 0, "db": 1}


def edit(doc, path, value):
    """Set doc[path] (a dotted path; [i] indexes a list); None deletes it."""
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        name, _, index = part.partition("[")
        node = node[name] if not index else node[name][int(index[:-1])]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return doc


BAD = [
    ("vtep.local", None, "vtep.local", "required"),
    ("vtep.local", "198.18.0.300", "vtep.local", "not an IP address"),
    ("vtep.underlay", "a-name-that-is-too-long", "vtep.underlay", "interface name"),
    ("vtep.ttl", 0, "vtep.ttl", "1..255"),
    ("vtep.ttl", "64", "vtep.ttl", "integer"),
    ("vtep.destination_port", 70000, "vtep.destination_port", "1..65535"),
    ("vtep.port_range", [60000, 50000], "vtep.port_range", "[low, high]"),
    ("vtep.metrics", "localhost", "vtep.metrics", "ADDRESS:PORT"),
    ("vtep.colour", "blue", "vtep.colour", "unknown key"),
    ("segment[0].vni", 1 << 24, "segment[0].vni", "0..16777215"),
    ("segment[0].vni", True, "segment[0].vni", "must be an integer"),
    ("segment[0].encapsulation", "geneve", "segment[0].encapsulation", "vxlan, nvgre"),
    ("segment[0].isolated_vni", 5002, "segment[0]", "must all differ"),
    ("segment[1].vni", 5003, "segment[1]", "also used by segment 'tenant-a'"),
    ("segment[1].name", "tenant-a", "segment", "appears twice"),
    ("segment[0].remote", ["2001:db8::2"], "segment[0].remote[0]", "IPv4 like vtep.local"),
    ("segment[0].remote", ["198.18.0.1"], "segment[0].remote[0]", "own address"),
    ("segment[0].remote", ["198.18.0.2", "198.18.0.2"], "segment[0]", "appears twice"),
    ("segment[0].mac_learning", "yes", "segment[0].mac_learning", "true or false"),
    ("segment[0].maximum_fdb_entries", 0, "segment[0].maximum_fdb_entries", "1.."),
    ("segment[0].community_vni", {"web": -1}, "segment[0].community_vni.web", "0..16777215"),
    ("port[0].segment", "nowhere", "port[0].segment", "no segment named 'nowhere'"),
    ("port[0].role", "admin", "port[0].role", "one of"),
    ("port[0].community", "mail", "port[0].community", "web, db"),
    ("port[0].community", None, "port[0].community", "must name a community"),
    ("port[1].community", "web", "port[1].community", "only with role"),
    ("port[3].role", "isolated", "port[3].role", "no isolated_vni"),
    ("port[0].backend", "dpdk", "port[0].backend", "tap, afpacket"),
    ("port[1].name", "vm1", "port", "appears twice"),
    ("port[0].bum_rate_limit", -1, "port[0].bum_rate_limit", "0..10000000"),
    ("port[0].bum_rate_limit", 10_000_001, "port[0].bum_rate_limit", "0..10000000"),
    ("port[0].bum_rate_limit", "1000/s", "port[0].bum_rate_limit", "must be an integer"),
    ("port[0].bum_rate_limit", 1.5, "port[0].bum_rate_limit", "must be an integer"),
    ("vtep.bum_rate_limit", True, "vtep.bum_rate_limit", "must be an integer"),
    ("vtep.bum_rate_limit", -5, "vtep.bum_rate_limit", "0..10000000"),
    ("vtep.generic_segmentation_offload", "off", "vtep.generic_segmentation_offload", "true or false"),
    ("fdb[0].mac", "01:00:5e:00:00:01", "fdb[0].mac", "unicast"),
    ("fdb[0].mac", "02:00:00:00:01", "fdb[0].mac", "not a MAC"),
    ("fdb[0].remote", None, "fdb[0]", "exactly one of remote and port"),
    ("fdb[0].port", "gw", "fdb[0]", "exactly one of remote and port"),
    ("fdb[0].role", "community", "fdb[0].community", "must name a community"),
]


@pytest.mark.parametrize("path, value, key, reason", BAD, ids=[f"{b[0]}={b[1]!r}" for b in BAD])
def test_bad_config_names_the_key_and_the_reason(doc, path, value, key, reason):
    with pytest.raises(config.ConfigError) as err:
        config.parse(edit(doc, path, value))
    assert err.value.key == key
    assert reason in err.value.reason


def test_bum_rate_limit_port_value_else_vtep_default_else_unlimited(doc):
    doc = edit(edit(doc, "vtep.bum_rate_limit", None), "port[2].bum_rate_limit", None)
    assert {p.bum_rate_limit for p in config.parse(doc).ports} == {0}
    doc = edit(edit(doc, "vtep.bum_rate_limit", 500), "port[1].bum_rate_limit", 2000)
    doc = edit(doc, "port[2].bum_rate_limit", 0)  # 0: this port unlimited despite the default
    assert [p.bum_rate_limit for p in config.parse(doc).ports] == [500, 2000, 0, 500]


def test_missing_section_and_wrong_shapes(doc):
    with pytest.raises(config.ConfigError, match="missing section"):
        config.parse({})
    with pytest.raises(config.ConfigError, match=r"\[\[segment\]\]"):
        config.parse({**doc, "segment": {"name": "x"}})


def test_invalid_toml_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[vtep\nlocal = ")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(bad)


def test_vtepd_check_exit_status_and_messages(tmp_path, capsys, doc):
    assert daemon.main(["-c", str(EXAMPLE), "--check"]) == 0
    assert "ok: 2 segments, 4 ports, 2 remote VTEPs, 1 static FDB entries" in capsys.readouterr().out
    assert daemon.main(["-c", str(tmp_path / "missing.toml"), "--check"]) == 1
    assert "No such file" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace("vni = 5000", "vni = -5"))
    assert daemon.main(["-c", str(bad), "--check"]) == 1
    assert "segment[0].vni: must be an integer 0..16777215, got -5" in capsys.readouterr().err


def test_vtepd_console_script_checks_config():
    vtepd = Path(sys.executable).parent / "vtepd"
    done = subprocess.run([vtepd, "-c", str(EXAMPLE), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([vtepd, "--check"], capture_output=True, text=True)
    assert done.returncode == 2 and "required: -c/--config" in done.stderr
