"""vtepctl trace: what the pipeline does with one frame, step by step,
without sending it.

The verdict and the outputs are the engine's own: the frame runs through
the real pipeline on a probe worker, which learns nothing and counts
nothing.  The steps before them explain that result from the same tables
(the port's role, the VNI's role, the FDB entry, the PVLAN rule), so what
trace says is what a real frame would meet."""
import ipaddress

from . import packet
from ._engine import PKT_CSUM_OK, pvlan_allows, pvlan_class, role_of_class

BROADCAST = "ff:ff:ff:ff:ff:ff"


class TraceError(ValueError):
    pass


def _mac(raw):
    return ":".join(f"{b:02x}" for b in raw)


class _Names:
    """Ids and classes of the tables in words."""

    def __init__(self, tables):
        self.t = tables
        self.port = {pid: name for name, pid in tables.ports.items()}
        self.remote = {rid: str(a) for a, rid in tables.remotes.items()}

    def role(self, segment, cls):
        role, index = role_of_class(cls)
        if role is None:
            return "role unknown"
        if role == "community":
            names = {i: n for n, i in self.t.communities[segment].items()}
            return f"community {names.get(index, index)}"
        return role

    def port_class(self, name):
        p = next(p for p in self.t.config.ports if p.name == name)
        return pvlan_class(p.role, self.t.communities[p.segment].get(p.community))


def trace(tables, frame, *, port=None, underlay=None, now=0):
    """{"steps": [{"step", "detail"}], "verdict", "outputs"} for "frame"
    entering on access "port" (a name) or, with "underlay" (a dict, maybe
    empty: "frame" is then a whole tunnel packet; or {"remote", "vni"}: it is
    wrapped as that remote would), from the underlay."""
    names = _Names(tables)
    steps = []

    def step(what, detail):
        steps.append({"step": what, "detail": detail})

    engine = tables.engine
    if port is not None:
        if port not in tables.ports:
            raise TraceError(f"no port named {port!r}")
        cfg = next(p for p in tables.config.ports if p.name == port)
        segment, cls = cfg.segment, names.port_class(port)
        step("ingress", f"port {port}: segment {segment}, {names.role(segment, cls)}")
        inner = frame
        verdicts, outputs = engine.access(tables.ports[port], [frame], now, probe=True)
    else:
        frame = _wrap(tables, frame, underlay) if underlay else frame
        segment, cls, inner = _explain_outer(tables, names, frame, step)
        verdicts, outputs = engine.underlay([frame], now, flags=[PKT_CSUM_OK], probe=True)

    if segment is not None and inner is not None and len(inner) >= 14:
        _explain_inner(tables, names, segment, cls, inner, port, step, now)
    verdict = packet.DROP_REASONS[verdicts[0]] if verdicts[0] else "forwarded"
    port_number = tables.config.vtep.destination_port
    outs = [_output(names, kind, target, data, port_number) for _, kind, target, data in outputs]
    return {"steps": steps, "verdict": verdict, "outputs": outs}


def _wrap(tables, inner, how):
    """"inner" as remote how["remote"] would send it with VNI how["vni"]."""
    try:
        remote, vni = ipaddress.ip_address(how["remote"]), int(how["vni"])
    except (KeyError, ValueError, TypeError):
        raise TraceError("underlay: give the remote address and the VNI") from None
    encapsulation = next((s.encapsulation for s in tables.config.segments if vni in s.vnis()), "vxlan")
    v = tables.config.vtep
    try:
        tunnel = packet.Tunnel(encapsulation, str(remote), str(v.local), dst_mac=tables.underlay_mac,
                               destination_port=v.destination_port)
    except ValueError as e:
        raise TraceError(f"underlay: {e}") from None
    return tunnel.encap(vni, inner)


def _explain_outer(tables, names, frame, step):
    """Steps for the outer headers; (segment, sender class, inner frame) or
    Nones when the frame stops there."""
    try:
        d = packet.decap(frame, tables.config.vtep.destination_port, verify_checksum=False)
    except packet.DecapError as e:
        step("outer", f"not a tunnel packet vtep takes: {e.reason}")
        return None, None, None
    step("outer", f"{d.encapsulation} from {d.src} to {d.dst}, VNI {d.vni}")
    for s in tables.config.segments:
        if s.encapsulation != d.encapsulation or d.vni not in s.vnis():
            continue
        cls = _sender_class(tables, s, d.vni)
        role = names.role(s.name, cls)
        step("vni", f"VNI {d.vni} is segment {s.name}'s {role} VNI: the sender is {role}")
        if s.remote and ipaddress.ip_address(d.src) not in s.remote:
            step("remote", f"{d.src} is not in segment {s.name}'s remote list")
        return s.name, cls, d.inner
    step("vni", f"no segment has {d.encapsulation} VNI {d.vni}")
    return None, None, None


