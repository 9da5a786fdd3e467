"""Golden packets: what dataplane.packet.Tunnel.encap puts on the wire.

Each encapsulated packet is checked against a packet scapy builds from the
wire rules (DESIGN.md section 3), field by field, for VXLAN and NVGRE over
IPv4 and IPv6; tshark decodes our output as an independent dissector; and
small stored captures (tests/captures/golden_<proto>_<family>.pcap) pin the
exact bytes, so any change to the wire format shows up as a diff.

Regenerate the stored captures after an intended wire change with
    VTEP_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_golden.py -k stored
and review the diff (tshark -r FILE -V) before committing."""
import ipaddress
import json
import os
import pathlib
import struct
import subprocess

import pytest
from hypothesis import assume, given, settings, strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, GRE, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from dataplane.packet import DecapError, Tunnel, checksum, checksum_update, decap, flow_hash

from tests.model import checksum as model_checksum  # RFC 1071 from the text: the oracle

CAPTURES = pathlib.Path(__file__).resolve().parents[1] / "captures"
TSHARK = "/usr/bin/tshark"

# VTEPs in 198.18.0.0/15 (RFC 2544) and 2001:db8:f::/48; inner hosts in
# the documentation ranges.
VTEPS = {4: ("198.18.0.1", "198.18.0.2"), 6: ("2001:db8:f::1", "2001:db8:f::2")}
UNDERLAY_MAC = "02:00:00:00:01:01"   # our underlay interface
NEXT_HOP_MAC = "02:00:00:00:01:fe"   # the router towards the remote VTEP
H1, H2 = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
PORT_RANGE = (49152, 65535)
VNI = 5000
TTL = 64
COMBOS = [(proto, family) for proto in ("vxlan", "nvgre") for family in (4, 6)]
COMBO_IDS = [f"{p}-ipv{f}" for p, f in COMBOS]


def udp4_frame(tos=0xb9, sport=1000, payload=b"golden udp over ipv4"):
    """Inner IPv4/UDP; tos 0xb9 is DSCP 46 (EF) with ECN 01."""
    return bytes(Ether(dst=H2, src=H1) / IP(src="192.0.2.1", dst="192.0.2.2", tos=tos, id=7)
                 / UDP(sport=sport, dport=2000) / Raw(payload))


def tcp6_frame(tc=0x2b, sport=1000):
    """Inner IPv6/TCP; traffic class 0x2b is DSCP 10 (AF11) with ECN 11."""
    return bytes(Ether(dst=H2, src=H1) / IPv6(src="2001:db8::1", dst="2001:db8::2", tc=tc)
                 / TCP(sport=sport, dport=80, flags="S", seq=1))


def arp_frame():
    return bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=H1)
                 / ARP(hwsrc=H1, psrc="192.0.2.1", pdst="192.0.2.2"))


def tunnel(proto, family, **kw):
    local, remote = VTEPS[family]
    kw.setdefault("src_mac", UNDERLAY_MAC)
    kw.setdefault("dst_mac", NEXT_HOP_MAC)
    kw.setdefault("ttl", TTL)
    return Tunnel(proto, local, remote, **kw)


def inner_dscp(frame):
    """The outer TOS/traffic class the wire rules ask for: the inner DSCP, ECN clear."""
    p = Ether(frame)
    if IP in p:
        return p[IP].tos & 0xfc
    if IPv6 in p:
        return p[IPv6].tc & 0xfc
    return 0


def golden(proto, family, frame, vni, *, sport=None, flow_id=None, udp_checksum=False,
           port=4789, ttl=TTL):
    """The packet the wire rules describe, built by scapy.  The UDP source port
    and NVGRE FlowID come from our flow hash, which scapy cannot know: the
    caller passes the values it checked separately."""
    local, remote = VTEPS[family]
    dscp = inner_dscp(frame)
    if family == 4:
        ip = IP(src=local, dst=remote, tos=dscp, id=0, flags="DF", frag=0, ttl=ttl)
    else:
        ip = IPv6(src=local, dst=remote, tc=dscp, fl=0, hlim=ttl)
    if proto == "vxlan":
        # IPv4: no UDP checksum unless asked; IPv6: always (scapy computes None).
        chk = None if family == 6 or udp_checksum else 0
        tun = UDP(sport=sport, dport=port, chksum=chk) / VXLAN(flags=0x08, vni=vni)
    else:
        tun = GRE(key_present=1, proto=0x6558, key=vni << 8 | flow_id)
    return bytes(Ether(src=UNDERLAY_MAC, dst=NEXT_HOP_MAC) / ip / tun / Raw(frame))


