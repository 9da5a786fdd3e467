"""vtepd: the VTEP daemon (DESIGN.md section 4, "Daemon").

`vtepd -c FILE` runs in the foreground in the network namespace it serves.
One asyncio loop in the main thread is the control plane: it answers the
control socket, watches the kernel's links, neighbours and routes, ages
the FDB and reloads on SIGHUP.  The packets never see Python: they move in
the C worker threads (datapath.py).

Start-up order: config, underlay link, tunnel claim (so the kernel does not
answer our tunnel traffic), tables and I/O, next hops, control socket,
metrics socket; then the privileges go (privileges.py: only CAP_NET_ADMIN
and CAP_NET_RAW stay) before any thread starts, since every thread keeps
the capabilities it was born with; then the worker threads and the metrics
thread start, and READY=1 goes to systemd.  SIGTERM undoes it all:
the TAPs vanish with their file descriptors, the filters and the claim with
their sockets, so even a killed vtepd leaves nothing behind.

`vtepd -c FILE --check` validates a configuration (the file, then engine
tables built from it) and exits 0 or 1."""
import argparse
import asyncio
import ctypes
import logging
import os
import signal
import socket
import sys
import time

from pyroute2 import AsyncIPRoute

from . import __version__, config, control, metrics, netlink, privileges, tables
from ._engine import VtepError
from .commands import Commands, counters_view
from .datapath import Datapath, PortError

log = logging.getLogger("vtepd")

HOUSEKEEPING_SEC = 1.0   # FDB ageing and the next-hop safety net
# Our traffic bypasses the kernel, so it never confirms a neighbour by
# itself: a STALE one is re-verified at our request (solicit), at most this
# often.  The kernel's own check (DELAY 5 s, then probes) takes longer, so
# asking sooner gains nothing; asking later delays noticing a dead remote.
RESOLICIT_STALE_SEC = 5
TRIM_HEAP_SEC = 60  # see _trim_heap()


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


