"""NVGRE end to end with the real vtepd (DESIGN.md section 3, "NVGRE").

Two vtepd, in namespaces V1 and V2, share a veth underlay (IPv4 or IPv6)
and one NVGRE segment (VSID 5000); hosts H1 and H2 sit behind them on
AF_PACKET ports.  The hosts ping each other both ways while tcpdump records
the underlay, and tshark, an independent decoder, checks every GRE header
vtepd sent: K set, C and S clear, version 0, protocol 0x6558, VSID = the
configured vni, and a FlowID that follows the inner flow.

Then Open vSwitch's userspace datapath (ovs.py) is the peer: vtepd in V1
talks NVGRE to an OVS gre/ip6gre port in namespace O, and H1 pings an OVS
internal port and back.  OVS checks the VSID (its flow masks the FlowID off)
and sets its own.

    H1 eth0 ── h1 vtepd (V1) ul0 ══ underlay ══ ul0 vtepd (V2) h2 ── eth0 H2
    H1 eth0 ── h1 vtepd (V1) ul0 ══ underlay ══ o0 br-phy  OVS (O)  br-int: tun0, vm0"""
import socket
import subprocess
import time
from collections import defaultdict

import pytest
from pyroute2 import netns

from .ovs import Ovs
from .vtepd import Vtepd, address, in_netns, link_up, mac_of, one_segment_config, ping, veth

pytestmark = [pytest.mark.root, pytest.mark.slow]

VSID = 5000
UNDERLAY = {4: ("198.18.0.1", "198.18.0.2", 24), 6: ("2001:db8:f::1", "2001:db8:f::2", 64)}
HOST_MTU = {4: 1450, 6: 1430}
H1, H2 = "192.0.2.1", "192.0.2.2"
FLOWS = range(40000, 40016)   # UDP source ports of the FlowID test's flows


def config(local, remote, port):
    return one_segment_config(local, remote, port, encapsulation="nvgre", vni=VSID)


def wait_for_next_hop(vtepd, remote, timeout=5):
    """Until vtepd has resolved the peer's MAC (it asks the kernel to); the MAC."""
    deadline = time.monotonic() + timeout
    while True:
        [entry] = [r for r in vtepd.ctl("show-remotes") if r["address"] == remote]
        if entry["next_hop"]:
            return entry["next_hop"]
        assert time.monotonic() < deadline, f"remote {remote} not resolved: {entry['reason']}"
        time.sleep(0.05)


def ping_retry(src, target, tries=5):
    """The first exchange also resolves the overlay neighbour: give it a few tries."""
    return any(ping(src, target, count=1, wait=1) for _ in range(tries))


def host_behind(v, port, h, host_ip, mtu):
    """Host namespace "h" on a veth to vtepd's AF_PACKET port "port" in "v"."""
    link_up(h, "lo")
    veth(v, port, h, "eth0", mtu=mtu)
    address(h, "eth0", host_ip, 24)