def expected_sport(frame, port_range=PORT_RANGE):
    lo, hi = port_range
    return lo + (flow_hash(frame) * (hi - lo + 1) >> 32)


def layer_fields(pkt):
    """[(layer name, {field: value})] down to the tunnel header."""
    out = []
    layer = pkt
    while layer and not isinstance(layer, Raw):
        out.append((layer.name, dict(layer.fields)))
        if isinstance(layer, (VXLAN, GRE)):
            break
        layer = layer.payload
    return out


def field_diff(ours, gold):
    """Fields that differ between two dissected packets, as readable strings."""
    diffs = []
    a, b = layer_fields(Ether(ours)), layer_fields(Ether(gold))
    if [n for n, _ in a] != [n for n, _ in b]:
        return [f"layers: ours {[n for n, _ in a]}, golden {[n for n, _ in b]}"]
    for (name, fa), (_, fb) in zip(a, b):
        for key in sorted(set(fa) | set(fb)):
            if fa.get(key) != fb.get(key):
                diffs.append(f"{name}.{key}: ours {fa.get(key)!r}, golden {fb.get(key)!r}")
    return diffs


def tunnel_payload(pkt):
    """The bytes after the VXLAN or GRE header of a dissected packet."""
    layer = pkt[VXLAN] if VXLAN in pkt else pkt[GRE]
    return bytes(layer.payload)


INNER_FRAMES = {"udp4": udp4_frame(), "tcp6": tcp6_frame(), "arp": arp_frame()}


# --- field by field against scapy -------------------------------------------------

@pytest.mark.parametrize("udp_checksum", [False, True], ids=["udpcsum-default", "udpcsum-on"])
@pytest.mark.parametrize("inner", sorted(INNER_FRAMES))
@pytest.mark.parametrize("proto,family", COMBOS, ids=COMBO_IDS)
def test_encap_matches_scapy_golden(proto, family, inner, udp_checksum):
    frame = INNER_FRAMES[inner]
    ours = tunnel(proto, family, udp_checksum=udp_checksum).encap(VNI, frame)
    p = Ether(ours)
    kw = {"sport": p[UDP].sport} if proto == "vxlan" else {"flow_id": p[GRE].key & 0xff}
    gold = golden(proto, family, frame, VNI, udp_checksum=udp_checksum, **kw)
    assert field_diff(ours, gold) == []
    assert ours == gold


