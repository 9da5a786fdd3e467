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
