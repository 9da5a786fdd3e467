"""TCP super-frames between two hosts on one vtepd (csrc/loop.c,
pass_super): a host's 64 KB TSO frame goes from one afpacket port to the
other whole, with its virtio-net header, as a bridge would pass it, and
not cut into MSS-sized segments on the way.  The site is daemon_site.py's."""
import pytest

from . import vtepd as v
from .daemon_site import config, reachable
from .traffic import iperf3

pytestmark = pytest.mark.root


def rx(host):
    stats = v.link_stats(host, "eth0")
    return stats["rx_packets"], stats["rx_bytes"]


def test_tcp_super_frames_cross_whole(site, tmp_path):
    h1, h2 = site["h1"], site["h2"]
    d = v.Vtepd(site["V"][0], config(["h1", "h2"]), tmp_path)
    try:
        assert reachable(h1, "192.0.2.2")
        packets, octets = rx(h2)
        bps = iperf3(h1, h2, "192.0.2.2", seconds=2)
        packets, octets = (b - a for a, b in zip((packets, octets), rx(h2)))
    finally:
        d.stop()
    print(f"\nH1 -> H2 through one vtepd: {bps / 1e9:.2f} Gbit/s; H2 got {packets} frames "
          f"of {octets / packets:.0f} bytes on average")
    assert bps > 100e6
    # Cut into segments, no frame would exceed the hosts' MTU (1450).
    assert octets / packets > 3 * 1450


# --- UDP super-packets across the underlay (csrc/offload.h) ---------------------

UNDERLAY = {4: ("198.18.0.1", "198.18.0.2", 24), 6: ("2001:db8:f::1", "2001:db8:f::2", 64)}
HOST_MTU = {4: 1450, 6: 1430}


def vtepd_pair(namespaces, family):
    """H1 ── vtepd (V1) ══ ul0 underlay ══ vtepd (V2) ── H2: the namespaces."""
    V1, V2, H1, H2 = (namespaces(role) for role in ("v1", "v2", "h1", "h2"))
    local, remote, prefix = UNDERLAY[family]
    v.veth(V1, "ul0", V2, "ul0")
    v.address(V1, "ul0", local, prefix)
    v.address(V2, "ul0", remote, prefix)
    for V, H, port, ip in ((V1, H1, "h1", "192.0.2.1"), (V2, H2, "h2", "192.0.2.2")):
        v.link_up(H, "lo")
        v.veth(V, port, H, "eth0", mtu=HOST_MTU[family])
        v.address(H, "eth0", ip, 24)
    return V1, V2, H1, H2


def drops(*vtepds):
    """Every drop counter of "vtepds": {(vtepd, block, reason): count}."""
    found = {}
    for d in vtepds:
        counters = d.counters()
        for name, block in (("underlay", counters["underlay"]), *counters["ports"].items()):
            for reason, count in block["drops"].items():
                found[d.config.stem, name, reason] = count
    return found


@pytest.mark.parametrize("gso", [True, False], ids=["gso", "no-gso"])
@pytest.mark.parametrize("family", [4, 6], ids=["ipv4-underlay", "ipv6-underlay"])
def test_tcp_crosses_the_underlay_in_super_packets(namespaces, tmp_path, family, gso):
    """A host's 64 KB super-frame crosses the underlay as UDP super-packets
    (one per up to 64 datagrams), which the receiving vtepd cuts into the
    VXLAN datagrams they stand for and joins again for its host; with
    generic_segmentation_offload = false, as one datagram per segment."""
    V1, V2, H1, H2 = vtepd_pair(namespaces, family)
    local, remote, _ = UNDERLAY[family]
    sender_config = v.one_segment_config(local, remote, "h1")
    if not gso:
        sender_config = sender_config.replace("[vtep]\n", "[vtep]\ngeneric_segmentation_offload = false\n")
    d1 = v.Vtepd(V1[0], sender_config, tmp_path, name="v1")
    d2 = v.Vtepd(V2[0], v.one_segment_config(remote, local, "h2"), tmp_path, name="v2")
    try:
        assert v.wait_for(lambda: v.ping(H1, "192.0.2.2", count=1, wait=1), timeout=6)
        dropped = drops(d1, d2)
        before = v.link_stats(V2, "ul0"), d2.counters()["underlay"], v.link_stats(H2, "eth0")
        bps = iperf3(H1, H2, "192.0.2.2", seconds=2)
        after = v.link_stats(V2, "ul0"), d2.counters()["underlay"], v.link_stats(H2, "eth0")
        dropped = {k: n - dropped.get(k, 0) for k, n in drops(d1, d2).items() if n != dropped.get(k, 0)}
    finally:
        d1.stop()
        d2.stop()
    wire, datagrams, host = ({k: b[k] - a[k] for k in ("rx_packets", "rx_bytes")} for a, b in zip(*(before, after)))
    print(f"\nH1 -> H2 through two vtepds, IPv{family}, gso {gso}: {bps / 1e9:.2f} Gbit/s; the underlay carried "
          f"{wire['rx_packets']} packets of {wire['rx_bytes'] / wire['rx_packets']:.0f} bytes on average for "
          f"{datagrams['rx_packets']} datagrams; H2 got {host['rx_packets']} frames")
    assert bps > 100e6
    assert dropped == {}
    if gso:
        assert wire["rx_bytes"] / wire["rx_packets"] > 3 * 1500
        assert datagrams["rx_packets"] > 4 * wire["rx_packets"]
    else:
        assert wire["rx_bytes"] / wire["rx_packets"] <= 1514
        assert datagrams["rx_packets"] >= wire["rx_packets"] - 10  # ours, give or take the kernel's ARP/ND
    # Either way the receiving vtepd joined the datagrams again for H2.
    assert host["rx_bytes"] / host["rx_packets"] > 3 * HOST_MTU[family]