@pytest.mark.parametrize("udp_checksum", [False, True], ids=["udpcsum-default", "udpcsum-on"])
@pytest.mark.parametrize("proto,family", COMBOS, ids=COMBO_IDS)
def test_wire_rules(proto, family, udp_checksum):
    """Each rule of DESIGN.md section 3, stated on its own."""
    frame = INNER_FRAMES["udp4"]
    local, remote = VTEPS[family]
    ours = tunnel(proto, family, udp_checksum=udp_checksum).encap(VNI, frame)
    p = Ether(ours)
    overhead = {(4, "vxlan"): 50, (6, "vxlan"): 70, (4, "nvgre"): 42, (6, "nvgre"): 62}
    assert len(ours) == len(frame) + overhead[family, proto]

    assert (p.dst, p.src) == (NEXT_HOP_MAC, UNDERLAY_MAC)
    assert p.type == (0x0800 if family == 4 else 0x86dd)
    ip_proto = 17 if proto == "vxlan" else 47
    if family == 4:
        ip = p[IP]
        assert (ip.version, ip.ihl) == (4, 5)
        assert ip.tos == 0xb8                      # DSCP 46 copied, ECN bits not
        assert ip.len == len(ours) - 14
        assert ip.id == 0
        assert ip.flags == "DF" and ip.frag == 0   # never fragmented on the way
        assert ip.ttl == TTL and ip.proto == ip_proto
        again = IP(bytes(ip))
        del again.chksum                           # let scapy recompute it
        assert ip.chksum == IP(bytes(again)).chksum
        assert checksum(ours[14:34]) == 0
        assert (ip.src, ip.dst) == (local, remote)
    else:
        ip6 = p[IPv6]
        assert ip6.version == 6
        assert ip6.tc == 0xb8 and ip6.fl == 0
        assert ip6.plen == len(ours) - 54
        assert ip6.nh == ip_proto and ip6.hlim == TTL
        assert (ip6.src, ip6.dst) == (local, remote)

    if proto == "vxlan":
        udp = p[UDP]
        assert udp.dport == 4789
        assert PORT_RANGE[0] <= udp.sport <= PORT_RANGE[1]
        assert udp.sport == expected_sport(frame)
        assert udp.len == len(frame) + 16
        if family == 4 and not udp_checksum:
            assert udp.chksum == 0                 # "no checksum" over IPv4
        else:
            again = p.copy()
            again[UDP].chksum = None
            assert udp.chksum != 0 and udp.chksum == Ether(bytes(again))[UDP].chksum
        vx = ours[len(ours) - len(frame) - 8: len(ours) - len(frame)]
        assert vx == bytes([0x08, 0, 0, 0]) + VNI.to_bytes(3, "big") + b"\0"
    else:
        gre = p[GRE]
        assert (gre.chksum_present, gre.routing_present, gre.key_present, gre.seqnum_present) == (0, 0, 1, 0)
        assert (gre.recursion_control, gre.flags, gre.version) == (0, 0, 0)
        assert gre.proto == 0x6558
        assert gre.key == VNI << 8 | (flow_hash(frame) & 0xff)
        hdr = ours[len(ours) - len(frame) - 8: len(ours) - len(frame)]
        assert hdr[:4] == bytes.fromhex("20006558")
    assert tunnel_payload(p) == frame
    assert ours.endswith(frame)


@pytest.mark.parametrize("proto,family", COMBOS, ids=COMBO_IDS)
@pytest.mark.parametrize("frame,tos", [
    (udp4_frame(tos=0xb9), 0xb8),         # EF + ECT(1): DSCP kept, ECN cleared
    (udp4_frame(tos=0x03), 0x00),         # ECN only: nothing to copy
    (udp4_frame(tos=0xfc), 0xfc),         # every DSCP bit
    (tcp6_frame(tc=0x2b), 0x28),          # AF11 + CE
    (tcp6_frame(tc=0xe1), 0xe0),          # CS7 + ECT(1)
    (arp_frame(), 0x00),                  # no IP header: DSCP 0
], ids=["ipv4-ef", "ipv4-ecn-only", "ipv4-all", "ipv6-af11", "ipv6-cs7", "arp"])
def test_dscp_copied_from_inner(proto, family, frame, tos):
    p = Ether(tunnel(proto, family).encap(VNI, frame))
    assert (p[IP].tos if family == 4 else p[IPv6].tc) == tos


@pytest.mark.parametrize("proto,family", COMBOS, ids=COMBO_IDS)
@pytest.mark.parametrize("vni", [0, 1, 0xabcdef, 0xffffff])
def test_vni_width(proto, family, vni):
    """The whole 24 bits of the VNI/VSID, and nothing beyond them."""
    frame = INNER_FRAMES["arp"]
    p = Ether(tunnel(proto, family).encap(vni, frame))
    if proto == "vxlan":
        assert p[VXLAN].vni == vni and p[VXLAN].flags == 0x08
    else:
        assert p[GRE].key >> 8 == vni
    assert decap(bytes(p)).vni == vni


@pytest.mark.parametrize("proto,family", COMBOS, ids=COMBO_IDS)
def test_encap_refuses(proto, family):
    t = tunnel(proto, family)
    with pytest.raises(ValueError):
        t.encap(1 << 24, INNER_FRAMES["arp"])   # VNI above 24 bits
    with pytest.raises(ValueError):
        t.encap(VNI, bytes(13))                 # shorter than an Ethernet header


# --- flow hash: source port and FlowID ---------------------------------------

