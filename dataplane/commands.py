"""The control socket's commands: each takes the request's "args" (a dict)
and returns a JSON-able result, or raises control.RequestError.  They run
in the daemon's one control thread, so they never race with a reload or
with each other.  Result shapes are what vtepctl prints (cli.py)."""
import logging
import re
import time

from . import __version__, config, trace
from ._engine import VtepError
from .control import RequestError
from .packet import DROP_REASONS


def counters_view(raw, baseline=None):
    """Engine counters as the protocol spells them, minus "baseline"."""
    base = baseline or {"drops": [0] * len(DROP_REASONS)}
    out = {k: raw[k] - base.get(k, 0)
           for k in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "learn_refused", "forwarded")}
    # Index 0 is "none", the verdict of a frame that went out.
    out["drops"] = {DROP_REASONS[i]: n - base["drops"][i] for i, n in enumerate(raw["drops"]) if i}
    return out


def _args(args, required=(), optional=()):
    unknown = set(args) - set(required) - set(optional)
    if unknown:
        raise RequestError(f"unknown argument {sorted(unknown)[0]!r}")
    for name in required:
        if args.get(name) is None:
            raise RequestError(f"missing argument {name!r}")
    return [args.get(n) for n in (*required, *optional)]


class Commands:
    def __init__(self, daemon):
        self.d = daemon
        self.baseline = {}  # ("port"|"underlay"|"segment", name) -> counters at the last clear

    def table(self):
        """Command name -> handler, for control.ControlServer."""
        return {
            "show-segments": self.show_segments, "show-ports": self.show_ports, "show-fdb": self.show_fdb,
            "show-remotes": self.show_remotes, "show-counters": self.show_counters,
            "fdb-add": self.fdb_add, "fdb-del": self.fdb_del, "fdb-flush": self.fdb_flush,
            "counters-clear": self.counters_clear, "reload": self.reload, "trace": self.trace,
            "log-level": self.log_level, "version": self.version,
        }

    @property
    def tables(self):
        return self.d.datapath.tables

    def _segment(self, name):
        if name not in self.tables.segments:
            raise RequestError(f"no segment named {name!r}")
        return self.tables.segments[name]

    def show_segments(self, args):
        _args(args)
        t = self.tables
        return [{"name": s.name, "encapsulation": s.encapsulation, "vni": s.vni, "isolated_vni": s.isolated_vni,
                 "community_vni": dict(s.community_vni), "remote": [str(r) for r in s.remote],
                 "mac_learning": s.mac_learning, "fdb_entries": t.engine.fdb_count(t.segments[s.name]),
                 "maximum_fdb_entries": s.maximum_fdb_entries} for s in t.config.segments]

    def show_ports(self, args):
        _args(args)
        t = self.tables
        result = []
        for p in t.config.ports:
            c = t.engine.counters("port", t.ports[p.name])
            result.append({"name": p.name, "backend": p.backend, "segment": p.segment, "role": p.role,
                           "community": p.community, "bum_rate_limit": p.bum_rate_limit,
                           "up": self.d.link_up(p.name),
                           "rx_packets": c["rx_packets"], "tx_packets": c["tx_packets"],
                           "drops": sum(c["drops"])})
        return result

    def show_fdb(self, args):
        (segment,) = _args(args, optional=("segment",))
        t, now = self.tables, int(time.monotonic())
        names = [segment] if segment is not None else list(t.segments)
        ports = {pid: name for name, pid in t.ports.items()}
        remotes = {rid: str(a) for a, rid in t.remotes.items()}
        entries = []
        for name in names:
            seg = self._segment(name)
            communities = {i: c for c, i in t.communities[name].items()}
            for e in sorted(t.engine.fdb_entries(seg), key=lambda e: e["mac"]):
                local = e["kind"] == "local"
                entries.append({
                    "segment": name, "mac": e["mac"], "kind": e["kind"],
                    "target": ports.get(e["target"]) if local else remotes.get(e["target"]),
                    "role": e["role"], "community": communities.get(e["community"]),
                    "static": e["static"], "age": None if e["static"] else max(0, now - e["last_seen"])})
        return entries

    def show_remotes(self, args):
        _args(args)
        t = self.tables
        result = []
        for address in t.remotes:
            hop = self.d.next_hops.get(address)
            result.append({"address": str(address),
                           "segments": [s.name for s in t.config.segments if address in s.remote],
                           "next_hop": hop.mac if hop else None,
                           "reason": hop.reason if hop else "not looked up yet"})
        return result

    def show_counters(self, args):
        _args(args)
        raw = self.d.raw_counters()
        return {"ports": {n: counters_view(c, self.baseline.get(("port", n))) for n, c in raw["ports"].items()},
                "underlay": counters_view(raw["underlay"], self.baseline.get(("underlay", None))),
                "segments": {n: counters_view(c, self.baseline.get(("segment", n)))
                             for n, c in raw["segments"].items()}}

    def counters_clear(self, args):
        """Counters only grow in the engine (Prometheus needs that): clearing
        keeps a baseline that `show counters` subtracts."""
        _args(args)
        raw = self.d.raw_counters()
        self.baseline = {("underlay", None): raw["underlay"]}
        self.baseline.update({("port", n): c for n, c in raw["ports"].items()})
        self.baseline.update({("segment", n): c for n, c in raw["segments"].items()})
        return None

    def fdb_add(self, args):
        """One entry, or a batch {"entries": [...]}: a batch is checked as a
        whole first, so a bad entry anywhere adds nothing."""
        if "entries" in args:
            (batch,) = _args(args, ("entries",))
            if not isinstance(batch, list):
                raise RequestError('"entries" must be a list of entries')
            runs = self._fdb_runs(batch)
        else:
            segment, mac, port, remote, role, community = _args(
                args, ("segment", "mac"), ("port", "remote", "role", "community"))
            entry = {"segment": segment, "mac": mac}
            entry.update({k: v for k, v in (("port", port), ("remote", remote), ("role", role),
                                            ("community", community)) if v is not None})
            checked = self._fdb_entry(entry, "fdb")
            runs = [(checked, [checked.mac])]
        new_remote = any(t.remote is not None and t.remote not in self.tables.remotes for t, _ in runs)
        total = sum(len(macs) for _, macs in runs)
        added = 0
        try:
            for template, macs in runs:
                added += self.tables.add_fdb_many(template, macs)
        except VtepError as err:
            added += err.added
            where = f" (entry {added}; the {added} before it were added)" if total > 1 else ""
            raise RequestError(f"fdb add: {err.strerror}{where}") from None
        finally:
            if new_remote:
                self.d.schedule_refresh()  # resolve its next hop now, not at the next tick
        return {"added": added} if "entries" in args else None

    def _fdb_runs(self, batch):
        """The batch, checked as a whole, as runs (template, [MAC, ...]) of
        consecutive entries that differ only in their MAC, in order (a MAC
        given twice ends as its last entry says).  The first entry of each
        shape gets the file's full check; the others, identical but for the
        MAC, only a check of their MAC: a million entries take seconds."""
        runs, checked = [], {}
        for i, entry in enumerate(batch):
            shape = _shape(entry)
            template = checked.get(shape) if shape is not None else None
            if template is None:
                template = self._fdb_entry(entry, f"entries[{i}]")
                if shape is not None:
                    checked[shape] = template
                mac = template.mac
            else:
                mac = entry["mac"]
                if not (type(mac) is str and _canonical_mac(mac) and mac[1] in "02468ace" and mac != _ZERO_MAC):
                    mac = self._fdb_mac(mac, f"entries[{i}].mac")  # not canonical, or refused
            if runs and runs[-1][0] is template:
                runs[-1][1].append(mac)
            else:
                runs.append((template, [mac]))
        return runs

    def _fdb_mac(self, text, key):
        try:
            return config.mac(text, key)
        except config.ConfigError as err:
            raise RequestError(str(err)) from None

    def _fdb_entry(self, entry, key):
        # The config file's checks, so an entry is valid here exactly when it
        # would be valid in the file.
        try:
            return config.fdb_entry(entry, key, self.tables.config)
        except config.ConfigError as err:
            raise RequestError(str(err)) from None

    def fdb_del(self, args):
        segment, mac = _args(args, ("segment", "mac"))
        try:
            self.tables.engine.fdb_del(self._segment(segment), _any_mac(mac))
        except ValueError as err:
            raise RequestError(str(err)) from None
        except VtepError:
            raise RequestError(f"no entry for {mac} in segment {segment}") from None
        return None

    def fdb_flush(self, args):
        segment, static = _args(args, optional=("segment", "static"))
        names = [segment] if segment is not None else list(self.tables.segments)
        removed = sum(self.tables.engine.fdb_flush(self._segment(n), bool(static)) for n in names)
        return {"removed": removed}

    async def reload(self, args):
        _args(args)
        return {"changes": await self.d.reload()}

    def trace(self, args):
        frame, port, underlay = _args(args, ("frame",), ("port", "underlay"))
        if (port is None) == (underlay is None):
            raise RequestError("give exactly one of port and underlay")
        try:
            raw = bytes.fromhex(frame)
        except (TypeError, ValueError):
            raise RequestError("frame: not hexadecimal") from None
        if not 0 < len(raw) <= 65535:
            raise RequestError("frame: 1 to 65535 bytes")
        try:
            return trace.trace(self.tables, raw, port=port, underlay=underlay, now=int(time.monotonic()))
        except trace.TraceError as e:
            raise RequestError(str(e)) from None

    def log_level(self, args):
        (level,) = _args(args, ("level",))
        if not isinstance(level, str) or level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise RequestError("level: one of debug, info, warning, error")
        logging.getLogger("vtepd").setLevel(level.upper())
        logging.getLogger("vtepd").info("log level set to %s", level.lower())
        return {"level": level.lower()}

    def version(self, args):
        return {"version": __version__}


# A unicast MAC as config.mac() writes it: lower case, colons.  Such a MAC
# passes its check unchanged, so a batch takes it without calling it.
_canonical_mac = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}").fullmatch
_ZERO_MAC = "00:00:00:00:00:00"


def _shape(entry):
    """What an fdb entry says besides its MAC, hashable; None when it can
    share no check (not a table, no MAC, values that are lists or tables)."""
    if type(entry) is not dict or "mac" not in entry:
        return None
    rest = dict(entry)
    del rest["mac"]
    shape = tuple(rest.items())
    try:
        hash(shape)
    except TypeError:
        return None
    return shape


def _any_mac(text):
    """fdb del takes any MAC: entries of odd MACs may exist only to be deleted."""
    raw = bytes.fromhex(str(text).replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"mac: not a MAC address: {text!r}")
    return raw
