"""vtepd as an operator runs it: start-up errors, drops it must count,
SIGHUP reload under traffic, and a SIGTERM that leaves nothing behind.

Topology: vtepd in namespace V (underlay ul0 198.18.0.1) with afpacket
ports h1..h3, veths to host namespaces H1..H3 (192.0.2.1..3); the Linux
kernel's VXLAN device in namespace K (198.18.0.2) is the remote VTEP, with
the overlay address 192.0.2.100 on the device itself."""
import socket
import struct
import subprocess
import time

import pytest

from . import vtepd as v

pytestmark = pytest.mark.root

KERNEL_HOST = "192.0.2.100"
CONFIG = """
[vtep]
underlay = "ul0"
local = "198.18.0.1"

[[segment]]
name = "plain"
vni = 5000
remote = ["198.18.0.2"]
{ports}
[[fdb]]
segment = "plain"
mac = "02:00:00:00:aa:01"
{fdb_target}
"""
PORT = """
[[port]]
name = "{name}"
backend = "afpacket"
segment = "plain"
"""


def config(ports, fdb_target='remote = "198.18.0.2"'):
    return CONFIG.format(ports="".join(PORT.format(name=p) for p in ports), fdb_target=fdb_target)


@pytest.fixture
def site(namespaces):
    """The namespaces, veths and kernel VTEP; vtepd is the test's to start."""
    V, K = namespaces("v"), namespaces("k")
    v.veth(V, "ul0", K, "ul0")
    v.address(V, "ul0", "198.18.0.1", 24)
    v.address(K, "ul0", "198.18.0.2", 24)
    _, k = K
    k.link("add", ifname="vx0", kind="vxlan", vxlan_id=5000, vxlan_port=4789, vxlan_local="198.18.0.2",
           vxlan_group="198.18.0.1", vxlan_link=k.link_lookup(ifname="ul0")[0])
    v.address(K, "vx0", KERNEL_HOST, 24)
    v.link_up(K, "vx0")
    hosts = {}
    for i in (1, 2, 3):
        H = namespaces(f"h{i}")
        v.veth(V, f"h{i}", H, "eth0", mtu=1450)
        v.address(H, "eth0", f"192.0.2.{i}", 24)
        hosts[f"h{i}"] = H
    return {"V": V, "K": K, **hosts}


def reachable(host, target=KERNEL_HOST):
    """Pings until one passes: the first ones wait for ARP and the next hop."""
    return v.wait_for(lambda: v.ping(host, target, count=1, wait=1), timeout=6)


def test_missing_interfaces_are_clear_errors_and_leave_nothing(site, tmp_path):
    V = site["V"]
    before = v.links(V)
    for toml, message in (
        (config(["h1"]).replace('underlay = "ul0"', 'underlay = "nosuch0"'),
         "vtep.underlay: no interface named 'nosuch0'"),
        (config(["h1", "nosuch1"]), "port nosuch1: no interface named 'nosuch1'"),
    ):
        with pytest.raises(RuntimeError, match="exited with 1") as failed:
            v.Vtepd(V[0], toml, tmp_path)
        assert message in str(failed.value)
        assert v.links(V) == before


def test_forwards_then_sigterm_removes_what_it_created(site, tmp_path):
    V = site["V"]
    before = v.links(V)
    toml = config(["h1"]) + '\n[[port]]\nname = "vm9"\nbackend = "tap"\nsegment = "plain"\n'
    d = v.Vtepd(V[0], toml, tmp_path)
    try:
        assert "vm9" in v.links(V)  # vtepd made the TAP
        assert reachable(site["h1"])
        c = d.counters()
        assert c["ports"]["h1"]["rx_packets"] > 0 and c["underlay"]["rx_packets"] > 0
        assert c["underlay"]["drops"]["bad_checksum"] == 0
    finally:
        assert d.stop() == 0
    assert v.links(V) == before  # the TAP is gone
    assert not (tmp_path / "vtepd.sock").exists()
    assert "stopping" in d.log_text()


