"""What vtepd's AF_PACKET rings do with frames their links cannot carry
(csrc/io_afpacket.c): a frame longer than the outgoing link's MTU is counted
as `mtu` and dropped before the kernel sees it.  The kernel would otherwise
stop sending that TX ring at the frame's slot until vtepd came round to the
slot again, a thousand frames later: one oversized frame stalled the port.

Topology: daemon_site.py (vtepd in V, the kernel's VXLAN in K with the
overlay address 192.0.2.100, hosts H1..H3 behind afpacket ports)."""
import pytest

from . import daemon_site as site_
from . import vtepd as v

pytestmark = pytest.mark.root


def test_a_frame_too_long_for_an_access_link_is_counted_and_stalls_nothing(site, tmp_path):
    h1, k, vns = site["h1"], site["K"], site["V"]
    d = v.Vtepd(vns[0], site_.config(["h1"]), tmp_path)
    try:
        assert site_.reachable(h1)
        assert v.ping(k, "192.0.2.1", count=1, size=1200)  # fits the access link as it is
        # The access link shrinks under vtepd, which reads its MTU again
        # within a second: a 1242-byte frame no longer fits.
        vns[1].link("set", index=vns[1].link_lookup(ifname="h1")[0], mtu=1000)

        def counted():
            assert not v.ping(k, "192.0.2.1", count=1, wait=1, size=1200)
            return v.drops(d.counters(), "underlay", None, "mtu") >= 1
        assert v.wait_for(counted, timeout=5)
        dropped = v.drops(d.counters(), "underlay", None, "mtu")
        # Frames that fit still go at once, every one of them.
        assert v.ping(k, "192.0.2.1", count=20, interval=0.05, wait=1)
        assert v.drops(d.counters(), "underlay", None, "mtu") == dropped
    finally:
        d.stop()
