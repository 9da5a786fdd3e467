"""vtepctl's daemon commands against a real control socket: the request each
command sends, its table and -j output, error replies and an unreachable
vtepd (exit 1), bad arguments (exit 2, nothing sent).  Also the frame
builder behind `trace --src/--dst`, checked against scapy."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Padding, Raw

from dataplane import frames
from dataplane.cli import COMMANDS, main
from dataplane.control import RequestError
from tests.unit.test_control import ServerThread

VTEPCTL = Path(sys.executable).parent / "vtepctl"  # the installed console script

SEGMENTS = [
    {"name": "tenant-a", "encapsulation": "vxlan", "vni": 5000, "isolated_vni": 5001,
     "community_vni": {"web": 5002, "db": 5003}, "remote": ["198.18.0.2", "198.18.0.3"], "mac_learning": True,
     "fdb_entries": 3, "maximum_fdb_entries": 65536},
    {"name": "plain", "encapsulation": "nvgre", "vni": 7000, "isolated_vni": None, "community_vni": {},
     "remote": [], "mac_learning": False, "fdb_entries": 0, "maximum_fdb_entries": 1024},
]
PORTS = [
    {"name": "vm1", "backend": "tap", "segment": "tenant-a", "role": "community", "community": "web",
     "bum_rate_limit": 500, "up": True, "rx_packets": 12, "tx_packets": 34, "drops": 5},
    {"name": "eth2", "backend": "afpacket", "segment": "plain", "role": "promiscuous", "community": None,
     "bum_rate_limit": 0, "up": False, "rx_packets": 0, "tx_packets": 0, "drops": 0},
]
FDB = [
    {"segment": "tenant-a", "mac": "02:00:00:00:01:01", "kind": "local", "target": "vm1", "role": "community",
     "community": "web", "static": False, "age": 12},
    {"segment": "tenant-a", "mac": "02:00:00:00:02:01", "kind": "remote", "target": "198.18.0.2",
     "role": None, "community": None, "static": True, "age": None},
]
REMOTES = [
    {"address": "198.18.0.2", "segments": ["tenant-a", "plain"], "next_hop": "02:bb:00:00:00:02",
     "reason": "resolved"},
    {"address": "198.18.0.3", "segments": ["tenant-a"], "next_hop": None, "reason": "neighbour incomplete"},
]


def _c(rx, drops=None, learn_refused=0):
    return {"rx_packets": rx, "rx_bytes": rx * 100, "tx_packets": rx * 2, "tx_bytes": rx * 200,
            "forwarded": rx - sum((drops or {}).values()), "learn_refused": learn_refused, "drops": drops or {"pvlan_deny": 0, "no_destination": 0}}


COUNTERS = {
    "ports": {"vm1": _c(12, {"pvlan_deny": 3, "no_destination": 0, "vlan_tagged": 2}), "eth2": _c(0)},
    "underlay": _c(50, {"unknown_vni": 7}),
    "segments": {"tenant-a": _c(62, learn_refused=4), "plain": _c(0)},
}
TRACE = {
    "steps": [{"step": "receive", "detail": "port vm1, segment tenant-a, role community web"},
              {"step": "fdb", "detail": "02:00:00:00:02:01 unknown: flood"},
              {"step": "pvlan", "detail": "community web may reach promiscuous and web"}],
    "verdict": "forwarded",
    "outputs": [{"kind": "underlay", "target": "198.18.0.2", "vni": 5002, "length": 114},
                {"kind": "port", "target": "vm3", "vni": None, "length": 64}],
}


class Daemon:
    """The handlers of a pretend vtepd: canned results, every request recorded."""

    def __init__(self):
        self.requests = []
        self.changes = ["port vm3: added", "segment plain: remote 198.18.0.4 added"]

    def handlers(self):
        def answer(name, result):
            def handler(args):
                self.requests.append((name, args))
                return result(args) if callable(result) else result
            return handler

        def reload(args):
            self.requests.append(("reload", args))
            if self.changes is None:
                raise RequestError("/etc/vtep/vtepd.toml: segment[1].vni: must be an integer 0..16777215")
            return {"changes": self.changes}

        def fdb_del(args):
            self.requests.append(("fdb-del", args))
            raise RequestError(f"no entry for {args['mac']} in segment {args['segment']!r}")

        def broken(args):
            self.requests.append(("show-remotes", args))
            raise KeyError("neighbours")

        return {
            "show-segments": answer("show-segments", SEGMENTS),
            "show-ports": answer("show-ports", PORTS),
            "show-fdb": answer("show-fdb", lambda args: [e for e in FDB if args.get("segment") in (None, e["segment"])]),
            "show-remotes": answer("show-remotes", REMOTES),
            "show-counters": answer("show-counters", COUNTERS),
            "fdb-add": answer("fdb-add", None),
            "fdb-del": fdb_del,
            "fdb-flush": answer("fdb-flush", lambda args: {"removed": 1 if args.get("segment") else 7}),
            "counters-clear": answer("counters-clear", None),
            "reload": reload,
            "trace": answer("trace", TRACE),
            "log-level": answer("log-level", lambda args: {"level": args["level"]}),
            "broken": broken,
        }


@pytest.fixture
def socket_dir():
    path = tempfile.mkdtemp(prefix="vtep-", dir="/tmp")  # short: Unix socket paths are at most 107 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(socket_dir):
    d = Daemon()
    d.path = os.path.join(socket_dir, "vtepd.sock")
    server = ServerThread(d.path, d.handlers(), timeout=1.0)
    yield d
    server.close()


@pytest.fixture
def vtepctl(daemon, capsys):
    """vtepctl(*words) -> (status, stdout, stderr), talking to the daemon fixture."""

    def run(*words):
        status = main(["-s", daemon.path, *words])
        out, err = capsys.readouterr()
        return status, out, err

    return run


def _rows(out):
    """The table's lines split into cells (no cell in our fixtures holds a space, but DROPS)."""
    return [line.split() for line in out.splitlines()]


