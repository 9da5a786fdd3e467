"""`vtepctl pcap encap|decap`: round trips, wire fields (checked with scapy and
tshark as independent decoders), per-packet skips, malformed files and bad
arguments.  Captures are built with scapy in pytest's tmp_path."""
import json
import struct
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, GRE, CookedLinux, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw
from scapy.utils import PcapWriter, rdpcap, wrpcap, wrpcapng

from dataplane import __version__
from dataplane.cli import main

VTEPCTL = Path(sys.executable).parent / "vtepctl"  # the installed console script
TSHARK = "/usr/bin/tshark"
ADDRESSES = {4: ("198.18.0.1", "198.18.0.2"), 6: ("2001:db8::1", "2001:db8::2")}
OUTER_SRC, OUTER_DST = "02:aa:00:00:00:01", "02:bb:00:00:00:02"
INNER_SRC, INNER_DST = "02:00:00:00:01:01", "02:00:00:00:01:02"


def _frames():
    """Inner frames of several kinds, each with a distinct microsecond timestamp."""
    frames = [
        Ether(src=INNER_SRC, dst=INNER_DST) / IP(src="192.0.2.1", dst="192.0.2.2", tos=0xB8)
        / UDP(sport=1234, dport=5555) / Raw(b"hello"),
        Ether(src=INNER_SRC, dst=INNER_DST) / IPv6(src="2001:db8::1", dst="2001:db8::2")
        / TCP(sport=80, dport=40000, flags="PA") / Raw(b"x" * 1400),
        # 42 bytes: shorter than Ethernet's minimum, must come back unpadded.
        Ether(src=INNER_SRC, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="192.0.2.1", pdst="192.0.2.2"),
        Ether(src=INNER_SRC, dst=INNER_DST) / Dot1Q(vlan=10) / IP(src="192.0.2.1", dst="192.0.2.3") / ICMP(),
    ]
    for i, frame in enumerate(frames):
        frame.time = Decimal(1700000000 + i) + Decimal(i * 111111 + 7) / 10**6
    return frames


def _records(path):
    """(seconds, microseconds, bytes) of every packet of a pcap in the format we promise to write
    (microsecond, little-endian, linktype 1), parsed independently of dataplane.pcap."""
    data = Path(path).read_bytes()
    magic, major, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", data)
    assert (magic, major, linktype) == (0xA1B2C3D4, 2, 1)
    records, offset = [], 24
    while offset < len(data):
        sec, usec, caplen, orig_len = struct.unpack_from("<IIII", data, offset)
        assert caplen == orig_len
        records.append((sec, usec, data[offset + 16 : offset + 16 + caplen]))
        offset += 16 + caplen
    assert offset == len(data)
    return records


def _write(path, frames, start):
    """Like wrpcap, but a frame may be bytes that scapy cannot dissect (a runt).
    Frame i gets the timestamp "start" + i seconds + i + 1 microseconds."""
    writer = PcapWriter(str(path), linktype=1)
    writer.write_header(None)  # write_packet() alone would put it after the first record
    for i, frame in enumerate(frames):
        writer.write_packet(bytes(frame), sec=start + i, usec=i + 1, wirelen=getattr(frame, "wirelen", None))
    writer.close()


def _encap_argv(encapsulation, family, vni, src, dst, *extra):
    local, remote = ADDRESSES[family]
    return ["pcap", "encap", "--encapsulation", encapsulation, "--vni", str(vni), "--local", local,
            "--remote", remote, "--src-mac", OUTER_SRC, "--dst-mac", OUTER_DST, *extra, str(src), str(dst)]


@pytest.fixture
def capture(tmp_path):
    path = tmp_path / "in.pcap"
    wrpcap(str(path), _frames())
    return path


CASES = [(e, f) for e in ("vxlan", "nvgre") for f in (4, 6)]


