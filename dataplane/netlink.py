"""vtepd's only window on the kernel's network configuration (pyroute2, never `ip`).

Four things, top to bottom:

1. Links: `link()` looks an interface up by name, `set_up()` brings it up.
2. Next hops: `next_hop()` asks the kernel's route table which neighbour a remote
   VTEP is reached through and whether that neighbour's MAC is known;
   `solicit()` makes the kernel resolve it (DESIGN.md 3, "Underlay next hop").
3. Watching: `Watcher` tells the control loop when links, neighbours or routes
   changed, so it can ask `next_hop()` again.
4. `TunnelClaim` keeps the kernel's IP stack from answering tunnel packets that
   vtepd consumes through AF_PACKET (no ICMP port/protocol unreachable).

The netlink calls are coroutines on a pyroute2 `AsyncIPRoute`, because vtepd's
control thread runs an asyncio loop: pyroute2 0.9's synchronous `IPRoute` runs
its own event loop for every call and raises "Cannot run the event loop while
another loop is running" when called from inside one.  Open the `AsyncIPRoute`
inside the running loop.  Outside a loop (scripts, tests) use
`asyncio.run(...)`.  `Watcher` and `TunnelClaim` are plain sockets and work
either way.
"""
import ctypes
import errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

from pyroute2 import netns
from pyroute2.netlink import NETLINK_ROUTE, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError as _KernelError
from pyroute2.netlink.rtnl import (
    RTM_DELLINK,
    RTM_DELNEIGH,
    RTM_DELROUTE,
    RTM_GETLINK,
    RTM_GETNEIGH,
    RTM_GETROUTE,
    RTM_NEWLINK,
    RTM_NEWNEIGH,
    RTM_NEWROUTE,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
    RTMGRP_NEIGH,
    rt_type,
)
from pyroute2.netlink.rtnl.ifinfmsg import IFF_RUNNING, IFF_UP
from pyroute2.netlink.rtnl.ndmsg import (
    NTF_USE,
    NUD_DELAY,
    NUD_NOARP,
    NUD_NONE,
    NUD_PERMANENT,
    NUD_PROBE,
    NUD_REACHABLE,
    NUD_STALE,
)
from pyroute2.netlink.rtnl.ndmsg import states as _NUD_BY_NAME


class NetlinkError(OSError):
    """The kernel refused or could not answer a request; `errno` is its code."""


class ClaimError(OSError):
    """A TunnelClaim could not take its address and port."""


def _family(addr):
    return socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET


# pyroute2 0.9.5 sends "get" requests with NLM_F_ACK and returns on the first
# answer; the ACK that follows then stays in the socket's backlog queue for
# good (one leaked message per call, measured).  Asking without NLM_F_ACK
# (the command as a (type, flags) pair) gets the one answer and nothing more.
def _get(msg_type):
    return (msg_type, NLM_F_REQUEST)


# --- 1. Links ------------------------------------------------------------------

@dataclass(frozen=True)
class Link:
    index: int
    name: str
    mac: str | None   # "aa:bb:cc:dd:ee:ff"; None for links without one (tun, ip tunnels)
    mtu: int
    up: bool          # administratively up (IFF_UP)
    running: bool     # operationally up: carrier and all (IFF_RUNNING)


def _link_from(msg):
    return Link(index=msg["index"], name=msg.get("IFLA_IFNAME"), mac=msg.get("IFLA_ADDRESS"),
                mtu=msg.get("IFLA_MTU"), up=bool(msg["flags"] & IFF_UP),
                running=bool(msg["flags"] & IFF_RUNNING))


async def link(ipr, name):
    """The interface called `name`; NetlinkError if there is none."""
    try:
        (msg,) = await ipr.link(_get(RTM_GETLINK), ifname=name)
    except _KernelError as e:
        if e.code == errno.ENODEV:
            raise NetlinkError(errno.ENODEV, f"no interface named {name!r}") from None
        raise NetlinkError(e.code, f"interface {name!r}: {os.strerror(e.code)}") from None
    return _link_from(msg)


async def _link_by_index(ipr, index):
    try:
        (msg,) = await ipr.link(_get(RTM_GETLINK), index=index)
    except _KernelError as e:
        raise NetlinkError(e.code, f"interface #{index}: {os.strerror(e.code)}") from None
    return _link_from(msg)


