"""vtepctl trace's explanation (dataplane/trace.py) on real tables: the steps
must say what the engine's verdict says."""
import tomllib

from scapy.layers.l2 import Ether

from dataplane import config, tables, trace

CONFIG = """
[vtep]
underlay = "ul0"
local = "198.18.0.1"
[[segment]]
name = "t"
vni = 5000
isolated_vni = 5001
remote = ["198.18.0.2"]
[[port]]
name = "router"
segment = "t"
role = "promiscuous"
[[port]]
name = "guest"
segment = "t"
role = "isolated"
"""
ROUTER, GUEST = "02:00:00:00:00:01", "02:00:00:00:00:02"


def learn_step(result):
    return next(s["detail"] for s in result["steps"] if s["step"] == "learn")


def test_a_frame_claiming_another_roles_mac_is_explained_as_dropped():
    t = tables.build(config.parse(tomllib.loads(CONFIG)))
    frame = bytes(Ether(src=ROUTER, dst="ff:ff:ff:ff:ff:ff") / bytes(50))
    t.engine.access(t.ports["router"], [frame], 1)  # the router's MAC is learned, promiscuous
    forged = trace.trace(t, frame, port="guest", now=1)
    assert forged["verdict"] == "foreign_src_mac" and forged["outputs"] == []
    assert "belongs to another role" in learn_step(forged)
    honest = trace.trace(t, bytes(Ether(src=GUEST, dst=ROUTER) / bytes(50)), port="guest", now=1)
    assert honest["verdict"] == "forwarded" and "would be learned here" in learn_step(honest)