# -- show -----------------------------------------------------------------------------------------

def test_show_segments(vtepctl, daemon):
    status, out, err = vtepctl("show", "segments")
    assert (status, err) == (0, "")
    assert daemon.requests == [("show-segments", {})]
    assert _rows(out) == [
        ["NAME", "ENCAP", "VNI", "ISOLATED-VNI", "COMMUNITY-VNI", "REMOTES", "LEARNING", "FDB", "LIMIT"],
        ["tenant-a", "vxlan", "5000", "5001", "web=5002,db=5003", "198.18.0.2,198.18.0.3", "yes", "3", "65536"],
        ["plain", "nvgre", "7000", "-", "-", "-", "no", "0", "1024"],
    ]
    header, first, _ = out.splitlines()
    assert header.index("VNI") + len("VNI") == first.index("5000") + len("5000")  # numbers right-aligned


@pytest.mark.parametrize("words, command, result", [
    (("show", "segments"), "show-segments", SEGMENTS),
    (("show", "ports"), "show-ports", PORTS),
    (("show", "fdb"), "show-fdb", FDB),
    (("show", "remotes"), "show-remotes", REMOTES),
    (("show", "counters"), "show-counters", COUNTERS),
    (("trace", "--port", "vm1", "--src", "02:00:00:00:01:01", "--dst", "ff:ff:ff:ff:ff:ff"), "trace", TRACE),
    (("log-level", "debug"), "log-level", {"level": "debug"}),
    (("counters", "clear"), "counters-clear", None),
    (("reload",), "reload", {"changes": ["port vm3: added", "segment plain: remote 198.18.0.4 added"]}),
])
def test_json_is_the_result_as_sent(vtepctl, daemon, words, command, result):
    status, out, err = vtepctl("-j", *words)
    assert (status, err) == (0, "")
    assert json.loads(out) == result
    assert [name for name, _ in daemon.requests] == [command]


