"""Stateless packet functions of the C fast path, one frame at a time.

Used by the pcap tools, the tests and the fuzzers.  Every C error code
becomes an exception in _check(); a frame that cannot be decapsulated
raises DecapError with the drop reason the pipeline would count."""
import ipaddress
from dataclasses import dataclass

from ._packet import ffi, lib

DROP_REASONS = tuple(ffi.string(lib.vtep_drop_name(i)).decode() for i in range(lib.VTEP_DROP_COUNT))
ENCAPSULATIONS = ("vxlan", "nvgre")


class DecapError(ValueError):
    """The frame is not a tunnel packet we accept; .reason says why."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def _check(rc, what):
    if rc < 0:
        raise ValueError(f"{what}: {'invalid argument' if rc == -22 else 'no room'} (errno {-rc})")
    return rc


def mac_bytes(mac):
    raw = bytes.fromhex(mac.replace(":", "").replace("-", "")) if isinstance(mac, str) else bytes(mac)
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return raw


def _addr(address, into):
    ip = ipaddress.ip_address(address)
    into.family = ip.version
    ffi.memmove(into.bytes, ip.packed, len(ip.packed))
    return ip


def _ip(c_addr):
    return ipaddress.ip_address(bytes(c_addr.bytes)[: 4 if c_addr.family == 4 else 16])


class Tunnel:
    """The outer headers towards one remote VTEP, built once."""

    def __init__(self, encapsulation, local, remote, *, src_mac="02:00:00:00:00:01",
                 dst_mac="02:00:00:00:00:02", destination_port=4789, port_range=(49152, 65535),
                 ttl=64, udp_checksum=False):
        params = ffi.new("vtep_tunnel_params_t *")
        params.encapsulation = ENCAPSULATIONS.index(encapsulation)
        local_ip, remote_ip = _addr(local, params.local), _addr(remote, params.remote)
        if local_ip.version != remote_ip.version:
            raise ValueError("local and remote must both be IPv4 or both IPv6")
        ffi.memmove(params.src_mac, mac_bytes(src_mac), 6)
        ffi.memmove(params.dst_mac, mac_bytes(dst_mac), 6)
        if not (0 < destination_port < 65536 and 0 < port_range[0] <= port_range[1] < 65536 and 0 < ttl < 256):
            raise ValueError("ports must be 1..65535 with port_range ordered, ttl 1..255")
        params.destination_port = destination_port
        params.port_min, params.port_max = port_range
        params.ttl = ttl
        params.udp_checksum = bool(udp_checksum)
        self._t = ffi.new("vtep_tunnel_t *")
        _check(lib.vtep_tunnel_init(self._t, params), "tunnel")
        self.encapsulation = encapsulation
        self.header_len = self._t.len

    def encap(self, vni, frame):
        """The encapsulated packet (bytes) carrying Ethernet "frame" with VNI/VSID "vni"."""
        frame = bytes(frame)
        out = ffi.new("uint8_t[]", self.header_len + len(frame))
        n = _check(lib.vtep_encap(self._t, vni, frame, len(frame), out, len(out)), "encap")
        return ffi.buffer(out, n)[:]


@dataclass(frozen=True)
class Decapsulated:
    encapsulation: str
    vni: int  # the VSID for NVGRE
    inner: bytes
    src: ipaddress.IPv4Address | ipaddress.IPv6Address
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    source_port: int  # VXLAN only
    flow_id: int  # NVGRE only
    tos: int
    ttl: int


def decap(packet, destination_port=4789, verify_checksum=True):
    """Decapsulate one underlay Ethernet frame; raises DecapError.  With
    "verify_checksum" False the UDP checksum is trusted, as it must be in
    captures taken where the kernel had not computed it yet (veth, offload)."""
    packet = bytes(packet)
    info = ffi.new("vtep_decap_info_t *")
    flags = 0 if verify_checksum else lib.VTEP_PKT_CSUM_OK
    reason = lib.vtep_decap(packet, len(packet), destination_port, flags, info)
    if reason:
        raise DecapError(DROP_REASONS[reason])
    return Decapsulated(
        encapsulation=ENCAPSULATIONS[info.encapsulation], vni=info.vni,
        inner=packet[info.inner_offset : info.inner_offset + info.inner_len],
        src=_ip(info.src), dst=_ip(info.dst), source_port=info.source_port,
        flow_id=info.flow_id, tos=info.tos, ttl=info.ttl,
    )


def flow_hash(frame):
    frame = bytes(frame)
    return lib.vtep_flow_hash(frame, len(frame))


def checksum(data):
    """RFC 1071 Internet checksum of "data"."""
    data = bytes(data)
    return lib.vtep_checksum(data, len(data))


def checksum_update(hc, old, new):
    """RFC 1624 incremental update of checksum "hc" for a 16-bit field old -> new."""
    return lib.vtep_checksum_update(hc, old, new)


GSO_TYPES = {"tcpv4": lib.VTEP_GSO_TCPV4, "tcpv6": lib.VTEP_GSO_TCPV6, "udp": lib.VTEP_GSO_UDP_L4}


def finish_checksum(frame, start, offset):
    """"frame" with the checksum left unfinished at start + offset (the
    kernel's CHECKSUM_PARTIAL) computed, as vtep does on receive."""
    buf = bytearray(frame)
    _check(lib.vtep_csum_finish(ffi.from_buffer(buf), len(buf), start, offset), "finish checksum")
    return bytes(buf)


def fill_l4_checksum(frame):
    """"frame" with its TCP/UDP checksum computed from scratch (others as they are)."""
    buf = bytearray(frame)
    lib.vtep_l4_csum_fill(ffi.from_buffer(buf), len(buf))
    return bytes(buf)


def gso_segment(frame, gso_type, gso_size, outer=b""):
    """The segments (bytes) that vtep sends for GSO super-frame "frame" of
    "gso_type" (a GSO_TYPES key) with "gso_size" payload bytes each, behind
    the tunnel headers "outer" (as vtep_encap built them) if given."""
    frame, outer = bytes(frame), bytes(outer)
    hdr_len = lib.vtep_gso_headers(frame, len(frame), GSO_TYPES[gso_type])
    if not hdr_len:
        raise ValueError(f"not a {gso_type} super-frame vtep can segment")
    segments = []

    @ffi.callback("int(void *, const uint8_t *, uint32_t, const uint8_t *, uint32_t)")
    def emit(_ctx, h, h_len, payload, n):
        segments.append(ffi.buffer(h, h_len)[:] + ffi.buffer(payload, n)[:])
        return 0

    _check(lib.vtep_gso_segment(outer, len(outer), frame, len(frame), hdr_len, gso_size, emit, ffi.NULL), "segment")
    return segments