def _sender_class(tables, s, vni):
    """The class a VNI of segment "s" gives its senders."""
    if vni == s.vni:
        return pvlan_class("promiscuous")
    if vni == s.isolated_vni:
        return pvlan_class("isolated")
    name = next(n for n, v in s.community_vni.items() if v == vni)
    return pvlan_class("community", tables.communities[s.name][name])


def _explain_inner(tables, names, segment, cls, inner, port, step, now):
    engine, seg = tables.engine, tables.segments[segment]
    dst, src = _mac(inner[:6]), _mac(inner[6:12])
    step("frame", f"{src} -> {dst}, ethertype 0x{int.from_bytes(inner[12:14], 'big'):04x}, {len(inner)} bytes")
    cfg = next(s for s in tables.config.segments if s.name == segment)
    known = engine.fdb_get(seg, src, now) if not int(src[:2], 16) & 1 and src != "00:00:00:00:00:00" else None
    if not cfg.mac_learning:
        step("learn", "MAC learning is off in this segment")
    elif known and known["role"] is not None and pvlan_class(known["role"], known["community"]) != cls:
        # The MAC-move policy (docs/fastpath.md): one role per MAC in a segment.
        step("learn", f"{src} belongs to another role ({_where(names, known)}): "
                      "the frame is dropped (foreign_src_mac)")
        return
    elif known and known["static"]:
        step("learn", f"{src} has a static entry ({_where(names, known)}): it never moves")
    else:
        step("learn", f"{src} would be learned here" + (f" (now {_where(names, known)})" if known else ""))

    if int(dst[:2], 16) & 1:
        step("lookup", f"{dst} is {'broadcast' if dst == BROADCAST else 'multicast'}: flood")
        _explain_flood(tables, names, segment, cls, port, step)
        return
    entry = engine.fdb_get(seg, dst, now)
    if entry is None:
        step("lookup", f"{dst} is not in the FDB: flood (unknown unicast)")
        _explain_flood(tables, names, segment, cls, port, step)
        return
    step("lookup", f"{dst} is {_where(names, entry)}")
    to = entry["role"]
    if to is None:
        step("pvlan", "the destination's role is not known here: the receiving VTEP decides")
        return
    target_cls = pvlan_class(entry["role"], entry["community"])
    verdict = "allowed" if pvlan_allows(cls, target_cls) else "denied"
    step("pvlan", f"{names.role(segment, cls)} -> {names.role(segment, target_cls)}: {verdict}")


def _explain_flood(tables, names, segment, cls, port, step):
    allowed, denied = [], []
    for p in tables.config.ports:
        if p.segment != segment or p.name == port:
            continue
        (allowed if pvlan_allows(cls, names.port_class(p.name)) else denied).append(p.name)
    step("pvlan", f"{names.role(segment, cls)} may reach ports: {', '.join(allowed) or 'none'}"
                  + (f"; not: {', '.join(denied)}" if denied else ""))
    if port is not None:
        remotes = next(s.remote for s in tables.config.segments if s.name == segment)
        step("replicate", f"one copy to each remote VTEP: {', '.join(map(str, remotes)) or 'none'}")
    else:
        step("replicate", "never back to the underlay (split horizon)")


def _where(names, entry):
    if entry["kind"] == "local":
        return f"behind port {names.port.get(entry['target'], entry['target'])}"
    role = entry["role"] or "role unknown"
    return f"behind remote {names.remote.get(entry['target'], entry['target'])} ({role})"


def _output(names, kind, target, data, destination_port):
    if kind == "port":
        return {"kind": "port", "target": names.port.get(target, str(target)), "vni": None, "length": len(data)}
    vni = packet.decap(data, destination_port, verify_checksum=False).vni
    return {"kind": "underlay", "target": names.remote.get(target, str(target)), "vni": vni, "length": len(data)}
