"""Classic libpcap files, and the offline conversions behind `vtepctl pcap`.

The format (pcap-savefile(5)) is small and fixed, so it is read and written
here with no third-party library: a 24-byte file header, then per packet a
16-byte record header and the captured bytes.  We read both byte orders and
both timestamp resolutions; we always write microsecond, little-endian,
Ethernet files, which tcpreplay, trafgen and every pcap tool read.

Errors follow libpcap: a file we cannot use (not pcap, not Ethernet, cut short
in the middle of a record) raises PcapError with a one-line reason, and the
conversion then removes its partial output.  A packet we cannot convert is
skipped and counted by reason in the Summary."""
import os
import struct
from collections import Counter
from dataclasses import dataclass, field

from . import packet

LINKTYPE_ETHERNET = 1
# libpcap's MAXIMUM_SNAPLEN: a record claiming more means the file is corrupt,
# and we must not try to allocate whatever a garbage length says.
MAX_SNAPLEN = 262144
ETH_HLEN = 14

_NSEC_PER_UNIT = {0xA1B2C3D4: 1000, 0xA1B23C4D: 1}  # microsecond and nanosecond magic
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_FILE_HEADER = "IHHiIII"  # magic, major, minor, thiszone, sigfigs, snaplen, linktype
_RECORD_HEADER = "IIII"  # seconds, fraction, captured length, original length
# Link types people often meet instead of Ethernet, to say what to do.
_LINKTYPE_NAMES = {0: "BSD loopback", 101: "raw IP", 113: "Linux cooked (tcpdump -i any)",
                   276: "Linux cooked v2 (tcpdump -i any)"}


class PcapError(Exception):
    """The file cannot be used; str() is a one-line reason naming the file."""


@dataclass(frozen=True)
class Record:
    sec: int
    nsec: int  # nanoseconds within the second, whatever the file's resolution
    data: bytes
    orig_len: int  # length on the wire; more than len(data) if the capture was snapped


class Reader:
    """The records of the classic pcap file open as "f" (any readable binary
    stream: no seek, so pipes work).  The header is checked on creation."""

    def __init__(self, f, name):
        self._f, self.name = f, name
        head = f.read(struct.calcsize(_FILE_HEADER))
        if head[:4] == _PCAPNG_MAGIC:
            raise PcapError(f"{name}: pcapng is not supported; convert it first: "
                            f"editcap -F pcap {name} OUT.pcap")
        # The writer's byte order: its magic reads right one way round.
        self._order = next((order for order in "<>" if len(head) >= 4
                            and struct.unpack(order + "I", head[:4])[0] in _NSEC_PER_UNIT), None)
        if self._order is None:
            raise PcapError(f"{name}: not a pcap file" if head else f"{name}: empty file")
        if len(head) < struct.calcsize(_FILE_HEADER):
            raise PcapError(f"{name}: truncated pcap file header ({len(head)} bytes)")
        magic, major, minor, _, _, _, linktype = struct.unpack(self._order + _FILE_HEADER, head)
        self._nsec_per_unit = _NSEC_PER_UNIT[magic]
        if major != 2:
            raise PcapError(f"{name}: unsupported pcap version {major}.{minor}")
        if linktype != LINKTYPE_ETHERNET:
            kind = _LINKTYPE_NAMES.get(linktype & 0xFFFF, "not Ethernet")
            if linktype & 0xFFFF == LINKTYPE_ETHERNET:
                kind = "Ethernet with FCS or extra link-type bits"
            raise PcapError(f"{name}: link type {linktype:#x} ({kind}) is not supported: "
                            f"only Ethernet (1)")

    def __iter__(self):
        index = 0
        while head := self._f.read(struct.calcsize(_RECORD_HEADER)):
            index += 1
            if len(head) < struct.calcsize(_RECORD_HEADER):
                raise PcapError(f"{self.name}: truncated record header (packet {index}): file cut short")
            sec, frac, caplen, orig_len = struct.unpack(self._order + _RECORD_HEADER, head)
            if caplen > MAX_SNAPLEN:
                raise PcapError(f"{self.name}: packet {index} claims {caplen} captured bytes, "
                                f"more than {MAX_SNAPLEN}: corrupt file")
            data = self._f.read(caplen)
            if len(data) < caplen:
                raise PcapError(f"{self.name}: truncated record (packet {index}: {len(data)} of "
                                f"{caplen} bytes): file cut short")
            yield Record(sec, frac * self._nsec_per_unit, data, orig_len)


