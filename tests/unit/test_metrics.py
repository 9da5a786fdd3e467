"""The Prometheus endpoint (dataplane/metrics.py): served on loopback,
scraped over HTTP and parsed with prometheus_client's own parser."""
import urllib.error
import urllib.request

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from dataplane import __version__, metrics


def counters(rx, tx, drops, learn_refused=0):
    return {"rx_packets": rx, "rx_bytes": rx * 100, "tx_packets": tx, "tx_bytes": tx * 100,
            "forwarded": rx - sum(drops.values()), "learn_refused": learn_refused, "drops": drops}


def snapshot():
    return {
        "ports": {"vm1": counters(10, 20, {"pvlan_deny": 3, "vlan_tagged": 1}),
                  "vm2": counters(5, 6, {"pvlan_deny": 2, "mtu": 4})},
        "underlay": counters(100, 200, {"unknown_vni": 7, "pvlan_deny": 1, "ring_full": 0}),
        "segments": {"tenant-a": counters(15, 26, {"pvlan_deny": 5}, learn_refused=9),
                     "plain": counters(1, 2, {})},
        "fdb_entries": {"tenant-a": 12, "plain": 0},
        "remotes": {"198.18.0.2": True, "198.18.0.3": False},
    }


def scrape(server):
    with urllib.request.urlopen(server.url, timeout=5) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    samples = {}
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = family.type
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = s.value
    return families, samples


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def served():
    state = {"snap": snapshot(), "calls": 0}

    def snap():
        state["calls"] += 1
        return state["snap"]

    server = metrics.start("127.0.0.1", 0, snap)
    try:
        yield server, state
    finally:
        server.close()


def test_names_labels_values(served):
    server, _ = served
    assert server.address == "127.0.0.1" and server.port > 0
    families, samples = scrape(server)
    for scope in ("port", "underlay", "segment"):
        for part in ("receive_packets", "receive_bytes", "transmit_packets", "transmit_bytes", "forwarded_packets",
                     "drops"):
            assert families[f"vtep_{scope}_{part}"] == "counter"
    assert families["vtep_segment_learn_refused"] == "counter"
    assert families["vtep_drops"] == "counter"
    assert families["vtep_fdb_entries"] == "gauge"
    assert families["vtep_remote_resolved"] == "gauge"
    assert families["vtep_info"] == "gauge"  # the text format writes an info metric as a gauge

    assert value(samples, "vtep_port_receive_packets_total", port="vm1") == 10
    assert value(samples, "vtep_port_receive_bytes_total", port="vm1") == 1000
    assert value(samples, "vtep_port_transmit_packets_total", port="vm2") == 6
    assert value(samples, "vtep_port_transmit_bytes_total", port="vm2") == 600
    assert value(samples, "vtep_port_drops_total", port="vm1", reason="vlan_tagged") == 1
    assert value(samples, "vtep_port_drops_total", port="vm2", reason="mtu") == 4
    assert value(samples, "vtep_underlay_receive_packets_total") == 100
    assert value(samples, "vtep_port_forwarded_packets_total", port="vm1") == 6
    assert value(samples, "vtep_underlay_forwarded_packets_total") == 92
    assert value(samples, "vtep_segment_forwarded_packets_total", segment="tenant-a") == 10
    assert value(samples, "vtep_underlay_transmit_bytes_total") == 20000
    assert value(samples, "vtep_underlay_drops_total", reason="unknown_vni") == 7
    assert value(samples, "vtep_underlay_drops_total", reason="ring_full") == 0
    assert value(samples, "vtep_segment_receive_packets_total", segment="tenant-a") == 15
    assert value(samples, "vtep_segment_transmit_packets_total", segment="plain") == 2
    assert value(samples, "vtep_segment_drops_total", segment="tenant-a", reason="pvlan_deny") == 5
    assert value(samples, "vtep_segment_learn_refused_total", segment="tenant-a") == 9
    assert value(samples, "vtep_segment_learn_refused_total", segment="plain") == 0
    assert value(samples, "vtep_fdb_entries", segment="tenant-a") == 12
    assert value(samples, "vtep_fdb_entries", segment="plain") == 0
    assert value(samples, "vtep_remote_resolved", remote="198.18.0.2") == 1
    assert value(samples, "vtep_remote_resolved", remote="198.18.0.3") == 0
    assert value(samples, "vtep_info", version=__version__) == 1
    # Nothing else: no process/platform collectors, no _created samples.
    assert all(name.startswith("vtep_") for name, _ in samples)
    assert not any(name.endswith("_created") for name, _ in samples)


def test_drop_totals_add_up(served):
    server, state = served
    _, samples = scrape(server)
    snap = state["snap"]
    expected = {}
    for c in [*snap["ports"].values(), snap["underlay"]]:
        for reason, n in c["drops"].items():
            expected[reason] = expected.get(reason, 0) + n
    totals = {dict(labels)["reason"]: v for (name, labels), v in samples.items() if name == "vtep_drops_total"}
    assert totals == expected == {"pvlan_deny": 6, "vlan_tagged": 1, "mtu": 4, "unknown_vni": 7, "ring_full": 0}
    # The same totals from the exported per-port and underlay series: segments are not added again.
    by_scope = {}
    for (name, labels), v in samples.items():
        if name in ("vtep_port_drops_total", "vtep_underlay_drops_total"):
            reason = dict(labels)["reason"]
            by_scope[reason] = by_scope.get(reason, 0) + v
    assert by_scope == totals
    assert sum(totals.values()) == 18


def test_every_scrape_reads_a_fresh_snapshot(served):
    server, state = served
    before = state["calls"]
    scrape(server)
    state["snap"]["ports"]["vm1"]["rx_packets"] = 11
    state["snap"]["ports"]["vm3"] = counters(1, 1, {"pvlan_deny": 1})
    _, samples = scrape(server)
    assert state["calls"] == before + 2
    assert value(samples, "vtep_port_receive_packets_total", port="vm1") == 11
    assert value(samples, "vtep_port_receive_packets_total", port="vm3") == 1
    assert value(samples, "vtep_drops_total", reason="pvlan_deny") == 7


def test_empty_snapshot():
    with metrics.start("127.0.0.1", 0, lambda: {}) as server:
        families, samples = scrape(server)
    assert value(samples, "vtep_underlay_receive_packets_total") == 0
    assert value(samples, "vtep_info", version=__version__) == 1
    assert not any(name == "vtep_drops_total" for name, _ in samples)


def test_own_registry_not_the_global_one(served):
    server, _ = served
    assert server.registry is not REGISTRY
    assert not any(m.name.startswith("vtep_") for m in REGISTRY.collect())


def test_close_frees_the_port():
    server = metrics.start("127.0.0.1", 0, snapshot)
    port = server.port
    scrape(server)
    server.close()
    server.shutdown()  # twice is fine
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
    # The port can be bound again at once.
    again = metrics.start("127.0.0.1", port, snapshot)
    try:
        assert again.port == port
        scrape(again)
    finally:
        again.close()


def test_bind_error_is_oserror():
    with metrics.start("127.0.0.1", 0, snapshot) as server:
        with pytest.raises(OSError):
            metrics.start("127.0.0.1", server.port, snapshot)
