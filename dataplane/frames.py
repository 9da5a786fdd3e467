"""Test frames from a short description, for `vtepctl trace` (pure Python).

build() makes one Ethernet frame (no FCS) from a source and destination MAC,
an optional 802.1Q tag and an EtherType, with a valid body for the kinds we
know: an ARP request, or a minimal IPv4/UDP or IPv6/UDP packet between
documentation addresses (192.0.2.1 -> 192.0.2.2, 2001:db8::1 -> 2001:db8::2),
checksums included.  IP packets grow their UDP payload to reach "size", so
their length fields stay true; ARP and other EtherTypes are padded with
zeros, as Ethernet pads."""
import struct

from .packet import checksum

ETHERTYPES = {"ipv4": 0x0800, "arp": 0x0806, "ipv6": 0x86DD}
VLAN_TPID = 0x8100
DEFAULT_SIZE = 64  # bytes without FCS
MAX_SIZE = 65535
IPV4_SRC, IPV4_DST = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])
IPV6_SRC = bytes.fromhex("20010db8000000000000000000000001")
IPV6_DST = bytes.fromhex("20010db8000000000000000000000002")
UDP_SPORT, UDP_DPORT = 49152, 9  # to the discard service
TTL = 64


def parse_ethertype(text):
    """An EtherType from a name in ETHERTYPES or a number (0x0800); ValueError otherwise."""
    name = text.strip().lower()
    if name in ETHERTYPES:
        return ETHERTYPES[name]
    try:
        value = int(name, 0)
    except ValueError:
        raise ValueError(f"{text!r} is not an EtherType ({', '.join(ETHERTYPES)} or a number like 0x0800)") \
            from None
    if not 0x0600 <= value <= 0xFFFF:
        # Below 0x0600 the field is an 802.3 length, not a type.
        raise ValueError(f"EtherType {text} is out of range 0x0600..0xffff")
    return value


def min_size(ethertype, vlan=None):
    """The shortest frame build() can make for "ethertype"."""
    l2 = 18 if vlan is not None else 14
    return l2 + {0x0800: 28, 0x0806: 28, 0x86DD: 48}.get(ethertype, 0)


def build(src, dst, ethertype=ETHERTYPES["ipv4"], vlan=None, size=None):
    """The frame (bytes).  "src" and "dst" are MACs as 6 bytes or text,
    "vlan" a VLAN ID 0..4095 or None (untagged), "size" the frame length
    without FCS (None: DEFAULT_SIZE, or the headers' length if longer);
    ValueError if "size" is too short for the headers."""
    src, dst = _mac(src), _mac(dst)
    if vlan is not None and not 0 <= vlan <= 4095:
        raise ValueError(f"VLAN ID {vlan} is out of range 0..4095")
    if size is None:
        size = max(DEFAULT_SIZE, min_size(ethertype, vlan))
    if not min_size(ethertype, vlan) <= size <= MAX_SIZE:
        raise ValueError(f"frame size {size} is out of range {min_size(ethertype, vlan)}..{MAX_SIZE}")
    header = dst + src
    if vlan is not None:
        header += struct.pack("!HH", VLAN_TPID, vlan)  # PCP 0, DEI 0
    header += struct.pack("!H", ethertype)
    room = size - len(header)
    if ethertype == 0x0800:
        body = _ipv4_udp(bytes(room - 28))
    elif ethertype == 0x86DD:
        body = _ipv6_udp(bytes(room - 48))
    elif ethertype == 0x0806:
        body = _arp_request(src)
    else:
        body = b""
    return header + body + bytes(room - len(body))


def _mac(mac):
    raw = bytes.fromhex(mac.replace(":", "").replace("-", "")) if isinstance(mac, str) else bytes(mac)
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return raw


def _arp_request(sender_mac):
    # Ethernet/IPv4, request: who has 192.0.2.2? tell 192.0.2.1 (RFC 826).
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, sender_mac, IPV4_SRC, bytes(6), IPV4_DST)


def _udp(payload, pseudo_header):
    length = 8 + len(payload)
    udp = struct.pack("!HHHH", UDP_SPORT, UDP_DPORT, length, 0) + payload
    udp_sum = checksum(pseudo_header + udp) or 0xFFFF  # 0 is sent as all ones (RFC 768)
    return udp[:6] + struct.pack("!H", udp_sum) + udp[8:]


def _ipv4_udp(payload):
    total = 20 + 8 + len(payload)
    # Version 4, IHL 5, DSCP 0, ID 0, DF (as a VTEP host would send), TTL, UDP.
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, TTL, 17, 0, IPV4_SRC, IPV4_DST)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    pseudo = IPV4_SRC + IPV4_DST + struct.pack("!BBH", 0, 17, 8 + len(payload))
    return header + _udp(payload, pseudo)


def _ipv6_udp(payload):
    length = 8 + len(payload)
    header = struct.pack("!IHBB16s16s", 6 << 28, length, 17, TTL, IPV6_SRC, IPV6_DST)
    pseudo = IPV6_SRC + IPV6_DST + struct.pack("!I3xB", length, 17)
    return header + _udp(payload, pseudo)