class Writer:
    """Writes a microsecond, little-endian, Ethernet pcap to "f"."""

    def __init__(self, f):
        self._f = f
        f.write(struct.pack("<" + _FILE_HEADER, 0xA1B2C3D4, 2, 4, 0, 0, MAX_SNAPLEN, LINKTYPE_ETHERNET))

    def write(self, sec, nsec, data):
        # Nanosecond input loses its last three digits: tcpreplay and trafgen
        # want microsecond files.
        self._f.write(struct.pack("<" + _RECORD_HEADER, sec, nsec // 1000, len(data), len(data)))
        self._f.write(data)


@dataclass
class Summary:
    written: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> packets

    def skipped_line(self, what):
        """E.g. "3 not decapsulated: 2 not_tunnel, 1 bad_checksum", or None."""
        if not self.skipped:
            return None
        reasons = sorted(self.skipped.items(), key=lambda item: (-item[1], item[0]))
        detail = ", ".join(f"{count} {reason}" for reason, count in reasons)
        return f"{self.skipped.total()} not {what}: {detail}"


class _Skip(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def _convert(src, dst, convert):
    """Write convert(frame) for every record of "src" to "dst", keeping the
    timestamps.  "convert" raises _Skip or DecapError to skip a packet."""
    summary = Summary()
    with open(src, "rb") as fin:
        reader = Reader(fin, src)  # checked before "dst" is created or truncated
        with open(dst, "wb") as fout:
            try:
                writer = Writer(fout)
                for record in reader:
                    try:
                        if len(record.data) < record.orig_len:
                            # Snapped capture: the frame's lengths would lie.
                            raise _Skip("truncated")
                        out = convert(record.data)
                    except (_Skip, packet.DecapError) as e:
                        summary.skipped[e.reason] += 1
                        continue
                    writer.write(record.sec, record.nsec, out)
                    summary.written += 1
            except BaseException:
                # No half-written capture for a traffic generator to pick up;
                # a pipe or device given as "dst" is left alone.
                if os.path.isfile(dst):
                    os.unlink(dst)
                raise
    return summary


def encap_file(src, dst, tunnel, vni):
    """Encapsulate every frame of pcap "src" with "tunnel" (a packet.Tunnel)
    and VNI/VSID "vni" into "dst" (a different file).  Returns a Summary;
    raises PcapError or OSError for a file that cannot be used."""

    def encap(frame):
        if len(frame) < ETH_HLEN:
            raise _Skip("runt")
        try:
            return tunnel.encap(vni, frame)
        except ValueError:
            # With the length and VNI valid, the only refusal left is a frame
            # too big for one outer IP packet.
            raise _Skip("mtu") from None

    if not 0 <= vni <= 0xFFFFFF:
        raise ValueError(f"VNI {vni} is out of range 0..16777215")
    return _convert(src, dst, encap)


def decap_file(src, dst, destination_port=4789, verify_checksum=True):
    """Write the inner frames of the VXLAN (UDP "destination_port") and NVGRE
    packets of pcap "src" to "dst"; other packets are skipped, counted by the
    drop reason the fast path gives.  Returns a Summary; raises PcapError or
    OSError for a file that cannot be used."""
    return _convert(src, dst, lambda frame: packet.decap(frame, destination_port, verify_checksum).inner)