def test_show_ports(vtepctl, daemon):
    status, out, _ = vtepctl("show", "ports")
    assert status == 0
    assert _rows(out) == [
        ["NAME", "BACKEND", "SEGMENT", "ROLE", "COMMUNITY", "BUM-LIMIT", "STATE", "RX-PACKETS", "TX-PACKETS",
         "DROPS"],
        ["vm1", "tap", "tenant-a", "community", "web", "500", "up", "12", "34", "5"],
        ["eth2", "afpacket", "plain", "promiscuous", "-", "-", "down", "0", "0", "0"],
    ]
    header, vm1, eth2 = out.splitlines()
    assert header.index("RX-PACKETS") + len("RX-PACKETS") == vm1.index("12") + 2  # numbers right-aligned


def test_show_fdb(vtepctl, daemon):
    status, out, _ = vtepctl("show", "fdb")
    assert status == 0
    assert daemon.requests == [("show-fdb", {})]
    assert _rows(out) == [
        ["SEGMENT", "MAC", "KIND", "TARGET", "ROLE", "COMMUNITY", "STATIC", "AGE"],
        ["tenant-a", "02:00:00:00:01:01", "local", "vm1", "community", "web", "no", "12"],
        ["tenant-a", "02:00:00:00:02:01", "remote", "198.18.0.2", "-", "-", "yes", "-"],
    ]


def test_show_fdb_of_one_segment(vtepctl, daemon):
    status, out, _ = vtepctl("show", "fdb", "--segment", "plain")
    assert status == 0
    assert daemon.requests == [("show-fdb", {"segment": "plain"})]
    assert _rows(out) == [["SEGMENT", "MAC", "KIND", "TARGET", "ROLE", "COMMUNITY", "STATIC", "AGE"]]


def test_show_remotes(vtepctl):
    status, out, _ = vtepctl("show", "remotes")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ADDRESS", "SEGMENTS", "NEXT-HOP", "REASON"]
    assert lines[1].split() == ["198.18.0.2", "tenant-a,plain", "02:bb:00:00:00:02", "resolved"]
    assert lines[2].split() == ["198.18.0.3", "tenant-a", "-", "neighbour", "incomplete"]


def test_show_counters(vtepctl):
    status, out, _ = vtepctl("show", "counters")
    assert status == 0
    assert _rows(out) == [
        ["KIND", "NAME", "RX-PACKETS", "RX-BYTES", "FORWARDED", "TX-PACKETS", "TX-BYTES", "LEARN-REFUSED", "DROPS"],
        ["port", "vm1", "12", "1200", "7", "24", "2400", "0", "pvlan_deny=3", "vlan_tagged=2"],
        ["port", "eth2", "0", "0", "0", "0", "0", "0", "-"],
        ["underlay", "-", "50", "5000", "43", "100", "10000", "0", "unknown_vni=7"],
        ["segment", "tenant-a", "62", "6200", "62", "124", "12400", "4", "-"],
        ["segment", "plain", "0", "0", "0", "0", "0", "0", "-"],
    ]


# -- changes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("words, args", [
    (("--port", "vm1"),
     {"port": "vm1", "role": None, "community": None}),
    (("--remote", "198.18.0.2"),
     {"remote": "198.18.0.2", "role": None, "community": None}),
    (("--remote", "2001:DB8::2", "--role", "isolated"),
     {"remote": "2001:db8::2", "role": "isolated", "community": None}),
    (("--remote", "198.18.0.2", "--role", "community", "--community", "web"),
     {"remote": "198.18.0.2", "role": "community", "community": "web"}),
])
def test_fdb_add(vtepctl, daemon, words, args):
    status, out, err = vtepctl("fdb", "add", "--segment", "tenant-a", "--mac", "02-00-00-00-02-0A", *words)
    assert (status, err) == (0, "")
    assert daemon.requests == [("fdb-add", {"segment": "tenant-a", "mac": "02:00:00:00:02:0a", **args})]
    assert out == "added 02:00:00:00:02:0a to segment tenant-a\n"


