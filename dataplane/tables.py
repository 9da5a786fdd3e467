"""Configuration to engine tables: the one path from a checked Config to the
fast path.  `vtepd --check` builds tables from nothing, vtepd at start-up
too, and a reload applies only the difference from the running config, so
ports, segments and entries that did not change are never touched and
their traffic goes on.

A reload is checked before anything changes: the [vtep] section must be
the same (a new address or underlay needs a restart), the engine must have
room, and every new port's I/O must open.  Then all changes are made while
the workers are paused between two bursts, so they take effect together."""
import dataclasses

from ._engine import Engine, VtepError
from .config import Config


class ReloadError(ValueError):
    """A new configuration that the running daemon cannot take."""


# [vtep] keys a reload may change: the ports carry their effect (config.Port).
RELOADABLE_VTEP_KEYS = {"bum_rate_limit"}


# Room to grow on reload without a new engine.
def _room(n, least):
    return max(least, 4 * n)


class Tables:
    def __init__(self, vtep, *, underlay_mac="02:00:00:00:00:00", underlay_mtu=1500, max_ports=0,
                 max_segments=0, max_remotes=0):
        """Empty tables for the [vtep] section "vtep" (a config.Vtep)."""
        self.engine = Engine(
            str(vtep.local), underlay_mac=underlay_mac, underlay_mtu=underlay_mtu,
            destination_port=vtep.destination_port, port_range=vtep.port_range, ttl=vtep.ttl,
            udp_checksum=vtep.udp_checksum, max_ports=max_ports or 256, max_segments=max_segments or 64,
            max_remotes=max_remotes or 256)
        self.underlay_mac = underlay_mac
        self.limits = {"ports": max_ports or 256, "segments": max_segments or 64, "remotes": max_remotes or 256}
        self.config = Config(vtep, (), (), ())
        self.segments = {}     # name -> segment id
        self.ports = {}        # name -> port id
        self.remotes = {}      # address -> remote id (never freed: the engine keeps remote ids)
        self.communities = {}  # segment name -> {community name: index}

    @classmethod
    def build(cls, config, io=None, **link):
        """Tables holding "config" ("link": underlay_mac, underlay_mtu)."""
        remotes = {r for s in config.segments for r in s.remote} | {e.remote for e in config.fdb if e.remote}
        t = cls(config.vtep, max_ports=_room(len(config.ports), 256),
                max_segments=_room(len(config.segments), 64), max_remotes=_room(len(remotes), 256), **link)
        t.apply(config, io)
        return t

    def apply(self, new, io=None):
        """Make the tables hold config "new"; returns what changed, one
        sentence each.  "io" opens, attaches and detaches the ports' packet
        I/O (io.open(port) -> handles, io.attach(port_id, handles),
        io.detach(port_id)); without it ports exist only in the tables.
        Raises ReloadError (or OSError from io.open) with nothing changed."""
        old = self.config
        for f in dataclasses.fields(new.vtep):
            if f.name not in RELOADABLE_VTEP_KEYS and getattr(old.vtep, f.name) != getattr(new.vtep, f.name):
                raise ReloadError(f"vtep.{f.name}: changing it needs a restart of vtepd")
        d = _Diff(old, new)
        self._check_room(new)
        handles = {p.name: io.open(p) for p in d.added_ports} if io else {}

        changes = []
        with self.engine.paused():
            for e in d.removed_fdb:
                self.engine.fdb_del(self.segments[e.segment], e.mac)
                changes.append(f"fdb {e.segment} {e.mac} removed")
            for p in d.removed_ports:
                if io:
                    io.detach(self.ports[p.name])
                self.engine.del_port(self.ports.pop(p.name))
                changes.append(f"port {p.name} removed")
            for s in d.removed_segments:
                self.engine.del_segment(self.segments.pop(s.name))
                del self.communities[s.name]
                changes.append(f"segment {s.name} removed")
            for s, address in d.removed_remotes:
                self._drop_remote(s, address)
                changes.append(f"segment {s.name}: remote {address} removed")
            for s in d.added_segments:
                self._add_segment(s)
                changes.append(f"segment {s.name} added")
            for s, address in d.added_remotes:
                self.engine.segment_add_remote(self.segments[s.name], self._remote(address))
                changes.append(f"segment {s.name}: remote {address} added")
            for p in d.added_ports:
                pid = self.engine.add_port(self.segments[p.segment], p.role,
                                           self._community(p.segment, p.community))
                self.ports[p.name] = pid
                self.engine.set_bum_limit(pid, p.bum_rate_limit)
                if io:
                    io.attach(pid, handles.pop(p.name))
                changes.append(f"port {p.name} added")
            for p in d.limited_ports:
                # In place: the port, its I/O and its traffic stay.
                self.engine.set_bum_limit(self.ports[p.name], p.bum_rate_limit)
                changes.append(f"port {p.name}: bum_rate_limit {p.bum_rate_limit or 'unlimited'}")
            for e in d.added_fdb:
                self.add_fdb(e)
                changes.append(f"fdb {e.segment} {e.mac} {'set' if e in d.changed_fdb else 'added'}")
        self.config = new
        return changes

    def _check_room(self, new):
        remotes = set(self.remotes) | {r for s in new.segments for r in s.remote} \
            | {e.remote for e in new.fdb if e.remote}
        for what, n in (("ports", len(new.ports)), ("segments", len(new.segments)), ("remotes", len(remotes))):
            if n > self.limits[what]:
                raise ReloadError(f"{what}: {n} is more than this vtepd has room for "
                                  f"({self.limits[what]}); restart it to grow")

    def _add_segment(self, s):
        seg = self.engine.add_segment(
            s.encapsulation, s.vni, s.isolated_vni, list(s.community_vni.values()),
            mac_learning=s.mac_learning, fdb_ageing_sec=s.fdb_ageing_sec,
            maximum_fdb_entries=s.maximum_fdb_entries)
        self.segments[s.name] = seg
        self.communities[s.name] = {name: i for i, name in enumerate(s.community_vni)}
        for address in s.remote:
            self.engine.segment_add_remote(seg, self._remote(address))

    def _drop_remote(self, s, address):
        """Off the segment's list, and its learned MACs with it: they would
        keep pointing unicast at a VTEP the segment no longer has."""
        seg, rid = self.segments[s.name], self.remotes[address]
        self.engine.segment_del_remote(seg, rid)
        for e in self.engine.fdb_entries(seg):
            if e["kind"] == "remote" and e["target"] == rid and not e["static"]:
                self.engine.fdb_del(seg, e["mac"])

    def add_fdb(self, e):
        """Static entry "e" (a config.FdbEntry) into its segment's FDB."""
        seg = self.segments[e.segment]
        if e.port is not None:
            self.engine.fdb_add(seg, e.mac, port=self.ports[e.port])
        else:
            self.engine.fdb_add(seg, e.mac, remote=self._remote(e.remote), role=e.role,
                                community=self._community(e.segment, e.community))

    def add_fdb_many(self, template, macs):
        """Static entries like "template" (a config.FdbEntry) for each MAC of
        "macs" (checked ones), in one engine call; returns how many were
        added (VtepError, with "added", on a refused one)."""
        seg = self.segments[template.segment]
        if template.port is not None:
            return self.engine.fdb_add_many(seg, macs, port=self.ports[template.port])
        return self.engine.fdb_add_many(seg, macs, remote=self._remote(template.remote), role=template.role,
                                        community=self._community(template.segment, template.community))

    def _remote(self, address):
        if address not in self.remotes:
            self.remotes[address] = self.engine.add_remote(str(address))
        return self.remotes[address]

    def _community(self, segment, name):
        return None if name is None else self.communities[segment][name]


