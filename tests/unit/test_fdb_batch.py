"""`fdb-add` batches (commands.py): entries of one shape share one full
check and then only their MACs are checked, and go to the engine in runs
(Engine.fdb_add_many).  The fast path must accept and refuse exactly what
the one-by-one path (the config file's checks) does."""
import pytest

from dataplane import config, tables
from dataplane.commands import Commands
from dataplane.control import RequestError

CONFIG = {"vtep": {"underlay": "ul0", "local": "198.18.0.1"},
          "segment": [{"name": "plain", "vni": 5000, "remote": ["198.18.0.2"], "maximum_fdb_entries": 64},
                      {"name": "pv", "vni": 6000, "isolated_vni": 6001, "community_vni": {"web": 6002}}],
          "port": [{"name": "h1", "backend": "afpacket", "segment": "plain"}]}


class _Daemon:
    def __init__(self):
        self.datapath = type("Datapath", (), {})()
        self.datapath.tables = tables.build(config.parse(CONFIG))
        self.refreshes = 0

    def schedule_refresh(self):
        self.refreshes += 1


@pytest.fixture
def commands():
    return Commands(_Daemon())


def remote(mac, **extra):
    return {"segment": "plain", "mac": mac, "remote": "198.18.0.2", **extra}


def fdb(commands, segment="plain"):
    t = commands.tables
    return {e["mac"]: e for e in t.engine.fdb_entries(t.segments[segment])}


def test_a_batch_of_one_shape_is_added_in_order(commands):
    batch = [remote(f"02:00:00:00:01:{i:02x}") for i in range(40)]
    batch.append({"segment": "plain", "mac": "02:00:00:00:01:05", "port": "h1"})  # moves one of them
    assert commands.fdb_add({"entries": batch}) == {"added": 41}
    entries = fdb(commands)
    assert len(entries) == 40
    assert entries["02:00:00:00:01:05"]["kind"] == "local"
    assert entries["02:00:00:00:01:06"]["kind"] == "remote" and entries["02:00:00:00:01:06"]["static"]


def test_macs_are_checked_like_the_files(commands):
    # Written otherwise, but valid: taken, in canonical form.
    batch = [remote("02:00:00:00:02:01"), remote("02-00-00-00-02-AB"), remote("02:00:00:00:02:Cd")]
    assert commands.fdb_add({"entries": batch}) == {"added": 3}
    assert {"02:00:00:00:02:ab", "02:00:00:00:02:cd"} <= set(fdb(commands))
    for bad, message in (("03:00:00:00:02:02", r"entries\[1\]\.mac: must be a unicast"),
                         ("00:00:00:00:00:00", r"entries\[1\]\.mac: must be a unicast, nonzero"),
                         ("02:00:00:00:02", r"entries\[1\]\.mac: not a MAC address"),
                         (7, r"entries\[1\]\.mac: not a MAC address")):
        with pytest.raises(RequestError, match=message):
            commands.fdb_add({"entries": [remote("02:00:00:00:03:01"), remote(bad)]})
    with pytest.raises(RequestError, match=r"entries\[1\]\.mac: is required"):
        commands.fdb_add({"entries": [remote("02:00:00:00:03:01"), {"segment": "plain", "remote": "198.18.0.2"}]})
    assert "02:00:00:00:03:01" not in fdb(commands)  # refused as a whole


def test_every_shape_gets_the_full_check(commands):
    good = remote("02:00:00:00:04:01")
    for bad, message in ((remote("02:00:00:00:04:02", colour="red"), r"entries\[1\]\.colour: unknown key"),
                         (remote("02:00:00:00:04:02", role="isolated"), r"entries\[1\]\.role: segment 'plain'"),
                         ({**good, "mac": "02:00:00:00:04:02", "remote": "2001:db8::1"}, r"entries\[1\]\.remote"),
                         ({**good, "remote": ["198.18.0.2"]}, r"entries\[1\]\.remote"),
                         ("02:00:00:00:04:02", r"entries\[1\]: must be a table")):
        with pytest.raises(RequestError, match=message):
            commands.fdb_add({"entries": [good, bad]})
    assert fdb(commands) == {}


def test_roles_and_communities_of_remote_macs(commands):
    batch = [{"segment": "pv", "mac": f"02:00:00:00:05:{i:02x}", "remote": "198.18.0.3", "role": "community",
              "community": "web"} for i in range(3)]
    batch.append({"segment": "pv", "mac": "02:00:00:00:05:10", "remote": "198.18.0.3", "role": "isolated"})
    assert commands.fdb_add({"entries": batch}) == {"added": 4}
    entries = fdb(commands, "pv")
    assert entries["02:00:00:00:05:01"]["role"] == "community" and entries["02:00:00:00:05:01"]["community"] == 0
    assert entries["02:00:00:00:05:10"]["role"] == "isolated"
    assert commands.d.refreshes == 1  # a new remote: its next hop is looked up at once


def test_a_full_segment_stops_the_batch_and_says_where(commands):
    batch = [remote(f"02:00:00:00:06:{i:02x}") for i in range(70)]
    with pytest.raises(RequestError, match=r"No space left on device \(entry 64; the 64 before it were added\)"):
        commands.fdb_add({"entries": batch})
    assert len(fdb(commands)) == 64


def test_engine_fdb_add_many_reports_what_it_added(commands):
    t = commands.tables
    engine, seg = t.engine, t.segments["plain"]
    assert engine.fdb_add_many(seg, ["02:00:00:00:07:01", b"\x02\x00\x00\x00\x07\x02"], port=t.ports["h1"]) == 2
    with pytest.raises(ValueError) as failed:
        engine.fdb_add_many(seg, ["02:00:00:00:07:03", "02:00:00:00:07:zz"], remote=t.remotes[
            next(iter(t.remotes))])
    assert failed.value.added == 1
    with pytest.raises(ValueError, match="exactly one of port and remote"):
        engine.fdb_add_many(seg, [], port=0, remote=0)
