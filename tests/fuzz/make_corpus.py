"""Writes the fuzz target's seed inputs to tests/fuzz/corpus: tunnel packets
from remote VTEP ...1 to the fuzzed VTEPs (...2) on every VNI, both
encapsulations and families, and plain frames for the access ports.  The
seeds are committed; run this again only to change them."""
import struct
from pathlib import Path

from dataplane.packet import Tunnel

HERE = Path(__file__).parent / "corpus"
ADDRESSES = {4: ("198.18.0.1", "198.18.0.2"), 6: ("2001:db8:f::1", "2001:db8:f::2")}


def frames():
    src, dst, bcast = bytes.fromhex("020000000001"), bytes.fromhex("020000000002"), b"\xff" * 6
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + src + bytes([192, 0, 2, 1]) + bytes(6) + bytes([192, 0, 2, 2])
    udp4 = struct.pack("!BBHHHBBH4s4s", 0x45, 0xb8, 36, 0, 0, 64, 17, 0, bytes([192, 0, 2, 1]),
                       bytes([192, 0, 2, 2])) + struct.pack("!HHHH", 1024, 53, 16, 0) + b"question"
    tcp6 = struct.pack("!IHBB16s16s", 6 << 28, 20, 6, 64, bytes.fromhex("20010db8" + "0" * 23 + "1"),
                       bytes.fromhex("20010db8" + "0" * 23 + "2")) + struct.pack("!HHIIBBHHH", 1, 80, 0, 0, 0x50, 2, 0, 0, 0)
    return {
        "arp-broadcast": bcast + src + b"\x08\x06" + arp,
        "udp4-unicast": dst + src + b"\x08\x00" + udp4,
        "tcp6-unicast": dst + src + b"\x86\xdd" + tcp6,
        "tagged": dst + src + b"\x81\x00\x00\x0a\x08\x00" + udp4,
    }


def main():
    HERE.mkdir(exist_ok=True)
    for name, frame in frames().items():
        (HERE / f"access-{name}").write_bytes(frame)
        for family, (remote, local) in ADDRESSES.items():
            for encapsulation in ("vxlan", "nvgre"):
                tunnel = Tunnel(encapsulation, remote, local, udp_checksum=True)
                for vni in (5000, 5001, 5002, 5003):
                    packet = tunnel.encap(vni, frame)
                    (HERE / f"{encapsulation}{family}-{vni}-{name}").write_bytes(packet)


if __name__ == "__main__":
    main()