async def set_up(ipr, name):
    """Bring the interface `name` up (a no-op when it already is)."""
    current = await link(ipr, name)
    if current.up:
        return
    try:
        await ipr.link("set", index=current.index, state="up")
    except _KernelError as e:
        raise NetlinkError(e.code, f"cannot bring {name!r} up: {os.strerror(e.code)}") from None


# --- 2. Next hops for remote VTEPs ---------------------------------------------

@dataclass(frozen=True)
class NextHop:
    """Where frames for one remote VTEP go on the underlay.

    `mac` is the outer destination MAC, or None when frames to this remote
    must be dropped for now; `reason` says why in words for people.
    `neighbour` is the address to resolve on the underlay (the gateway, or the
    remote itself when on-link), set whenever the route uses the underlay, so
    that `solicit(ipr, underlay_index, hop.neighbour)` can fix an unresolved one.
    `state` is the kernel's neighbour state ("reachable", "stale", ..., "none"
    when there is no entry), None when no neighbour was looked at."""
    mac: str | None
    reason: str
    neighbour: str | None = None
    state: str | None = None


# A neighbour in these states has a usable link-layer address.  STALE is
# usable but never re-verified by itself here: vtepd's traffic bypasses the
# kernel, which therefore never sees it and never probes.  solicit() on a
# STALE entry makes the kernel re-verify it (DELAY, PROBE, then REACHABLE or
# FAILED).
_RESOLVED = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP
_NUD_NAME = {value: name for name, value in _NUD_BY_NAME.items()}


def _state_name(state):
    return _NUD_NAME.get(state, hex(state))


async def _route(ipr, remote, local):
    """The kernel's route to `remote` (as `ip route get remote [from local]`),
    or an error string."""
    query = {"dst": remote}
    if local is not None:
        # Source-based policy routing sees what the kernel would see for
        # tunnel traffic it originated itself.
        query["src"] = local
    try:
        (route,) = await ipr.route(_get(RTM_GETROUTE), **query)
    except _KernelError as e:
        return f"no route to {remote} ({os.strerror(e.code)})"
    return route


def _gateway(route):
    """The route's next-hop address, or None when the destination is on-link.
    RTA_VIA is an IPv6 gateway for an IPv4 route (RFC 5549)."""
    via = route.get("RTA_VIA")
    if via and via.get("addr"):
        return via["addr"]
    return route.get("RTA_GATEWAY")


async def _neighbour(ipr, index, addr):
    """(state, mac) of the neighbour `addr` on link `index`; (NUD_NONE, None)
    when the kernel has no entry for it."""
    try:
        # state=0: pyroute2 would otherwise send NUD_PERMANENT, which the
        # kernel refuses in a get request (EINVAL).
        (msg,) = await ipr.neigh(_get(RTM_GETNEIGH), dst=addr, ifindex=index,
                                 family=_family(addr), state=0)
    except _KernelError as e:
        if e.code == errno.ENOENT:
            return NUD_NONE, None
        raise NetlinkError(e.code, f"neighbour {addr}: {os.strerror(e.code)}") from None
    return msg["state"], msg.get("NDA_LLADDR")


async def next_hop(ipr, underlay_index, remote_addr, local=None):
    """The outer destination MAC for frames to `remote_addr`, as a NextHop.

    The kernel's route lookup gives the output link and the gateway (none:
    the destination itself is the neighbour); the neighbour table gives the
    MAC.  Only a unicast route out of the underlay link counts.  `local`, if
    given, is the VTEP's own address, the source of the lookup."""
    remote = str(ipaddress.ip_address(remote_addr))
    route = await _route(ipr, remote, local)
    if isinstance(route, str):
        return NextHop(None, route)
    kind = rt_type.get(route["type"], str(route["type"]))
    if kind == "local":
        return NextHop(None, f"{remote} is a local address")
    if kind != "unicast":
        return NextHop(None, f"route to {remote} is {kind}, not unicast")
    oif = route.get("RTA_OIF")
    underlay = await _link_by_index(ipr, underlay_index)
    if oif != underlay_index:
        out = (await _link_by_index(ipr, oif)).name if oif else "no interface"
        return NextHop(None, f"route leaves through {out}, not the underlay {underlay.name}")

    gateway = _gateway(route)
    neighbour = gateway or remote
    state, mac = await _neighbour(ipr, underlay_index, neighbour)
    name = _state_name(state)
    if state == NUD_NONE:
        return NextHop(None, f"no neighbour entry for {neighbour} on {underlay.name}", neighbour, name)
    if not state & _RESOLVED or not mac:
        return NextHop(None, f"neighbour {neighbour} {name}", neighbour, name)
    how = f"via {gateway}" if gateway else "directly"
    return NextHop(mac, f"resolved {how} on {underlay.name}", neighbour, name)


