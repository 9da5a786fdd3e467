"""dataplane/netlink.py against the real kernel, in namespaces.

H is the VTEP host: ul0 (the underlay) faces P, a peer that answers ARP/ND
for its own address and for the gateway's; eth2 faces Q, another network.
The netlink functions are coroutines on an AsyncIPRoute (as in vtepd's
loop); each scenario runs in asyncio.run."""
import asyncio
import errno
import select
import socket
import struct
import subprocess
import sys
import time

import pytest
from pyroute2 import AsyncIPRoute, IPRoute, netns

from dataplane import netlink
from dataplane.netlink import ClaimError, NetlinkError, TunnelClaim, Watcher

from .kernel_vtep import IFA_F_NODAD, mac_of

IFA_F_TENTATIVE = 0x40

# Addresses per family: host side, peer, gateway (answered by the peer too),
# a silent on-link address, networks behind the gateway and behind eth2, and
# one with no route at all.
NET = {
    4: dict(prefix=24, host="198.18.0.1", peer="198.18.0.2", gateway="198.18.0.254",
            silent="198.18.0.99", static="198.18.0.3",
            behind_gw=("198.18.10.0", "198.18.10.5"), other_host="198.18.2.1",
            other_peer="198.18.2.2", behind_other=("198.18.20.0", "198.18.20.5"),
            unroutable="198.19.0.9"),
    6: dict(prefix=64, host="2001:db8:f::1", peer="2001:db8:f::2", gateway="2001:db8:f::fe",
            silent="2001:db8:f::99", static="2001:db8:f::3",
            behind_gw=("2001:db8:f:10::", "2001:db8:f:10::5"), other_host="2001:db8:f:2::1",
            other_peer="2001:db8:f:2::2", behind_other=("2001:db8:f:20::", "2001:db8:f:20::5"),
            unroutable="2001:db8:f:99::9"),
}


def veth(a, a_if, b, b_name, b_if):
    a.link("add", ifname=a_if, kind="veth", peer={"ifname": b_if, "net_ns_fd": b_name})
    return a.link_lookup(ifname=a_if)[0], b.link_lookup(ifname=b_if)[0]


def address(ns, index, addr, prefix):
    # No duplicate address detection: the address is usable at once.
    ns.addr("add", index=index, address=addr, prefixlen=prefix, flags=IFA_F_NODAD)


def wait_for_dad(*spaces, timeout=5):
    """IPv6 link-local addresses still do DAD, and until it ends the kernel
    does not send neighbour solicitations: wait for it, as a real underlay
    would have long before vtepd starts."""
    deadline = time.monotonic() + timeout
    while any(a["flags"] & IFA_F_TENTATIVE for ns in spaces for a in ns.get_addr(family=socket.AF_INET6)):
        assert time.monotonic() < deadline, "IPv6 DAD did not finish"
        time.sleep(0.05)


def build_underlay(family, namespaces):
    """H with ul0 (to P) and eth2 (to Q), routes behind P's gateway and behind Q."""
    n = NET[family]
    (h_name, h), (p_name, p), (q_name, q) = namespaces("h"), namespaces("p"), namespaces("q")
    ul0, p0 = veth(h, "ul0", p, p_name, "p0")
    eth2, q0 = veth(h, "eth2", q, q_name, "q0")
    address(h, ul0, n["host"], n["prefix"])
    address(p, p0, n["peer"], n["prefix"])
    address(p, p0, n["gateway"], n["prefix"])
    address(h, eth2, n["other_host"], n["prefix"])
    address(q, q0, n["other_peer"], n["prefix"])
    for ns, index in ((h, ul0), (h, eth2), (p, p0), (q, q0)):
        ns.link("set", index=index, state="up")
    h.route("add", dst=n["behind_gw"][0], dst_len=n["prefix"], gateway=n["gateway"])
    h.route("add", dst=n["behind_other"][0], dst_len=n["prefix"], gateway=n["other_peer"])
    wait_for_dad(h, p, q)   # for IPv4 too: quiet namespaces for the Watcher tests
    return {"h": h_name, "ul0": ul0, "peer_mac": mac_of(p, p0), "h_ns": h}


RESOLVE_TIMEOUT = 3.5   # three solicitations, one second apart (retrans_time_ms)


