"""vtepd as an operator runs it: start-up errors, drops it must count,
SIGHUP reload under traffic, a SIGTERM that leaves nothing behind, and its
security defaults (socket mode, listeners, capabilities).

Topology (the `site` fixture, daemon_site.py): vtepd in namespace V
(underlay ul0 198.18.0.1) with afpacket ports h1..h3, veths to host
namespaces H1..H3 (192.0.2.1..3); the Linux kernel's VXLAN device in
namespace K (198.18.0.2) is the remote VTEP, with the overlay address
192.0.2.100 on the device itself."""
import ctypes
import os
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataplane import privileges

from . import vtepd as v
from .daemon_site import (KERNEL_HOST, TCP_LISTEN, UNIX_LISTENING, capabilities, config, inet_address, loss,
                          pinger, reachable, sockets_of)

pytestmark = pytest.mark.root

VTEPCTL = Path(sys.executable).parent / "vtepctl"  # the installed console script


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


def running_state(d):
    """What a reload could change, as show-* reports it (without the moving counters)."""
    fixed = ("name", "backend", "segment", "role", "community")
    return {"segments": d.ctl("show-segments"),
            "ports": [{k: p[k] for k in fixed} for p in d.ctl("show-ports")],
            "fdb": [{k: e[k] for k in ("segment", "mac", "kind", "target", "role", "static")}
                    for e in d.ctl("show-fdb")],
            "remotes": d.ctl("show-remotes")}


def vtepctl(socket_path, *words):
    """The installed vtepctl console script: (exit status, stdout + stderr)."""
    done = subprocess.run([str(VTEPCTL), "-s", socket_path, *words], capture_output=True, text=True,
                          timeout=60)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.reliability("Reload", "SIGHUP and `vtepctl reload` with an invalid config (a VNI out of range, "
                         "then a port with no interface) while a ping flow of 100 packets/s runs",
                         expected="nothing changes: no packet lost, show-* unchanged; the error names the key, "
                                  "in the log and from `vtepctl reload`, which exits 1")
def test_invalid_reload_keeps_the_running_config(site, tmp_path, measured):
    h1 = site["h1"]
    d = v.Vtepd(site["V"][0], config(["h1"]), tmp_path)
    try:
        assert reachable(h1)
        before = running_state(d)
        flow = pinger(h1, count=400)
        time.sleep(0.5)
        d.write_config(config(["h1"]).replace("vni = 5000", "vni = 99999999"))
        d.proc.send_signal(1)  # SIGHUP: refused, in the log
        assert v.wait_for(lambda: "reload refused" in d.log_text())
        logged = next(ln for ln in d.log_text().splitlines() if "reload refused" in ln)
        assert "segment[0].vni" in logged
        status, out = vtepctl(d.socket, "reload")
        assert status == 1 and "segment[0].vni" in out and "vtepd kept its old config" in out
        # A port whose interface does not exist: refused as a whole too.
        d.write_config(config(["h1", "nosuch1"]))
        status2, out2 = vtepctl(d.socket, "reload")
        assert status2 == 1 and "nosuch1" in out2
        with pytest.raises(Exception, match="nosuch1"):
            d.ctl("reload")
        sent, lost = loss(flow)
        assert (sent, lost) == (400, 0)
        assert running_state(d) == before
        assert d.proc.poll() is None
        measured(f"{sent} pings, {lost} lost; show-segments/ports/fdb/remotes unchanged; logged: "
                 f"\"{logged.split('.toml: ', 1)[1]}\"; vtepctl reload exit {status} and {status2}, printing "
                 f"\"{out.strip().split('.toml: ', 1)[1]}\"")
    finally:
        d.stop()


@pytest.mark.reliability("Security defaults", "vtepd runs with metrics = \"127.0.0.1:9477\"",
                         expected="the only TCP socket vtepd holds listens on 127.0.0.1:9477; "
                                  "nothing answers on the underlay address")
def test_metrics_on_loopback_when_configured(site, tmp_path, measured):
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
        line = next(ln for ln in page.splitlines() if ln.startswith('vtep_port_forwarded_packets_total{port="h1"}'))
        assert 0 < float(line.split()[-1]) <= rx
        assert 'vtep_drops_total{reason="pvlan_deny"}' in page
        assert 'vtep_remote_resolved{remote="198.18.0.2"} 1.0' in page
        # Loopback only: nothing listens on the underlay address.
        probe = v.run(V, "python3", "-c", "import socket; socket.create_connection(('198.18.0.1', 9477), 1)")
        assert probe.returncode != 0
        found, unknown = sockets_of(d.proc.pid)
        tcp = [(inet_address(f[1]), f[3]) for f in found["tcp"] + found["tcp6"]]
        assert unknown == set() and tcp == [(("127.0.0.1", 9477), TCP_LISTEN)]
        measured(f"TCP sockets held by vtepd: {len(tcp)}, listening on {tcp[0][0][0]}:{tcp[0][0][1]}; "
                 f"a connection to 198.18.0.1:9477 was refused")
    finally:
        d.stop()


