"""20 seconds of the soak (tests/soak.py, `make soak`) with its changes
made sooner: the soak's logic keeps working, and its counter identity holds
under reloads, FDB batches and link flaps.  The hour-long run (RSS flat)
is `make soak`, outside CI."""
import pytest

from tests import soak

pytestmark = [pytest.mark.root, pytest.mark.slow]

SECONDS = 20
EVERY = {"fdb": 3, "reload": 5, "port_flap": 7, "remote_flap": 11}


@pytest.mark.reliability(
    "Load", "20 s of mixed traffic (10 flows, unicast and broadcast, both directions) with FDB batches, "
            "reloads adding and removing a port, and port and remote link flaps",
    expected="every frame received is forwarded or counted as dropped with a reason; flows that no change "
             "touches lose nothing the kernel did not count; vtepd stays up and stops cleanly")
def test_short_soak(namespaces, tmp_path, measured):
    result = soak.run(SECONDS, namespaces, tmp_path / "soak", log=lambda *_: None, every=EVERY)
    checks = result["checks"]
    failed = [name for name, ok in checks.items() if not ok and name != "rss_flat"]
    assert failed == [], soak.summary(result)
    c = result["changes"]
    assert c["reloads"] >= 3 and c["fdb_added"] > 0 and c["port_flaps"] >= 2 and c["remote_flaps"] >= 1
    blocks = result["identity"]
    frames = sum(b["rx"] for n, b in blocks.items() if not n.startswith("segment"))
    forwarded = sum(b["forwarded"] for n, b in blocks.items() if not n.startswith("segment"))
    stable = sum(result["flows"][n]["sent"] for n in result["untouched_flows"])
    measured(f"{frames} frames received, {forwarded} forwarded, the other {frames - forwarded} each with "
             f"a drop reason (identity held in every block, at the end and in every sample); "
             f"{c['reloads']} reloads, {c['fdb_added']} FDB entries added and {c['fdb_deleted']} deleted, "
             f"{c['port_flaps']} port and {c['remote_flaps']} remote flaps; untouched flows lost "
             f"{result['untouched_flows_lost']} of {stable} datagrams (kernel link drops: "
             f"{sum(result['kernel_link_drops'].values())})")