async def solicit(ipr, ifindex, addr):
    """Make the kernel resolve (or re-verify) the neighbour `addr` on link
    `ifindex`: the kernel sends the ARP request or neighbour solicitation
    itself (no packet of ours goes to the remote), and the answer lands in the
    neighbour table, where a Watcher sees it.

    This is RTM_NEWNEIGH with NTF_USE, as `ip neigh replace ADDR dev DEV use`:
    the kernel acts as if it had a packet for `addr` (creating a NUD_NONE
    entry if needed, then neigh_event_send).  Measured on Linux 6.18, IPv4 and
    IPv6: no entry or FAILED goes INCOMPLETE with a broadcast ARP request /
    multicast NS at once; STALE goes DELAY, then after 5 s PROBE (unicast),
    then REACHABLE, or FAILED 3 s later if the old MAC is gone (solicit again
    then).  Entries created here are ordinary ones, garbage-collected by the
    kernel: nothing stays behind when vtepd dies.

    Since Linux 5.16, NTF_USE also strips NUD_PERMANENT from an existing
    entry (it turned a static entry into an INCOMPLETE one here), so
    PERMANENT and NOARP entries, which need no resolving, are left alone."""
    addr = str(ipaddress.ip_address(addr))
    state, _ = await _neighbour(ipr, ifindex, addr)
    if state & (NUD_PERMANENT | NUD_NOARP):
        return
    try:
        await ipr.neigh("replace", dst=addr, ifindex=ifindex, family=_family(addr),
                        state=NUD_NONE, flags=NTF_USE)
    except _KernelError as e:
        raise NetlinkError(e.code, f"cannot solicit {addr}: {os.strerror(e.code)}") from None


# --- 3. Watching for changes -----------------------------------------------------

_GROUPS = RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
_LINK_EVENTS = {RTM_NEWLINK, RTM_DELLINK}
_NEIGH_EVENTS = {RTM_NEWNEIGH, RTM_DELNEIGH}
_ROUTE_EVENTS = {RTM_NEWROUTE, RTM_DELROUTE}
_NLMSG_HEADER = struct.Struct("=IHHII")   # length, type, flags, seq, pid (host order)


def changes_in(data):
    """Whether a batch of rtnetlink messages holds a link, neighbour or route
    change that can move a next hop.  Never raises: a truncated or odd message
    ends the walk, and counts as a change when nothing else did (a spurious
    re-check costs little, a missed one leaves a stale MAC)."""
    offset = 0
    while offset + _NLMSG_HEADER.size <= len(data):
        length, kind, _, _, _ = _NLMSG_HEADER.unpack_from(data, offset)
        if length < _NLMSG_HEADER.size or offset + length > len(data):
            return True
        payload = data[offset + _NLMSG_HEADER.size:offset + length]
        if kind in _LINK_EVENTS:
            return True
        if kind in _NEIGH_EVENTS | _ROUTE_EVENTS:
            # Neighbour messages of other families are the bridge FDB (AF_BRIDGE),
            # which moves with every MAC a bridge learns: not ours.
            if not payload or payload[0] in (socket.AF_INET, socket.AF_INET6):
                return True
        offset += (length + 3) & ~3   # NLMSG_ALIGN
    return offset < len(data)   # a partial header left over: odd


class Watcher:
    """Tells the control loop that links, neighbours or routes changed.

        watcher = Watcher()
        loop.add_reader(watcher.fileno(), lambda: watcher.drain() and recheck())

    A plain netlink socket subscribed to the link, neighbour and IPv4/IPv6
    route groups, not a pyroute2 IPRoute: an IPRoute reads its socket from its
    own asyncio transport and keeps every event in an unbounded queue until
    someone awaits it, and the synchronous one cannot be created inside a
    running loop.  `netns_name` is for tests and tools: vtepd runs in the
    namespace it serves.  `rcvbuf` is the socket's buffer: when a burst of
    events overflows it, drain() says "changed" and the caller re-reads all."""

    def __init__(self, netns_name=None, rcvbuf=1 << 20):
        self._sock = netns.create_socket(netns_name, socket.AF_NETLINK, socket.SOCK_RAW,
                                         NETLINK_ROUTE)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self._sock.bind((0, _GROUPS))
            self._sock.setblocking(False)
        except BaseException:
            self._sock.close()
            raise

    def fileno(self):
        return self._sock.fileno()

    def drain(self):
        """Read every pending message without blocking; True if any of them
        (or a lost one) may have changed a next hop."""
        changed = False
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                return changed
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                # The kernel dropped events because we were slow: we cannot
                # know what changed, so everything may have.
                changed = True
                continue
            changed = changes_in(data) or changed

    def close(self):
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- 4. Tunnel claim -----------------------------------------------------------