def test_fdb_del_error_reply(vtepctl, daemon):
    status, out, err = vtepctl("fdb", "del", "--segment", "tenant-a", "--mac", "02:00:00:00:09:09")
    assert daemon.requests == [("fdb-del", {"segment": "tenant-a", "mac": "02:00:00:00:09:09"})]
    assert (status, out) == (1, "")
    assert err == "vtepctl: error: no entry for 02:00:00:00:09:09 in segment 'tenant-a'\n"


@pytest.mark.parametrize("words, args, out", [
    ((), {"static": False}, "removed 7 entries\n"),
    (("--static",), {"static": True}, "removed 7 entries\n"),
    (("--segment", "plain", "--static"), {"segment": "plain", "static": True}, "removed 1 entry\n"),
])
def test_fdb_flush(vtepctl, daemon, words, args, out):
    assert vtepctl("fdb", "flush", *words) == (0, out, "")
    assert daemon.requests == [("fdb-flush", args)]


def test_counters_clear(vtepctl, daemon):
    assert vtepctl("counters", "clear") == (0, "counters cleared\n", "")
    assert daemon.requests == [("counters-clear", {})]


def test_reload_prints_each_change(vtepctl, daemon):
    assert vtepctl("reload") == (0, "port vm3: added\nsegment plain: remote 198.18.0.4 added\n", "")
    assert daemon.requests == [("reload", {})]


def test_reload_without_changes(vtepctl, daemon):
    daemon.changes = []
    assert vtepctl("reload") == (0, "no changes\n", "")


def test_reload_refused_keeps_the_old_config(vtepctl, daemon):
    daemon.changes = None
    status, out, err = vtepctl("reload")
    assert (status, out) == (1, "")
    assert err == ("vtepctl: error: /etc/vtep/vtepd.toml: segment[1].vni: must be an integer 0..16777215 "
                   "(vtepd kept its old config)\n")


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
def test_log_level(vtepctl, daemon, level):
    assert vtepctl("log-level", level) == (0, f"log level {level}\n", "")
    assert daemon.requests == [("log-level", {"level": level})]


# -- trace ----------------------------------------------------------------------------------------

def test_trace_plain_output(vtepctl):
    status, out, _ = vtepctl("trace", "--port", "vm1", "--src", "02:00:00:00:01:01", "--dst", "02:00:00:00:02:01")
    assert status == 0
    assert out == (
        "1. receive: port vm1, segment tenant-a, role community web\n"
        "2. fdb: 02:00:00:00:02:01 unknown: flood\n"
        "3. pvlan: community web may reach promiscuous and web\n"
        "outputs:\n"
        "  underlay 198.18.0.2 vni 5002, 114 bytes\n"
        "  port vm3, 64 bytes\n"
        "verdict: forwarded\n")


def test_trace_described_frame_is_built_locally(vtepctl, daemon):
    status, _, _ = vtepctl("trace", "--port", "vm1", "--src", "02:00:00:00:01:01", "--dst", "ff:ff:ff:ff:ff:ff",
                           "--ethertype", "arp", "--vlan", "10")
    assert status == 0
    [(command, args)] = daemon.requests
    assert command == "trace" and set(args) == {"port", "frame"} and args["port"] == "vm1"
    frame = Ether(bytes.fromhex(args["frame"]))
    assert len(bytes.fromhex(args["frame"])) == 64
    assert frame[Dot1Q].vlan == 10 and frame[ARP].op == 1 and frame[ARP].hwsrc == "02:00:00:00:01:01"


def test_trace_hex_frame(vtepctl, daemon):
    raw = bytes(Ether(src="02:00:00:00:01:01", dst="02:00:00:00:02:01") / IP() / UDP())
    assert vtepctl("trace", "--port", "vm1", "--hex", raw.hex().upper())[0] == 0
    assert vtepctl("trace", "--port", "vm1", "--hex", raw.hex(":"))[0] == 0
    assert daemon.requests == [("trace", {"port": "vm1", "frame": raw.hex()})] * 2


