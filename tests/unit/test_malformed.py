"""Malformed frames: never a crash, always dropped, counted under the right reason.

Underlay packets go through dataplane.packet.decap (the stateless receive
checks) and through Engine.underlay (the same checks plus the tables); access
frames through Engine.access.  Every case states the one defect it has: the
packets are built with scapy so lengths and checksums are right except where
the case says otherwise.  The expected reasons follow the check order of
vtep_decap_inline() (csrc/tunnel.h):

  Ethernet (14 bytes) -> runt
  IPv4: header (20) -> runt; version, IHL < 5 -> bad_header; protocol not
        UDP/GRE -> not_tunnel; options beyond the data -> runt; total length
        < IHL or beyond the frame -> bad_header; header checksum ->
        bad_checksum; options -> ip_options and MF -> fragment, but only
        when the upper header shows tunnel traffic for us (else, and for
        later fragments, not_tunnel: the host's own traffic)
  IPv6: header (40) -> runt; version -> bad_header; extension headers ->
        ip_options (fragment header: fragment) when the chain ends in tunnel
        traffic for us, else not_tunnel; next header not UDP/GRE ->
        not_tunnel; payload length beyond the frame -> bad_header
  UDP:  header (8) -> runt; port -> not_tunnel; length != IP payload ->
        bad_header; nonzero checksum -> bad_checksum; VXLAN header
        (8) -> runt; flags -> bad_flags
  GRE:  4 bytes -> runt; protocol -> not_tunnel; flags/version -> bad_flags;
        key (8 bytes in all) -> runt
  inner Ethernet (14) -> runt
then, in the engine only: not_local, unknown_vni, unknown_remote,
vlan_tagged, bad_src_mac."""
import collections

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scapy.layers.inet import ICMP, IP, UDP, IPOption_Router_Alert
from scapy.layers.inet6 import (ICMPv6MLReport2, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                                IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, RouterAlert)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from dataplane._engine import PKT_CSUM_OK, Burst, Engine, VtepError
from dataplane.packet import DROP_REASONS, DecapError, Tunnel, decap

LOCAL = {4: "198.18.0.1", 6: "2001:db8:f::1"}       # the VTEP under test
SENDER = {4: "198.18.0.2", 6: "2001:db8:f::2"}      # a remote on every segment's list
OTHER = {4: "198.18.0.4", 6: "2001:db8:f::4"}       # a remote on the VXLAN segment's list only
STRANGER = {4: "198.18.0.3", 6: "2001:db8:f::3"}    # not a remote at all
UNDERLAY_MAC, NEXT_HOP_MAC = "02:00:00:00:01:01", "02:00:00:00:01:fe"
H1, H2, H3 = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
BROADCAST = "ff:ff:ff:ff:ff:ff"
VNI = {"vxlan": 5000, "nvgre": 6000}
COMBOS = [(proto, family) for proto in ("vxlan", "nvgre") for family in (4, 6)]
COMBO_IDS = [f"{p}-ipv{f}" for p, f in COMBOS]
IP_HLEN = {4: 20, 6: 40}
TUN_HLEN = {"vxlan": 16, "nvgre": 8}            # UDP + VXLAN, or GRE with key
# What decap itself can answer; the rest needs the engine's tables.
DECAP_REASONS = {"runt", "bad_header", "ip_options", "fragment", "bad_checksum", "bad_flags",
                 "not_tunnel"}
# Reasons found after the VNI named a segment: the segment counts them too.
SEGMENT_REASONS = {"unknown_remote", "vlan_tagged", "bad_src_mac", "pvlan_deny", "no_destination",
                   "hairpin", "split_horizon", "mtu", "no_neighbour", "ring_full"}


def arp_from(src=H1, dst=BROADCAST, pad_to=60):
    """An ARP request from host "src", padded to the Ethernet minimum."""
    f = bytes(Ether(dst=dst, src=src) / ARP(hwsrc=src, psrc="192.0.2.1", pdst="192.0.2.2"))
    return f + bytes(max(0, pad_to - len(f)))


INNER = arp_from()


