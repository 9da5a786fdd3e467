"""Writes the seed inputs of the fuzz targets to tests/fuzz/corpus/<target>
(the input formats are in each tests/fuzz/fuzz_<target>.c): plain frames
for the access ports, with and without virtio-net headers (checksums to
finish, GSO super-frames); tunnel packets from remote VTEP ...1 to the
fuzzed VTEP (...2) on every VNI, both encapsulations and families; bursts
that teach, use and age MACs; super-frames for the offload functions.  The
MACs are those fuzz_common.c puts in the FDB.  The seeds are committed; run
this again only to change them (it leaves other files, such as the
regress-* inputs and what fuzzing found, alone).

    .venv/bin/python -m tests.fuzz.make_corpus"""
import struct
from pathlib import Path

from dataplane.packet import Tunnel

CORPUS = Path(__file__).parent / "corpus"
# (sender, receiver): remote VTEP ...1 sends to the fuzzed VTEP ...2.
ADDRESSES = {4: ("198.18.0.1", "198.18.0.2"), 6: ("2001:db8:f::1", "2001:db8:f::2")}
ROLES = ("promiscuous", "isolated", "community0", "community1")
VNI = 5000  # the VNI of role r is VNI + r

SRC = bytes.fromhex("020000000001")
BROADCAST = b"\xff" * 6
REMOTE_UNKNOWN_ROLE = bytes.fromhex("020000000002")
REMOTE_ROLE = [bytes.fromhex(f"0200000000{0x10 + r:02x}") for r in range(4)]
REMOTE_UNRESOLVED = bytes.fromhex("020000000020")
LOCAL = [bytes.fromhex(f"0200000000{0x30 + r:02x}") for r in range(4)]

GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4 = 1, 4, 5
VNET_NEEDS_CSUM = 1


def ipv4(proto, payload, tos=0xb8):
    header = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(payload), 1, 0x4000, 64, proto, 0,
                         bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]))
    check = _checksum(header)
    return header[:10] + struct.pack("!H", check) + header[12:] + payload


def ipv6(proto, payload):
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), proto, 64, bytes.fromhex("20010db8" + "0" * 23 + "1"),
                       bytes.fromhex("20010db8" + "0" * 23 + "2")) + payload


def tcp(payload=b"", flags=0x18):
    return struct.pack("!HHIIBBHHH", 40000, 80, 1000, 0, 0x50, flags, 65535, 0, 0) + payload


def udp(payload):
    return struct.pack("!HHHH", 1024, 53, 8 + len(payload), 0) + payload


def ether(dst, ethertype, payload, src=SRC):
    return dst + src + struct.pack("!H", ethertype) + payload


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff


def frames():
    """Plain frames by name: what hosts behind access ports send."""
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + SRC + bytes([192, 0, 2, 1]) + bytes(6) + bytes([192, 0, 2, 2])
    udp4 = ipv4(17, udp(b"question"))
    tcp6 = ipv6(6, tcp(flags=2))
    out = {
        "arp-broadcast": ether(BROADCAST, 0x0806, arp),
        "udp4-unicast": ether(REMOTE_UNKNOWN_ROLE, 0x0800, udp4),
        "tcp6-unicast": ether(REMOTE_UNKNOWN_ROLE, 0x86dd, tcp6),
        "tagged": ether(REMOTE_UNKNOWN_ROLE, 0x8100, b"\x00\x0a\x08\x00" + udp4),
        "to-unresolved": ether(REMOTE_UNRESOLVED, 0x0800, udp4),
        "oversize": ether(REMOTE_UNKNOWN_ROLE, 0x0800, ipv4(17, udp(bytes(1480)))),
    }
    for r, role in enumerate(ROLES):
        out[f"to-local-{role}"] = ether(LOCAL[r], 0x0800, udp4)
        out[f"to-remote-{role}"] = ether(REMOTE_ROLE[r], 0x0800, udp4)
    return out


def vnet(flags=0, gso_type=0, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0):
    """A virtio-net header, little-endian as the kernel writes it here."""
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def super_frames():
    """GSO super-frames by name: (gso_type, headers length, frame)."""
    data = bytes(range(256)) * 12  # 3072 bytes: 3 or 4 segments
    return {
        "tcp4": (GSO_TCPV4, 54, ether(REMOTE_ROLE[0], 0x0800, ipv4(6, tcp(data, flags=0x19)))),
        "tcp6": (GSO_TCPV6, 74, ether(REMOTE_ROLE[0], 0x86dd, ipv6(6, tcp(data, flags=0x98)))),
        "udp4": (GSO_UDP_L4, 42, ether(LOCAL[0], 0x0800, ipv4(17, udp(data)))),
        "udp6": (GSO_UDP_L4, 62, ether(REMOTE_ROLE[2], 0x86dd, ipv6(17, udp(data)))),
    }


def access_seeds():
    # Control byte: 0 IPv6, 1 NVGRE, 2-3 role, 4 virtio-net header, 5 CSUM_PARTIAL, 6 VLAN, 7 CSUM_OK.
    seeds = {}
    for i, (name, frame) in enumerate(frames().items()):
        for r, role in enumerate(ROLES):
            ctl = (i + r) % 2 | (r % 2) << 1 | r << 2
            seeds[f"{name}-{role}"] = bytes([ctl]) + frame
    udp4 = frames()["to-remote-promiscuous"]
    seeds["needs-csum-udp4"] = bytes([0x10]) + vnet(VNET_NEEDS_CSUM, csum_start=34, csum_offset=6) + udp4
    seeds["csum-partial-udp4"] = bytes([0x21]) + udp4
    seeds["vlan-flag"] = bytes([0x40]) + udp4
    for name, (gso_type, hdr_len, frame) in super_frames().items():
        for family in (0, 1):
            seeds[f"gso-{name}-underlay{4 + 2 * family}"] = (
                bytes([0x10 | family]) + vnet(VNET_NEEDS_CSUM, gso_type, hdr_len, 1000, hdr_len - 20, 16) + frame)
    return seeds