@pytest.mark.parametrize("encapsulation,family", CASES)
def test_round_trip_returns_the_original_frames_and_timestamps(tmp_path, capture, capsys,
                                                               encapsulation, family):
    out, back = tmp_path / "out.pcap", tmp_path / "back.pcap"
    assert main(_encap_argv(encapsulation, family, 5000, capture, out)) == 0
    assert main(["pcap", "decap", str(out), str(back)]) == 0
    original = _records(capture)
    assert [usec for _, usec, _ in original] == [7, 111118, 222229, 333340]
    assert len(_records(out)) == 4
    assert _records(back) == original
    assert [r[:2] for r in _records(out)] == [r[:2] for r in original]
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == f"{out}: 4 packets written\n{back}: 4 packets written\n"


@pytest.mark.parametrize("encapsulation,family", CASES)
def test_encapsulated_fields(tmp_path, capture, encapsulation, family):
    out = tmp_path / "out.pcap"
    port, vni, ttl = 8472, 0xABCDEF, 17
    argv = _encap_argv(encapsulation, family, vni, capture, out, "--destination-port", str(port),
                       "--ttl", str(ttl))
    assert main(argv) == 0
    local, remote = ADDRESSES[family]
    frames = _frames()
    packets = rdpcap(str(out))
    assert len(packets) == len(frames)
    for pkt, frame, dscp in zip(packets, frames, [0xB8, 0, 0, 0]):
        assert (pkt[Ether].src, pkt[Ether].dst) == (OUTER_SRC, OUTER_DST)
        # Recompute every checksum with scapy: it must agree with ours.
        rebuilt = pkt.copy()
        if family == 4:
            ip = pkt[IP]
            assert (ip.src, ip.dst, ip.ttl, int(ip.flags), ip.frag) == (local, remote, ttl, 2, 0)  # DF
            assert ip.tos == dscp  # copied from the inner IPv4 header
            assert ip.proto == (17 if encapsulation == "vxlan" else 47)
            del rebuilt[IP].chksum
        else:
            ip = pkt[IPv6]
            assert (ip.src, ip.dst, ip.hlim, ip.tc) == (local, remote, ttl, dscp)
            assert ip.nh == (17 if encapsulation == "vxlan" else 47)
        if encapsulation == "vxlan":
            udp = pkt[UDP]
            assert udp.dport == port and 49152 <= udp.sport <= 65535
            if family == 4:
                assert udp.chksum == 0  # DESIGN.md: no UDP checksum over IPv4 by default
            else:
                assert udp.chksum != 0
                del rebuilt[UDP].chksum
            vxlan = VXLAN(bytes(udp.payload))
            assert (int(vxlan.flags), vxlan.vni) == (0x08, vni)
            inner = bytes(vxlan.payload)
        else:
            gre = pkt[GRE]
            assert (gre.chksum_present, gre.routing_present, gre.key_present, gre.seqnum_present) == (0, 0, 1, 0)
            assert (gre.version, gre.proto, gre.key >> 8) == (0, 0x6558, vni)
            inner = bytes(gre.payload)
        assert bytes(Ether(bytes(rebuilt))) == bytes(pkt)
        assert inner == bytes(frame)


def _tshark(path, *fields):
    result = subprocess.run([TSHARK, "-r", str(path), "-o", "ip.check_checksum:TRUE", "-o",
                             "udp.check_checksum:TRUE", "-T", "fields", *(a for f in fields for a in ("-e", f))],
                            capture_output=True, text=True, check=True)
    return [line.split("\t") for line in result.stdout.splitlines()]


