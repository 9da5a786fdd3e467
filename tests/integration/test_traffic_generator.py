"""`vtepctl pcap encap` makes inputs for traffic generators.  A capture of
overlay frames, wrapped by vtepctl and replayed by tcpreplay onto the
underlay, reaches a Linux VTEP and is decapsulated there: every frame, in
order."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pyroute2 import netns

from dataplane.pcap import Writer

from .kernel_vtep import KERNEL_HOST, KERNEL_PORT, OUR_HOST, OUR_HOST_MAC, VNI, ipv4_udp_frame

pytestmark = pytest.mark.root
FRAMES = 50


def test_tcpreplay_of_vtepctl_output_reaches_a_linux_vtep(lab, tmp_path):
    payloads = [f"frame {i}".encode() for i in range(FRAMES)]
    inner, outer = tmp_path / "overlay.pcap", tmp_path / "underlay.pcap"
    with open(inner, "wb") as f:
        writer = Writer(f)
        for i, payload in enumerate(payloads):
            frame = ipv4_udp_frame(lab["vx0_mac"], OUR_HOST_MAC, OUR_HOST, KERNEL_HOST, 9999, KERNEL_PORT, payload)
            writer.write(1, i * 1_000_000, frame)  # a millisecond apart

    vtepctl = Path(sys.executable).parent / "vtepctl"
    wrap = subprocess.run(
        [vtepctl, "pcap", "encap", "--encapsulation", "vxlan", "--vni", str(VNI), "--local", lab["our_ip"],
         "--remote", lab["kernel_ip"], "--src-mac", lab["u0_mac"], "--dst-mac", lab["k0_mac"], inner, outer],
        capture_output=True, text=True)
    assert wrap.returncode == 0, wrap.stderr
    assert wrap.stdout == f"{outer}: {FRAMES} packets written\n"

    # tcpreplay runs in the namespace of the underlay end, as a generator would.
    replay = subprocess.run([shutil.which("tcpreplay") or "tcpreplay", "--intf1=u0", "--topspeed", str(outer)],
                            preexec_fn=lambda: netns.setns(lab["u_netns"], flags=0),
                            capture_output=True, text=True, timeout=60)
    assert replay.returncode == 0, replay.stderr
    assert f"Actual: {FRAMES} packets" in replay.stdout
    assert [lab["udp"].recvfrom(100)[0] for _ in payloads] == payloads
