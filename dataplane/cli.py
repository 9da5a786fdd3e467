"""vtepctl: the command-line tool (DESIGN.md section 4, "CLI").

Commands are declared once in COMMANDS, which builds the argparse parser and
answers `list-commands`, so the two cannot drift.  Arguments are validated
completely by argparse (exit status 2, never a traceback) before a command
runs; a command returns 0, or 1 with a one-line error for a file it cannot
use.  The daemon commands (show, fdb, counters, reload, trace) arrive with
vtepd's control socket."""
import argparse
import ipaddress
import json
import os
import re
import sys
from dataclasses import dataclass
from typing import Callable

from . import __version__, packet, pcap

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
        raise argparse.ArgumentTypeError(f"{text!r} is multicast or zero: a source MAC must be unicast")
    return mac


def _ip(text):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 or IPv6 address") from None


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


@dataclass(frozen=True)
class Command:
    words: tuple  # ("pcap", "encap"): at most one group word, then the command
    help: str
    run: Callable  # run(args) -> exit status
    add_arguments: Callable | None = None


COMMANDS = (
    Command(("pcap", "encap"), "wrap every frame of a capture in VXLAN or NVGRE", _pcap_encap, _encap_args),
    Command(("pcap", "decap"), "unwrap the VXLAN and NVGRE packets of a capture", _pcap_decap, _decap_args),
    Command(("version",), "print the version", _version),
    Command(("list-commands",), "list the commands", _list_commands),
)
_GROUP_HELP = {"pcap": "convert captures offline (no daemon needed)"}


def build_parser():
    parser = argparse.ArgumentParser(prog="vtepctl", description="Control vtepd, or convert captures.")
    parser.add_argument("-s", "--socket", default=DEFAULT_SOCKET,
                        help="vtepd control socket (default %(default)s)")
    parser.add_argument("-j", "--json", action="store_true", help="print JSON instead of text")
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
    except pcap.PcapError as e:
        print(f"vtepctl: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"vtepctl: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