class Capture:
    """tcpdump on "ifname" in namespace "ns" into a pcap, for tshark to read.

    Inbound packets only, so a capture at each end of the underlay sees every
    packet once; and a vtepd's own transmissions are invisible where it sends
    them anyway (PACKET_QDISC_BYPASS skips the kernel's packet taps), so they
    are captured where they arrive.  Immediate mode: otherwise libpcap hands
    over packets a ring block at a time, and what is still in a block when
    tcpdump stops is lost."""

    def __init__(self, ns, ifname, path, bpf):
        self.path = path
        argv = ["tcpdump", "-i", ifname, "-Q", "in", "-n", "-s", "256", "-w", str(path), "-U",
                "--immediate-mode", bpf]
        self.proc = subprocess.Popen(argv, preexec_fn=in_netns(ns[0]), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        # tcpdump says "listening on" once its socket is open.
        line = self.proc.stderr.readline()
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"tcpdump: {line}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()

    def fields(self, *names, display_filter=None):
        """Rows of tshark's -T fields output: one dict per packet, every
        occurrence of a field (outer and inner headers) in a list."""
        argv = ["tshark", "-n", "-r", str(self.path), "-T", "fields", "-E", "separator=\t",
                "-E", "occurrence=a", "-E", "aggregator=,"]
        if display_filter:
            argv += ["-Y", display_filter]
        for name in names:
            argv += ["-e", name]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
        rows = []
        for line in done.stdout.splitlines():
            values = line.split("\t")
            rows.append({n: (v.split(",") if v else []) for n, v in zip(names, values)})
        return rows


def capture_both_ends(ends, tmp_path, bpf):
    """A Capture at each (ns, ifname) of "ends"."""
    captures = []
    try:
        for i, (ns, ifname) in enumerate(ends):
            captures.append(Capture(ns, ifname, tmp_path / f"underlay{i}.pcap", bpf))
    except BaseException:
        stop(captures)
        raise
    return captures


def stop(captures):
    for capture in captures:
        capture.stop()


def fields(captures, *names):
    return [row for capture in captures for row in capture.fields(*names)]


@pytest.fixture(params=[4, 6], ids=["ipv4-underlay", "ipv6-underlay"])
def pair(request, namespaces, tmp_path):
    """vtepd in V1 and V2 with hosts H1 and H2."""
    family = request.param
    ip1, ip2, prefix = UNDERLAY[family]
    v1, v2, h1, h2 = namespaces("v1"), namespaces("v2"), namespaces("h1"), namespaces("h2")
    veth(v1, "ul0", v2, "ul0")
    address(v1, "ul0", ip1, prefix)
    address(v2, "ul0", ip2, prefix)
    host_behind(v1, "h1", h1, H1, HOST_MTU[family])
    host_behind(v2, "h2", h2, H2, HOST_MTU[family])
    started = []
    try:
        started.append(Vtepd(v1[0], config(ip1, ip2, "h1"), tmp_path, name="vtepd1"))
        started.append(Vtepd(v2[0], config(ip2, ip1, "h2"), tmp_path, name="vtepd2"))
        wait_for_next_hop(started[0], ip2)
        wait_for_next_hop(started[1], ip1)
        yield {"family": family, "ips": (ip1, ip2), "v1": v1, "v2": v2, "h1": h1, "h2": h2, "vtepds": started,
               "tmp": tmp_path}
    finally:
        for vtepd in started:
            try:
                vtepd.stop()
            except subprocess.TimeoutExpired:
                vtepd.kill()


def drops(vtepd):
    """{(where, reason): n} of vtepd's nonzero drop counters."""
    counters = vtepd.counters()
    blocks = [("underlay", counters["underlay"]), *counters["ports"].items()]
    return {(where, reason): n for where, block in blocks for reason, n in block["drops"].items() if n}


def send_flows(src_ns, src_ip, dst_ip, ports, per_flow=2):
    """UDP datagrams from "src_ip" to "dst_ip":9, "per_flow" from each source port."""
    for port in ports:
        sock = netns.create_socket(src_ns[0], socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((src_ip, port))
            for i in range(per_flow):
                sock.sendto(f"flow {port} #{i}".encode(), (dst_ip, 9))
        finally:
            sock.close()


def test_two_vtepds_ping_and_nvgre_on_the_wire(pair):
    family, (ip1, ip2) = pair["family"], pair["ips"]
    h1, h2 = pair["h1"], pair["h2"]
    outer = "ip" if family == 4 else "ipv6"
    unreachable = "icmp[0] == 3" if family == 4 else "(icmp6 and (ip6[40] == 1 or ip6[40] == 4))"
    captures = capture_both_ends([(pair["v1"], "ul0"), (pair["v2"], "ul0")], pair["tmp"],
                                 f"{'ip' if family == 4 else 'ip6'} proto 47 or {unreachable}")
    try:
        assert ping_retry(h1, H2), pair["vtepds"][0].log_text()[-3000:]
        assert ping(h2, H1, count=3)
        assert ping(h1, H2, count=3)
        # Frames that exactly fit the host MTU pass too, unfragmented.
        assert ping(h1, H2, count=1, size=HOST_MTU[family] - 28)
        send_flows(h1, H1, H2, FLOWS)
        time.sleep(0.3)   # the last datagrams reach the capture
    finally:
        stop(captures)

    proto, ttl = ("ip.proto", "ip.ttl") if family == 4 else ("ipv6.nxt", "ipv6.hlim")
    rows = fields(captures, "frame.number", f"{outer}.src", f"{outer}.dst", proto, ttl, "ip.flags.df",
                  "gre.flags_and_version", "gre.flags.checksum", "gre.flags.routing", "gre.flags.key",
                  "gre.flags.sequence_number", "gre.flags.version", "gre.proto", "gre.key", "eth.type",
                  "icmp.type", "udp.srcport", "udp.dstport")
    gre = [r for r in rows if r["gre.proto"]]
    # Nothing from the kernels: vtepd's claim keeps them from answering the
    # GRE it consumes with ICMP protocol unreachable / parameter problem.
    assert len(gre) == len(rows), [r for r in rows if not r["gre.proto"]]
    sent = {(r[f"{outer}.src"][0], r[f"{outer}.dst"][0]) for r in gre}
    assert sent == {(ip1, ip2), (ip2, ip1)}, sent
    flow_ids = defaultdict(set)
    for r in gre:
        where = f"packet {r['frame.number'][0]}: {r}"
        # Outer IP: protocol 47, TTL/hop limit 64 (the default ttl), and DF
        # set over IPv4 (the first ip.flags.df is the outer header's).
        assert (r[proto][0], r[ttl][0]) == ("47", "64"), where
        if family == 4:
            assert r["ip.flags.df"][0] == "1", where
        # One GRE header (no GRE inside GRE), and exactly K set: C, R, S clear, version 0.
        [flags] = r["gre.flags_and_version"]
        assert int(flags, 16) == 0x2000, where
        assert r["gre.flags.key"] == ["1"], where
        assert r["gre.flags.checksum"] == r["gre.flags.routing"] == ["0"], where
        assert r["gre.flags.sequence_number"] == ["0"], where
        assert r["gre.flags.version"] == ["0"], where
        assert r["gre.proto"] == ["0x6558"], where
        # The key: VSID in the upper 24 bits, the FlowID (0..255) in the low 8.
        key = int(r["gre.key"][0], 16)
        assert key >> 8 == VSID, where
        # Transparent Ethernet bridging: tshark found an Ethernet frame inside.
        assert len(r["eth.type"]) == 2, where
        # H1's datagrams, not H2's ICMP port unreachable that quote them.
        if r[f"{outer}.src"][0] == ip1 and r["udp.dstport"] == ["9"]:
            flow_ids[int(r["udp.srcport"][0])].add(key & 0xff)
    icmp = [r for r in gre if r["icmp.type"]]
    assert len(icmp) >= 2 * (1 + 3 + 3 + 1), f"{len(icmp)} ICMP echoes captured"
    # Every flow crossed, each with one FlowID for all its packets; and the
    # FlowID follows the flow (16 flows on one FlowID: 1 in 256^15 by chance).
    missing = sorted(set(FLOWS) - set(flow_ids))
    assert not missing, (missing, [drops(v) for v in pair["vtepds"]])
    assert all(len(ids) == 1 for ids in flow_ids.values()), dict(flow_ids)
    distinct = {min(ids) for ids in flow_ids.values()}
    print(f"\nNVGRE over IPv{family}: {len(gre)} packets; FlowIDs of {len(FLOWS)} flows: {sorted(distinct)}")
    assert len(distinct) > 1

    for vtepd in pair["vtepds"]:
        counters = vtepd.counters()
        underlay = counters["underlay"]
        assert underlay["rx_packets"] >= 8 and underlay["tx_packets"] >= 8, underlay
        # Only the timing-dependent drops may occur (before resolution; a full ring).
        unexpected = [r for r, n in underlay["drops"].items() if n and r not in ("no_neighbour", "ring_full")]
        assert not unexpected, underlay["drops"]


# -- Open vSwitch as the NVGRE peer ------------------------------------------------------------

OVS_PORT_TYPE = {4: "gre", 6: "ip6gre"}
# A fixed MAC for br-phy, which holds OVS's underlay address: left alone, OVS
# picks one from the bridge's ports and may change it while it reconfigures,
# after vtepd has resolved the old one.
BR_PHY_MAC = "02:00:00:00:0f:02"


def sysctl(ns, key, value):
    """Write /proc/sys/"key" in namespace "ns" (/proc/sys/net is the opener's namespace's)."""
    netns.pushns(ns[0])
    try:
        with open(f"/proc/sys/{key}", "w") as f:
            f.write(value)
    finally:
        netns.popns()


@pytest.fixture(params=[4, 6], ids=["ipv4-underlay", "ipv6-underlay"])
def with_ovs(request, namespaces, tmp_path):
    """vtepd in V1 with host H1; OVS in O with vm0 (192.0.2.2) behind a
    gre/ip6gre port with key=flow; OpenFlow rules check and set the VSID."""
    family = request.param
    our_ip, ovs_ip, prefix = UNDERLAY[family]
    v1, o, h1 = namespaces("v1"), namespaces("o"), namespaces("h1")
    veth(v1, "ul0", o, "o0")
    # OVS reads o0 with AF_PACKET, but O's kernel sees o0's frames too, and by
    # default (arp_ignore 0) answers ARP for br-phy's address on o0 as well,
    # with o0's MAC: V1's kernel may keep that answer (it comes first), and
    # vtepd's frames to o0's MAC never reach OVS's tunnel.  Only br-phy
    # answers, as with a NIC that OVS owns; set before anything can ask.
    # (IPv6 neighbour discovery answers only on the address's own link.)
    sysctl(o, "net/ipv4/conf/o0/arp_ignore", "1")
    link_up(o, "lo")
    address(v1, "ul0", our_ip, prefix)
    host_behind(v1, "h1", h1, H1, HOST_MTU[family])
    ovs = Ovs(o[0])
    vtepd = None
    try:
        ovs.vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
                  f'other-config:hwaddr="{BR_PHY_MAC}"')
        ovs.vsctl("add-port", "br-phy", "o0")
        ovs.vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev")
        ovs.vsctl("add-port", "br-int", "tun0", "--", "set", "interface", "tun0",
                  f"type={OVS_PORT_TYPE[family]}", f"options:remote_ip={our_ip}", "options:key=flow")
        ovs.vsctl("add-port", "br-int", "vm0", "--", "set", "interface", "vm0", "type=internal",
                  f"mtu_request={HOST_MTU[family]}")
        address(o, "br-phy", ovs_ip, prefix)
        link_up(o, "br-phy")
        address(o, "vm0", H2, 24)
        link_up(o, "vm0")
        # OVS's tunnel neighbour cache learns from ARP/ND it snoops on br-phy;
        # a static entry keeps the test from depending on when that happens.
        ovs.appctl("tnl/neigh/set", "br-phy", our_ip, mac_of(v1, "ul0"))
        ovs.ofctl("br-int", "del-flows")
        ovs.ofctl("br-int", "add-flow", f"in_port=tun0,tun_id={VSID << 8:#x}/0xffffff00,actions=output:vm0")
        ovs.ofctl("br-int", "add-flow", f"in_port=vm0,actions=set_field:{VSID << 8:#x}->tun_id,output:tun0")
        assert mac_of(o, "br-phy") == BR_PHY_MAC
        vtepd = Vtepd(v1[0], config(our_ip, ovs_ip, "h1"), tmp_path)
        wait_for_next_hop(vtepd, ovs_ip)
        yield {"family": family, "ovs": ovs, "vtepd": vtepd, "h1": h1, "o": o, "v1": v1, "tmp": tmp_path,
               "ips": (our_ip, ovs_ip)}
    finally:
        if vtepd is not None:
            try:
                vtepd.stop()
            except subprocess.TimeoutExpired:
                vtepd.kill()
        ovs.close()


def ovs_state(lab):
    """What to look at when traffic does not pass: both sides' view."""
    ovs = lab["ovs"]
    parts = [f"vtepd remotes: {lab['vtepd'].ctl('show-remotes')}", f"vtepd drops: {drops(lab['vtepd'])}"]
    for what, call in (("routes", lambda: ovs.appctl("ovs/route/show")),
                       ("tunnel neighbours", lambda: ovs.appctl("tnl/neigh/show")),
                       ("br-int flows", lambda: ovs.ofctl("br-int", "dump-flows")),
                       ("datapath flows", lambda: ovs.appctl("dpctl/dump-flows"))):
        try:
            parts.append(f"OVS {what}:\n{call()}")
        except RuntimeError as e:
            parts.append(f"OVS {what}: {e}")
    parts.append(f"vtepd log:\n{lab['vtepd'].log_text()[-1500:]}\nOVS log:\n{ovs.log()}")
    return "\n".join(parts)


def test_vtepd_and_ovs_ping_over_nvgre(with_ovs):
    lab = with_ovs
    family, vtepd, h1, o = lab["family"], lab["vtepd"], lab["h1"], lab["o"]
    outer = "ip" if family == 4 else "ipv6"
    captures = capture_both_ends([(lab["v1"], "ul0"), (o, "o0")], lab["tmp"],
                                 f"{'ip' if family == 4 else 'ip6'} proto 47")
    try:
        # vtepd resolved OVS's address, through V1's kernel, to br-phy.
        next_hop = vtepd.ctl("show-remotes")[0]["next_hop"]
        assert next_hop == BR_PHY_MAC, f"o0 is {mac_of(o, 'o0')}\n{ovs_state(lab)}"
        assert ping_retry(h1, H2), ovs_state(lab)
        assert ping(o, H1, count=3), ovs_state(lab)
        assert ping(h1, H2, count=3)
        assert ping(h1, H2, count=1, size=HOST_MTU[family] - 28)
        time.sleep(0.2)
    finally:
        stop(captures)

    # Both directions crossed as NVGRE with VSID 5000: ours with a FlowID,
    # OVS's with the key its rule set (FlowID 0).
    our_ip, ovs_ip = lab["ips"]
    keys = defaultdict(set)
    for r in fields(captures, f"{outer}.src", "gre.flags_and_version", "gre.proto", "gre.key"):
        assert r["gre.proto"] == ["0x6558"] and int(r["gre.flags_and_version"][0], 16) == 0x2000, r
        keys[r[f"{outer}.src"][0]].add(int(r["gre.key"][0], 16))
    assert set(keys) == {our_ip, ovs_ip}, dict(keys)
    assert {k >> 8 for ks in keys.values() for k in ks} == {VSID}
    assert keys[ovs_ip] == {VSID << 8}

    # vtepd learned vm0's MAC behind OVS, and counted the traffic.
    vm0 = mac_of(o, "vm0")
    entries = [e for e in vtepd.ctl("show-fdb") if e["mac"] == vm0]
    assert [(e["kind"], e["target"]) for e in entries] == [("remote", ovs_ip)], entries
    counters = vtepd.counters()
    underlay = counters["underlay"]
    print(f"\nvtepd <-> OVS {OVS_PORT_TYPE[family]}: underlay rx {underlay['rx_packets']} "
          f"tx {underlay['tx_packets']}")
    assert underlay["rx_packets"] >= 5 and underlay["tx_packets"] >= 5, underlay
    never = ("bad_header", "bad_flags", "bad_checksum", "unknown_vni", "unknown_remote", "not_local", "mtu")
    assert not [r for r in never if underlay["drops"][r]], underlay["drops"]