@pytest.mark.reliability("Security defaults", "vtepd runs without a metrics key; every socket it holds is "
                         "looked up in /proc/PID/fd and /proc/PID/net",
                         expected="no TCP socket; the only listener is the control socket (mode 0600, owner "
                                  "root); the tunnel claim's UDP and raw GRE sockets queue no packet, and "
                                  "the UDP one sees none of the tunnel packets vtepd took")
def test_no_listener_but_the_control_socket(site, tmp_path, measured):
    h1 = site["h1"]
    d = v.Vtepd(site["V"][0], config(["h1"]), tmp_path)
    try:
        assert reachable(h1)
        assert v.ping(h1, KERNEL_HOST, count=20, interval=0.01)  # VXLAN from K reaches the claim too
        st = os.stat(d.socket)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert (st.st_uid, st.st_gid) == (0, 0)
        found, unknown = sockets_of(d.proc.pid)
        assert unknown == set()
        assert found["tcp"] == found["tcp6"] == []
        listeners = [f[7] for f in found["unix"] if int(f[3], 16) & UNIX_LISTENING]
        assert listeners == [d.socket]
        # The tunnel claim (netlink.TunnelClaim): bound, its filter dropping everything; and
        # it sees nothing, for the tcx program (csrc/tunnel_bpf.h) keeps the tunnel packets
        # vtepd took out of the IP stack.
        (udp,) = found["udp"] + found["udp6"]
        udp_queued, udp_dropped = int(udp[4].split(":")[1], 16), int(udp[-1])
        assert inet_address(udp[1]) == ("198.18.0.1", 4789)
        taken = d.counters()["underlay"]["rx_packets"]
        assert udp_queued == 0 and udp_dropped == 0 and taken >= 20
        (gre,) = found["raw"] + found["raw6"]
        assert inet_address(gre[1]) == ("198.18.0.1", 47) and int(gre[4].split(":")[1], 16) == 0
        # AF_PACKET on ul0 and h1 (ETH_P_ALL): they listen to links, not to addresses; and each
        # one's socket for super-frames (csrc/offload.h), protocol 0: it receives nothing.
        assert sorted(f[3] for f in found["packet"]) == ["0000", "0000", "0003", "0003"]
        measured(f"control socket {stat.filemode(st.st_mode)} uid {st.st_uid}; sockets: {len(listeners)} Unix "
                 f"listener, 0 TCP, UDP 198.18.0.1:4789 {udp_queued} B queued / {udp_dropped} datagrams "
                 f"dropped by its filter ({taken} taken by vtepd), raw GRE {len(found['raw'] + found['raw6'])}, "
                 f"AF_PACKET {len(found['packet'])}, netlink {len(found['netlink'])}, "
                 f"other Unix {len(found['unix']) - len(listeners)}")
    finally:
        d.stop()


KEPT = privileges.mask(privileges.KEEP)


def assert_only_kept_capabilities(pid):
    """Every thread of "pid" holds CAP_NET_ADMIN and CAP_NET_RAW only; returns the threads."""
    threads = capabilities(pid)
    for tid, t in threads.items():
        assert (t["CapEff"], t["CapPrm"], t["CapBnd"]) == (KEPT, KEPT, KEPT), (tid, t)
        assert (t["CapInh"], t["CapAmb"], t["NoNewPrivs"]) == (0, 0, 1), (tid, t)
    return threads


@pytest.mark.reliability("Security defaults", "vtepd (2 workers, metrics on port 947, a scrape in progress) is "
                         "inspected thread by thread, then reloads a TAP and a port in, loses a neighbour, "
                         "changes its FDB and stops",
                         expected="every thread keeps only CAP_NET_ADMIN and CAP_NET_RAW (bounding set too; "
                                  "inheritable and ambient empty; no_new_privs); all of that still works")
