"""Reload applies only the difference: what stays is never touched, what
changed is replaced, and a reload that cannot be applied changes nothing."""
import pytest

from dataplane import config
from dataplane.tables import ReloadError, Tables

from .recording_io import RecordingIo

BASE = {
    "vtep": {"underlay": "ul0", "local": "198.18.0.1"},
    "segment": [
        {"name": "a", "vni": 100, "isolated_vni": 101, "community_vni": {"web": 102},
         "remote": ["198.18.0.2"]},
        {"name": "b", "vni": 200, "remote": ["198.18.0.2", "198.18.0.3"]},
    ],
    "port": [
        {"name": "p1", "segment": "a"},
        {"name": "p2", "segment": "a", "role": "isolated"},
        {"name": "p3", "segment": "b"},
    ],
    "fdb": [
        {"segment": "a", "mac": "02:00:00:00:00:01", "remote": "198.18.0.2", "role": "community",
         "community": "web"},
        {"segment": "a", "mac": "02:00:00:00:00:02", "port": "p1"},
    ],
}


def variant(**changes):
    doc = {k: (list(v) if isinstance(v, list) else dict(v)) for k, v in BASE.items()}
    doc.update(changes)
    return config.parse(doc)


@pytest.fixture
def running():
    io = RecordingIo()
    t = Tables.build(variant())
    return t, io


def entry(t, segment, mac):
    return t.engine.fdb_get(t.segments[segment], mac)


def test_an_identical_config_changes_nothing(running):
    t, io = running
    assert t.apply(variant(), io) == []
    assert io.calls == []


def test_ports_added_removed_and_kept(running):
    t, io = running
    ids = dict(t.ports)
    new_ports = [BASE["port"][0], BASE["port"][2], {"name": "p4", "segment": "b", "role": "promiscuous"}]
    changes = t.apply(variant(port=new_ports), io)
    assert set(changes) == {"port p2 removed", "port p4 added"}
    assert io.calls == [("open", "p4"), ("detach", ids["p2"]), ("attach", "p4")]
    assert t.ports["p1"] == ids["p1"] and t.ports["p3"] == ids["p3"]  # untouched
    assert "p2" not in t.ports


def test_a_changed_port_is_replaced_with_its_fdb_entries(running):
    t, io = running
    ports = [dict(BASE["port"][0], role="community", community="web"), *BASE["port"][1:]]
    changes = t.apply(variant(port=ports), io)
    assert "port p1 removed" in changes and "port p1 added" in changes
    e = entry(t, "a", "02:00:00:00:00:02")  # its static entry came back, with the new role
    assert e["target"] == t.ports["p1"] and e["role"] == "community"


def test_remote_list_changes_keep_the_segment(running):
    t, io = running
    seg = t.segments["b"]
    t.engine.fdb_add(seg, "02:00:00:00:00:33", remote=t.remotes[config.parse(BASE).segments[1].remote[1]],
                     static=False)
    segments = [BASE["segment"][0], dict(BASE["segment"][1], remote=["198.18.0.2", "198.18.0.4"])]
    changes = t.apply(variant(segment=segments), io)
    assert set(changes) == {"segment b: remote 198.18.0.3 removed", "segment b: remote 198.18.0.4 added"}
    assert t.segments["b"] == seg and io.calls == []
    # What was learned behind the removed remote goes with it.
    assert t.engine.fdb_get(seg, "02:00:00:00:00:33") is None


def test_a_changed_segment_is_rebuilt_with_its_ports(running):
    t, io = running
    segments = [dict(BASE["segment"][0], community_vni={"web": 102, "db": 103}), BASE["segment"][1]]
    changes = t.apply(variant(segment=segments), io)
    assert "segment a removed" in changes and "segment a added" in changes
    assert {"port p1 added", "port p2 added"} <= set(changes) and "port p3 added" not in changes
    assert entry(t, "a", "02:00:00:00:00:01")["community"] == 0  # static entries are back


def test_fdb_entry_changed_in_place(running):
    t, io = running
    fdb = [dict(BASE["fdb"][0], role="promiscuous", community=None), BASE["fdb"][1]]
    fdb[0].pop("community")
    assert t.apply(variant(fdb=fdb), io) == ["fdb a 02:00:00:00:00:01 set"]
    assert entry(t, "a", "02:00:00:00:00:01")["role"] == "promiscuous"


@pytest.mark.parametrize("vtep", [{"local": "198.18.0.9"}, {"underlay": "ul1"}, {"workers": 2}])
def test_vtep_section_changes_need_a_restart(running, vtep):
    t, io = running
    with pytest.raises(ReloadError, match=f"vtep.{next(iter(vtep))}: changing it needs a restart"):
        t.apply(variant(vtep=dict(BASE["vtep"], **vtep)), io)
    assert io.calls == [] and t.apply(variant(), io) == []


def test_a_port_that_cannot_open_changes_nothing(running):
    t, _ = running
    io = RecordingIo(refuse={"p5"})
    ports = [BASE["port"][0], BASE["port"][2], {"name": "p4", "segment": "b"}, {"name": "p5", "segment": "b"}]
    with pytest.raises(OSError, match="p5"):
        t.apply(variant(port=ports), io)
    assert set(t.ports) == {"p1", "p2", "p3"}
    assert all(call[0] == "open" for call in io.calls)  # p4 opened, then dropped: nothing attached
    assert t.config == variant()