def test_trace_underlay(vtepctl, daemon):
    outer = "02bb00000002" * 10
    assert vtepctl("trace", "--underlay", "--hex", outer)[0] == 0
    assert vtepctl("trace", "--underlay", "--src", "02:00:00:00:02:01", "--dst", "02:00:00:00:01:01",
                   "--remote", "198.18.0.2", "--vni", "5001", "--size", "100")[0] == 0
    inner = frames.build("02:00:00:00:02:01", "02:00:00:00:01:01", size=100)
    assert daemon.requests == [
        ("trace", {"underlay": {}, "frame": outer}),
        ("trace", {"underlay": {"remote": "198.18.0.2", "vni": 5001}, "frame": inner.hex()}),
    ]


# -- failures -------------------------------------------------------------------------------------

SRC, DST = ("--src", "02:00:00:00:01:01"), ("--dst", "02:00:00:00:02:01")


@pytest.mark.parametrize("words", [
    ("show", "fdb", "--segment", ""),
    ("show", "nothing"),
    ("fdb", "add", "--segment", "tenant-a", "--mac", "02:00:00:00:02", "--port", "vm1"),
    ("fdb", "add", "--segment", "tenant-a", "--mac", "01:00:5e:00:00:01", "--port", "vm1"),
    ("fdb", "add", "--segment", "tenant-a", "--mac", "00:00:00:00:00:00", "--port", "vm1"),
    ("fdb", "add", "--segment", "tenant-a", "--mac", "02:00:00:00:02:01"),
    ("fdb", "add", "--segment", "tenant-a", "--mac", "02:00:00:00:02:01", "--port", "vm1", "--remote", "198.18.0.2"),
    ("fdb", "add", "--segment", "tenant-a", "--mac", "02:00:00:00:02:01", "--remote", "198.18.0.256"),
    ("fdb", "add", "--segment", "tenant-a", "--mac", "02:00:00:00:02:01", "--remote", "198.18.0.2", "--role", "boss"),
    ("fdb", "add", "--segment", "tenant-a", "--mac", "02:00:00:00:02:01", "--remote", "198.18.0.2",
     "--role", "community"),
    ("fdb", "add", "--segment", "tenant-a", "--mac", "02:00:00:00:02:01", "--remote", "198.18.0.2",
     "--community", "web"),
    ("fdb", "add", "--segment", "tenant-a", "--mac", "02:00:00:00:02:01", "--remote", "198.18.0.2",
     "--role", "isolated", "--community", "web"),
    ("fdb", "add", "--segment", "tenant-a", "--mac", "02:00:00:00:02:01", "--port", "vm1", "--role", "isolated"),
    ("fdb", "add", "--segment", "tenant-a", "--mac", "02:00:00:00:02:01", "--port", "a-name-far-too-long"),
    ("fdb", "add", "--mac", "02:00:00:00:02:01", "--port", "vm1"),
    ("fdb", "del", "--segment", "tenant-a", "--mac", "nope"),
    ("fdb", "flush", "--segment", "plain", "--everything"),
    ("log-level", "verbose"),
    ("log-level",),
    ("reload", "now"),
    ("counters", "clear", "--all"),
    ("trace", *SRC, *DST),
    ("trace", "--port", "vm1", "--underlay", *SRC, *DST),
    ("trace", "--port", "vm1"),
    ("trace", "--port", "vm1", *SRC),
    ("trace", "--port", "vm1", "--hex", "0200000000010200", *SRC),
    ("trace", "--port", "vm1", "--hex", "xyz"),
    ("trace", "--port", "vm1", "--hex", ""),
    ("trace", "--port", "vm1", *SRC, *DST, "--remote", "198.18.0.2"),
    ("trace", "--underlay", *SRC, *DST),
    ("trace", "--underlay", *SRC, *DST, "--vni", "5000"),
    ("trace", "--underlay", *SRC, *DST, "--remote", "198.18.0.2", "--vni", "16777216"),
    ("trace", "--underlay", "--hex", "0200000000010200", "--vni", "5000"),
    ("trace", "--port", "vm1", *SRC, *DST, "--vlan", "4096"),
    ("trace", "--port", "vm1", *SRC, *DST, "--ethertype", "0x0100"),
    ("trace", "--port", "vm1", *SRC, *DST, "--ethertype", "ipx"),
    ("trace", "--port", "vm1", *SRC, *DST, "--size", "41"),
    ("trace", "--port", "vm1", *SRC, *DST, "--size", "65536"),
    ("--timeout", "0", "show", "ports"),
    ("--timeout", "soon", "show", "ports"),
])
def test_bad_arguments_exit_2_and_send_nothing(vtepctl, daemon, words):
    status, out, err = vtepctl(*words)
    assert status == 2
    assert out == "" and "error:" in err and "Traceback" not in err
    assert daemon.requests == []


