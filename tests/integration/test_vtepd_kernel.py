"""vtepd against the Linux kernel's VXLAN device, end to end (STYLE.md 16).

A real vtepd in namespace V and a kernel VTEP in namespace K share a veth
underlay (IPv4 or IPv6).  Host H1 sits behind vtepd, host H2 behind the
kernel (vx0 and a veth to H2 in bridge br0).  Real traffic runs between the
hosts, both ways: ping (IPv4 and IPv6 overlay; ND and ARP cross the tunnel
as BUM) and iperf3 TCP, and vtepd's counters must account for it.

    H1 eth0 ── [access port] vtepd (V) ul0 ══ underlay ══ k0 (K) vx0 ─ br0 ─ kh ── eth0 H2

The IPv4 underlay uses a TAP port (vtepd creates t0; the test moves it into
H1, so TAP I/O runs end to end), the IPv6 underlay an AF_PACKET port on a
veth whose other end is H1's eth0.  Offloads stay as veths and TAPs come:
H1's TCP reaches vtepd as 64 KB super-frames with checksums unfinished, and
the kernel VTEP's VXLAN packets carry unfinished inner checksums; vtepd
finishes both (only the kernel's segmentation of VXLAN packets is off on
k0: lab.no_tunnel_segmentation says why), and joins the kernel's segments
again toward H1 (csrc/gro.h)."""
import subprocess
import time

import pytest

from dataplane.lab import no_tunnel_segmentation

from .traffic import iperf3
from .vtepd import Vtepd, address, link_stats, link_up, one_segment_config, ping, veth

pytestmark = [pytest.mark.root, pytest.mark.slow]

VNI = 5000
UNDERLAY = {4: ("198.18.0.1", "198.18.0.2", 24), 6: ("2001:db8:f::1", "2001:db8:f::2", 64)}  # V, K, prefix
HOST_MTU = {4: 1450, 6: 1430}
H1 = ("192.0.2.1", "2001:db8:5000::1")    # behind vtepd
H2 = ("192.0.2.2", "2001:db8:5000::2")    # behind the kernel
MIN_MBITS = 50
# Drops that this clean topology must never see: malformed or misdirected
# tunnel packets (the kernel's are all well-formed), checksum failures (a
# zero IPv4 UDP checksum and the kernel's IPv6 ones must both pass), and
# frames too big (the hosts' MTU fits).  Not here: ring_full (bulk TCP may
# overrun a ring; TCP recovers) and no_neighbour (only before resolution).
NEVER = ("runt", "bad_header", "ip_options", "fragment", "bad_checksum", "bad_flags", "not_local",
         "unknown_vni", "unknown_remote", "vlan_tagged", "bad_src_mac", "mtu")


def config(family, backend):
    local, remote, _ = UNDERLAY[family]
    return one_segment_config(local, remote, "t0" if backend == "tap" else "h1", backend=backend, vni=VNI)


def kernel_vtep(k, family):
    """K: k0 (already addressed and up), vx0 (VNI 5000, port 4789, V as its
    one remote) and kh in bridge br0."""
    _, kns = k
    v_ip, k_ip, _ = UNDERLAY[family]
    k0 = kns.link_lookup(ifname="k0")[0]
    ends = {"vxlan_local": k_ip, "vxlan_group": v_ip} if family == 4 else \
        {"vxlan_local6": k_ip, "vxlan_group6": v_ip}
    kns.link("add", ifname="vx0", kind="vxlan", vxlan_id=VNI, vxlan_port=4789, vxlan_link=k0,
             mtu=HOST_MTU[family], **ends)
    kns.link("add", ifname="br0", kind="bridge", br_stp_state=0)
    link_up(k, "br0")
    br0 = kns.link_lookup(ifname="br0")[0]
    link_up(k, "vx0", master=br0)
    link_up(k, "kh", master=br0)


@pytest.fixture(params=[(4, "tap"), (6, "afpacket")], ids=["ipv4-underlay-tap", "ipv6-underlay-afpacket"])
def pair(request, namespaces, tmp_path):
    family, backend = request.param
    v_ip, k_ip, prefix = UNDERLAY[family]
    mtu = HOST_MTU[family]
    v, k, h1, h2 = namespaces("v"), namespaces("k"), namespaces("h1"), namespaces("h2")
    for ns in (v, k, h1, h2):
        link_up(ns, "lo")
    veth(v, "ul0", k, "k0")
    address(v, "ul0", v_ip, prefix)
    address(k, "k0", k_ip, prefix)
    veth(k, "kh", h2, "eth0", mtu=mtu)
    kernel_vtep(k, family)
    no_tunnel_segmentation(k[0], "k0")
    if backend == "afpacket":
        veth(v, "h1", h1, "eth0", mtu=mtu)
    vtepd = Vtepd(v[0], config(family, backend), tmp_path)
    try:
        if backend == "tap":
            # vtepd made t0 in V; the host takes it, vtepd keeps its fd.
            _, vns = v
            vns.link("set", index=vns.link_lookup(ifname="t0")[0], net_ns_fd=h1[0])
            link_up(h1, "t0", mtu=mtu)
        for host, ifname, addrs in ((h1, "t0" if backend == "tap" else "eth0", H1), (h2, "eth0", H2)):
            address(host, ifname, addrs[0], 24)
            address(host, ifname, addrs[1], 64)
        wait_for_next_hop(vtepd, k_ip)
        yield {"family": family, "backend": backend, "vtepd": vtepd, "h1": h1, "h2": h2, "k": k}
    finally:
        try:
            vtepd.stop()
        except subprocess.TimeoutExpired:
            vtepd.kill()