async def resolved_within(timeout, hop, remote):
    """hop(remote) once it has a MAC, or its last answer after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await hop(remote)
        if result.mac or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.01)


# --- Links ---------------------------------------------------------------------

@pytest.mark.root
def test_link_lookup_set_up_and_missing_link(namespaces):
    (h_name, h), (p_name, p) = namespaces("h"), namespaces("p")
    ul0, _ = veth(h, "ul0", p, p_name, "p0")
    h.link("set", index=ul0, mtu=1400)
    ul0_mac = mac_of(h, ul0)   # sync pyroute2 calls stay outside the running loop

    async def scenario():
        ipr = AsyncIPRoute(netns=h_name)
        try:
            found = await netlink.link(ipr, "ul0")
            assert (found.index, found.name, found.mac, found.mtu) == (ul0, "ul0", ul0_mac, 1400)
            assert not found.up
            await netlink.set_up(ipr, "ul0")
            assert (await netlink.link(ipr, "ul0")).up
            await netlink.set_up(ipr, "ul0")   # already up: nothing to do, no error
            with pytest.raises(NetlinkError, match="no interface named 'eth9'") as missing:
                await netlink.link(ipr, "eth9")
            assert isinstance(missing.value, OSError) and missing.value.errno == errno.ENODEV
            with pytest.raises(NetlinkError, match="no interface named 'eth9'"):
                await netlink.set_up(ipr, "eth9")
        finally:
            ipr.close()

    asyncio.run(scenario())


# --- Next hops -----------------------------------------------------------------

@pytest.mark.root
@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_next_hop_resolution(family, namespaces):
    n, lab = NET[family], build_underlay(family, namespaces)
    ul0, peer_mac = lab["ul0"], lab["peer_mac"]
    # An administrator's static entry: it must survive solicit() (since Linux
    # 5.16 NTF_USE turns a PERMANENT entry into a dynamic one).
    lab["h_ns"].neigh("add", dst=n["static"], lladdr="02:00:00:00:00:03", ifindex=ul0, state="permanent")

    async def scenario():
        ipr = AsyncIPRoute(netns=lab["h"])
        try:
            hop = lambda remote: netlink.next_hop(ipr, ul0, remote)  # noqa: E731

            # On-link, never used: no entry yet.  solicit() makes the kernel
            # ask and P answers.  A busy machine may lose the first
            # solicitation; the kernel sends the next one a second later.
            direct = await hop(n["peer"])
            assert (direct.mac, direct.neighbour, direct.state) == (None, n["peer"], "none")
            assert direct.reason == f"no neighbour entry for {n['peer']} on ul0"
            await netlink.solicit(ipr, ul0, direct.neighbour)
            direct = await resolved_within(RESOLVE_TIMEOUT, hop, n["peer"])
            assert direct.mac == peer_mac, direct
            assert direct.reason == "resolved directly on ul0" and direct.state == "reachable"

            # Behind a gateway: the neighbour is the gateway, not the remote.
            remote = n["behind_gw"][1]
            via = await hop(remote)
            assert (via.mac, via.neighbour) == (None, n["gateway"])
            await netlink.solicit(ipr, ul0, via.neighbour)
            via = await resolved_within(RESOLVE_TIMEOUT, hop, remote)
            assert via.mac == peer_mac, via
            assert via.reason == f"resolved via {n['gateway']} on ul0"

            # Source given: the same answer (policy routing would see it).
            assert (await netlink.next_hop(ipr, ul0, remote, local=n["host"])).mac == peer_mac

            # Nobody answers: the entry stays unresolved and says so.
            await netlink.solicit(ipr, ul0, n["silent"])
            silent = await hop(n["silent"])
            assert silent.mac is None and silent.state in ("incomplete", "failed")
            assert silent.reason == f"neighbour {n['silent']} {silent.state}"

            # The static entry is resolved, and solicit() leaves it alone.
            await netlink.solicit(ipr, ul0, n["static"])
            static = await hop(n["static"])
            assert (static.mac, static.state) == ("02:00:00:00:00:03", "permanent")

            # The route leaves through another interface: not ours to use.
            other = await hop(n["behind_other"][1])
            assert (other.mac, other.neighbour) == (None, None)
            assert other.reason == "route leaves through eth2, not the underlay ul0"

            unroutable = await hop(n["unroutable"])
            assert unroutable.mac is None and unroutable.reason.startswith(f"no route to {n['unroutable']}")
            assert (await hop(n["host"])).reason == f"{n['host']} is a local address"

            # pyroute2 0.9.5 leaks the ACK of every "get" into this queue;
            # netlink.py asks without ACKs, so nothing piles up in a long-running vtepd.
            await asyncio.sleep(0.05)
            assert ipr.msg_queue.queues[0].qsize() == 0
        finally:
            ipr.close()

    asyncio.run(scenario())


# --- Watching ------------------------------------------------------------------

def _readable(watcher, timeout=2.0):
    return bool(select.select([watcher], [], [], timeout)[0])


@pytest.mark.root
def test_watcher_reports_neighbour_route_and_link_changes(namespaces):
    lab = build_underlay(4, namespaces)
    h, ul0 = lab["h_ns"], lab["ul0"]
    with Watcher(lab["h"]) as watcher:
        assert watcher.drain() is False   # nothing happened since it opened

        h.neigh("add", dst="198.18.0.7", lladdr="02:00:00:00:00:07", ifindex=ul0, state="permanent")
        assert _readable(watcher) and watcher.drain() is True
        assert watcher.drain() is False   # all read: nothing new

        h.route("add", dst="198.18.30.0", dst_len=24, gateway="198.18.0.2")
        assert _readable(watcher) and watcher.drain() is True

        h.route("add", dst="2001:db8:f:30::", dst_len=64, oif=ul0)
        assert _readable(watcher) and watcher.drain() is True

        h.link("set", index=h.link_lookup(ifname="eth2")[0], state="down")
        assert _readable(watcher) and watcher.drain() is True


@pytest.mark.root
def test_watcher_survives_overflow(namespaces):
    """Events lost to a full socket buffer (ENOBUFS) count as a change, not an error."""
    lab = build_underlay(4, namespaces)
    h, ul0 = lab["h_ns"], lab["ul0"]
    with Watcher(lab["h"], rcvbuf=1) as watcher:   # the kernel rounds it up to its minimum
        for i in range(200):
            h.neigh("add", dst=f"198.18.1.{i}", lladdr="02:00:00:00:01:00", ifindex=ul0, state="permanent")
        assert watcher.drain() is True
        assert watcher.drain() is False


def _nlmsg(kind, payload):
    return struct.pack("=IHHII", 16 + len(payload), kind, 0, 0, 0) + payload


def test_changes_in_never_raises_on_odd_messages():
    RTM_NEWROUTE, RTM_NEWNEIGH, NLMSG_DONE, AF_BRIDGE = 24, 28, 3, 7
    route4 = _nlmsg(RTM_NEWROUTE, bytes([socket.AF_INET]) + bytes(11))
    bridge_fdb = _nlmsg(RTM_NEWNEIGH, bytes([AF_BRIDGE]) + bytes(11))
    assert netlink.changes_in(route4) is True
    assert netlink.changes_in(bridge_fdb) is False      # a bridge learning a MAC: not ours
    assert netlink.changes_in(_nlmsg(NLMSG_DONE, bytes(4))) is False
    assert netlink.changes_in(bridge_fdb + route4) is True
    assert netlink.changes_in(b"") is False
    # Truncated, zero-length, overlong: odd, so "maybe changed", never an exception.
    for odd in (b"\x01", route4[:10], route4[:-1], struct.pack("=IHHII", 0, 24, 0, 0, 0),
                struct.pack("=IHHII", 1 << 31, 24, 0, 0, 0), bridge_fdb + b"\x00" * 5):
        assert netlink.changes_in(odd) is True


# --- Tunnel claim --------------------------------------------------------------

VTEP_ADDR = {4: ("198.18.0.1", "198.18.0.2", 24), 6: ("2001:db8:f::1", "2001:db8:f::2", 64)}
INNER = bytes.fromhex("02000000000102000000000208060001") + bytes(46)   # a small inner frame


def _sender_and_vtep(family, namespaces, traffic=True):
    local, sender, prefix = VTEP_ADDR[family]
    (v_name, v), (s_name, s) = namespaces("v"), namespaces("s")
    v0, s0 = veth(v, "v0", s, s_name, "s0")
    address(v, v0, local, prefix)
    address(s, s0, sender, prefix)
    v.link("set", index=v0, state="up")
    s.link("set", index=s0, state="up")
    if family == 6 and traffic:
        wait_for_dad(v, s)
    return v_name, s_name, local


def _icmp_errors_after_sending_tunnel_packets(family, s_name, local, udp_port=4789):
    """Send one VXLAN (to `udp_port`) and one NVGRE packet from the sender's
    namespace to `local`; return the ICMP(v6) errors (type, code) that come
    back within a second (or as soon as there is one for each)."""
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    icmp_proto = socket.IPPROTO_ICMP if family == 4 else socket.IPPROTO_ICMPV6
    icmp = netns.create_socket(s_name, af, socket.SOCK_RAW, icmp_proto)
    udp = netns.create_socket(s_name, af, socket.SOCK_DGRAM, 0)
    gre = netns.create_socket(s_name, af, socket.SOCK_RAW, netlink.IPPROTO_GRE)
    try:
        udp.sendto(struct.pack("!II", 0x08000000, 5000 << 8) + INNER, (local, udp_port))    # VXLAN, I flag
        gre.sendto(struct.pack("!HHI", 0x2000, 0x6558, 5000 << 8) + INNER, (local, 0))    # NVGRE, K flag
        errors, deadline = [], time.monotonic() + 1.0
        while len(errors) < 2 and (left := deadline - time.monotonic()) > 0:
            if not select.select([icmp], [], [], left)[0]:
                break
            packet = icmp.recv(2048)
            # IPv4 raw sockets see the IP header; IPv6 ones start at ICMPv6.
            kind, code = packet[20:22] if family == 4 else packet[0:2]
            if family == 4 or kind < 128:   # ICMPv6 errors are < 128; ND and MLD are not
                errors.append((kind, code))
        return sorted(errors)
    finally:
        for sock in (icmp, udp, gre):
            sock.close()


# Port unreachable (VXLAN) and protocol unreachable (GRE) for IPv4; for IPv6
# port unreachable and parameter problem "unrecognized next header".
UNANSWERED = {4: [(3, 2), (3, 3)], 6: [(1, 4), (4, 1)]}
PORT_UNREACHABLE = {4: (3, 3), 6: (1, 4)}


@pytest.mark.root
@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_tunnel_claim_silences_the_kernel(family, namespaces):
    v_name, s_name, local = _sender_and_vtep(family, namespaces)
    # Without a claim the kernel answers both: the test can fail.
    assert _icmp_errors_after_sending_tunnel_packets(family, s_name, local) == UNANSWERED[family]
    with TunnelClaim(local, 4789, netns_name=v_name) as claim:
        assert _icmp_errors_after_sending_tunnel_packets(family, s_name, local) == []
        # The packets reached the claim's sockets, and their filter dropped them.
        for sock in claim._sockets:
            with pytest.raises(BlockingIOError):
                sock.recv(2048, socket.MSG_DONTWAIT)
        # The UDP socket takes super-packets whole (csrc/offload.h): the kernel
        # does not cut them into datagrams only for the filter to drop them.
        [udp] = [sock for sock in claim._sockets if sock.type == socket.SOCK_DGRAM]
        assert udp.getsockopt(netlink.SOL_UDP, netlink.UDP_GRO) == 1


# Attaches the tcx program of csrc/tunnel_bpf.h and holds its link until stdin closes.
HOLD_BYPASS = """
import sys
from dataplane._engine import stack_bypass
fd = stack_bypass(sys.argv[1], sys.argv[2], int(sys.argv[3]))
print("attached", flush=True)
sys.stdin.read()
"""


@pytest.mark.root
@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_stack_bypass_keeps_only_tunnel_packets_from_the_ip_stack(family, namespaces):
    v_name, s_name, local = _sender_and_vtep(family, namespaces)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_BYPASS, "v0", local, "4789"], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=lambda: netns.setns(v_name))
    try:
        assert holder.stdout.readline() == "attached\n"
        # No claim here: the stack would answer both tunnel packets if it saw them.
        assert _icmp_errors_after_sending_tunnel_packets(family, s_name, local) == []
        # Anything else still reaches it: UDP to another port is answered, GRE still is not.
        assert _icmp_errors_after_sending_tunnel_packets(family, s_name, local, udp_port=4790) \
            == [PORT_UNREACHABLE[family]]
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    # Its holder gone, so is the program: the stack sees (and answers) tunnel packets again.
    assert _icmp_errors_after_sending_tunnel_packets(family, s_name, local) == UNANSWERED[family]


@pytest.mark.root
@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_tunnel_claim_refuses_a_port_in_use(family, namespaces):
    v_name, _, local = _sender_and_vtep(family, namespaces, traffic=False)
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    holder = netns.create_socket(v_name, af, socket.SOCK_DGRAM, 0)
    holder.bind((local, 4789))
    with pytest.raises(ClaimError, match=f"UDP port 4789 on {local} is already in use") as busy:
        TunnelClaim(local, 4789, netns_name=v_name)
    assert busy.value.errno == errno.EADDRINUSE
    holder.close()

    # The kernel's own VXLAN device on the port (its socket has the wildcard address).
    ends = {"vxlan_local": local} if family == 4 else {"vxlan_local6": local}
    with IPRoute(netns=v_name) as v:
        v.link("add", ifname="vx0", kind="vxlan", vxlan_id=5000, vxlan_port=4789, **ends)
        v.link("set", index=v.link_lookup(ifname="vx0")[0], state="up")
        with pytest.raises(ClaimError, match="already in use"):
            TunnelClaim(local, 4789, netns_name=v_name)
        v.link("del", index=v.link_lookup(ifname="vx0")[0])

    other = "198.18.0.77" if family == 4 else "2001:db8:f::77"
    with pytest.raises(ClaimError, match="not an address of this host"):
        TunnelClaim(other, 4789, netns_name=v_name)

    # close() gives the port back: a socket without SO_REUSEADDR can take it.
    claim = TunnelClaim(local, 4789, netns_name=v_name)
    claim.close()
    claim.close()   # twice is fine
    again = netns.create_socket(v_name, af, socket.SOCK_DGRAM, 0)
    again.bind((local, 4789))
    again.close()