def test_error_reply_exits_1(vtepctl):
    status, out, err = vtepctl("-j", "fdb", "del", "--segment", "tenant-a", "--mac", "02:00:00:00:09:09")
    assert (status, out) == (1, "")
    assert err.startswith("vtepctl: error: no entry for")


def test_unreachable_daemon_exits_1_naming_the_socket(socket_dir, capsys):
    path = os.path.join(socket_dir, "nobody.sock")
    assert main(["-s", path, "show", "ports"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"vtepctl: error: {path}: ") and "is vtepd running?" in err
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)  # a stale socket: connection refused
    dead.close()
    assert main(["-s", path, "reload"]) == 1
    assert capsys.readouterr().err.startswith(f"vtepctl: error: {path}: cannot reach vtepd: connection refused")


def test_silent_daemon_times_out(socket_dir, capsys):
    path = os.path.join(socket_dir, "silent.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(path)
        silent.listen()
        assert main(["-s", path, "--timeout", "0.1", "show", "ports"]) == 1
    assert capsys.readouterr().err == f"vtepctl: error: {path}: vtepd did not answer within 0.1 s\n"


def test_unexpected_result_is_an_error_not_a_traceback(daemon, capsys):
    # A daemon answering with another shape than the table expects: exit 1, and -j still shows it.
    d = Daemon()
    path = daemon.path + "2"
    handlers = d.handlers()
    handlers["show-ports"] = lambda args: [{"name": "vm1"}]
    server = ServerThread(path, handlers)
    try:
        assert main(["-s", path, "show", "ports"]) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("vtepctl: error: unexpected result from vtepd for show-ports")
        assert main(["-s", path, "-j", "show", "ports"]) == 0
        assert json.loads(capsys.readouterr().out) == [{"name": "vm1"}]
    finally:
        server.close()


def test_list_commands_names_the_daemon_commands(capsys):
    assert main(["-j", "list-commands"]) == 0
    listed = [c["command"] for c in json.loads(capsys.readouterr().out)]
    for command in ("show segments", "show ports", "show fdb", "show remotes", "show counters", "fdb add",
                    "fdb del", "fdb flush", "counters clear", "reload", "trace", "log-level", "version",
                    "list-commands", "pcap encap", "pcap decap"):
        assert command in listed
    assert listed == [" ".join(c.words) for c in COMMANDS]


def test_console_script_exit_status(daemon):
    ok = subprocess.run([VTEPCTL, "-s", daemon.path, "-j", "show", "segments"], capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout) == SEGMENTS
    daemon.changes = None
    refused = subprocess.run([VTEPCTL, "-s", daemon.path, "reload"], capture_output=True, text=True)
    assert refused.returncode == 1 and "kept its old config" in refused.stderr
    bad = subprocess.run([VTEPCTL, "-s", daemon.path + ".gone", "show", "ports"], capture_output=True, text=True)
    assert bad.returncode == 1 and daemon.path + ".gone" in bad.stderr


# -- the frame builder, against scapy -----------------------------------------------------------

MAC_A, MAC_B = "02:00:00:00:01:01", "02:00:00:00:02:01"


def _l2(dst, vlan, upper):
    """Ether / [Dot1Q] / "upper", with scapy filling in the types."""
    return Ether(src=MAC_A, dst=dst) / (Dot1Q(vlan=vlan) / upper if vlan is not None else upper)


def _ipv4(payload):
    return IP(src="192.0.2.1", dst="192.0.2.2", id=0, flags="DF", ttl=64) / UDP(sport=49152, dport=9) / Raw(payload)


def _ipv6(payload):
    return IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=64) / UDP(sport=49152, dport=9) / Raw(payload)