class _Diff:
    """What differs between configs "old" and "new".  A segment whose
    settings changed (anything but its remote list) is removed and added
    again, and so are its ports; a port whose settings changed likewise,
    unless only its bum_rate_limit did; an
    FDB entry whose segment or port is new again is added again."""

    def __init__(self, old, new):
        def core(s):
            return dataclasses.replace(s, remote=())
        old_segs, new_segs = {s.name: s for s in old.segments}, {s.name: s for s in new.segments}
        renewed = {n for n in old_segs if n not in new_segs or core(old_segs[n]) != core(new_segs[n])}
        self.removed_segments = [old_segs[n] for n in old_segs if n in renewed]
        self.added_segments = [s for n, s in new_segs.items() if n not in old_segs or n in renewed]
        kept = [n for n in new_segs if n in old_segs and n not in renewed]
        self.removed_remotes = [(new_segs[n], a) for n in kept for a in old_segs[n].remote
                                if a not in new_segs[n].remote]
        self.added_remotes = [(new_segs[n], a) for n in kept for a in new_segs[n].remote
                              if a not in old_segs[n].remote]

        def port_core(p):
            return p and dataclasses.replace(p, bum_rate_limit=0)
        old_ports, new_ports = {p.name: p for p in old.ports}, {p.name: p for p in new.ports}
        renewed_ports = {n for n, p in old_ports.items()
                         if port_core(new_ports.get(n)) != port_core(p) or p.segment in renewed}
        # A port whose only change is its limit keeps running; the limit changes in place.
        self.limited_ports = [p for n, p in new_ports.items()
                              if n in old_ports and n not in renewed_ports and old_ports[n] != p]
        self.removed_ports = [old_ports[n] for n in old_ports if n in renewed_ports]
        self.added_ports = [p for n, p in new_ports.items() if n not in old_ports or n in renewed_ports]

        old_fdb, new_fdb = {(e.segment, e.mac): e for e in old.fdb}, {(e.segment, e.mac): e for e in new.fdb}
        # Entries of a removed segment or port go with it; a changed entry is
        # replaced in place.
        self.removed_fdb = [e for k, e in old_fdb.items()
                            if k not in new_fdb and e.segment not in renewed and e.port not in renewed_ports]
        self.changed_fdb = [e for k, e in new_fdb.items() if k in old_fdb and old_fdb[k] != e]
        self.added_fdb = [e for k, e in new_fdb.items()
                          if old_fdb.get(k) != e or e.segment in renewed or e.port in renewed_ports]


def build(config, **link):
    """Tables holding "config", without I/O (vtepd --check, tests)."""
    return Tables.build(config, **link)


__all__ = ["Tables", "ReloadError", "build", "VtepError"]