def vxlan_header(vni, flags=0x08):
    return bytes([flags, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\0"


def nvgre_header(vsid, flags_ver=0x2000, protocol=0x6558, flow_id=0x11):
    return flags_ver.to_bytes(2, "big") + protocol.to_bytes(2, "big") + (vsid << 8 | flow_id).to_bytes(4, "big")


def underlay_pkt(proto="vxlan", family=4, *, vni=None, inner=INNER, src=None, dst=None, tun=None,
                 ip=None, udp=None, ext=None, eth_type=None, l4=None):
    """A tunnel packet from SENDER to LOCAL as scapy builds it: lengths and
    checksums computed unless an override sets them.  "tun" replaces the
    VXLAN/GRE header bytes, "l4" the whole IP payload, "ext" is IPv6
    extension headers to insert, "ip"/"udp" are scapy field overrides."""
    vni = VNI[proto] if vni is None else vni
    src, dst = src or SENDER[family], dst or LOCAL[family]
    ip_proto = 17 if proto == "vxlan" else 47
    if family == 4:
        l3 = IP(**{"src": src, "dst": dst, "flags": "DF", "id": 0, "ttl": 64, "proto": ip_proto} | (ip or {}))
    else:
        # With extension headers scapy fills in the chain; the last one's
        # "nh" is the caller's.
        nh = {} if ext is not None else {"nh": ip_proto}
        l3 = IPv6(**{"src": src, "dst": dst, "hlim": 64} | nh | (ip or {}))
        if ext is not None:
            l3 = l3 / ext
    if l4 is not None:
        payload = Raw(l4)
    elif proto == "vxlan":
        hdr = vxlan_header(vni) if tun is None else tun
        # Like our encap: no UDP checksum over IPv4, computed over IPv6.
        fields = {"sport": 50000, "dport": 4789, "chksum": 0 if family == 4 else None} | (udp or {})
        payload = UDP(**fields) / Raw(hdr + inner)
    else:
        payload = Raw((nvgre_header(vni) if tun is None else tun) + inner)
    eth = Ether(src=NEXT_HOP_MAC, dst=UNDERLAY_MAC)
    if eth_type is not None:
        eth.type = eth_type
    return bytes(eth / l3 / payload)


def patch(pkt, offset, new):
    """"pkt" with bytes at "offset" replaced by "new"."""
    return pkt[:offset] + bytes(new) + pkt[offset + len(new):]


def flip(pkt, offset):
    return patch(pkt, offset, [pkt[offset] ^ 0x01])


def ours(proto, family, inner=INNER, vni=None, **kw):
    """A valid packet made by our own encapsulation, from SENDER to LOCAL."""
    t = Tunnel(proto, SENDER[family], LOCAL[family], src_mac=NEXT_HOP_MAC, dst_mac=UNDERLAY_MAC, **kw)
    return t.encap(VNI[proto] if vni is None else vni, inner)


def decap_reason(pkt):
    try:
        decap(pkt)
    except DecapError as e:
        assert e.reason in DECAP_REASONS
        return e.reason
    return "none"


class Lab:
    """An engine with a VXLAN and an NVGRE segment, two ports on each, and
    SENDER (resolved) on both remote lists."""

    def __init__(self, family, mtu=1500):
        self.family = family
        self.e = Engine(LOCAL[family], underlay_mac=UNDERLAY_MAC, underlay_mtu=mtu,
                        max_ports=16, max_segments=4, max_remotes=8)
        self.seg, self.ports = {}, {}
        self.sender = self.e.add_remote(SENDER[family])
        self.e.set_neighbour(self.sender, NEXT_HOP_MAC)
        self.other = self.e.add_remote(OTHER[family])
        self.e.set_neighbour(self.other, NEXT_HOP_MAC)
        for proto in ("vxlan", "nvgre"):
            s = self.seg[proto] = self.e.add_segment(proto, VNI[proto])
            self.ports[proto] = [self.e.add_port(s, "promiscuous") for _ in range(2)]
            self.e.segment_add_remote(s, self.sender)
        self.e.segment_add_remote(self.seg["vxlan"], self.other)

    def snapshot(self):
        kinds = [("underlay", 0)] + [("segment", s) for s in self.seg.values()]
        kinds += [("port", p) for ps in self.ports.values() for p in ps]
        return {k: self.e.counters(*k) for k in kinds}


def drops_delta(before, after):
    """{reason: count} of drops between two counter readings."""
    return {DROP_REASONS[i]: a - b for i, (a, b) in enumerate(zip(after["drops"], before["drops"])) if a != b}


def run_underlay(lab, pkt, proto="vxlan"):
    """Feed one packet; returns (reason, underlay drops, segment drops)."""
    before = lab.snapshot()
    verdicts, outputs = lab.e.underlay([pkt])
    after = lab.snapshot()
    reason = DROP_REASONS[verdicts[0]]
    assert after["underlay", 0]["rx_packets"] - before["underlay", 0]["rx_packets"] == 1
    assert bool(outputs) == (reason == "none")
    seg = ("segment", lab.seg[proto])
    return reason, drops_delta(before["underlay", 0], after["underlay", 0]), drops_delta(before[seg], after[seg])


def assert_underlay_drop(lab, pkt, reason, proto="vxlan"):
    got, underlay, segment = run_underlay(lab, pkt, proto)
    assert got == reason
    assert underlay == {reason: 1}
    # The segment counts only what happened after the VNI named it.
    assert segment == ({reason: 1} if reason in SEGMENT_REASONS else {})


@pytest.fixture(params=[4, 6], ids=["ipv4", "ipv6"])
def family(request):
    return request.param


@pytest.fixture
def lab(family):
    return Lab(family)


# --- the valid packets pass (so every drop below is down to its defect) -----

@pytest.mark.parametrize("proto", ["vxlan", "nvgre"])
def test_valid_packets_pass(lab, proto):
    family = lab.family
    for pkt in (ours(proto, family), underlay_pkt(proto, family), ours(proto, family) + bytes(8)):
        assert decap(pkt).inner == INNER
        reason, underlay, segment = run_underlay(lab, pkt, proto)
        assert (reason, underlay, segment) == ("none", {}, {})


# --- truncation at every offset -------------------------------------------------

@pytest.mark.parametrize("proto,family", COMBOS, ids=COMBO_IDS)
def test_truncated_at_every_offset(proto, family):
    """Cut a valid packet short: below the IP header it is a runt; once the IP
    header is whole, its length field claims more than is there: bad_header."""
    pkt = ours(proto, family)
    ip_end = 14 + IP_HLEN[family]
    assert len(pkt) == ip_end + TUN_HLEN[proto] + len(INNER)
    expected = ["runt" if n < ip_end else "bad_header" for n in range(len(pkt))] + ["none"]
    assert [decap_reason(pkt[:n]) for n in range(len(pkt) + 1)] == expected

    lab = Lab(family)
    before = lab.e.counters("underlay")
    verdicts, _ = lab.e.underlay([pkt[:n] for n in range(len(pkt) + 1)])
    after = lab.e.counters("underlay")
    assert [DROP_REASONS[v] for v in verdicts] == expected
    assert after["rx_packets"] - before["rx_packets"] == len(pkt) + 1
    assert drops_delta(before, after) == {"runt": ip_end, "bad_header": len(pkt) - ip_end}


def consistently_truncated(proto, family, k):
    """A packet whose IP payload is the first "k" bytes of a valid one, with
    every length and checksum field that is still there rewritten to agree."""
    if proto == "vxlan" and k >= 8:
        # A whole UDP header, for the shorter payload (length, checksum).
        return underlay_pkt(proto, family, tun=(vxlan_header(VNI[proto]) + INNER)[:k - 8], inner=b"")
    full = underlay_pkt(proto, family, inner=INNER)
    return underlay_pkt(proto, family, l4=full[14 + IP_HLEN[family]:][:k])


@pytest.mark.parametrize("proto,family", COMBOS, ids=COMBO_IDS)
def test_consistently_truncated(proto, family):
    """Lengths that agree but leave no room for the tunnel header or the inner
    Ethernet header: runt all the way up to 14 inner bytes."""
    limit = TUN_HLEN[proto] + 14
    ks = range(limit + 2)
    expected = ["runt" if k < limit else "none" for k in ks]
    pkts = [consistently_truncated(proto, family, k) for k in ks]
    assert [decap_reason(p) for p in pkts] == expected
    lab = Lab(family)
    before = lab.e.counters("underlay")
    verdicts, outputs = lab.e.underlay(pkts)
    assert [DROP_REASONS[v] for v in verdicts] == expected
    assert drops_delta(before, lab.e.counters("underlay")) == {"runt": limit}
    # The shortest accepted inner frame is just an Ethernet header, delivered as is.
    assert {len(data) for _, kind, _, data in outputs} == {14, 15}


# --- one defect each ------------------------------------------------------------

def v4_cases(proto):
    """(name, packet, reason) over IPv4."""
    p = lambda **kw: underlay_pkt(proto, 4, **kw)  # noqa: E731
    good = p()
    tot_len = len(good) - 14
    cases = [
        ("ip-version-6", p(ip={"version": 6}), "bad_header"),
        ("ip-version-5", p(ip={"version": 5}), "bad_header"),
        ("ihl-4", p(ip={"ihl": 4}), "bad_header"),
        # IHL 15 (60 bytes) with only 46 bytes of IP in the frame.
        ("ihl-beyond-frame", patch(good[:60], 14, [0x4f]), "runt"),
        ("tot-len-too-big", p(ip={"len": tot_len + 1}), "bad_header"),
        ("tot-len-below-ihl", p(ip={"len": 19}), "bad_header"),
        ("tot-len-zero", p(ip={"len": 0}), "bad_header"),
        ("ip-checksum", flip(good, 25), "bad_checksum"),
        ("ip-checksum-zero", patch(good, 24, [0, 0]), "bad_checksum"),
        ("ip-options", p(ip={"options": [IPOption_Router_Alert()]}), "ip_options"),
        ("more-fragments", p(ip={"flags": "MF"}), "fragment"),
        # A later fragment shows no UDP or GRE header: it cannot be told from the host's own.
        ("fragment-offset", p(ip={"flags": 0, "frag": 1}), "not_tunnel"),
        ("last-fragment", p(ip={"flags": "DF", "frag": 0x1fff}), "not_tunnel"),
        ("proto-tcp", p(ip={"proto": 6}), "not_tunnel"),
        ("proto-icmp", bytes(Ether(dst=UNDERLAY_MAC) / IP(src=SENDER[4], dst=LOCAL[4]) / ICMP()), "not_tunnel"),
    ]
    if proto == "vxlan":
        # The IP length is right; the IP payload is one byte shorter than UDP says.
        cases.append(("tot-len-short-of-udp", p(ip={"len": tot_len - 1}), "bad_header"))
    return cases


def v6_cases(proto):
    p = lambda **kw: underlay_pkt(proto, 6, **kw)  # noqa: E731
    good = p()
    nh = 17 if proto == "vxlan" else 47
    plen = len(good) - 54
    return [
        ("ip-version-4", p(ip={"version": 4}), "bad_header"),
        ("plen-too-big", p(ip={"plen": plen + 1}), "bad_header"),
        ("plen-way-too-big", p(ip={"plen": 0xffff}), "bad_header"),
        ("hop-by-hop", p(ext=IPv6ExtHdrHopByHop(nh=nh)), "ip_options"),
        ("routing", p(ext=IPv6ExtHdrRouting(nh=nh)), "ip_options"),
        ("destination-options", p(ext=IPv6ExtHdrDestOpt(nh=nh)), "ip_options"),
        ("ah", p(ext=AH(nh=nh, payloadlen=4, spi=1, icv=bytes(12))), "ip_options"),
        # Encrypted, or a "header" that is really UDP: nothing says it is ours.
        ("esp", p(ip={"nh": 50}), "not_tunnel"),
        ("ah-garbage", p(ip={"nh": 51}), "not_tunnel"),
        ("fragment-header", p(ext=IPv6ExtHdrFragment(nh=nh, offset=0, m=1)), "fragment"),
        ("atomic-fragment", p(ext=IPv6ExtHdrFragment(nh=nh)), "fragment"),
        ("nh-tcp", p(ip={"nh": 6}), "not_tunnel"),
        ("nh-none", p(ip={"nh": 59}), "not_tunnel"),
    ]


def vxlan_cases(family):
    p = lambda **kw: underlay_pkt("vxlan", family, **kw)  # noqa: E731
    udp_off = 14 + IP_HLEN[family]
    good = p()
    udp_len = len(good) - udp_off
    vx = vxlan_header(VNI["vxlan"])
    cases = [
        ("udp-len-plus-1", p(udp={"len": udp_len + 1}), "bad_header"),
        ("udp-len-minus-1", p(udp={"len": udp_len - 1}), "bad_header"),
        ("udp-len-zero", p(udp={"len": 0}), "bad_header"),
        ("udp-checksum-wrong", flip(p(udp={"chksum": None}), udp_off + 7), "bad_checksum"),
        ("other-port-4790", p(udp={"dport": 4790}), "not_tunnel"),
        ("other-port-8472", p(udp={"dport": 8472}), "not_tunnel"),
        ("no-i-flag", p(tun=patch(vx, 0, [0x00])), "bad_flags"),
        ("reserved-flag-0x0c", p(tun=patch(vx, 0, [0x0c])), "bad_flags"),
        ("gbp-flag-0x88", p(tun=patch(vx, 0, [0x88])), "bad_flags"),
        # VXLAN-GPE (I and P set, next protocol 3 = Ethernet) is not plain VXLAN.
        ("gpe-ethernet", p(tun=bytes([0x0c, 0, 0, 0x03]) + vx[4:]), "bad_flags"),
        ("reserved1-byte1", p(tun=patch(vx, 1, [0x01])), "bad_flags"),
        ("reserved1-byte3", p(tun=patch(vx, 3, [0x80])), "bad_flags"),
        ("reserved2", p(tun=patch(vx, 7, [0x01])), "bad_flags"),
    ]
    return cases


def nvgre_cases(family):
    p = lambda **kw: underlay_pkt("nvgre", family, **kw)  # noqa: E731
    vsid = VNI["nvgre"]
    return [
        ("gre-c-flag", p(tun=nvgre_header(vsid, flags_ver=0xa000)), "bad_flags"),
        ("gre-s-flag", p(tun=nvgre_header(vsid, flags_ver=0x3000)), "bad_flags"),
        ("gre-r-flag", p(tun=nvgre_header(vsid, flags_ver=0x6000)), "bad_flags"),
        ("gre-no-k-flag", p(tun=nvgre_header(vsid, flags_ver=0x0000)), "bad_flags"),
        ("gre-recursion", p(tun=nvgre_header(vsid, flags_ver=0x2100)), "bad_flags"),
        ("gre-version-1", p(tun=nvgre_header(vsid, flags_ver=0x2001)), "bad_flags"),
        ("gre-version-7", p(tun=nvgre_header(vsid, flags_ver=0x2007)), "bad_flags"),
        ("gre-proto-ipv4", p(tun=nvgre_header(vsid, protocol=0x0800)), "not_tunnel"),
        ("gre-proto-ipv6", p(tun=nvgre_header(vsid, protocol=0x86dd)), "not_tunnel"),
        ("gre-proto-erspan", p(tun=nvgre_header(vsid, protocol=0x88be)), "not_tunnel"),
        # The protocol is checked before the flags: another GRE user's packet
        # is left alone, not counted as a broken NVGRE one.
        ("gre-proto-ipv4-with-c", p(tun=nvgre_header(vsid, flags_ver=0xa000, protocol=0x0800)), "not_tunnel"),
    ]


def ethertype_cases(family):
    pkt = underlay_pkt("vxlan", family)
    return [
        ("arp", bytes(Ether(dst=BROADCAST, src=NEXT_HOP_MAC) / ARP()), "not_tunnel"),
        ("lldp", patch(pkt, 12, b"\x88\xcc"), "not_tunnel"),
        ("outer-vlan-tag", bytes(Ether(dst=UNDERLAY_MAC) / Dot1Q(vlan=7) / Raw(pkt[14:])), "not_tunnel"),
        ("ipv4-type-ipv6-packet", patch(underlay_pkt("vxlan", 6), 12, b"\x08\x00"), "bad_header"),
        ("ipv6-type-ipv4-packet", patch(underlay_pkt("vxlan", 4) + bytes(40), 12, b"\x86\xdd"), "bad_header"),
        ("ethernet-only", pkt[:14], "runt"),
    ]


def all_decap_cases():
    cases = []
    for proto, family in COMBOS:
        per_family = v4_cases(proto) if family == 4 else v6_cases(proto)
        per_proto = vxlan_cases(family) if proto == "vxlan" else nvgre_cases(family)
        for name, pkt, reason in per_family + per_proto:
            cases.append(pytest.param(family, proto, pkt, reason, id=f"{proto}-ipv{family}-{name}"))
    for family in (4, 6):
        for name, pkt, reason in ethertype_cases(family):
            cases.append(pytest.param(family, "vxlan", pkt, reason, id=f"ipv{family}-{name}"))
    return cases


@pytest.mark.parametrize("family,proto,pkt,reason", all_decap_cases())
def test_malformed_underlay(family, proto, pkt, reason):
    assert decap_reason(pkt) == reason
    assert_underlay_drop(Lab(family), pkt, reason, proto)


@pytest.mark.parametrize("family", [4, 6])
def test_udp_checksum_zero_is_accepted(family):
    """Zero means "no checksum": IPv4 may omit it, and tunnels over IPv6 may
    too (RFC 6935; DESIGN.md: accept 0, verify a nonzero one)."""
    pkt = underlay_pkt("vxlan", family, udp={"chksum": 0})
    assert decap(pkt).inner == INNER
    assert run_underlay(Lab(family), pkt)[0] == "none"


@pytest.mark.parametrize("family", [4, 6])
def test_kernel_vouched_checksum_is_not_verified_again(family):
    """Across a veth the kernel hands AF_PACKET its own packets with the UDP
    checksum not yet computed (the field holds the pseudo-header sum); the
    I/O layer says so with PKT_CSUM_OK and the engine must not drop them."""
    pkt = underlay_pkt("vxlan", family, udp={"chksum": 0x1234})
    with pytest.raises(DecapError, match="bad_checksum"):
        decap(pkt)
    lab = Lab(family)
    assert DROP_REASONS[lab.e.underlay([pkt])[0][0]] == "bad_checksum"
    verdicts, outputs = lab.e.underlay([pkt], flags=[PKT_CSUM_OK])
    assert DROP_REASONS[verdicts[0]] == "none" and outputs[0][3] == INNER


def host_dns(family, *, options=(), flags=0, ext=None):
    """A DNS query of the host's own on the underlay: not VXLAN."""
    if family == 4:
        l3 = IP(src=SENDER[4], dst=LOCAL[4], options=list(options), flags=flags)
    else:
        l3 = IPv6(src=SENDER[6], dst=LOCAL[6])
        if ext is not None:
            l3 = l3 / ext
    return bytes(Ether(src=NEXT_HOP_MAC, dst=UNDERLAY_MAC) / l3 / UDP(sport=5353, dport=53) / Raw(b"x" * 20))


HOST_TRAFFIC = {
    "ipv4-options-dns": lambda: host_dns(4, options=[IPOption_Router_Alert()]),
    "ipv4-first-fragment-dns": lambda: host_dns(4, flags="MF"),
    "ipv6-hop-by-hop-dns": lambda: host_dns(6, ext=IPv6ExtHdrHopByHop()),
    "ipv6-fragment-dns": lambda: host_dns(6, ext=IPv6ExtHdrFragment(m=1)),
    # An MLD report: a hop-by-hop router alert, then ICMPv6.
    "ipv6-mld": lambda: bytes(Ether(src=NEXT_HOP_MAC, dst="33:33:00:00:00:16")
                              / IPv6(src="fe80::1", dst="ff02::16", hlim=1)
                              / IPv6ExtHdrHopByHop(options=[RouterAlert()]) / ICMPv6MLReport2()),
}


@pytest.mark.parametrize("name", HOST_TRAFFIC)
def test_host_traffic_with_options_is_not_refused_tunnel_traffic(name):
    """Options, extension headers and fragments are refused on tunnel
    traffic; on the host's own traffic they are not ours to count as such."""
    pkt = HOST_TRAFFIC[name]()
    assert decap_reason(pkt) == "not_tunnel"
    assert run_underlay(Lab(6 if "ipv6" in name else 4), pkt)[0] == "not_tunnel"


# --- defects only the tables can see ------------------------------------------

@pytest.mark.parametrize("proto", ["vxlan", "nvgre"])
def test_table_checks(lab, proto):
    family = lab.family
    other_proto = "nvgre" if proto == "vxlan" else "vxlan"
    cases = [
        ("not-local", underlay_pkt(proto, family, dst=STRANGER[family]), "not_local"),
        ("unknown-vni", underlay_pkt(proto, family, vni=7777), "unknown_vni"),
        # VNI and VSID spaces are separate: the other segment's number is unknown here.
        ("vni-of-other-encapsulation", underlay_pkt(proto, family, vni=VNI[other_proto]), "unknown_vni"),
        ("unknown-remote", underlay_pkt(proto, family, src=STRANGER[family]), "unknown_remote"),
        ("inner-8021q", underlay_pkt(proto, family, inner=bytes(Ether(dst=BROADCAST, src=H1)
                                                              / Dot1Q(vlan=10) / ARP())), "vlan_tagged"),
        ("inner-8021ad", underlay_pkt(proto, family, inner=bytes(Ether(dst=BROADCAST, src=H1) / Dot1AD(vlan=10)
                                                               / Dot1Q(vlan=20) / ARP())), "vlan_tagged"),
        ("inner-src-multicast", underlay_pkt(proto, family, inner=arp_from(src="01:00:5e:00:00:01")), "bad_src_mac"),
        ("inner-src-broadcast", underlay_pkt(proto, family, inner=arp_from(src=BROADCAST)), "bad_src_mac"),
        ("inner-src-zero", underlay_pkt(proto, family, inner=arp_from(src="00:00:00:00:00:00")), "bad_src_mac"),
    ]
    if proto == "nvgre":
        # OTHER is on the VXLAN segment's list, not on the NVGRE one's.
        cases.append(("remote-of-other-segment", underlay_pkt(proto, family, src=OTHER[family]), "unknown_remote"))
    for name, pkt, reason in cases:
        assert decap_reason(pkt) == "none", name
        assert_underlay_drop(lab, pkt, reason, proto)


def test_underlay_ring_full(lab):
    """A flooded tunnel frame with room for one output: one port gets it, the
    other copy is counted as ring_full; the next frame finds no room at all."""
    pkt = ours("vxlan", lab.family)
    burst = Burst(2, 1)
    burst.load([pkt, pkt])
    before = lab.snapshot()
    lab.e.underlay_burst(burst)
    after = lab.snapshot()
    assert [DROP_REASONS[v] for v in burst.verdicts] == ["none", "ring_full"]
    assert [(i, kind) for i, kind, _, _ in burst.outputs()] == [(0, "port")]
    seg = ("segment", lab.seg["vxlan"])
    assert drops_delta(before["underlay", 0], after["underlay", 0]) == {"ring_full": 3}
    assert drops_delta(before[seg], after[seg]) == {"ring_full": 3}


def test_wrong_family_is_not_local():
    """An IPv6 tunnel packet reaching an IPv4 VTEP is not for us."""
    assert_underlay_drop(Lab(4), underlay_pkt("vxlan", 6), "not_local")
    assert_underlay_drop(Lab(6), underlay_pkt("vxlan", 4), "not_local")


# --- access ports ---------------------------------------------------------------

class AccessLab:
    """One segment ("proto", family) with ports p0, p1 and one remote."""

    def __init__(self, proto="vxlan", family=4, mtu=1500, resolved=True, n_ports=2):
        self.e = Engine(LOCAL[family], underlay_mac=UNDERLAY_MAC, underlay_mtu=mtu,
                        max_ports=16, max_segments=4, max_remotes=8)
        self.seg = self.e.add_segment(proto, VNI[proto])
        self.ports = [self.e.add_port(self.seg, "promiscuous") for _ in range(n_ports)]
        self.remote = self.e.add_remote(SENDER[family])
        self.e.set_neighbour(self.remote, NEXT_HOP_MAC if resolved else None)
        self.e.segment_add_remote(self.seg, self.remote)

    def run(self, port, frames, burst=None):
        """(verdict names, outputs, port drops, segment drops, port rx packets)."""
        c = lambda: (self.e.counters("port", port), self.e.counters("segment", self.seg))  # noqa: E731
        (p0, s0) = c()
        if burst is None:
            verdicts, outputs = self.e.access(port, frames)
        else:
            burst.load(frames)
            self.e.access_burst(port, burst)
            verdicts, outputs = burst.verdicts, burst.outputs()
        (p1, s1) = c()
        assert p1["rx_packets"] - p0["rx_packets"] == len(frames)
        return ([DROP_REASONS[v] for v in verdicts], outputs, drops_delta(p0, p1), drops_delta(s0, s1))


def unicast(dst, size=60, src=H1):
    """An IPv4/UDP frame of exactly "size" bytes from "src" to "dst"."""
    head = Ether(dst=dst, src=src) / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=2)
    return bytes(head / Raw(bytes(size - len(head))))


def test_access_runts():
    lab = AccessLab()
    frames = [unicast(BROADCAST)[:n] for n in range(14)]
    verdicts, outputs, port, segment = lab.run(lab.ports[0], frames)
    assert verdicts == ["runt"] * 14 and outputs == []
    assert port == segment == {"runt": 14}


@pytest.mark.parametrize("frame,reason", [
    (bytes(Ether(dst=BROADCAST, src=H1) / Dot1Q(vlan=10) / ARP()), "vlan_tagged"),
    (bytes(Ether(dst=BROADCAST, src=H1) / Dot1Q(vlan=0, prio=5) / ARP()), "vlan_tagged"),  # priority tag
    (bytes(Ether(dst=BROADCAST, src=H1) / Dot1AD(vlan=10) / Dot1Q(vlan=20) / ARP()), "vlan_tagged"),
    (bytes(Ether(dst=H2, src=H1, type=0x8100)), "vlan_tagged"),          # a tag and nothing else
    (unicast(BROADCAST, src="01:00:5e:00:00:01"), "bad_src_mac"),
    (unicast(BROADCAST, src="33:33:00:00:00:01"), "bad_src_mac"),
    (unicast(H2, src=BROADCAST), "bad_src_mac"),
    (unicast(H2, src="00:00:00:00:00:00"), "bad_src_mac"),
], ids=["8021q", "priority-tag", "8021ad", "bare-tag", "src-ipv4-mcast", "src-ipv6-mcast",
        "src-broadcast", "src-zero"])
def test_access_rejects(frame, reason):
    lab = AccessLab()
    verdicts, outputs, port, segment = lab.run(lab.ports[0], [frame])
    assert (verdicts, outputs) == ([reason], [])
    assert port == segment == {reason: 1}
    # Nothing was learned from a rejected frame.
    assert lab.e.fdb_count(lab.seg) == 0


def test_access_no_port():
    lab = AccessLab()
    never_added = 7
    verdicts, outputs, port, segment = lab.run(never_added, [unicast(BROADCAST)] * 3)
    assert verdicts == ["no_port"] * 3 and outputs == []
    assert port == {"no_port": 3} and segment == {}
    # A deleted port is as good as never added.
    lab.e.del_port(lab.ports[1])
    assert lab.run(lab.ports[1], [unicast(BROADCAST)])[0] == ["no_port"]
    # Beyond max_ports there are no counters to charge: the call is refused.
    with pytest.raises(VtepError):
        lab.e.access(16, [unicast(BROADCAST)])


@pytest.mark.parametrize("proto,family", COMBOS, ids=COMBO_IDS)
@pytest.mark.parametrize("to", ["known-unicast", "flood"])
def test_access_mtu(proto, family, to):
    """The outer IP packet may be exactly the underlay MTU, never more."""
    mtu = 1400
    overhead = IP_HLEN[family] + TUN_HLEN[proto]   # outer IP + tunnel header; Ethernet not counted
    lab = AccessLab(proto, family, mtu=mtu, n_ports=1)
    dst = BROADCAST
    if to == "known-unicast":
        dst = H3
        lab.e.fdb_add(lab.seg, H3, remote=lab.remote)
    at_limit, over = unicast(dst, mtu - overhead), unicast(dst, mtu - overhead + 1)
    verdicts, outputs, port, segment = lab.run(lab.ports[0], [at_limit, over])
    assert verdicts == ["none", "mtu"]
    assert port == segment == {"mtu": 1}
    [(pkt, kind, target, data)] = outputs
    assert (pkt, kind, target) == (0, "underlay", lab.remote)
    assert len(data) - 14 == mtu
    assert decap(data).inner == at_limit


def test_access_mtu_flood_still_reaches_ports():
    """Too big for the tunnel is not too big for the local ports."""
    lab = AccessLab("vxlan", 4, mtu=1400, n_ports=2)
    verdicts, outputs, port, segment = lab.run(lab.ports[0], [unicast(BROADCAST, 1400)])
    assert verdicts == ["none"]
    assert [(kind, target) for _, kind, target, _ in outputs] == [("port", lab.ports[1])]
    assert port == segment == {"mtu": 1}


@pytest.mark.parametrize("to", ["known-unicast", "flood"])
def test_access_no_neighbour(to):
    lab = AccessLab(resolved=False, n_ports=1)
    dst = BROADCAST
    if to == "known-unicast":
        dst = H3
        lab.e.fdb_add(lab.seg, H3, remote=lab.remote)
    verdicts, outputs, port, segment = lab.run(lab.ports[0], [unicast(dst)])
    assert (verdicts, outputs) == (["no_neighbour"], [])
    assert port == segment == {"no_neighbour": 1}
    # Resolved, the same frame goes; unresolved again, it is dropped again.
    lab.e.set_neighbour(lab.remote, NEXT_HOP_MAC)
    assert lab.run(lab.ports[0], [unicast(dst)])[0] == ["none"]
    lab.e.set_neighbour(lab.remote, None)
    assert lab.run(lab.ports[0], [unicast(dst)])[0] == ["no_neighbour"]


def test_access_hairpin():
    lab = AccessLab()
    p0 = lab.ports[0]
    lab.e.fdb_add(lab.seg, H2, port=p0)
    verdicts, outputs, port, segment = lab.run(p0, [unicast(H2)])
    assert (verdicts, outputs) == (["hairpin"], [])
    assert port == segment == {"hairpin": 1}
    # Learned rather than static: the same.
    assert lab.run(p0, [unicast(BROADCAST, src=H3)])[0] == ["none"]
    verdicts, outputs, port, segment = lab.run(p0, [unicast(H3, src=H1)])
    assert (verdicts, outputs, port) == (["hairpin"], [], {"hairpin": 1})


def test_access_ring_full():
    """Room for one output: the first copy of a broadcast goes, every other
    copy is dropped (a frame with one copy out still counts as sent)."""
    lab = AccessLab(n_ports=3)      # a broadcast from p0: p1, p2 and the remote
    burst = Burst(2, 1)
    verdicts, outputs, port, segment = lab.run(lab.ports[0], [unicast(BROADCAST)] * 2, burst)
    assert verdicts == ["none", "ring_full"]
    assert [(pkt, kind, target) for pkt, kind, target, _ in outputs] == [(0, "port", lab.ports[1])]
    assert port == segment == {"ring_full": 5}   # 2 copies of frame 0, all 3 of frame 1


def test_access_ring_full_known_unicast():
    lab = AccessLab()
    lab.e.fdb_add(lab.seg, H2, port=lab.ports[1])
    lab.e.fdb_add(lab.seg, H3, remote=lab.remote)
    burst = Burst(3, 1)
    verdicts, outputs, port, _ = lab.run(lab.ports[0], [unicast(H2), unicast(H2), unicast(H3)], burst)
    assert verdicts == ["none", "ring_full", "ring_full"]
    assert len(outputs) == 1 and port == {"ring_full": 2}


# --- random input: no crash, valid verdicts, counters add up --------------------

def valid_packets():
    out = []
    for proto, family in COMBOS:
        out.append(ours(proto, family))
        out.append(ours(proto, family, inner=unicast(H2, 80), udp_checksum=True))
    return out


VALID = valid_packets()


def apply_mutations(pkt, edits, cut, extra):
    b = bytearray(pkt)
    for pos, value in edits:
        b[pos % len(b)] = value
    b = b[:cut] if cut is not None else b
    return bytes(b) + extra


mutated = st.builds(
    apply_mutations,
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    st.one_of(st.none(), st.integers(0, 200)),
    st.binary(max_size=8),
)
junk = st.binary(max_size=200)
frames = st.lists(st.one_of(mutated, junk), min_size=1, max_size=24)


def expected_inner_len(pkt):
    """What the length fields leave for the inner frame, read here in Python:
    decap must agree, which also shows it never reads past the frame."""
    type_ = int.from_bytes(pkt[12:14], "big")
    if type_ == 0x0800:
        l4_len, proto = int.from_bytes(pkt[16:18], "big") - 20, pkt[23]
    else:
        l4_len, proto = int.from_bytes(pkt[18:20], "big"), pkt[20]
    return l4_len - (16 if proto == 17 else 8)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pkt=st.one_of(mutated, junk))
