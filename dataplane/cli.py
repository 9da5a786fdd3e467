"""vtepctl: the command-line tool (DESIGN.md section 4, "CLI").

Commands are declared once in COMMANDS, which builds the argparse parser and
answers `list-commands`, so the two cannot drift.  Arguments are validated
completely by argparse (exit status 2, never a traceback) before a command
runs; a command returns 0, or 1 with a one-line error for a file it cannot
use, an error reply from vtepd, or a vtepd it cannot reach.

The daemon commands (show, fdb, counters, reload, trace, log-level) send one
request on vtepd's control socket (dataplane/control.py) and print its
result: a table, or with -j the result as JSON, exactly as vtepd sent it."""
import argparse
import ipaddress
import json
import os
import re
import sys
from dataclasses import dataclass
from typing import Callable

from . import __version__, config, control, frames, lab, packet, pcap

DEFAULT_SOCKET = "/run/vtepd/vtepd.sock"
_MAC = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}", re.IGNORECASE)


# Argument types: each raises ArgumentTypeError, which argparse reports as
# "vtepctl ...: error: argument --x: <message>" with exit status 2.

def _ranged(low, high):
    def parse(text):
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range {low}..{high}")
        return value

    return parse


def _mac(text):
    if not _MAC.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a MAC address (like 02:00:00:00:00:01)")
    return text.lower().replace("-", ":")


def _source_mac(text):
    mac = _mac(text)
    raw = packet.mac_bytes(mac)
    if raw[0] & 1 or raw == bytes(6):
        # Switches drop such frames, and our own receive path counts them as bad_src_mac.
        raise argparse.ArgumentTypeError(f"{text!r} is multicast or zero: it must be a unicast MAC")
    return mac


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is out of range (0, 3600] seconds")
    return value


def _ip(text):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 or IPv6 address") from None


def _ifname(text):
    try:
        return config._ifname(text, "name")
    except config.ConfigError as e:
        raise argparse.ArgumentTypeError(e.reason) from None


def _segment_name(text):
    if not text.strip():
        raise argparse.ArgumentTypeError("a segment name must not be empty")
    return text


def _ethertype(text):
    try:
        return frames.parse_ethertype(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _hex_frame(text):
    digits = "".join(text.replace(":", "").split())
    try:
        frame = bytes.fromhex(digits)
    except ValueError:
        raise argparse.ArgumentTypeError("not hexadecimal bytes (like 0200000000010200...)") from None
    if not 0 < len(frame) <= frames.MAX_SIZE:
        raise argparse.ArgumentTypeError(f"a frame is 1..{frames.MAX_SIZE} bytes, got {len(frame)}")
    return frame


def _input_file(path):
    if not os.path.exists(path):
        raise argparse.ArgumentTypeError(f"no such file: {path}")
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path} is a directory")
    return path


def _output_file(path):
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"no such directory: {parent}")
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path} is a directory")
    return path


# Commands.

def _files_args(p):
    p.add_argument("input", metavar="IN.pcap", type=_input_file, help="classic pcap, Ethernet")
    p.add_argument("output", metavar="OUT.pcap", type=_output_file,
                   help="written as microsecond little-endian Ethernet pcap")


def _encap_args(p):
    p.add_argument("--encapsulation", required=True, choices=packet.ENCAPSULATIONS)
    p.add_argument("--vni", required=True, type=_ranged(0, 0xFFFFFF), metavar="N",
                   help="VNI, or VSID for nvgre")
    p.add_argument("--local", required=True, type=_ip, metavar="IP", help="outer source address, IPv4 or IPv6")
    p.add_argument("--remote", required=True, type=_ip, metavar="IP", help="outer destination, same family")
    p.add_argument("--src-mac", type=_source_mac, metavar="MAC", default="02:00:00:00:00:01",
                   help="outer source MAC (default %(default)s)")
    p.add_argument("--dst-mac", type=_mac, metavar="MAC", default="02:00:00:00:00:02",
                   help="outer destination MAC (default %(default)s)")
    p.add_argument("--destination-port", type=_ranged(1, 65535), metavar="P", default=4789,
                   help="VXLAN UDP port (default %(default)s; vxlan only)")
    p.add_argument("--ttl", type=_ranged(1, 255), metavar="T", default=64,
                   help="outer TTL or hop limit (default %(default)s)")
    p.add_argument("--udp-checksum", action="store_true",
                   help="compute VXLAN's UDP checksum over IPv4 too (IPv6 always has one)")
    _files_args(p)