SO_ATTACH_FILTER = 26
SOL_UDP, UDP_GRO = 17, 104
_BPF_RET_K = 0x06
IPPROTO_GRE = 47


def _drop_everything(sock):
    """Attach the classic BPF program `ret #0`: the socket accepts nothing,
    so nothing ever queues on it, yet the kernel still sees a socket there."""
    program = ctypes.create_string_buffer(struct.pack("=HBBI", _BPF_RET_K, 0, 0, 0))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }:
    # the kernel copies the program during the call.
    fprog = struct.pack("@HP", 1, ctypes.addressof(program))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class TunnelClaim:
    """Keeps the kernel from answering the tunnel traffic vtepd consumes.

    vtepd reads tunnel packets with AF_PACKET, but the IP stack receives them
    too, and with nobody listening it answers VXLAN with ICMP port unreachable
    and NVGRE (IP protocol 47, no GRE module) with ICMP protocol unreachable,
    or ICMPv6 parameter problem (unrecognised next header).  A claim holds

    - a UDP socket bound to (local, port): the stack finds a socket, so no
      port unreachable;
    - a raw IPPROTO_GRE socket bound to local: the stack delivered the packet
      to a raw socket, so no protocol unreachable (IPv4) or parameter problem
      (IPv6);

    each with a BPF filter that drops everything, so no packet queues on them.
    With the underlay's tcx program (csrc/tunnel_bpf.h) the IP stack never
    sees the tunnel packets at all; the claim is for those that get past it.
    Both die with the process, so even `kill -9` leaves no state behind
    (unlike an nftables rule).  Verified on Linux 6.18 for IPv4 and IPv6
    (tests/integration/test_netlink.py).

    Limits: if the kernel's GRE modules (ip_gre, ip6_gre) are loaded, their
    handler runs whatever raw sockets exist and answers GRE it has no tunnel
    for with ICMP port unreachable; a claim cannot stop that (an nftables drop
    rule can).  The UDP socket has SO_REUSEADDR so that a new vtepd can claim
    the port while the old one still holds it (a restart that overlaps); the
    price is that another SO_REUSEADDR socket on the same port, such as a
    second vtepd on the same address, goes unnoticed.  Anything else holding
    the port (a kernel VXLAN device, a plain UDP socket, one bound to the
    wildcard address) makes the claim fail with ClaimError.  `netns_name` is
    for tests and tools."""

    def __init__(self, local_addr, udp_port, netns_name=None):
        self.local = str(ipaddress.ip_address(local_addr))
        self.udp_port = udp_port
        self._family = _family(self.local)
        self._netns = netns_name
        self._sockets = []
        try:
            self._claim(socket.SOCK_DGRAM, 0, udp_port, f"UDP port {udp_port}")
            self._claim(socket.SOCK_RAW, IPPROTO_GRE, 0, "IP protocol 47 (GRE)")
        except BaseException:
            self.close()
            raise

    def _claim(self, kind, proto, port, what):
        sock = netns.create_socket(self._netns, self._family, kind, proto)
        self._sockets.append(sock)
        if kind == socket.SOCK_DGRAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Takes UDP super-packets whole: without it the kernel would cut
            # each into its datagrams only for the filter to drop them.
            sock.setsockopt(SOL_UDP, UDP_GRO, 1)
        _drop_everything(sock)
        try:
            sock.bind((self.local, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ClaimError(e.errno, f"{what} on {self.local} is already in use by another socket "
                                          f"(a kernel VXLAN device or another program)") from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise ClaimError(e.errno, f"{self.local} is not an address of this host") from None
            raise ClaimError(e.errno, f"cannot claim {what} on {self.local}: {e.strerror}") from None

    def close(self):
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
