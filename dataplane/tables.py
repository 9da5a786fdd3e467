"""Turn a checked Config into engine tables: the one path from configuration
to the fast path (vtepd --check uses it too, so what it accepts the engine
accepts)."""
from dataclasses import dataclass

from ._engine import Engine, VtepError


@dataclass
class Tables:
    engine: Engine
    segments: dict  # name -> segment id
    ports: dict  # name -> port id
    remotes: dict  # address -> remote id
    communities: dict  # segment name -> {community name: index}


def build(config, *, underlay_mac="02:00:00:00:00:00", underlay_mtu=1500):
    """An Engine holding "config"'s segments, ports, remotes and static FDB.
    Raises VtepError if the engine refuses something the checks let through."""
    v = config.vtep
    engine = Engine(
        str(v.local), underlay_mac=underlay_mac, underlay_mtu=underlay_mtu,
        destination_port=v.destination_port, port_range=v.port_range, ttl=v.ttl,
        udp_checksum=v.udp_checksum,
        # Room to grow on reload without rebuilding the engine.
        max_ports=max(64, 2 * len(config.ports)), max_segments=max(16, 2 * len(config.segments)),
        max_remotes=max(64, 2 * len({r for s in config.segments for r in s.remote} | {e.remote for e in config.fdb})),
    )
    t = Tables(engine, {}, {}, {}, {})
    for s in config.segments:
        t.segments[s.name] = engine.add_segment(
            s.encapsulation, s.vni, s.isolated_vni, list(s.community_vni.values()),
            mac_learning=s.mac_learning, fdb_ageing_sec=s.fdb_ageing_sec,
            maximum_fdb_entries=s.maximum_fdb_entries)
        t.communities[s.name] = {name: i for i, name in enumerate(s.community_vni)}
        for address in s.remote:
            engine.segment_add_remote(t.segments[s.name], _remote(t, address))
    for p in config.ports:
        t.ports[p.name] = engine.add_port(t.segments[p.segment], p.role, _community(t, p.segment, p.community))
    for e in config.fdb:
        seg = t.segments[e.segment]
        if e.port is not None:
            engine.fdb_add(seg, e.mac, port=t.ports[e.port])
        else:
            engine.fdb_add(seg, e.mac, remote=_remote(t, e.remote), role=e.role,
                           community=_community(t, e.segment, e.community))
    return t


def _remote(t, address):
    if address not in t.remotes:
        t.remotes[address] = t.engine.add_remote(str(address))
    return t.remotes[address]


def _community(t, segment, name):
    return None if name is None else t.communities[segment][name]


__all__ = ["Tables", "build", "VtepError"]