def test_the_kernel_does_not_answer_tunnel_traffic(site, tmp_path):
    """vtepd consumes VXLAN through AF_PACKET; the kernel in V must not also
    send ICMP port unreachable back to the peer."""
    K = site["K"]
    d = v.Vtepd(site["V"][0], config(["h1"]), tmp_path)
    try:
        icmp = socket_in(K[0], socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        icmp.settimeout(0.2)
        assert reachable(site["h1"])
        assert v.ping(site["h1"], KERNEL_HOST, count=5, interval=0.05)
        unreachable = []
        try:
            while True:
                data, (src, _) = icmp.recvfrom(2048)
                if src == "198.18.0.1" and data[20] == 3:
                    unreachable.append(data)
        except socket.timeout:
            pass
        icmp.close()
        assert unreachable == []
    finally:
        d.stop()


def socket_in(ns, *args):
    from pyroute2 import netns
    return netns.create_socket(ns, *args)


def test_too_big_and_tagged_frames_are_dropped_and_counted(site, tmp_path):
    h1 = site["h1"]
    d = v.Vtepd(site["V"][0], config(["h1"]), tmp_path)
    try:
        assert reachable(h1)
        # A host with a bigger MTU than the tunnel can carry: 1500-byte IP
        # packets make 1514-byte frames, 50 bytes of VXLAN over IPv4 too many.
        h1[1].link("set", index=h1[1].link_lookup(ifname="eth0")[0], mtu=1500)
        site["V"][1].link("set", index=site["V"][1].link_lookup(ifname="h1")[0], mtu=1500)
        assert not v.ping(h1, KERNEL_HOST, count=3, wait=1, size=1472)
        assert v.ping(h1, KERNEL_HOST, count=1, size=1400)  # what fits still goes
        # A tagged frame on the access port: never forwarded (no VLAN hopping).
        raw = socket_in(h1[0], socket.AF_PACKET, socket.SOCK_RAW)
        raw.bind(("eth0", 0))
        src = bytes.fromhex(v.mac_of(h1, "eth0").replace(":", ""))
        raw.send(b"\xff" * 6 + src + struct.pack("!HH", 0x8100, 10) + b"\x08\x06" + bytes(46))
        raw.close()
        assert v.wait_for(lambda: d.counters()["ports"]["h1"]["drops"]["vlan_tagged"] == 1)
        c = d.counters()
        assert c["ports"]["h1"]["drops"]["mtu"] >= 3
        assert c["segments"]["plain"]["drops"]["mtu"] >= 3
    finally:
        d.stop()


def pinger(host, target=KERNEL_HOST, count=400, interval=0.01):
    """A steady flow: one echo every "interval" seconds, in the background."""
    return subprocess.Popen(["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", "1", target],
                            preexec_fn=v.in_netns(host[0]), stdout=subprocess.PIPE, text=True)


def loss(proc):
    out = proc.communicate(timeout=30)[0]
    sent, received = (int(w.split()[0]) for w in out.split("\n")[-3].split(",")[:2])
    return sent, sent - received


def test_sighup_reload_under_traffic(site, tmp_path):
    h1, h2, h3 = site["h1"], site["h2"], site["h3"]
    d = v.Vtepd(site["V"][0], config(["h1", "h2"]), tmp_path)
    try:
        assert reachable(h1) and reachable(h2)
        before = {p["name"] for p in d.ctl("show-ports")}
        flow = pinger(h1)
        time.sleep(1)
        # h3 added, h2 removed, the static entry moved from the remote to h1.
        d.write_config(config(["h1", "h3"], fdb_target='port = "h1"'))
        d.proc.send_signal(1)  # SIGHUP
        assert v.wait_for(lambda: {p["name"] for p in d.ctl("show-ports")} == {"h1", "h3"})
        sent, lost = loss(flow)
        assert (sent, lost) == (400, 0), "the untouched port lost traffic during the reload"
        assert before == {"h1", "h2"}
        assert reachable(h3)
        assert not v.ping(h2, KERNEL_HOST, count=2, wait=1)
        entry = next(e for e in d.ctl("show-fdb") if e["mac"] == "02:00:00:00:aa:01")
        assert (entry["kind"], entry["target"], entry["static"]) == ("local", "h1", True)
        log = d.log_text()
        assert "reload: port h3 added" in log and "reload: port h2 removed" in log
    finally:
        d.stop()


def test_invalid_reload_keeps_the_running_config(site, tmp_path):
    h1 = site["h1"]
    d = v.Vtepd(site["V"][0], config(["h1"]), tmp_path)
    try:
        assert reachable(h1)
        flow = pinger(h1, count=200)
        d.write_config(config(["h1"]).replace("vni = 5000", "vni = 99999999"))
        with pytest.raises(Exception, match="segment\\[0\\].vni"):
            d.ctl("reload")
        d.proc.send_signal(1)  # SIGHUP: the same refusal, in the log
        assert v.wait_for(lambda: "reload refused" in d.log_text())
        # A port whose interface does not exist: refused as a whole too.
        d.write_config(config(["h1", "nosuch1"]))
        with pytest.raises(Exception, match="nosuch1"):
            d.ctl("reload")
        assert loss(flow) == (200, 0)
        assert [p["name"] for p in d.ctl("show-ports")] == ["h1"]
        assert d.ctl("show-segments")[0]["vni"] == 5000
        assert d.proc.poll() is None
    finally:
        d.stop()


def test_metrics_on_loopback_when_configured(site, tmp_path):
    V = site["V"]
    v.link_up(V, "lo")
    toml = config(["h1"]).replace('local = "198.18.0.1"', 'local = "198.18.0.1"\nmetrics = "127.0.0.1:9477"')
    d = v.Vtepd(V[0], toml, tmp_path)
    try:
        assert reachable(site["h1"])
        page = v.run(V, "python3", "-c", "import urllib.request as u; "
                     "print(u.urlopen('http://127.0.0.1:9477/metrics', timeout=5).read().decode())").stdout
        rx = d.counters()["ports"]["h1"]["rx_packets"]
        line = next(ln for ln in page.splitlines() if ln.startswith('vtep_port_receive_packets_total{port="h1"}'))
        assert 0 < float(line.split()[-1]) <= rx
        assert 'vtep_drops_total{reason="pvlan_deny"}' in page
        assert 'vtep_remote_resolved{remote="198.18.0.2"} 1.0' in page
        # Loopback only: nothing listens on the underlay address.
        probe = v.run(V, "python3", "-c", "import socket; socket.create_connection(('198.18.0.1', 9477), 1)")
        assert probe.returncode != 0
    finally:
        d.stop()


def test_no_metrics_listener_unless_configured(site, tmp_path):
    d = v.Vtepd(site["V"][0], config(["h1"]), tmp_path)
    try:
        listening = v.run(site["V"], "cat", "/proc/net/tcp", "/proc/net/tcp6").stdout
        assert all(fields[3] != "0A" for fields in (ln.split() for ln in listening.splitlines()[1:]) if len(fields) > 3)
    finally:
        d.stop()


def test_two_workers_share_ports_and_underlay(site, tmp_path):
    """workers = 2: each link has two handles (a fanout group, TAP queues);
    traffic flows, and a reload attaches a new port to both workers."""
    toml = config(["h1"]).replace('local = "198.18.0.1"', 'local = "198.18.0.1"\nworkers = 2')
    d = v.Vtepd(site["V"][0], toml, tmp_path)
    try:
        assert reachable(site["h1"])
        assert v.ping(site["h1"], KERNEL_HOST, count=20, interval=0.01)
        d.write_config(config(["h1", "h2"]).replace('local = "198.18.0.1"', 'local = "198.18.0.1"\nworkers = 2'))
        assert d.ctl("reload")["changes"] == ["port h2 added"]
        assert reachable(site["h2"])
        c = d.counters()
        assert c["ports"]["h2"]["rx_packets"] > 0 and sum(c["ports"]["h1"]["drops"].values()) == 0
    finally:
        assert d.stop() == 0


def test_fdb_commands_change_the_running_tables(site, tmp_path):
    d = v.Vtepd(site["V"][0], config(["h1"]), tmp_path)
    try:
        d.ctl("fdb-add", {"segment": "plain", "mac": "02:00:00:00:bb:01", "remote": "198.18.0.2",
                          "role": "promiscuous"})
        d.ctl("fdb-add", {"segment": "plain", "mac": "02:00:00:00:bb:02", "port": "h1"})
        fdb = {e["mac"]: e for e in d.ctl("show-fdb", {"segment": "plain"})}
        assert (fdb["02:00:00:00:bb:01"]["target"], fdb["02:00:00:00:bb:01"]["static"]) == ("198.18.0.2", True)
        assert fdb["02:00:00:00:bb:02"]["target"] == "h1"
        # The file's checks apply: a multicast MAC or an unknown port is refused, and nothing changes.
        for bad, message in (({"mac": "01:00:5e:00:00:01", "port": "h1"}, "unicast"),
                             ({"mac": "02:00:00:00:bb:03", "port": "nosuch"}, "nosuch")):
            with pytest.raises(Exception, match=message):
                d.ctl("fdb-add", {"segment": "plain", **bad})
        d.ctl("fdb-del", {"segment": "plain", "mac": "02:00:00:00:bb:01"})
        assert "02:00:00:00:bb:01" not in {e["mac"] for e in d.ctl("show-fdb")}
        assert len(d.ctl("show-fdb")) == len(fdb) - 1
        # A batch is checked as a whole: one bad entry (the last) and none is added.
        batch = [{"segment": "plain", "mac": f"02:00:00:01:00:{i:02x}", "remote": "198.18.0.2"} for i in range(200)]
        with pytest.raises(Exception, match=r"entries\[200\]\.port.*nosuch"):
            d.ctl("fdb-add", {"entries": [*batch, {"segment": "plain", "mac": "02:00:00:02:00:01", "port": "nosuch"}]})
        assert len(d.ctl("show-fdb")) == len(fdb) - 1
        assert d.ctl("fdb-add", {"entries": batch}) == {"added": 200}
        assert len(d.ctl("show-fdb")) == len(fdb) - 1 + 200
    finally:
        d.stop()
