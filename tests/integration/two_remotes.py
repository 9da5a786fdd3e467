"""Two kernel VTEPs and a host behind vtepd, for the fault, load and soak
tests.

Topology: an underlay bridge (namespace UL) joins vtepd's namespace V
(ul0, 198.18.0.1) and two Linux kernel VTEPs, K (198.18.0.2, overlay host
192.0.2.100 on its vx0) and K2 (198.18.0.3, 192.0.2.101).  Host H1
(192.0.2.1) sits behind vtepd's afpacket port h1; vtepd also has a TAP
port vm1.  Hosts and kernel VTEPs have static ARP entries and vtepd static
FDB entries, so no frame is flooded and every datagram is counted."""
import time

from . import vtepd as v
from .traffic import Flow

LOCAL, K_ADDR, K2_ADDR = "198.18.0.1", "198.18.0.2", "198.18.0.3"
H1_IP, K_HOST, K2_HOST, VM1_IP = "192.0.2.1", "192.0.2.100", "192.0.2.101", "192.0.2.50"
H1_MAC, K_MAC, K2_MAC = "02:00:00:00:01:01", "02:00:00:00:aa:02", "02:00:00:00:aa:03"
RATE = 200          # datagrams per second in each flow
LIMIT = 1.0         # seconds: the recovery limit

CONFIG = f"""
[vtep]
underlay = "ul0"
local = "{LOCAL}"

[[segment]]
name = "plain"
vni = 5000
remote = ["{K_ADDR}", "{K2_ADDR}"]

[[port]]
name = "h1"
backend = "afpacket"
segment = "plain"

[[port]]
name = "vm1"
backend = "tap"
segment = "plain"

[[fdb]]
segment = "plain"
mac = "{K_MAC}"
remote = "{K_ADDR}"

[[fdb]]
segment = "plain"
mac = "{K2_MAC}"
remote = "{K2_ADDR}"

[[fdb]]
segment = "plain"
mac = "{H1_MAC}"
port = "h1"
"""


def kernel_vtep(ns, bridge_ns, name, address, host_ip, vx_mac):
    """A kernel VXLAN VTEP in "ns" on the underlay bridge, with overlay host
    "host_ip" on its vx0 and H1 as a static neighbour."""
    v.veth(bridge_ns, f"p{name}", ns, "ul0")
    v.link_up(bridge_ns, f"p{name}", master=bridge_ns[1].link_lookup(ifname="br0")[0])
    v.address(ns, "ul0", address, 24)
    _, k = ns
    k.link("add", ifname="vx0", kind="vxlan", vxlan_id=5000, vxlan_port=4789, vxlan_local=address,
           vxlan_group=LOCAL, vxlan_link=k.link_lookup(ifname="ul0")[0], address=vx_mac)
    v.address(ns, "vx0", host_ip, 24)
    v.link_up(ns, "vx0")
    k.neigh("add", dst=H1_IP, lladdr=H1_MAC, ifindex=k.link_lookup(ifname="vx0")[0], state="permanent")


def build(namespaces):
    """The namespaces, bridge, veths and kernel VTEPs; vtepd is the caller's
    to start.  "namespaces" is the tests' fixture (or the soak's own)."""
    UL, V, K, K2, H1 = (namespaces(n) for n in ("ul", "v", "k", "k2", "h1"))
    UL[1].link("add", ifname="br0", kind="bridge", br_stp_state=0)
    v.link_up(UL, "br0")
    v.veth(UL, "pv", V, "ul0")
    v.link_up(UL, "pv", master=UL[1].link_lookup(ifname="br0")[0])
    v.address(V, "ul0", LOCAL, 24)
    kernel_vtep(K, UL, "k", K_ADDR, K_HOST, K_MAC)
    kernel_vtep(K2, UL, "k2", K2_ADDR, K2_HOST, K2_MAC)
    v.veth(V, "h1", H1, "eth0", mtu=1450)
    v.link_up(H1, "eth0", address=H1_MAC)
    v.address(H1, "eth0", H1_IP, 24)
    eth0 = H1[1].link_lookup(ifname="eth0")[0]
    for ip, mac in ((K_HOST, K_MAC), (K2_HOST, K2_MAC)):
        H1[1].neigh("add", dst=ip, lladdr=mac, ifindex=eth0, state="permanent")
    return {"UL": UL, "V": V, "K": K, "K2": K2, "H1": H1}


def flows(site, remotes=("K",), rate=RATE):
    """Both directions between H1 and each kernel VTEP's host, started."""
    made = {}
    for i, name in enumerate(remotes):
        host = K_HOST if name == "K" else K2_HOST
        made[f"H1->{name}"] = Flow(site["H1"], site[name], host, 7000 + 2 * i, rate, name=f"H1->{name}")
        made[f"{name}->H1"] = Flow(site[name], site["H1"], H1_IP, 7001 + 2 * i, rate, name=f"{name}->H1")
    for f in made.values():
        f.start()
    for f in made.values():
        if not f.wait_flowing():
            raise RuntimeError(f"{f} never flowed")
    return made


def stop_all(made, drain=0.5):
    """Stop every flow's sender, give the last datagrams "drain" seconds to
    arrive, then stop the receivers."""
    for f in made.values():
        f.stop_sending()
    time.sleep(drain)
    for f in made.values():
        f.stop(drain=0)