def _decap_args(p):
    p.add_argument("--destination-port", type=_ranged(1, 65535), metavar="P", default=4789,
                   help="UDP port of VXLAN packets (default %(default)s)")
    p.add_argument("--ignore-udp-checksum", action="store_true",
                   help="do not verify UDP checksums: captures taken on a veth or the sender's host "
                        "hold unfinished ones")
    _files_args(p)


def _check_files(args):
    if os.path.exists(args.output) and os.path.samefile(args.input, args.output):
        args.parser.error("IN.pcap and OUT.pcap must be different files")


def _is_stdout(path):
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError):  # no such file, or stdout has no descriptor
        return False


def _report(args, summary, what):
    line = summary.skipped_line(what)
    if line:
        print(line, file=sys.stderr)
    # `... IN.pcap /dev/stdout | tcpreplay ...`: keep the capture clean.
    out = sys.stderr if _is_stdout(args.output) else sys.stdout
    if args.json:
        print(json.dumps({"input": args.input, "output": args.output, "written": summary.written,
                          "skipped": dict(summary.skipped)}), file=out)
    else:
        print(f"{args.output}: {summary.written} packets written", file=out)
    return 0


def _pcap_encap(args):
    _check_files(args)
    if args.local.version != args.remote.version:
        args.parser.error("--local and --remote must both be IPv4 or both IPv6")
    tunnel = packet.Tunnel(args.encapsulation, str(args.local), str(args.remote),
                           src_mac=args.src_mac, dst_mac=args.dst_mac,
                           destination_port=args.destination_port, ttl=args.ttl, udp_checksum=args.udp_checksum)
    return _report(args, pcap.encap_file(args.input, args.output, tunnel, args.vni), "encapsulated")


def _pcap_decap(args):
    _check_files(args)
    summary = pcap.decap_file(args.input, args.output, args.destination_port,
                              verify_checksum=not args.ignore_udp_checksum)
    return _report(args, summary, "decapsulated")


def _version(args):
    print(json.dumps({"version": __version__}) if args.json else f"vtep {__version__}")
    return 0


def _list_commands(args):
    if args.json:
        print(json.dumps([{"command": " ".join(c.words), "help": c.help} for c in COMMANDS]))
    else:
        width = max(len(" ".join(c.words)) for c in COMMANDS)
        for c in COMMANDS:
            print(f"{' '.join(c.words):<{width}}  {c.help}")
    return 0


# Daemon commands: each sends one request and prints the result as a table, or
# with -j as JSON.  Request arguments are checked completely before anything is
# sent (args.parser.error: exit status 2).

def _daemon(command, render, request_args=None, timeout=5.0, failed=None):
    """run(args) for a command that sends "command" with request_args(args) ({} if
    None) and prints render(result, args), a list of lines.  "failed" is appended to an
    error reply's message ("vtepd kept its old config")."""

    def run(args):
        body = request_args(args) if request_args else {}
        try:
            result = control.request(args.socket, command, body, timeout=args.timeout or timeout)
        except control.ControlError as e:
            raise control.ControlError(f"{e} ({failed})" if failed else str(e)) from None
        if args.json:
            print(json.dumps(result))
            return 0
        try:
            lines = render(result, args)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
            raise control.ControlError(f"unexpected result from vtepd for {command} "
                                       f"({type(e).__name__}: {e}); -j prints it as sent") from None
        for line in lines:
            print(line)
        return 0

    return run


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _table(headers, rows):
    """The lines of a plain table: a header line, then one line per row; columns of
    numbers are right-aligned, "-" stands for none."""
    rows = [tuple(row) for row in rows]
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    right = [any(_is_number(row[i]) for row in rows)
             and all(_is_number(row[i]) or row[i] is None for row in rows) for i in range(len(headers))]

    def line(values):
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()

    return [line(headers)] + [line(r) for r in cells]