def test_decap_never_crashes(pkt):
    try:
        d = decap(pkt)
    except DecapError as e:
        assert e.reason in DECAP_REASONS
    else:
        assert len(d.inner) == expected_inner_len(pkt) >= 14
        assert d.encapsulation in ("vxlan", "nvgre") and 0 <= d.vni < 1 << 24


@pytest.mark.parametrize("family", [4, 6])
def test_underlay_fuzz(family):
    lab = Lab(family)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(batch=frames)
    def check(batch):
        before = lab.snapshot()
        verdicts, outputs = lab.e.underlay(batch)
        after = lab.snapshot()
        assert len(verdicts) == len(batch)
        assert all(0 <= v < len(DROP_REASONS) for v in verdicts)
        reasons = [DROP_REASONS[v] for v in verdicts]
        # The engine's receive checks are decap's, then the tables'.
        for pkt, reason in zip(batch, reasons):
            stateless = decap_reason(pkt)
            assert reason == stateless if stateless != "none" else reason not in DECAP_REASONS
        u0, u1 = before["underlay", 0], after["underlay", 0]
        assert u1["rx_packets"] - u0["rx_packets"] == len(batch)
        assert u1["rx_bytes"] - u0["rx_bytes"] == sum(map(len, batch))
        # One drop per dropped frame (two ports per segment: no copy is ever
        # lost while another goes), and outputs only for frames that passed.
        dropped = collections.Counter(r for r in reasons if r != "none")
        assert drops_delta(u0, u1) == dropped
        sent = {pkt for pkt, _, _, _ in outputs}
        assert sent == {i for i, r in enumerate(reasons) if r == "none"}
        assert all(kind == "port" for _, kind, _, _ in outputs)
        tx = sum(after[k]["tx_packets"] - before[k]["tx_packets"] for k in after if k[0] == "port")
        assert tx == len(outputs)

    check()