@pytest.mark.parametrize("encapsulation,family", CASES)
def test_tshark_decodes_the_output(tmp_path, encapsulation, family):
    """tshark 4.0 has no NVGRE fields: the VSID is the top 24 bits of gre.key."""
    frames = [Ether(src=INNER_SRC, dst=INNER_DST) / IP(src="192.0.2.1", dst="192.0.2.2")
              / UDP(sport=1234, dport=5555) / Raw(bytes([i]) * (i + 1)) for i in range(3)]
    src, out = tmp_path / "in.pcap", tmp_path / "out.pcap"
    wrpcap(str(src), frames)
    assert main(_encap_argv(encapsulation, family, 4242, src, out)) == 0
    ip = "ip" if family == 4 else "ipv6"
    tunnel_fields = ["vxlan.vni", "udp.checksum.status"] if encapsulation == "vxlan" else ["gre.proto", "gre.key"]
    rows = _tshark(out, *tunnel_fields, "eth.src", f"{ip}.src", "ip.dst", "ip.checksum.status", "data.data",
                   "_ws.malformed")
    assert len(rows) == 3
    local, _ = ADDRESSES[family]
    for i, row in enumerate(rows):
        tunnel, (eth_src, outer_src, inner_dst, ip_checksums, data, malformed) = row[:2], row[2:]
        if encapsulation == "vxlan":
            # Outer UDP: 3 "not present" over IPv4 (checksum 0), 1 "good" over IPv6; inner: good.
            assert tunnel == ["4242", ("3,1" if family == 4 else "1,1")]
        else:
            assert tunnel[0] == "0x6558" and int(tunnel[1], 16) >> 8 == 4242
        assert eth_src == f"{OUTER_SRC},{INNER_SRC}"
        assert outer_src.split(",")[0] == local
        assert inner_dst.split(",")[-1] == "192.0.2.2"
        assert ip_checksums == ("1,1" if family == 4 else "1")  # every IPv4 header checksum good
        assert data == (bytes([i]) * (i + 1)).hex()
        assert malformed == ""


def test_installed_vtepctl_round_trip(tmp_path, capture):
    out, back = tmp_path / "out.pcap", tmp_path / "back.pcap"
    encap = subprocess.run([str(VTEPCTL), *_encap_argv("nvgre", 6, 7, capture, out)],
                           capture_output=True, text=True)
    assert (encap.returncode, encap.stderr) == (0, "")
    decap = subprocess.run([str(VTEPCTL), "-j", "pcap", "decap", str(out), str(back)],
                           capture_output=True, text=True)
    assert (decap.returncode, decap.stderr) == (0, "")
    assert json.loads(decap.stdout) == {"input": str(out), "output": str(back), "written": 4, "skipped": {}}
    assert _records(back) == _records(capture)


def test_installed_vtepctl_pipes(tmp_path, capture):
    """`... /dev/stdin /dev/stdout`: streams in and out, the summary moves to stderr."""
    encapsulated = subprocess.run([str(VTEPCTL), *_encap_argv("vxlan", 4, 3, "/dev/stdin", "/dev/stdout")],
                                  input=capture.read_bytes(), capture_output=True)
    assert (encapsulated.returncode, encapsulated.stderr) == (0, b"/dev/stdout: 4 packets written\n")
    out = tmp_path / "out.pcap"
    out.write_bytes(encapsulated.stdout)
    assert [vxlan.vni for vxlan in rdpcap(str(out))[VXLAN]] == [3, 3, 3, 3]


def _vxlan(inner, family=4, port=4789, flags=0x08, ip_chksum=None, udp_chksum=None):
    """A VXLAN packet as scapy builds it; checksums computed unless given."""
    if family == 4:
        ip = IP(src="198.18.0.2", dst="198.18.0.1", flags="DF", chksum=ip_chksum)
    else:
        ip = IPv6(src="2001:db8::2", dst="2001:db8::1")
    udp = UDP(sport=50000, dport=port, chksum=udp_chksum)
    return Ether(src=OUTER_SRC, dst=OUTER_DST) / ip / udp / VXLAN(flags=flags, vni=5000) / inner


def _nvgre(inner, **gre_fields):
    return (Ether(src=OUTER_SRC, dst=OUTER_DST) / IPv6(src="2001:db8::2", dst="2001:db8::1")
            / GRE(key_present=1, proto=0x6558, key=(6000 << 8) | 0x5A, **gre_fields) / inner)


