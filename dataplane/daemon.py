"""vtepd: the VTEP daemon.

`vtepd -c FILE --check` validates a configuration (the file, then the
engine tables built from it) and exits 0 or 1.  Running the daemon itself
(packet I/O, netlink, control socket) is the next piece of work."""
import argparse
import sys

from . import __version__, config, tables


def check(path):
    """Returns (ok, message)."""
    try:
        cfg = config.load(path)
        built = tables.build(cfg)
    except OSError as e:
        return False, f"{path}: {e.strerror}"
    except (config.ConfigError, tables.VtepError) as e:
        return False, f"{path}: {e}"
    return True, (f"{path}: ok: {len(built.segments)} segments, {len(built.ports)} ports, "
                  f"{len(built.remotes)} remote VTEPs, {len(cfg.fdb)} static FDB entries")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="vtepd", description="Userspace VXLAN/NVGRE tunnel endpoint.")
    parser.add_argument("-c", "--config", required=True, metavar="FILE", help="configuration file (TOML)")
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit 0 or 1")
    parser.add_argument("--version", action="version", version=f"vtepd {__version__}")
    args = parser.parse_args(argv)
    ok, message = check(args.config)
    print(f"vtepd: {message}", file=sys.stdout if ok else sys.stderr)
    if not ok:
        return 1
    if args.check:
        return 0
    print("vtepd: running the daemon (packet I/O, netlink, control socket) is not built yet; "
          "only --check works in this version", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