def wait_for_next_hop(vtepd, remote, timeout=5):
    """Until vtepd has resolved the kernel VTEP's MAC (it asks the kernel to)."""
    deadline = time.monotonic() + timeout
    while True:
        [entry] = [r for r in vtepd.ctl("show-remotes") if r["address"] == remote]
        if entry["next_hop"]:
            return entry
        assert time.monotonic() < deadline, f"remote {remote} not resolved: {entry['reason']}"
        time.sleep(0.05)


def ping_retry(src, target, tries=5):
    """The first exchange also resolves the overlay neighbour: give it a few tries."""
    return any(ping(src, target, count=1, wait=1) for _ in range(tries))


def drops(counters):
    """{(where, reason): n} of every nonzero drop counter in show-counters."""
    blocks = [("underlay", counters["underlay"])]
    for kind in ("ports", "segments"):
        blocks += [(f"{kind[:-1]} {name}", c) for name, c in counters[kind].items()]
    return {(where, reason): n for where, block in blocks for reason, n in block["drops"].items() if n}


def assert_clean(counters):
    bad = {key: n for key, n in drops(counters).items() if key[1] in NEVER}
    assert not bad, f"unexpected drops: {bad}"


def test_ping_both_ways(pair):
    vtepd, h1, h2 = pair["vtepd"], pair["h1"], pair["h2"]
    assert ping_retry(h1, H2[0]), vtepd.log_text()[-3000:]
    assert ping(h2, H1[0], count=3)
    # IPv6 overlay: neighbour discovery is multicast, so BUM works both ways too.
    assert ping_retry(h2, H1[1])
    assert ping(h1, H2[1], count=3)
    # Big frames that still fit the host MTU (it is exactly what the underlay
    # takes after the VXLAN overhead) pass unfragmented, both ways.
    payload = HOST_MTU[pair["family"]] - 28
    assert ping(h1, H2[0], count=2, size=payload)
    assert ping(h2, H1[0], count=2, size=payload)

    counters = vtepd.counters()
    underlay = counters["underlay"]
    print(f"\nunderlay: rx {underlay['rx_packets']} tx {underlay['tx_packets']}; drops {drops(counters)}")
    port = counters["ports"]["t0" if pair["backend"] == "tap" else "h1"]
    assert port["rx_packets"] >= 10 and port["tx_packets"] >= 10, port
    # At least 10 echoes (requests or replies) crossed the underlay each way.
    assert underlay["rx_packets"] >= 10 and underlay["tx_packets"] >= 10
    assert_clean(counters)
    # vtepd learned H2's MAC behind the kernel VTEP.
    remote = [e for e in vtepd.ctl("show-fdb") if e["kind"] == "remote"]
    assert any(e["target"] == UNDERLAY[pair["family"]][1] for e in remote), remote


@pytest.mark.parametrize("direction", ["to-kernel", "from-kernel"])
def test_iperf3_tcp(pair, direction):
    vtepd, h1, h2 = pair["vtepd"], pair["h1"], pair["h2"]
    assert ping_retry(h1, H2[0])
    before = vtepd.counters()
    host_rx = host_rx_packets(pair)
    client, server, server_ip = (h1, h2, H2[0]) if direction == "to-kernel" else (h2, h1, H1[0])
    bps = iperf3(client, server, server_ip)
    after = vtepd.counters()
    host_rx = host_rx_packets(pair) - host_rx
    print(f"\nvtepd <-> kernel VXLAN, IPv{pair['family']} underlay, {pair['backend']} port, {direction}: "
          f"{bps / 1e6:.0f} Mbit/s")
    assert bps > MIN_MBITS * 1e6, f"{bps / 1e6:.1f} Mbit/s"
    rx = after["underlay"]["rx_packets"] - before["underlay"]["rx_packets"]
    tx = after["underlay"]["tx_packets"] - before["underlay"]["tx_packets"]
    # Data one way, ACKs the other: thousands of packets each way in 2 s.
    assert rx > 1000 and tx > 1000, (rx, tx)
    # The data direction carries at least as many bytes as 2 s at the floor.
    data = "tx_bytes" if direction == "to-kernel" else "rx_bytes"
    data_bytes = after["underlay"][data] - before["underlay"][data]
    assert data_bytes > MIN_MBITS * 1e6 / 8 * 2
    print(f"drops: {drops(after)}")
    assert_clean(after)
    if direction == "from-kernel":
        # Receive coalescing (csrc/gro.h): H1 gets the kernel's segments
        # joined again, far fewer frames than vtepd sent it.
        port = "t0" if pair["backend"] == "tap" else "h1"
        sent = after["ports"][port]["tx_packets"] - before["ports"][port]["tx_packets"]
        print(f"H1 received {host_rx} frames for the {sent} segments vtepd sent it")
        assert 0 < host_rx * 4 < sent, (host_rx, sent)


def host_rx_packets(pair):
    """Frames H1's link to vtepd has received (a super-frame is one)."""
    return link_stats(pair["h1"], "t0" if pair["backend"] == "tap" else "eth0")["rx_packets"]
