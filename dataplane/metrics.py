"""The Prometheus endpoint of vtepd (DESIGN.md section 4, "Counters").

    server = metrics.start("127.0.0.1", 9477, snapshot)   # from vtep.metrics
    # or metrics.listen(...) now and server.serve() later
    ...
    server.close()                                         # or server.shutdown()

"snapshot" is a callable given by the daemon.  Every scrape calls it once
(from the HTTP server's thread, so it must be safe to call from there) and
turns what it returns into metrics; nothing is cached or kept between
scrapes, so the numbers are always the engine's own.  It returns

    {"ports":       {port_name: C},
     "underlay":    C,
     "segments":    {segment_name: C},
     "fdb_entries": {segment_name: n},
     "remotes":     {address: resolved_bool}}

where C = {"rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "forwarded",
"learn_refused", "drops": {reason: n}} (the reasons are csrc/vtep_error.def's
counter names; whichever reasons C lists are exported, zeros included).
A missing section or key counts as empty or zero.

Exported (counters end in _total):

    vtep_port_{receive,transmit}_{packets,bytes}_total{port}
    vtep_port_forwarded_packets_total{port}   received frames sent on (a flood once)
    vtep_port_drops_total{port,reason}
    vtep_underlay_{receive,transmit}_{packets,bytes}_total
    vtep_underlay_forwarded_packets_total
    vtep_underlay_drops_total{reason}
    vtep_segment_{receive,transmit}_{packets,bytes}_total{segment}
    vtep_segment_forwarded_packets_total{segment}
    vtep_segment_drops_total{segment,reason}
    vtep_segment_learn_refused_total{segment}
    vtep_drops_total{reason}          every port's drops plus the underlay's
    vtep_fdb_entries{segment}         gauge
    vtep_remote_resolved{remote}      gauge, 1 when the remote's next hop is resolved
    vtep_info{version}                1

vtep_drops_total adds up ports and underlay only: the engine counts each
dropped frame once, on the port or underlay where it came in, and the
segment counters are another view of the same drops, so adding them too
would count a frame twice.

The endpoint has its own CollectorRegistry (not prometheus_client's global
one), so several daemons or tests in one process never see each other's
metrics, and nothing else (process or platform collectors) shows up in it."""
import socket
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from . import __version__

# (snapshot key, metric name part, help text part); one counter family each.
_TRAFFIC = (
    ("rx_packets", "receive_packets", "Frames received"),
    ("rx_bytes", "receive_bytes", "Bytes received"),
    ("tx_packets", "transmit_packets", "Frames transmitted"),
    ("tx_bytes", "transmit_bytes", "Bytes transmitted"),
    # With the drops it accounts for every frame received (tests/soak.py checks it).
    ("forwarded", "forwarded_packets", "Received frames sent on (a flooded frame once)"),
)

# (snapshot section, metric prefix, label name or None, where the counters are).
_SCOPES = (
    ("ports", "vtep_port", "port", "on the access port"),
    ("underlay", "vtep_underlay", None, "on the underlay"),
    ("segments", "vtep_segment", "segment", "in the segment"),
)


class VtepCollector:
    """A prometheus_client collector over "snapshot" (see the module doc)."""

    def __init__(self, snapshot, version=__version__):
        self._snapshot = snapshot
        self._version = version

    def collect(self):
        snap = self._snapshot() or {}
        total_drops = {}
        for section, prefix, label, where in _SCOPES:
            # The underlay is one unlabelled counter set; ports and segments are keyed by name.
            items = {(): snap.get(section) or {}} if label is None else \
                {(name,): c for name, c in (snap.get(section) or {}).items()}
            labels = [] if label is None else [label]
            for key, part, text in _TRAFFIC:
                family = CounterMetricFamily(f"{prefix}_{part}", f"{text} {where}", labels=labels)
                for values, c in items.items():
                    family.add_metric(list(values), c.get(key, 0))
                yield family
            drops = CounterMetricFamily(f"{prefix}_drops", f"Frames dropped {where}, by reason",
                                        labels=[*labels, "reason"])
            for values, c in items.items():
                for reason, n in (c.get("drops") or {}).items():
                    drops.add_metric([*values, reason], n)
                    if section != "segments":
                        total_drops[reason] = total_drops.get(reason, 0) + n
            yield drops
            if section == "segments":
                refused = CounterMetricFamily(
                    "vtep_segment_learn_refused",
                    "MACs not learned, their frames forwarded: the segment's FDB was full, or a static "
                    "entry of the same role holds the MAC elsewhere",
                    labels=["segment"])
                for values, c in items.items():
                    refused.add_metric(list(values), c.get("learn_refused", 0))
                yield refused

        drops = CounterMetricFamily("vtep_drops", "Frames dropped, by reason (all ports and the underlay)",
                                    labels=["reason"])
        for reason, n in sorted(total_drops.items()):
            drops.add_metric([reason], n)
        yield drops

        fdb = GaugeMetricFamily("vtep_fdb_entries", "MAC entries in the segment's FDB", labels=["segment"])
        for segment, n in (snap.get("fdb_entries") or {}).items():
            fdb.add_metric([segment], n)
        yield fdb

        remotes = GaugeMetricFamily("vtep_remote_resolved",
                                    "1 when the remote VTEP's underlay next hop is resolved, else 0",
                                    labels=["remote"])
        for address, resolved in (snap.get("remotes") or {}).items():
            remotes.add_metric([str(address)], 1 if resolved else 0)
        yield remotes

        yield InfoMetricFamily("vtep", "vtep version", value={"version": self._version})


class MetricsServer:
    """The endpoint: "address" and "port" (the bound one, useful with port 0);
    serve() starts its thread, close() or shutdown() stops it and frees the
    socket."""

    def __init__(self, httpd, registry):
        self._httpd = httpd
        self._thread = None
        self._lock = threading.Lock()
        self.registry = registry
        self.address, self.port = httpd.server_address[:2]

    def serve(self):
        """Answer scrapes from a daemon thread (and one thread per request)."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="vtep-metrics", daemon=True)
        self._thread.start()
        return self

    @property
    def url(self):
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}/metrics"

    def close(self):
        """Stop serving and close the socket; safe to call more than once."""
        with self._lock:
            if self._httpd is None:
                return
            httpd, self._httpd = self._httpd, None
        if self._thread is not None:  # shutdown() waits for serve_forever(): only if it runs
            httpd.shutdown()
            self._thread.join(timeout=5)
        httpd.server_close()

    shutdown = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def registry_for(snapshot, version=__version__):
    """A fresh registry holding only the vtep collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(VtepCollector(snapshot, version))
    return registry


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in progress does not hold vtepd's exit


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass  # no line on stderr per scrape


def listen(address, port, snapshot):
    """Bind http://address:port/metrics (any path answers) for the metrics of
    "snapshot", without serving yet: serve() starts the thread.  vtepd binds
    before it drops its privileges (a port below 1024 needs
    CAP_NET_BIND_SERVICE) and starts threads after (privileges.py).  "port"
    0 picks a free port (see .port).  Raises OSError when the address cannot
    be bound."""
    registry = registry_for(snapshot)
    server_class = _Server6 if ":" in address else _Server
    httpd = make_server(address, port, make_wsgi_app(registry), server_class, handler_class=_QuietHandler)
    return MetricsServer(httpd, registry)


def start(address, port, snapshot):
    """listen() and serve(): the metrics of "snapshot" on
    http://address:port/metrics from a daemon thread."""
    return listen(address, port, snapshot).serve()