def tunnel_packets(frame, name):
    for family, (sender, receiver) in ADDRESSES.items():
        for encapsulation in ("vxlan", "nvgre"):
            tunnel = Tunnel(encapsulation, local=sender, remote=receiver, udp_checksum=True)
            for r in range(4):
                yield family, f"{encapsulation}{family}-{VNI + r}-{name}", tunnel.encap(VNI + r, frame)


def underlay_seeds():
    # Control byte: 0 IPv6, 1 CSUM_OK, 2 VLAN, 3 CSUM_PARTIAL, 4-7 clock.
    seeds = {}
    plain = frames()
    for name in ("arp-broadcast", "udp4-unicast", "tcp6-unicast", "tagged", "to-local-isolated"):
        for family, packet_name, packet in tunnel_packets(plain[name], name):
            seeds[packet_name] = bytes([family == 6]) + packet
    udp4 = plain["to-local-promiscuous"]
    for family, packet_name, packet in tunnel_packets(udp4, "flags"):
        if packet_name.endswith(f"-{VNI}-flags"):
            seeds[packet_name] = bytes([(family == 6) | 0x0e]) + packet
    return seeds


def pipeline_seeds():
    # A control byte (bit 0: IPv6), then records: op, 2-byte length, frame.
    # Op: 0 underlay, 1-2 role, 3 segment, 4-5 clock step, 6 FDB action, 7 joins the burst.
    def access(role, frame, clock=0, join=False, segment=0):
        return bytes([role << 1 | segment << 3 | clock << 4 | join << 7]) + struct.pack("<H", len(frame)) + frame

    def underlay(packet, clock=0, join=False):
        return bytes([1 | clock << 4 | join << 7]) + struct.pack("<H", len(packet)) + packet

    host_a, host_b = bytes.fromhex("0200000000a1"), bytes.fromhex("0200000000b1")
    payload = ipv4(17, udp(b"hello"))
    seeds = {}
    for family, (sender, receiver) in ADDRESSES.items():
        for encapsulation in ("vxlan", "nvgre"):
            segment = encapsulation == "nvgre"
            tunnel = Tunnel(encapsulation, local=sender, remote=receiver, udp_checksum=True)
            from_a = ether(BROADCAST, 0x0800, payload, src=host_a)
            to_a = [tunnel.encap(VNI + r, ether(host_a, 0x0800, payload, src=host_b)) for r in range(4)]
            a_to_b = ether(host_b, 0x0800, payload, src=host_a)
            b_local = ether(host_a, 0x0800, payload, src=host_b)
            tag = f"{encapsulation}{family}"
            head = bytes([family == 6])
            # A learns its port, B answers from the remote, A sends to B, then B ages out.
            seeds[f"learn-and-age-{tag}"] = head + (
                access(2, from_a, segment=segment) + underlay(to_a[0]) + underlay(to_a[1], join=True)
                + access(2, a_to_b, clock=1, segment=segment) + underlay(to_a[2], clock=2)
                + access(2, a_to_b, clock=2, segment=segment))
            # B moves from the remote to a local port, then the table is flushed and expired.
            seeds[f"move-and-flush-{tag}"] = head + (
                underlay(to_a[0]) + access(0, b_local, clock=1, segment=segment)
                + bytes([0x40 | segment << 3]) + underlay(to_a[3], clock=3) + bytes([0x42 | segment << 3 | 2 << 4]))
            # A burst of several frames from one port: learning within a burst.
            burst = b"".join(access(1, ether(BROADCAST, 0x0806, payload, src=bytes.fromhex(f"02000000{i:02x}c1")),
                                    join=i > 0, segment=segment) for i in range(6))
            seeds[f"burst-{tag}"] = head + burst
    return seeds


def offload_seeds():
    # gso_type, gso_size (2), outer kind, csum start (4) and offset (4), raw header length, frame.
    seeds = {}
    for name, (gso_type, hdr_len, frame) in super_frames().items():
        start, offset = hdr_len - (20 if gso_type != GSO_UDP_L4 else 8), 16 if gso_type != GSO_UDP_L4 else 6
        for outer in range(5):
            seeds[f"{name}-outer{outer}"] = (struct.pack("<BHBIIB", gso_type | (0x80 if outer == 1 else 0),
                                                         1000 + 448 * (outer % 2), outer, start, offset, hdr_len)
                                             + frame)
    seeds["csum-past-end"] = struct.pack("<BHBIIB", 0, 0, 0, 0xfffffff0, 0xfffffffe, 0) + frames()["udp4-unicast"]
    return seeds


SEEDS = {"access": access_seeds, "underlay": underlay_seeds, "pipeline": pipeline_seeds, "offload": offload_seeds}


def main():
    for target, make in SEEDS.items():
        directory = CORPUS / target
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in make().items():
            (directory / name).write_bytes(data)


if __name__ == "__main__":
    main()