def sport_of(pkt):
    return Ether(pkt)[UDP].sport


def flows(n):
    """n inner frames of distinct flows (the inner UDP source port differs)."""
    return [udp4_frame(sport=1000 + i) for i in range(n)]


@pytest.mark.parametrize("family", [4, 6])
def test_source_port_spreads_over_range(family):
    t = tunnel("vxlan", family)
    ports = [sport_of(t.encap(VNI, f)) for f in flows(256)]
    lo, hi = PORT_RANGE
    assert all(lo <= p <= hi for p in ports)
    assert len(set(ports)) >= 240                 # 256 flows into 16384 ports: few collisions
    quarter = (hi - lo + 1) // 4
    per_quarter = [sum(lo + q * quarter <= p < lo + (q + 1) * quarter for p in ports) for q in range(4)]
    assert min(per_quarter) >= 32, per_quarter    # expect about 64 each


@pytest.mark.parametrize("family", [4, 6])
def test_same_flow_same_source_port(family):
    t = tunnel("vxlan", family)
    base = udp4_frame(sport=4242, payload=b"first")
    # Same MACs, addresses, protocol and ports: payload, IP id, TOS and the
    # VNI do not move a flow to another port (no reordering within a flow).
    same_flow = [
        udp4_frame(sport=4242, payload=b"a different and longer payload"),
        bytes(Ether(dst=H2, src=H1) / IP(src="192.0.2.1", dst="192.0.2.2", id=999, ttl=3)
              / UDP(sport=4242, dport=2000) / Raw(b"x")),
    ]
    port = sport_of(t.encap(VNI, base))
    assert sport_of(t.encap(VNI, base)) == port
    assert sport_of(t.encap(VNI + 1, base)) == port
    assert [sport_of(t.encap(VNI, f)) for f in same_flow] == [port, port]
    assert port == expected_sport(base)
    # Another destination port is another flow (and here another source port).
    other = bytes(Ether(dst=H2, src=H1) / IP(src="192.0.2.1", dst="192.0.2.2")
                  / UDP(sport=4242, dport=2001) / Raw(b"first"))
    assert sport_of(t.encap(VNI, other)) != port


@pytest.mark.parametrize("family", [4, 6])
def test_nvgre_flow_id_from_flow(family):
    t = tunnel("nvgre", family)
    ids = [Ether(t.encap(VNI, f))[GRE].key & 0xff for f in flows(256)]
    assert ids == [flow_hash(f) & 0xff for f in flows(256)]
    assert len(set(ids)) >= 128                   # about 162 expected of 256 draws into 256
    assert all(Ether(t.encap(VNI, f))[GRE].key >> 8 == VNI for f in flows(8))


@pytest.mark.parametrize("port_range", [(50000, 50003), (40000, 40000), (65535, 65535), (1, 2)])
def test_narrow_port_range(port_range):
    t = tunnel("vxlan", 4, port_range=port_range)
    ports = {sport_of(t.encap(VNI, f)) for f in flows(64)}
    assert ports == set(range(port_range[0], port_range[1] + 1))


@pytest.mark.parametrize("port_range", [(50001, 50000), (0, 10), (1, 65536)])
def test_bad_port_range_refused(port_range):
    with pytest.raises(ValueError):
        tunnel("vxlan", 4, port_range=port_range)


@pytest.mark.parametrize("family", [4, 6])
def test_destination_port_and_ttl_settings(family):
    p = Ether(tunnel("vxlan", family, destination_port=8472, ttl=5).encap(VNI, INNER_FRAMES["arp"]))
    assert p[UDP].dport == 8472
    assert (p[IP].ttl if family == 4 else p[IPv6].hlim) == 5


# --- checksums: RFC vectors through the Python API ------------------------------


def test_rfc1071_example():
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert model_checksum(data) == 0x220d            # the oracle agrees with the RFC first
    assert checksum(data) == 0x220d               # RFC 1071 section 3: sum 0xddf2
    assert checksum(data + bytes.fromhex("220d")) == 0
    assert checksum(b"") == 0xffff
    assert checksum(b"\x12") == ~0x1200 & 0xffff  # odd byte padded on the right