def test_only_net_admin_and_net_raw_in_every_thread(site, tmp_path, measured):
    V, h1 = site["V"], site["h1"]
    v.link_up(V, "lo")
    # A port below 1024 needs CAP_NET_BIND_SERVICE, which vtepd gives up: it binds before.
    settings = 'local = "198.18.0.1"\nworkers = 2\nmetrics = "127.0.0.1:947"'
    before = v.links(V)
    d = v.Vtepd(V[0], config(["h1"]).replace('local = "198.18.0.1"', settings), tmp_path)
    scrape = socket_in(V[0], socket.AF_INET, socket.SOCK_STREAM)
    try:
        assert "privileges dropped" in d.log_text()
        # A scrape left half-sent keeps a request thread of the metrics server alive.
        scrape.connect(("127.0.0.1", 947))
        scrape.sendall(b"GET /metrics HTTP/1.1\r\n")
        assert v.wait_for(lambda: len(capabilities(d.proc.pid)) >= 5)
        threads = assert_only_kept_capabilities(d.proc.pid)
        assert sorted(t["name"] for t in threads.values()).count("vtep-worker") == 2
        assert reachable(h1)
        # After the drop: a reload that creates a TAP and opens a port,
        d.write_config(config(["h1", "h2"]).replace('local = "198.18.0.1"', settings)
                       + '\n[[port]]\nname = "vm9"\nbackend = "tap"\nsegment = "plain"\n')
        d.proc.send_signal(1)  # SIGHUP
        assert v.wait_for(lambda: {p["name"] for p in d.ctl("show-ports")} == {"h1", "h2", "vm9"})
        assert "vm9" in v.links(V) and reachable(site["h2"])
        # the next hop solicited again through netlink once the kernel forgets it,
        _, ns = V
        unresolved = d.log_text().count("its traffic is dropped until it is")
        lost = time.monotonic()
        ns.neigh("del", dst="198.18.0.2", lladdr=v.mac_of(site["K"], "ul0"),
                 ifindex=ns.link_lookup(ifname="ul0")[0])
        assert v.wait_for(lambda: d.log_text().count("its traffic is dropped until it is") > unresolved)
        assert v.wait_for(lambda: d.ctl("show-remotes")[0]["next_hop"] is not None)
        resolicited = time.monotonic() - lost
        assert reachable(h1)
        # and the FDB commands.
        d.ctl("fdb-add", {"segment": "plain", "mac": "02:00:00:00:bb:01", "port": "h1"})
        assert "02:00:00:00:bb:01" in {e["mac"] for e in d.ctl("show-fdb")}
        threads = assert_only_kept_capabilities(d.proc.pid)
        assert v.tcx_programs(V, "ul0") == 1  # one for both workers (csrc/tunnel_bpf.h)
        scrape.close()
        assert d.stop() == 0
        assert v.links(V) == before and not os.path.exists(d.socket)  # the TAP and the socket are gone
        assert v.tcx_programs(V, "ul0") == 0
        measured(f"{len(threads)} threads (2 vtep-worker, main, metrics server on port 947 and a request): "
                 f"CapEff = CapPrm = "
                 f"CapBnd = {KEPT:#x} (CAP_NET_ADMIN, CAP_NET_RAW), CapInh = CapAmb = 0, NoNewPrivs = 1 in "
                 f"each; reload added h2 and TAP vm9, a deleted neighbour was solicited and back within "
                 f"{resolicited:.1f} s, "
                 f"SIGTERM exit 0 removed the TAP, the socket and the tcx program")
    finally:
        scrape.close()
        d.stop()


@pytest.mark.reliability("Security defaults", "vtepd is started as root without CAP_SETPCAP, so it cannot "
                         "shrink its bounding set",
                         expected="it logs what it could not drop, keeps only CAP_NET_ADMIN and CAP_NET_RAW "
                                  "effective and permitted, and forwards")
def test_without_setpcap_it_logs_what_it_kept_and_carries_on(site, tmp_path, measured):
    def without_setpcap():
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(privileges.PR_CAPBSET_DROP, privileges.CAP_SETPCAP, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP")

    d = v.Vtepd(site["V"][0], config(["h1"]), tmp_path, preexec=without_setpcap)
    try:
        assert reachable(site["h1"])
        warning = next(ln for ln in d.log_text().splitlines() if "privileges not all dropped" in ln)
        assert "kept CAP_NET_ADMIN, CAP_NET_RAW" in warning and "needs CAP_SETPCAP" in warning
        for t in capabilities(d.proc.pid).values():
            assert (t["CapEff"], t["CapPrm"], t["CapInh"], t["CapAmb"]) == (KEPT, KEPT, 0, 0)
            assert t["CapBnd"] & ~KEPT and not t["CapBnd"] >> privileges.CAP_SETPCAP & 1
        measured(f"logged: {warning.split(': ', 1)[1]}")
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