def test_decap_keeps_good_tunnel_packets_and_counts_the_rest(tmp_path, capsys):
    """Tunnel packets built by scapy (not by us), mixed with others and corrupted ones."""
    good = _frames()
    plain = Ether(src=INNER_SRC, dst=INNER_DST) / IP(src="192.0.2.1", dst="192.0.2.2")
    snapped = _vxlan(good[0])
    snapped.wirelen = len(snapped) + 100  # captured with a snap length
    packets = [
        _vxlan(good[0]),                               # good, UDP checksum computed
        plain / UDP(sport=1, dport=53) / Raw(b"q"),    # not_tunnel
        _vxlan(good[1], ip_chksum=0x1234),               # bad_checksum: IPv4 header
        _nvgre(good[1]),                               # good
        _vxlan(good[2], flags=0x00),            # bad_flags: I clear
        good[2],                                       # not_tunnel: ARP
        _vxlan(good[0], family=6, udp_chksum=0x2222), # bad_checksum: IPv6 UDP
        bytes(good[0])[:10],                           # runt
        _vxlan(good[3], family=6),                     # good
        _nvgre(good[0], chksum_present=1),             # bad_flags: GRE C bit
        _vxlan(good[0], udp_chksum=0x1111),           # bad_checksum: IPv4 UDP
        _vxlan(good[1], port=4790),                    # not_tunnel: another port
        plain / TCP(),                                 # not_tunnel
        snapped,                                       # truncated
    ]
    src, out = tmp_path / "mixed.pcap", tmp_path / "out.pcap"
    _write(src, packets, 1800000000)
    assert main(["pcap", "decap", str(src), str(out)]) == 0
    assert _records(out) == [(1800000000, 1, bytes(good[0])), (1800000003, 4, bytes(good[1])),
                             (1800000008, 9, bytes(good[3]))]
    captured = capsys.readouterr()
    assert captured.err == ("11 not decapsulated: 4 not_tunnel, 3 bad_checksum, 2 bad_flags, 1 runt, "
                            "1 truncated\n")
    assert captured.out == f"{out}: 3 packets written\n"

    # The other VXLAN port finds only the packet sent to it; -j gives the counts as JSON.
    assert main(["-j", "pcap", "decap", "--destination-port", "4790", str(src), str(out)]) == 0
    assert _records(out) == [(1800000003, 4, bytes(good[1])), (1800000011, 12, bytes(good[1]))]
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] == 2
    assert summary["skipped"] == {"not_tunnel": 8, "bad_checksum": 1, "bad_flags": 1, "runt": 1, "truncated": 1}


def test_encap_udp_checksum_option(tmp_path):
    frames = _frames()[:2]
    src, out = tmp_path / "in.pcap", tmp_path / "out.pcap"
    _write(src, frames, 1800000000)
    args = ["pcap", "encap", "--encapsulation", "vxlan", "--vni", "7", "--local", "198.18.0.1",
            "--remote", "198.18.0.2"]
    for option, present in (([], False), (["--udp-checksum"], True)):
        assert main([*args, *option, str(src), str(out)]) == 0
        for _, _, data in _records(out):
            udp = Ether(data)[UDP]
            assert (udp.chksum != 0) == present
            if present:  # and it is right: scapy recomputes it
                recomputed = Ether(data)
                del recomputed[UDP].chksum
                assert Ether(bytes(recomputed))[UDP].chksum == udp.chksum


def test_decap_can_trust_unfinished_udp_checksums(tmp_path, capsys):
    """A capture taken on a veth (or the sender's host, with offload) holds
    UDP checksums the kernel had not finished: only the pseudo-header sum."""
    good = _frames()
    packets = [_vxlan(good[0], udp_chksum=0x5A5A), _vxlan(good[3], family=6, udp_chksum=0x1234)]
    src, out = tmp_path / "veth.pcap", tmp_path / "out.pcap"
    _write(src, packets, 1800000000)
    assert main(["pcap", "decap", str(src), str(out)]) == 0
    assert capsys.readouterr().err == "2 not decapsulated: 2 bad_checksum\n"
    assert main(["pcap", "decap", "--ignore-udp-checksum", str(src), str(out)]) == 0
    assert [data for _, _, data in _records(out)] == [bytes(good[0]), bytes(good[3])]
    assert capsys.readouterr().err == ""