def test_rfc1624_example():
    # Section 4: HC 0xDD2F, m 0x5555 -> m' 0x3285; eqn. 3 gives 0x0000
    # (eqn. 2 gave 0xFFFF, the wrong zero).
    assert checksum_update(0xDD2F, 0x5555, 0x3285) == 0x0000


def test_checksum_verifies_scapy_ipv4_header():
    hdr = bytes(IP(src="198.18.0.1", dst="198.18.0.2", ttl=9, id=0x1234, tos=0x28))[:20]
    assert checksum(hdr) == 0
    assert checksum(hdr[:10] + b"\0\0" + hdr[12:]) == struct.unpack("!H", hdr[10:12])[0]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(min_size=0, max_size=300))
def test_checksum_matches_rfc1071_oracle(data):
    assert checksum(data) == model_checksum(data)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(min_size=2, max_size=64).filter(lambda b: len(b) % 2 == 0),
       index=st.integers(min_value=0), new=st.integers(min_value=0, max_value=0xffff))
def test_checksum_update_matches_recompute(data, index, new):
    i = 2 * (index % (len(data) // 2))
    old = struct.unpack_from("!H", data, i)[0]
    changed = data[:i] + struct.pack("!H", new) + data[i + 2:]
    # All-zero data is the one case where both zeros are right answers.
    assume(any(changed))
    assert checksum_update(checksum(data), old, new) == checksum(changed)


# --- another implementation's packets decapsulate ------------------------------

def scapy_tunnel_packet(proto, family, frame, vni, *, sport=33333, flow_id=0x5a, udp_chksum=None,
                        tos=0x2e, ttl=17, df=False, pad=0):
    """A VXLAN/NVGRE packet as some other VTEP might send it: no DF, IP id
    set, any source port, TOS with ECN bits."""
    local, remote = VTEPS[family]
    # They send to us: their address is our "remote".
    ip = (IP(src=remote, dst=local, tos=tos, ttl=ttl, id=4321, flags="DF" if df else 0) if family == 4
          else IPv6(src=remote, dst=local, tc=tos, fl=0x12345, hlim=ttl))
    if proto == "vxlan":
        tun = UDP(sport=sport, dport=4789, chksum=udp_chksum) / VXLAN(flags=0x08, vni=vni)
    else:
        tun = GRE(key_present=1, proto=0x6558, key=vni << 8 | flow_id)
    return bytes(Ether(src=NEXT_HOP_MAC, dst=UNDERLAY_MAC) / ip / tun / Raw(frame)) + bytes(pad)


@pytest.mark.parametrize("inner", sorted(INNER_FRAMES))
@pytest.mark.parametrize("proto,family", COMBOS, ids=COMBO_IDS)
def test_decap_scapy_built(proto, family, inner):
    frame = INNER_FRAMES[inner]
    local, remote = VTEPS[family]
    d = decap(scapy_tunnel_packet(proto, family, frame, 0x123456))
    assert d.encapsulation == proto
    assert d.vni == 0x123456
    assert d.inner == frame
    assert (d.src, d.dst) == (ipaddress.ip_address(remote), ipaddress.ip_address(local))
    assert (d.tos, d.ttl) == (0x2e, 17)
    if proto == "vxlan":
        assert (d.source_port, d.flow_id) == (33333, 0)
    else:
        assert (d.source_port, d.flow_id) == (0, 0x5a)


@pytest.mark.parametrize("family", [4, 6])
def test_decap_scapy_vxlan_checksums(family):
    frame = INNER_FRAMES["udp4"]
    # A computed UDP checksum is verified and accepted on both families.
    assert decap(scapy_tunnel_packet("vxlan", family, frame, VNI)).inner == frame
    if family == 4:
        # Linux's default over IPv4: no checksum.
        assert decap(scapy_tunnel_packet("vxlan", 4, frame, VNI, udp_chksum=0)).inner == frame
    # Ethernet padding after the IP packet is not part of the inner frame.
    assert decap(scapy_tunnel_packet("vxlan", family, frame, VNI, pad=6)).inner == frame


@pytest.mark.parametrize("port", [4789, 8472])
def test_decap_other_destination_port(port):
    pkt = bytes(Ether() / IP(src="198.18.0.2", dst="198.18.0.1") / UDP(sport=1, dport=port)
                / VXLAN(vni=7) / Raw(INNER_FRAMES["arp"]))
    assert decap(pkt, destination_port=port).vni == 7
    with pytest.raises(DecapError) as e:
        decap(pkt, destination_port=port + 1)
    assert e.value.reason == "not_tunnel"


@pytest.mark.parametrize("inner", sorted(INNER_FRAMES))
@pytest.mark.parametrize("proto,family", COMBOS, ids=COMBO_IDS)
def test_round_trip(proto, family, inner):
    frame = INNER_FRAMES[inner]
    local, remote = VTEPS[family]
    pkt = tunnel(proto, family, udp_checksum=True).encap(VNI, frame)
    d = decap(pkt)
    assert (d.encapsulation, d.vni, d.inner) == (proto, VNI, frame)
    assert (d.src, d.dst) == (ipaddress.ip_address(local), ipaddress.ip_address(remote))
    assert d.tos == inner_dscp(frame) and d.ttl == TTL


# --- pcap files, tshark, stored captures --------------------------------------

PCAP_TIME = 1_700_000_000  # fixed timestamps: the stored files are byte-stable


def pcap_bytes(packets):
    """A classic libpcap file (microseconds, LINKTYPE_ETHERNET) of "packets"."""
    out = [struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1)]
    for i, pkt in enumerate(packets):
        out.append(struct.pack("<IIII", PCAP_TIME + i, 0, len(pkt), len(pkt)))
        out.append(pkt)
    return b"".join(out)


def pcap_packets(raw):
    """The packets of a classic little-endian pcap file."""
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", raw, 0)
    assert (magic, linktype) == (0xa1b2c3d4, 1)
    off, packets = 24, []
    while off < len(raw):
        _, _, caplen, _ = struct.unpack_from("<IIII", raw, off)
        packets.append(raw[off + 16: off + 16 + caplen])
        off += 16 + caplen
    return packets


# What each stored capture holds: (inner frame, VNI, Tunnel options).
CAPTURE_CASES = [
    (INNER_FRAMES["udp4"], VNI, {}),
    (INNER_FRAMES["tcp6"], VNI, {}),
    (INNER_FRAMES["arp"], VNI, {}),
    (udp4_frame(tos=0, sport=7), 0xffffff, {"udp_checksum": True, "ttl": 255}),
]


def golden_capture_packets(proto, family):
    return [tunnel(proto, family, **kw).encap(vni, frame) for frame, vni, kw in CAPTURE_CASES]


def capture_path(proto, family):
    return CAPTURES / f"golden_{proto}_ipv{family}.pcap"


def write_golden_captures():
    """Regenerate tests/captures/golden_*.pcap from the current code."""
    CAPTURES.mkdir(exist_ok=True)
    for proto, family in COMBOS:
        capture_path(proto, family).write_bytes(pcap_bytes(golden_capture_packets(proto, family)))


def first_difference(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


@pytest.mark.parametrize("proto,family", COMBOS, ids=COMBO_IDS)
def test_stored_capture_matches(proto, family):
    if os.environ.get("VTEP_REGEN_GOLDEN") == "1":
        write_golden_captures()
    path = capture_path(proto, family)
    assert path.exists(), f"{path} missing: run with VTEP_REGEN_GOLDEN=1 once"
    stored = pcap_packets(path.read_bytes())
    now = golden_capture_packets(proto, family)
    assert len(stored) == len(now)
    for i, (got, want) in enumerate(zip(now, stored)):
        assert got == want, (f"{path.name} packet {i}: wire format changed at byte "
                             f"{first_difference(got, want)}: {got.hex()} != {want.hex()}")
    assert path.read_bytes() == pcap_bytes(now)


def tshark(path, fields):
    """tshark's decode of "path": one {field: [values]} per packet."""
    cmd = [TSHARK, "-r", str(path), "-n", "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
           "-T", "json"] + [a for f in fields for a in ("-e", f)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [p["_source"]["layers"] for p in json.loads(res.stdout)]


# Outer Ethernet/IP come first in tshark's lists, the inner frame's second.
TSHARK_FIELDS = ["frame.protocols", "eth.src", "eth.dst", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
                 "ip.checksum.status", "ip.flags.df", "udp.dstport", "udp.checksum.status",
                 "vxlan.vni", "vxlan.flag_i", "gre.proto", "gre.key", "gre.flags.key",
                 "gre.flags.checksum", "gre.flags.sequence_number", "gre.flags.version",
                 "arp.src.proto_ipv4", "_ws.malformed", "_ws.expert.severity"]
PI_WARN = 0x00600000  # expert severities below this are chat and notes


@pytest.mark.parametrize("proto,family", COMBOS, ids=COMBO_IDS)
def test_tshark_decodes_our_packets(proto, family, tmp_path):
    packets = golden_capture_packets(proto, family)
    path = tmp_path / f"{proto}_ipv{family}.pcap"
    path.write_bytes(pcap_bytes(packets))
    decoded = tshark(path, TSHARK_FIELDS)
    assert len(decoded) == len(packets)
    local, remote = VTEPS[family]
    ip_field = "ip" if family == 4 else "ipv6"
    for (frame, vni, kw), d in zip(CAPTURE_CASES, decoded):
        inner = Ether(frame)
        tunnel_layers = "ip:udp:vxlan" if proto == "vxlan" else "ip:gre"
        outer = tunnel_layers if family == 4 else tunnel_layers.replace("ip:", "ipv6:")
        assert d["frame.protocols"][0].startswith(f"eth:ethertype:{outer}:eth:ethertype:"), d
        assert "_ws.malformed" not in d
        assert max(int(s) for s in d.get("_ws.expert.severity", ["0"])) < PI_WARN, d
        # Outer, then inner Ethernet addresses.
        assert d["eth.src"] == [UNDERLAY_MAC, inner.src]
        assert d["eth.dst"] == [NEXT_HOP_MAC, inner.dst]
        assert d[f"{ip_field}.src"][0] == local and d[f"{ip_field}.dst"][0] == remote
        if family == 4:
            assert d["ip.checksum.status"][0] == "1"        # 1: good
            assert d["ip.flags.df"][0] == "1"
        if IP in inner:
            assert d["ip.src"][-1] == inner[IP].src and d["ip.dst"][-1] == inner[IP].dst
        elif IPv6 in inner:
            assert d["ipv6.src"][-1] == inner[IPv6].src and d["ipv6.dst"][-1] == inner[IPv6].dst
        else:
            assert d["arp.src.proto_ipv4"] == [inner[ARP].psrc]
        if proto == "vxlan":
            assert d["udp.dstport"][0] == "4789"
            assert d["vxlan.vni"] == [str(vni)] and d["vxlan.flag_i"] == ["1"]
            if family == 6 or kw.get("udp_checksum"):
                assert d["udp.checksum.status"][0] == "1"   # verified good
        else:
            # tshark 4.0 has no NVGRE dissector: it is GRE with the key
            # present and protocol 0x6558, which it hands to Ethernet.
            assert d["gre.proto"] == ["0x6558"]
            assert (d["gre.flags.key"], d["gre.flags.checksum"], d["gre.flags.sequence_number"],
                    d["gre.flags.version"]) == (["1"], ["0"], ["0"], ["0"])
            assert int(d["gre.key"][0], 16) >> 8 == vni
            assert int(d["gre.key"][0], 16) & 0xff == flow_hash(frame) & 0xff


@pytest.mark.parametrize("proto,family", COMBOS, ids=COMBO_IDS)
def test_tshark_decodes_stored_capture(proto, family):
    """The stored files themselves are sound for other tools."""
    decoded = tshark(capture_path(proto, family), ["frame.protocols", "vxlan.vni", "gre.key", "_ws.malformed"])
    assert len(decoded) == len(CAPTURE_CASES)
    for (_, vni, _), d in zip(CAPTURE_CASES, decoded):
        assert "_ws.malformed" not in d
        if proto == "vxlan":
            assert d["vxlan.vni"] == [str(vni)]
        else:
            assert int(d["gre.key"][0], 16) >> 8 == vni