def _columns(result, columns):
    """_table() of the dicts in "result": "columns" maps a header to a key, or to a
    function of the dict."""
    return _table(tuple(columns), ((get(item) if callable(get) else item[get] for get in columns.values())
                                   for item in result))


def _show_segments(result, args):
    return _columns(result, {
        "NAME": "name", "ENCAP": "encapsulation", "VNI": "vni", "ISOLATED-VNI": "isolated_vni",
        "COMMUNITY-VNI": "community_vni", "REMOTES": "remote", "LEARNING": "mac_learning",
        "FDB": "fdb_entries", "LIMIT": "maximum_fdb_entries"})


def _show_ports(result, args):
    return _columns(result, {
        "NAME": "name", "BACKEND": "backend", "SEGMENT": "segment", "ROLE": "role", "COMMUNITY": "community",
        "BUM-LIMIT": lambda p: p.get("bum_rate_limit") or None,  # frames/s; 0 (none) shows as "-"
        "STATE": lambda p: "?" if p["up"] is None else "up" if p["up"] else "down", "RX-PACKETS": "rx_packets",
        "TX-PACKETS": "tx_packets", "DROPS": "drops"})


def _show_fdb_request(args):
    return {} if args.segment is None else {"segment": args.segment}


def _show_fdb(result, args):
    return _columns(result, {
        "SEGMENT": "segment", "MAC": "mac", "KIND": "kind", "TARGET": "target", "ROLE": "role",
        "COMMUNITY": "community", "STATIC": "static", "AGE": "age"})


def _show_remotes(result, args):
    return _columns(result, {"ADDRESS": "address", "SEGMENTS": "segments", "NEXT-HOP": "next_hop",
                             "REASON": "reason"})


def _show_counters(result, args):
    rows = [{"kind": "port", "name": name, **c} for name, c in result["ports"].items()]
    if result.get("underlay") is not None:
        rows.append({"kind": "underlay", "name": None, **result["underlay"]})
    rows += [{"kind": "segment", "name": name, **c} for name, c in result["segments"].items()]
    return _columns(rows, {
        "KIND": "kind", "NAME": "name", "RX-PACKETS": "rx_packets", "RX-BYTES": "rx_bytes",
        "FORWARDED": lambda c: c.get("forwarded"), "TX-PACKETS": "tx_packets", "TX-BYTES": "tx_bytes", "LEARN-REFUSED": "learn_refused",
        "DROPS": lambda c: " ".join(f"{reason}={n}" for reason, n in c["drops"].items() if n) or None})


def _segment_arg(p, required, help):
    p.add_argument("--segment", required=required, type=_segment_name, metavar="NAME", help=help)


def _fdb_add_args(p):
    _segment_arg(p, True, "the segment whose table gets the entry")
    # A station's address, which is a source MAC: unicast (config.py checks [[fdb]] the same way).
    p.add_argument("--mac", required=True, type=_source_mac, metavar="MAC")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=_ifname, metavar="NAME", help="a local port of the segment")
    where.add_argument("--remote", type=_ip, metavar="ADDR", help="the VTEP the MAC is behind")
    p.add_argument("--role", choices=config.ROLES, help="the remote MAC's role, when known (--remote only)")
    p.add_argument("--community", metavar="NAME", help="the remote MAC's community (--role community)")


def _fdb_add_request(args):
    if args.port is not None and (args.role or args.community):
        args.parser.error("--role and --community go with --remote: a local MAC has its port's role")
    if args.community is not None and args.role != "community":
        args.parser.error("--community goes with --role community")
    if args.role == "community" and not args.community:
        args.parser.error("--role community needs --community NAME")
    where = {"port": args.port} if args.port is not None else {"remote": str(args.remote)}
    return {"segment": args.segment, "mac": args.mac, **where, "role": args.role, "community": args.community}


def _fdb_add(result, args):
    return [f"added {args.mac} to segment {args.segment}"]


def _fdb_del(result, args):
    return [f"removed {args.mac} from segment {args.segment}"]


def _fdb_del_args(p):
    _segment_arg(p, True, "the segment whose table holds the entry")
    p.add_argument("--mac", required=True, type=_mac, metavar="MAC")


def _fdb_del_request(args):
    return {"segment": args.segment, "mac": args.mac}