def notify(state):
    """Tell systemd (Type=notify) about "state", if it is listening."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(path)
            s.sendall(state.encode())
    except OSError as e:
        log.warning("cannot notify %s: %s", path, e)


def drop_privileges():
    """Keep CAP_NET_ADMIN and CAP_NET_RAW only (privileges.py); log what could not be dropped."""
    outcome = privileges.drop()
    if outcome.problems:
        log.warning("privileges not all dropped, carrying on: %s", outcome)
    else:
        log.info("privileges dropped: %s, no other capability, no_new_privs", outcome)


class StartError(Exception):
    """vtepd cannot start; the message says why."""


class Daemon:
    def __init__(self, path, cfg):
        self.path = path
        self.config = cfg
        self.datapath = None
        self.next_hops = {}     # remote address -> netlink.NextHop
        self.solicited = {}     # neighbour address -> when we last asked the kernel to resolve it
        self.port_up = {}       # port name -> link up
        self.commands = Commands(self)
        self._reloading = asyncio.Lock()
        self._refreshing = asyncio.Lock()
        self._refresh_wanted = False
        self._refresher = None  # the task that runs scheduled refreshes
        self._stop = asyncio.Event()

    async def run(self):
        loop = asyncio.get_running_loop()
        v = self.config.vtep
        cleanup = []
        try:
            self.ipr = AsyncIPRoute()
            cleanup.append(self.ipr.close)
            try:
                self.underlay = await netlink.link(self.ipr, v.underlay)
            except netlink.NetlinkError as e:
                raise StartError(f"vtep.underlay: {e.strerror}") from None
            await netlink.set_up(self.ipr, v.underlay)
            try:
                claim = netlink.TunnelClaim(str(v.local), v.destination_port)
            except OSError as e:
                raise StartError(f"vtep.local: {e.strerror or e}") from None
            cleanup.append(claim.close)
            try:
                self.datapath = Datapath(self.config, self.underlay)
            except (PortError, VtepError) as e:
                raise StartError(e.strerror or str(e)) from None
            cleanup.append(self.datapath.close)
            await self._ports_up()
            await self.refresh()

            watcher = netlink.Watcher()
            cleanup.append(watcher.close)
            loop.add_reader(watcher.fileno(), self._on_netlink, watcher)
            cleanup.append(lambda: loop.remove_reader(watcher.fileno()))

            server = control.ControlServer(v.control_socket, self.commands.table())
            try:
                await server.start()
            except OSError as e:
                raise StartError(f"vtep.control_socket: {e.strerror or e}") from None
            cleanup.append(server.stop)
            exporter = None
            if v.metrics:
                host, port = v.metrics
                try:  # bound now: a port below 1024 needs a capability that goes next
                    exporter = metrics.listen(host, port, self._snapshot_from_thread(loop))
                except OSError as e:
                    raise StartError(f"vtep.metrics: {e.strerror or e}") from None
                cleanup.append(exporter.close)

            # Capabilities are per thread and a new thread copies its creator's:
            # drop them here, in the only thread, and start the others after.
            drop_privileges()
            self.datapath.start()
            if exporter is not None:
                exporter.serve()

            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop.set)
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self._on_sighup()))
            housekeeping = asyncio.ensure_future(self._housekeeping())
            cleanup.append(housekeeping.cancel)

            t = self.datapath.tables
            log.info("running: %d segments, %d ports, %d remote VTEPs, %d workers; control socket %s",
                     len(t.segments), len(t.ports), len(t.remotes), v.workers, v.control_socket)
            notify(f"READY=1\nSTATUS=forwarding on {len(t.ports)} ports\nMAINPID={os.getpid()}")
            await self._stop.wait()
            notify("STOPPING=1")
            log.info("stopping")
        finally:
            for undo in reversed(cleanup):
                result = undo()
                if asyncio.iscoroutine(result):
                    await result

    # Keeping the kernel's view and ours in step.

    async def _ports_up(self):
        for p in self.config.ports:
            try:
                await netlink.set_up(self.ipr, p.name)
            except netlink.NetlinkError as e:
                log.warning("port %s: %s", p.name, e.strerror)

    def _on_netlink(self, watcher):
        if watcher.drain():
            self.schedule_refresh()

    def schedule_refresh(self):
        """Refresh soon.  A burst of kernel events makes one or two
        refreshes, not one each: requests made while one runs fold into
        a single run after it."""
        self._refresh_wanted = True
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.ensure_future(self._refresh_while_wanted())

    async def _refresh_while_wanted(self):
        while self._refresh_wanted:
            self._refresh_wanted = False
            await self.refresh()

    async def refresh(self):
        """Next hops of every remote, the underlay's MAC and MTU, and the
        ports' link state, from the kernel; changes go to the engine.
        One at a time: two interleaved refreshes could let the one that read
        the kernel first write last, putting an old next-hop MAC back."""
        async with self._refreshing:
            try:
                await self._refresh()
            except (netlink.NetlinkError, OSError) as e:
                log.warning("reading the kernel's tables: %s", e)

    async def _refresh(self):
        v, engine = self.config.vtep, self.datapath.engine
        underlay = await netlink.link(self.ipr, v.underlay)
        if (underlay.mac, underlay.mtu) != (self.underlay.mac, self.underlay.mtu):
            log.info("underlay %s is now %s, MTU %d", v.underlay, underlay.mac, underlay.mtu)
            engine.set_underlay(underlay.mac, underlay.mtu)
            self.datapath.tables.underlay_mac = underlay.mac
        self.underlay = underlay
        now = time.monotonic()
        for address, rid in list(self.datapath.tables.remotes.items()):
            hop = await netlink.next_hop(self.ipr, underlay.index, address, local=str(v.local))
            old = self.next_hops.get(address)
            if old is None or old.mac != hop.mac:
                engine.set_neighbour(rid, hop.mac)
                log.log(logging.INFO if hop.mac else logging.WARNING, "remote %s: %s%s", address, hop.reason,
                        f" ({hop.mac})" if hop.mac else "; its traffic is dropped until it is")
            self.next_hops[address] = hop
            stale = hop.state == "stale" and now - self.solicited.get(hop.neighbour, 0) > RESOLICIT_STALE_SEC
            if hop.neighbour and (hop.mac is None or stale):
                self.solicited[hop.neighbour] = now
                await netlink.solicit(self.ipr, underlay.index, hop.neighbour)
        for p in self.config.ports:
            try:
                self.port_up[p.name] = (await netlink.link(self.ipr, p.name)).up
            except netlink.NetlinkError:
                # A TAP may live in another namespace (a VM's or a lab
                # host's) while we hold its queues: its state is not ours to see.
                self.port_up[p.name] = None if p.backend == "tap" else False

    def link_up(self, name):
        """True, False, or None when the link is out of our sight."""
        return self.port_up.get(name)

    async def _housekeeping(self):
        trimmed = time.monotonic()
        while True:
            await asyncio.sleep(HOUSEKEEPING_SEC)
            if time.monotonic() - trimmed >= TRIM_HEAP_SEC:
                trimmed = time.monotonic()
                _trim_heap()
            now = int(time.monotonic())
            t = self.datapath.tables
            for seg in t.segments.values():
                t.engine.fdb_expire(seg, now)
            await self.refresh()

    # Reload.

    async def _on_sighup(self):
        try:
            await self.reload()
        except control.RequestError as e:
            log.error("reload refused, the old config stays: %s", e)

    async def reload(self):
        """Read the file again and apply the difference; the changes, or
        RequestError (nothing changed)."""
        async with self._reloading:
            try:
                new = config.load(self.path)
                changes = self.datapath.apply(new)
            except OSError as e:
                raise control.RequestError(f"{self.path}: {e.strerror or e}") from None
            except (config.ConfigError, tables.ReloadError, VtepError) as e:
                raise control.RequestError(f"{self.path}: {e}") from None
            self.config = new
            for change in changes:
                log.info("reload: %s", change)
            if not changes:
                log.info("reload: no changes")
            await self._ports_up()
            await self.refresh()
            return changes

    # Counters, for the control socket and Prometheus.

    def raw_counters(self):
        t = self.datapath.tables
        return {"ports": {n: t.engine.counters("port", pid) for n, pid in t.ports.items()},
                "underlay": t.engine.counters("underlay"),
                "segments": {n: t.engine.counters("segment", sid) for n, sid in t.segments.items()}}

    def snapshot(self):
        raw = self.raw_counters()
        t = self.datapath.tables
        return {"ports": {n: counters_view(c) for n, c in raw["ports"].items()},
                "underlay": counters_view(raw["underlay"]),
                "segments": {n: counters_view(c) for n, c in raw["segments"].items()},
                "fdb_entries": {n: t.engine.fdb_count(sid) for n, sid in t.segments.items()},
                "remotes": {str(a): bool(self.next_hops.get(a) and self.next_hops[a].mac) for a in t.remotes}}

    def _snapshot_from_thread(self, loop):
        """Prometheus scrapes in its own thread: read the tables in ours."""
        async def snap():
            return self.snapshot()
        return lambda: asyncio.run_coroutine_threadsafe(snap(), loop).result(timeout=5)


def _trim_heap():
    """Give the heap's free memory back to the system.  glibc keeps what
    Python frees, and the netlink messages parsed at every refresh (pyroute2)
    leave the heap fragmented: under link churn vtepd's RSS crept up by about
    0.5 MiB a minute, all of it free memory (measured: flat with this, and
    Python's traced allocations flat without it).  A creeping RSS would hide
    a real leak.  Costs a few milliseconds a minute."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


class _JournalFormatter(logging.Formatter):
    """Under journald, a "<priority>" prefix carries the level."""
    PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record):
        return f"<{self.PRIORITY.get(record.levelno, 6)}>{super().format(record)}"


def setup_logging(level):
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s vtepd %(levelname)s: %(message)s"))
    root = logging.getLogger("vtepd")
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False


def main(argv=None):
    parser = argparse.ArgumentParser(prog="vtepd", description="Userspace VXLAN/NVGRE tunnel endpoint.")
    parser.add_argument("-c", "--config", required=True, metavar="FILE", help="configuration file (TOML)")
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit 0 or 1")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                        help="log level (default %(default)s; vtepctl log-level changes it at run time)")
    parser.add_argument("--version", action="version", version=f"vtepd {__version__}")
    args = parser.parse_args(argv)
    ok, message = check(args.config)
    if args.check or not ok:
        print(f"vtepd: {message}", file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    setup_logging(args.log_level)
    try:
        asyncio.run(Daemon(args.config, config.load(args.config)).run())
    except StartError as e:
        log.error("cannot start: %s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
