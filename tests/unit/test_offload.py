"""Offloads finished in software (csrc/offload.c): checksums the kernel left
unfinished, and GSO super-frames cut into segments, bare or behind tunnel
headers.  scapy recomputes every checksum and length independently."""
import pytest
from scapy.all import IP, TCP, UDP, Ether, IPv6, raw
from scapy.layers.vxlan import VXLAN

from dataplane import packet

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
PAYLOAD = bytes(range(256)) * 40 + b"tail!"   # 10,245 bytes: an odd last segment


def super_frame(family, proto, flags="PA"):
    ip = IP(src="192.0.2.1", dst="192.0.2.2", id=7, flags="DF") if family == 4 else \
        IPv6(src="2001:db8::1", dst="2001:db8::2")
    l4 = TCP(sport=40000, dport=5201, seq=1000, flags=flags) if proto == "tcp" else UDP(sport=4000, dport=5000)
    return raw(ETH / ip / l4 / PAYLOAD)


def checksums_ok(frame):
    """Whether every IP/TCP/UDP checksum and length in "frame" (any depth) is
    what scapy computes from scratch (a UDP checksum of 0, "none", stays)."""
    fresh = Ether(frame)
    for layer in (IP, TCP, UDP, IPv6):
        i = 1
        while (header := fresh.getlayer(layer, i)) is not None:
            for field in ("chksum", "len", "plen"):
                if field in header.fields and not (layer is UDP and field == "chksum" and header.chksum == 0):
                    delattr(header, field)
            i += 1
    return raw(Ether(raw(fresh))) == frame


@pytest.mark.parametrize("family,gso_type", [(4, "tcpv4"), (6, "tcpv6")])
def test_tcp_super_frame_becomes_valid_segments(family, gso_type):
    segments = packet.gso_segment(super_frame(family, "tcp", flags="FPA"), gso_type, 1448)
    assert len(segments) == 8
    data, seq = b"", 1000
    for i, s in enumerate(segments):
        p = Ether(s)
        assert checksums_ok(s), f"segment {i}"
        assert p[TCP].seq == seq
        last = i == len(segments) - 1
        assert str(p[TCP].flags) == ("FPA" if last else "A")   # FIN and PSH only on the last
        if family == 4:
            assert p[IP].id == 7 + i and p[IP].flags == "DF"
        payload = bytes(p[TCP].payload)
        assert len(payload) == (len(PAYLOAD) - 7 * 1448 if last else 1448)
        data += payload
        seq += len(payload)
    assert data == PAYLOAD


def test_cwr_only_on_the_first_segment():
    segments = packet.gso_segment(super_frame(4, "tcp", flags="CA"), "tcpv4", 4000)
    assert [str(Ether(s)[TCP].flags) for s in segments] == ["AC", "A", "A"]


def test_udp_super_frame_becomes_datagrams():
    segments = packet.gso_segment(super_frame(6, "udp"), "udp", 1200)
    assert len(segments) == 9
    assert all(checksums_ok(s) for s in segments)
    assert b"".join(bytes(Ether(s)[UDP].payload) for s in segments) == PAYLOAD


@pytest.mark.parametrize("encapsulation,local,remote,udp_checksum", [
    ("vxlan", "198.18.0.1", "198.18.0.2", True),
    ("vxlan", "198.18.0.1", "198.18.0.2", False),
    ("vxlan", "2001:db8:f::1", "2001:db8:f::2", True),
    ("nvgre", "198.18.0.1", "198.18.0.2", False),
])
def test_segments_behind_tunnel_headers(encapsulation, local, remote, udp_checksum):
    """vtep encapsulates a super-frame once; each segment gets its own outer
    lengths and checksums (the outer UDP one over the finished segment)."""
    frame = super_frame(4, "tcp")
    tunnel = packet.Tunnel(encapsulation, local, remote, udp_checksum=udp_checksum)
    whole = tunnel.encap(5000, frame)
    outer = whole[: len(whole) - len(frame)]
    segments = packet.gso_segment(frame, "tcpv4", 1400, outer=outer)
    assert len(segments) == 8
    data = b""
    for s in segments:
        assert checksums_ok(s)
        inner = packet.decap(s, verify_checksum=True)   # the outer UDP checksum must hold
        assert inner.vni == 5000 and inner.encapsulation == encapsulation
        data += bytes(Ether(inner.inner)[TCP].payload)
        if encapsulation == "vxlan":
            assert (Ether(s)[UDP].chksum != 0) == (udp_checksum or ":" in local)
            assert Ether(s)[VXLAN].vni == 5000
    assert data == PAYLOAD


def test_headers_that_cannot_be_segmented_are_refused():
    frame = super_frame(4, "tcp")
    for gso_type in ("tcpv6", "udp"):     # the type must match the frame
        with pytest.raises(ValueError):
            packet.gso_segment(frame, gso_type, 1448)
    fragment = raw(ETH / IP(src="192.0.2.1", dst="192.0.2.2", flags="MF") / TCP() / PAYLOAD)
    with pytest.raises(ValueError):
        packet.gso_segment(fragment, "tcpv4", 1448)
    with pytest.raises(ValueError):
        packet.gso_segment(frame[:54], "tcpv4", 1448)   # headers and no payload


def test_unfinished_checksum_is_finished_where_the_kernel_says():
    good = raw(ETH / IP(src="192.0.2.1", dst="192.0.2.2") / TCP(sport=1, dport=2) / (b"data" * 50))
    partial = bytearray(good)
    # CHECKSUM_PARTIAL: the field holds the pseudo-header sum, not complemented.
    tcp_len = len(good) - 34
    pseudo = packet.checksum(bytes(good[26:34]) + bytes([0, 6]) + tcp_len.to_bytes(2, "big"))
    partial[50:52] = (~pseudo & 0xffff).to_bytes(2, "big")
    assert bytes(partial) != good
    assert packet.finish_checksum(partial, 34, 16) == good
    with pytest.raises(ValueError):
        packet.finish_checksum(partial, len(good) - 1, 16)


@pytest.mark.parametrize("l3", [IP(src="192.0.2.1", dst="192.0.2.2"), IPv6(src="2001:db8::1", dst="2001:db8::2")])
@pytest.mark.parametrize("l4", [TCP(sport=1, dport=2), UDP(sport=1, dport=2)])
def test_l4_checksum_filled_from_scratch(l3, l4):
    good = raw(ETH / l3 / l4 / b"payload!")
    broken = bytearray(good)
    broken[-9] ^= 0xff            # a byte in the TCP/UDP header's checksum area or payload
    broken[-1] ^= 0x55
    fixed = packet.fill_l4_checksum(broken)
    assert checksums_ok(fixed) and fixed[-1] == broken[-1]
    assert packet.fill_l4_checksum(good) == good


def test_ipv4_udp_without_checksum_stays_without():
    frame = bytearray(raw(ETH / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=2) / (b"x" * 20)))
    frame[40:42] = b"\0\0"
    assert packet.fill_l4_checksum(frame) == bytes(frame)