def test_encap_skips_frames_it_cannot_wrap(tmp_path, capsys):
    frames = _frames()[:2]
    huge = Ether(src=INNER_SRC, dst=INNER_DST) / IP() / UDP() / Raw(b"\0" * 65500)  # > one IP packet
    runt = b"\x02" * 13
    packets = [frames[0], runt, huge, frames[1]]
    src, out, back = tmp_path / "in.pcap", tmp_path / "out.pcap", tmp_path / "back.pcap"
    _write(src, packets, 1700000000)
    assert main(_encap_argv("vxlan", 4, 1, src, out)) == 0
    assert capsys.readouterr().err == "2 not encapsulated: 1 mtu, 1 runt\n"
    assert main(["pcap", "decap", str(out), str(back)]) == 0
    assert _records(back) == [(1700000000, 1, bytes(frames[0])), (1700000003, 4, bytes(frames[1]))]


@pytest.mark.parametrize("endianness", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_reads_both_byte_orders_and_resolutions(tmp_path, endianness, nano):
    frames = _frames()
    frames[1].time = Decimal("1700000001.987654321" if nano else "1700000001.987654")
    src, out, back = tmp_path / "in.pcap", tmp_path / "out.pcap", tmp_path / "back.pcap"
    writer = PcapWriter(str(src), endianness=endianness, nano=nano)
    writer.write(frames)
    writer.close()
    assert main(_encap_argv("nvgre", 4, 99, src, out)) == 0
    assert main(["pcap", "decap", str(out), str(back)]) == 0
    # Output is microsecond: nanoseconds are truncated.
    expected_usec = [7, 987654, 222229, 333340]
    assert _records(back) == [(1700000000 + i, usec, bytes(f)) for i, (usec, f) in
                              enumerate(zip(expected_usec, frames))]


def _valid_pcap(path):
    wrpcap(str(path), _frames())
    return path.read_bytes()


def _cut(path, extra):
    """A valid capture cut "extra" bytes after the end of its first packet."""
    path.write_bytes(_valid_pcap(path)[: 24 + 16 + len(_frames()[0]) + extra])


def _pcapng(path):
    wrpcapng(str(path), _frames())


def _cooked(path):
    writer = PcapWriter(str(path), linktype=113)
    writer.write(CookedLinux() / IP() / ICMP())
    writer.close()


# name -> (make the file, what the one-line error must say)
MALFORMED = {
    "empty": (lambda p: p.write_bytes(b""), "empty file"),
    "truncated_header": (lambda p: p.write_bytes(_valid_pcap(p)[:10]), "truncated pcap file header"),
    "garbage": (lambda p: p.write_bytes(b"this is not a capture\n" * 20), "not a pcap file"),
    "pcapng": (_pcapng, "pcapng is not supported; convert it first: editcap -F pcap"),
    "linux_cooked": (_cooked, "link type 0x71 (Linux cooked (tcpdump -i any)) is not supported"),
    "version": (lambda p: p.write_bytes(_valid_pcap(p)[:4] + b"\x03" + _valid_pcap(p)[5:]),
                "unsupported pcap version 3.4"),
    "truncated_record": (lambda p: _cut(p, 16 + 20), "truncated record (packet 2: 20 of 1474 bytes)"),
    "truncated_record_header": (lambda p: _cut(p, 7), "truncated record header (packet 2)"),
    "huge_length": (lambda p: p.write_bytes(_valid_pcap(p)[:24] + struct.pack("<IIII", 0, 0, 2**31, 2**31)),
                    "packet 1 claims 2147483648 captured bytes"),
}


@pytest.mark.parametrize("command", ["encap", "decap"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_is_a_one_line_error(tmp_path, capsys, case, command):
    make, message = MALFORMED[case]
    src, out = tmp_path / "bad.pcap", tmp_path / "out.pcap"
    make(src)
    argv = _encap_argv("vxlan", 4, 1, src, out) if command == "encap" else ["pcap", "decap", str(src), str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"vtepctl: error: {src}: ") and err.count("\n") == 1
    assert message in err
    assert not out.exists()  # nothing half-written for a traffic generator


def test_installed_vtepctl_malformed_file_has_no_traceback(tmp_path):
    src = tmp_path / "bad.pcap"
    _pcapng(src)
    result = subprocess.run([str(VTEPCTL), "pcap", "decap", str(src), str(tmp_path / "out.pcap")],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == (f"vtepctl: error: {src}: pcapng is not supported; convert it first: "
                             f"editcap -F pcap {src} OUT.pcap\n")


BAD_ENCAP_ARGS = [
    (["--src-mac", "02:00:00:00:00"], "argument --src-mac: '02:00:00:00:00' is not a MAC address"),
    (["--src-mac", "01:00:5e:00:00:01"], "argument --src-mac: '01:00:5e:00:00:01' is multicast or zero"),
    (["--dst-mac", "02:00:00:00:00:zz"], "argument --dst-mac: '02:00:00:00:00:zz' is not a MAC address"),
    (["--local", "198.18.0.256"], "argument --local: '198.18.0.256' is not an IPv4 or IPv6 address"),
    (["--remote", "2001:db8::2"], "--local and --remote must both be IPv4 or both IPv6"),
    (["--vni", "16777216"], "argument --vni: 16777216 is out of range 0..16777215"),
    (["--vni", "-1"], "argument --vni: -1 is out of range 0..16777215"),
    (["--vni", "five"], "argument --vni: 'five' is not an integer"),
    (["--ttl", "0"], "argument --ttl: 0 is out of range 1..255"),
    (["--ttl", "256"], "argument --ttl: 256 is out of range 1..255"),
    (["--destination-port", "0"], "argument --destination-port: 0 is out of range 1..65535"),
    (["--destination-port", "65536"], "argument --destination-port: 65536 is out of range 1..65535"),
    (["--encapsulation", "gre"], "argument --encapsulation: invalid choice: 'gre'"),
]


@pytest.mark.parametrize("change,message", BAD_ENCAP_ARGS)
def test_bad_encap_arguments_exit_2(tmp_path, capture, capsys, change, message):
    argv = _encap_argv("vxlan", 4, 1, capture, tmp_path / "out.pcap")
    argv[-2:-2] = change  # the last occurrence wins, and every one is checked
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: vtepctl pcap encap")
    assert f"vtepctl pcap encap: error: {message}" in err
    assert not (tmp_path / "out.pcap").exists()


@pytest.mark.parametrize("argv,message", [
    (["pcap", "decap", "{tmp}/missing.pcap", "{tmp}/out.pcap"], "argument IN.pcap: no such file: "),
    (["pcap", "decap", "{capture}", "{tmp}/no/dir/out.pcap"], "argument OUT.pcap: no such directory: "),
    (["pcap", "decap", "{capture}", "{capture}"], "IN.pcap and OUT.pcap must be different files"),
    (["pcap", "decap", "--destination-port", "70000", "{capture}", "{tmp}/out.pcap"],
     "argument --destination-port: 70000 is out of range 1..65535"),
    (["pcap", "decap", "{capture}"], "the following arguments are required: OUT.pcap"),
    (["pcap", "encap", "--vni", "1", "{capture}", "{tmp}/out.pcap"],
     "the following arguments are required: --encapsulation, --local, --remote"),
    (["pcap"], "the following arguments are required: COMMAND"),
    (["show", "everything"], "argument COMMAND: invalid choice: 'everything'"),
])
def test_bad_arguments_exit_2(tmp_path, capture, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, capture=capture) for a in argv]
    before = capture.read_bytes()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error: " + message in err and "Traceback" not in err
    assert capture.read_bytes() == before


def test_installed_vtepctl_bad_argument(tmp_path, capture):
    result = subprocess.run([str(VTEPCTL), *_encap_argv("vxlan", 4, 1, capture, tmp_path / "o.pcap", "--ttl", "300")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == "vtepctl pcap encap: error: argument --ttl: 300 is out of range 1..255"


def test_version_and_list_commands(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out == f"vtep {__version__}\n"
    assert main(["-s", "/nonexistent/vtepd.sock", "-j", "version"]) == 0
    assert json.loads(capsys.readouterr().out) == {"version": __version__}
    assert main(["list-commands"]) == 0
    listed = [line.split("  ")[0] for line in capsys.readouterr().out.splitlines()]
    assert {"pcap encap", "pcap decap", "version", "list-commands"} <= set(listed)
    assert {"show fdb", "fdb add", "reload", "trace", "lab up", "lab down"} <= set(listed)
    assert main(["--json", "list-commands"]) == 0
    assert [c["command"] for c in json.loads(capsys.readouterr().out)] == listed