@pytest.mark.parametrize("vlan", [None, 0, 10, 4095])
@pytest.mark.parametrize("size", [None, 60, 64, 65, 1514, 9000])
def test_frames_ipv4_is_scapys(vlan, size):
    built = frames.build(MAC_A, MAC_B, frames.ETHERTYPES["ipv4"], vlan, size)
    want_len = 64 if size is None else size
    header = (14 if vlan is None else 18) + 28
    expected = bytes(_l2(MAC_B, vlan, _ipv4(bytes(want_len - header))))
    assert built == expected and len(built) == want_len
    # Checksums as scapy computes them from scratch: the parsed packet rebuilds to the same bytes.
    parsed = Ether(built)
    del parsed[IP].chksum, parsed[UDP].chksum
    assert bytes(parsed) == built


@pytest.mark.parametrize("vlan", [None, 7])
@pytest.mark.parametrize("size", [None, 70, 1518])
def test_frames_ipv6_is_scapys(vlan, size):
    built = frames.build(MAC_A, MAC_B, frames.ETHERTYPES["ipv6"], vlan, size)
    header = (14 if vlan is None else 18) + 48
    want_len = max(64, header) if size is None else size  # 62 bytes of headers, 66 tagged
    assert built == bytes(_l2(MAC_B, vlan, _ipv6(bytes(want_len - header))))
    parsed = Ether(built)
    del parsed[UDP].chksum
    assert bytes(parsed) == built


@pytest.mark.parametrize("vlan", [None, 100])
def test_frames_arp_request_is_scapys(vlan):
    built = frames.build(MAC_A, "ff:ff:ff:ff:ff:ff", frames.ETHERTYPES["arp"], vlan, 64)
    arp = ARP(op=1, hwsrc=MAC_A, psrc="192.0.2.1", hwdst="00:00:00:00:00:00", pdst="192.0.2.2")
    expected = bytes(_l2("ff:ff:ff:ff:ff:ff", vlan, arp))
    assert built == expected + bytes(64 - len(expected))
    assert Ether(built)[ARP].op == 1 and Padding in Ether(built)


def test_frames_other_ethertype_is_zeros():
    built = frames.build(MAC_A, MAC_B, frames.parse_ethertype("0x88B5"), None, 60)
    assert built == bytes(Ether(src=MAC_A, dst=MAC_B, type=0x88B5) / Raw(bytes(46)))
    assert frames.build(MAC_A, MAC_B, 0x88B5, None, 14) == bytes(Ether(src=MAC_A, dst=MAC_B, type=0x88B5))


def test_frames_ethertype_names():
    assert [frames.parse_ethertype(t) for t in ("ipv4", "ARP", "ipv6", "0x0800", "2054", "0xffff")] == \
        [0x0800, 0x0806, 0x86DD, 0x0800, 0x0806, 0xFFFF]
    for bad in ("ipx", "0x05ff", "0x10000", "", "-1"):
        with pytest.raises(ValueError):
            frames.parse_ethertype(bad)


@pytest.mark.parametrize("ethertype, vlan, too_small", [(0x0800, None, 41), (0x0800, 5, 45), (0x86DD, None, 61),
                                                        (0x0806, None, 41), (0x88B5, None, 13)])
def test_frames_too_small(ethertype, vlan, too_small):
    assert len(frames.build(MAC_A, MAC_B, ethertype, vlan, too_small + 1)) == too_small + 1
    with pytest.raises(ValueError, match="out of range"):
        frames.build(MAC_A, MAC_B, ethertype, vlan, too_small)