def _fdb_flush_args(p):
    _segment_arg(p, False, "only this segment (default: all)")
    p.add_argument("--static", action="store_true", help="remove static entries too (default: learned only)")


def _fdb_flush_request(args):
    return {**_show_fdb_request(args), "static": args.static}


def _fdb_flush(result, args):
    n = result["removed"]
    return [f"removed {n} {'entry' if n == 1 else 'entries'}"]


def _counters_clear(result, args):
    return ["counters cleared"]


def _reload(result, args):
    return [str(change) for change in result["changes"]] or ["no changes"]


def _trace_args(p):
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=_ifname, metavar="NAME", help="the frame arrives on this port")
    where.add_argument("--underlay", action="store_true", help="the frame arrives from the underlay")
    p.add_argument("--hex", type=_hex_frame, metavar="HEX",
                   help="the whole Ethernet frame, without FCS (with --underlay: the whole outer frame)")
    p.add_argument("--src", type=_mac, metavar="MAC", help="describe the frame: source MAC")
    p.add_argument("--dst", type=_mac, metavar="MAC", help="destination MAC")
    p.add_argument("--vlan", type=_ranged(0, 4095), metavar="ID", help="add an 802.1Q tag")
    p.add_argument("--ethertype", type=_ethertype, metavar="TYPE",
                   help="ipv4 (default: an IPv4/UDP packet 192.0.2.1 > 192.0.2.2), arp (a request), ipv6, "
                        "or a number like 0x88b5 (zeros follow)")
    p.add_argument("--size", type=_ranged(14, frames.MAX_SIZE), metavar="N",
                   help=f"frame length without FCS (default {frames.DEFAULT_SIZE}, or more if the headers need it)")
    p.add_argument("--remote", type=_ip, metavar="ADDR",
                   help="--underlay with a described frame: the VTEP it comes from")
    p.add_argument("--vni", type=_ranged(0, 0xFFFFFF), metavar="N",
                   help="--underlay with a described frame: the VNI (VSID) vtepd wraps it in")


def _trace_request(args):
    error = args.parser.error
    described = [f"--{name}" for name in ("src", "dst", "vlan", "ethertype", "size")
                 if getattr(args, name) is not None]
    wrap = [f"--{name}" for name in ("remote", "vni") if getattr(args, name) is not None]
    if args.hex is not None:
        if described:
            error(f"--hex is the whole frame: it does not go with {', '.join(described)}")
        if wrap:
            error(f"--hex is the whole frame (with --underlay, the outer one): "
                  f"it does not go with {', '.join(wrap)}")
        frame = args.hex
    else:
        if args.src is None or args.dst is None:
            error("give the frame with --hex, or describe it with --src and --dst")
        if args.port is not None and wrap:
            error(f"{' and '.join(wrap)} {'go' if len(wrap) > 1 else 'goes'} with --underlay only")
        if args.underlay and len(wrap) < 2:
            error("--underlay with a described frame needs --remote and --vni (vtepd wraps the frame)")
        ethertype = frames.ETHERTYPES["ipv4"] if args.ethertype is None else args.ethertype
        try:
            frame = frames.build(args.src, args.dst, ethertype, args.vlan, args.size)
        except ValueError as e:
            error(f"--size: {e}")
    if args.port is not None:
        where = {"port": args.port}
    elif args.hex is not None:
        where = {"underlay": {}}
    else:
        where = {"underlay": {"remote": str(args.remote), "vni": args.vni}}
    return {**where, "frame": frame.hex()}


def _trace(result, args):
    steps = result["steps"]
    width = len(str(len(steps)))
    lines = [f"{i:>{width}}. {s['step']}: {s['detail']}" for i, s in enumerate(steps, 1)]
    outputs = result["outputs"]
    lines.append("outputs:" if outputs else "outputs: none")
    for o in outputs:
        vni = "" if o.get("vni") is None else f" vni {o['vni']}"
        lines.append(f"  {o['kind']} {o['target']}{vni}, {o['length']} bytes")
    lines.append(f"verdict: {result['verdict']}")
    return lines


LOG_LEVELS = ("debug", "info", "warning", "error")


