"""The generator's input: pcaps of inner frames, and of tunnel packets made
from them with `vtepctl pcap encap` (the tool users make generator inputs
with).

Frame sizes are inner Ethernet frame sizes as RFC 2544 counts them: with the
4-byte FCS, which a veth does not carry, so a "64-byte" frame is 60 bytes in
the pcap.  A tunnel packet is 50 bytes longer (outer Ethernet, IPv4, UDP,
VXLAN).  IMIX is 7:4:1 of 64, 594 and 1518-byte inner frames, interleaved.

Every frame is Ethernet + IPv4 + UDP with a zero UDP checksum and at least
16 bytes of UDP payload, so the generator's --stamp may overwrite the last
16 bytes.  Flow k (of "flows") has source address 198.19.(k >> 8).(k & 255);
the destination MAC of frame k is the (k mod n)-th of the FDB's MACs for that
direction, so a big FDB is looked up all over, not in one entry."""
import math
import os
import struct
import subprocess
import sys

from dataplane.packet import checksum
from dataplane.pcap import Writer

FCS = 4
SIZES = (64, 128, 256, 512, 1024, 1518, "imix")
IMIX = ((64, 7), (594, 4), (1518, 1))      # inner frame size, share
ENCAP_SRC = "02:00:00:0a:00:01"     # the host behind the access port
DECAP_SRC = "02:00:00:0b:00:01"     # the host behind the remote VTEP
REMOTE_KIND, LOCAL_KIND = 0x06, 0x0a   # first byte of FDB MACs: behind the remote VTEP, behind the access port
INNER_DST_IP = "198.18.200.1"
SPORT, DPORT = 10000, 20000
HEADERS = 14 + 20 + 8
STAMP = 16


def imix_pattern():
    """The 12 sizes of one IMIX cycle, spread out (smooth weighted round robin):
    7 x 64, 4 x 594, 1 x 1518."""
    total = sum(w for _, w in IMIX)
    credit = {s: 0 for s, _ in IMIX}
    out = []
    for _ in range(total):
        for s, w in IMIX:
            credit[s] += w
        pick = max(credit, key=lambda s: (credit[s], -s))
        credit[pick] -= total
        out.append(pick)
    return out


def mean_size(size):
    """Mean inner frame size (with FCS) of a size or "imix"."""
    if size == "imix":
        return sum(s * w for s, w in IMIX) / sum(w for _, w in IMIX)
    return float(size)


def frame_count(size, flows):
    """Frames in the pcap: one per flow, and whole IMIX cycles."""
    return math.lcm(flows, len(imix_pattern())) if size == "imix" else flows


def fdb_mac(kind, i):
    """The i-th FDB MAC of a "kind" (REMOTE_KIND, LOCAL_KIND): a 32-bit
    bijection of i, so they look random to the FDB's hash."""
    x = (i * 0x9E3779B1) & 0xFFFFFFFF
    return ":".join(f"{b:02x}" for b in bytes([kind, 0x42]) + x.to_bytes(4, "big"))


def fdb_split(n):
    """An FDB of n entries: n//2 remote MACs (the encap frames' destinations)
    and the rest local ones on the access port (the decap frames' destinations)."""
    return n // 2, n - n // 2


def _mac(text):
    return bytes.fromhex(text.replace(":", ""))


def _ip(text):
    return bytes(int(x) for x in text.split("."))


def inner_frame(dst_mac, src_mac, flow, size):
    """One frame of "size" bytes with FCS (size - 4 in the buffer)."""
    length = size - FCS
    if length < HEADERS + STAMP:
        raise ValueError(f"frame size {size}: too small for a {STAMP}-byte stamp")
    payload = bytes(length - HEADERS)
    udp = struct.pack("!HHHH", SPORT, DPORT, 8 + len(payload), 0) + payload
    src_ip = bytes([198, 19, (flow >> 8) & 0xFF, flow & 0xFF])
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, src_ip,
                         _ip(INNER_DST_IP))
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return _mac(dst_mac) + _mac(src_mac) + b"\x08\x00" + header + udp


def inner_frames(direction, size, flows, fdb_macs):
    """The frames for "direction" ("encap": from the access side to remote
    MACs; "decap": from behind the remote VTEP to local MACs)."""
    src = ENCAP_SRC if direction == "encap" else DECAP_SRC
    kind = REMOTE_KIND if direction == "encap" else LOCAL_KIND
    pattern = imix_pattern() if size == "imix" else [size]
    return [inner_frame(fdb_mac(kind, k % fdb_macs), src, k % flows, pattern[k % len(pattern)])
            for k in range(frame_count(size, flows))]


def write_pcap(path, frames):
    with open(path, "wb") as f:
        writer = Writer(f)
        for i, frame in enumerate(frames):
            writer.write(0, i * 1000, frame)


def vtepctl():
    """vtepctl of this Python (the venv's console script, or the module)."""
    script = os.path.join(os.path.dirname(sys.executable), "vtepctl")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "dataplane.cli"]


class Pcaps:
    """Builds each pcap once per run, in "workdir"; remembers the commands."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.made = {}
        self.commands = []

    def inner(self, direction, size, flows, fdb_macs):
        key = ("inner", direction, size, flows, fdb_macs)
        if key not in self.made:
            path = os.path.join(self.workdir, f"inner-{direction}-{size}-{flows}f-{fdb_macs}m.pcap")
            write_pcap(path, inner_frames(direction, size, flows, fdb_macs))
            self.made[key] = path
        return self.made[key]

    def tunnel(self, size, flows, fdb_macs, *, vni, local, remote, src_mac, dst_mac):
        """Decap-direction input: the decap inner frames, encapsulated by
        `vtepctl pcap encap` as the remote VTEP ("local") would send them."""
        key = ("tunnel", size, flows, fdb_macs, vni, local, remote, src_mac, dst_mac)
        if key not in self.made:
            inner = self.inner("decap", size, flows, fdb_macs)
            path = os.path.join(self.workdir, f"tunnel-{size}-{flows}f-{fdb_macs}m-{vni}-{dst_mac.replace(':', '')}.pcap")
            argv = vtepctl() + ["pcap", "encap", "--encapsulation", "vxlan", "--vni", str(vni), "--local", local,
                                "--remote", remote, "--src-mac", src_mac, "--dst-mac", dst_mac, inner, path]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
            if done.returncode:
                raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
            self.made[key] = path
            self.commands.append(" ".join(argv))
        return self.made[key]