def test_access_fuzz():
    access_frames = st.lists(st.one_of(
        st.binary(max_size=120),
        st.builds(lambda dst, src, body: dst + src + body,
                  st.sampled_from([bytes.fromhex(m.replace(":", "")) for m in (H2, H3, BROADCAST, H1)]),
                  st.binary(min_size=6, max_size=6), st.binary(max_size=80))),
        min_size=1, max_size=24)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(batch=access_frames)
    def check(batch):
        lab = AccessLab()
        p0 = lab.ports[0]
        before = lab.e.counters("port", p0)
        verdicts, outputs = lab.e.access(p0, batch)
        after = lab.e.counters("port", p0)
        assert all(0 <= v < len(DROP_REASONS) for v in verdicts)
        reasons = [DROP_REASONS[v] for v in verdicts]
        assert after["rx_packets"] - before["rx_packets"] == len(batch)
        assert after["rx_bytes"] - before["rx_bytes"] == sum(map(len, batch))
        assert drops_delta(before, after) == collections.Counter(r for r in reasons if r != "none")
        assert {pkt for pkt, _, _, _ in outputs} == {i for i, r in enumerate(reasons) if r == "none"}
        for i, frame in enumerate(batch):
            if len(frame) < 14:
                assert reasons[i] == "runt"
        for pkt, kind, target, data in outputs:
            if kind == "port":
                assert data == batch[pkt] and target != p0
            else:
                assert decap(data).inner == batch[pkt]

    check()