def _log_level_args(p):
    p.add_argument("level", choices=LOG_LEVELS, metavar="LEVEL", help=", ".join(LOG_LEVELS))


def _log_level_request(args):
    return {"level": args.level}


def _log_level(result, args):
    return [f"log level {result['level']}"]


@dataclass(frozen=True)
class Command:
    words: tuple  # ("pcap", "encap"): at most one group word, then the command
    help: str
    run: Callable  # run(args) -> exit status
    add_arguments: Callable | None = None


COMMANDS = (
    Command(("show", "segments"), "list the segments", _daemon("show-segments", _show_segments)),
    Command(("show", "ports"), "list the ports", _daemon("show-ports", _show_ports)),
    Command(("show", "fdb"), "list the MAC table", _daemon("show-fdb", _show_fdb, _show_fdb_request),
            lambda p: _segment_arg(p, False, "only this segment (default: all)")),
    Command(("show", "remotes"), "list the remote VTEPs and their next hops",
            _daemon("show-remotes", _show_remotes)),
    Command(("show", "counters"), "print the counters of ports, underlay and segments",
            _daemon("show-counters", _show_counters)),
    Command(("fdb", "add"), "add a static MAC entry", _daemon("fdb-add", _fdb_add, _fdb_add_request),
            _fdb_add_args),
    Command(("fdb", "del"), "remove a MAC entry", _daemon("fdb-del", _fdb_del, _fdb_del_request),
            _fdb_del_args),
    Command(("fdb", "flush"), "remove learned (and with --static, static) MAC entries",
            _daemon("fdb-flush", _fdb_flush, _fdb_flush_request), _fdb_flush_args),
    Command(("counters", "clear"), "set every counter to zero", _daemon("counters-clear", _counters_clear)),
    Command(("reload",), "reread the config file; a bad one changes nothing",
            _daemon("reload", _reload, timeout=30.0, failed="vtepd kept its old config")),
    Command(("trace",), "feed one frame to a port or the underlay; print every decision (nothing is sent)",
            _daemon("trace", _trace, _trace_request), _trace_args),
    Command(("log-level",), "set vtepd's log level", _daemon("log-level", _log_level, _log_level_request),
            _log_level_args),
    Command(("pcap", "encap"), "wrap every frame of a capture in VXLAN or NVGRE", _pcap_encap, _encap_args),
    Command(("pcap", "decap"), "unwrap the VXLAN and NVGRE packets of a capture", _pcap_decap, _decap_args),
    Command(("version",), "print the version", _version),
    Command(("list-commands",), "list the commands", _list_commands),
    *(Command(*row) for row in lab.LAB_COMMANDS),
)
_GROUP_HELP = {
    "lab": "a namespace lab with two vtepd and a kernel VXLAN peer (root)",
    "show": "show vtepd's state",
    "fdb": "change vtepd's MAC tables",
    "counters": "vtepd's counters",
    "pcap": "convert captures offline (no daemon needed)",
}


def build_parser():
    parser = argparse.ArgumentParser(prog="vtepctl", description="Control vtepd, or convert captures.")
    parser.add_argument("-s", "--socket", default=DEFAULT_SOCKET,
                        help="vtepd control socket (default %(default)s)")
    parser.add_argument("-j", "--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                        help="wait this long for vtepd's answer (default 5, reload 30)")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups = {}
    for command in COMMANDS:
        *group, name = command.words
        into = top
        if group:
            if group[0] not in groups:
                group_parser = top.add_parser(group[0], help=_GROUP_HELP[group[0]])
                groups[group[0]] = group_parser.add_subparsers(dest="subcommand", metavar="COMMAND",
                                                               required=True)
            into = groups[group[0]]
        sub = into.add_parser(name, help=command.help, description=command.help)
        if command.add_arguments:
            command.add_arguments(sub)
        sub.set_defaults(run=command.run, parser=sub)
    return parser


def main(argv=None):
    """Run vtepctl with "argv" (default sys.argv[1:]); returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except SystemExit as e:  # argparse: --help (0) or a bad argument (2)
        return 0 if e.code is None else e.code
    except (pcap.PcapError, control.ControlError, lab.LabError) as e:
        print(f"vtepctl: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"vtepctl: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
