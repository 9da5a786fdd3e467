"""The PVLAN promise with real traffic across VTEPs (DESIGN.md section 2).

Three vtepd on one underlay bridge, segment "tenant" on all of them
(VXLAN: primary 5000, isolated 5001, communities web 5002 and db 5003),
each VTEP's remote list naming the other two.  Behind v1 and v2 a host in
every role (p, i, w, d); behind v3 one promiscuous host.  The matrix is
measured by pings (ICMP after ARP) between every pair of the eight hosts,
once with MAC learning and once with learning off and static entries that
carry the remote MACs' roles."""
import socket
import subprocess
import time

import pytest
from pyroute2 import netns

from . import vtepd as v

pytestmark = [pytest.mark.root, pytest.mark.slow]

VTEPS = {1: "198.18.0.1", 2: "198.18.0.2", 3: "198.18.0.3"}
ROLES = {"p": ("promiscuous", None), "i": ("isolated", None), "w": ("community", "web"), "d": ("community", "db")}
HOSTS = {f"h{n}{r}": (n, r) for n in (1, 2) for r in ROLES} | {"h3p": (3, "p")}
PROBE_TYPE = 0x88B5  # IEEE local experimental: our broadcast probes


def mac(host):
    n, r = HOSTS[host]
    return f"02:00:00:00:0{n}:0{'pidw'.index(r) + 1}"


def ip(host):
    n, r = HOSTS[host]
    return f"192.0.2.{10 * n + 'pidw'.index(r) + 1}"


def allowed(a, b):
    """DESIGN.md's table: the roles of hosts a and b."""
    ra, rb = HOSTS[a][1], HOSTS[b][1]
    return "p" in (ra, rb) or (ra == rb and ra in "wd")


def config(n, learning):
    others = [a for m, a in VTEPS.items() if m != n]
    lines = [f'[vtep]\nunderlay = "ul0"\nlocal = "{VTEPS[n]}"\n',
             '[[segment]]\nname = "tenant"\nvni = 5000\nisolated_vni = 5001\n'
             'community_vni = { web = 5002, db = 5003 }\n'
             f'remote = {others!r}\nmac_learning = {str(learning).lower()}\n'.replace("'", '"')]
    for host, (m, r) in HOSTS.items():
        role, community = ROLES[r]
        if m == n:
            lines.append(f'[[port]]\nname = "{host}"\nbackend = "afpacket"\nsegment = "tenant"\n'
                         f'role = "{role}"\n' + (f'community = "{community}"\n' if community else ""))
            if not learning:
                lines.append(f'[[fdb]]\nsegment = "tenant"\nmac = "{mac(host)}"\nport = "{host}"\n')
        elif not learning:
            lines.append(f'[[fdb]]\nsegment = "tenant"\nmac = "{mac(host)}"\nremote = "{VTEPS[m]}"\n'
                         f'role = "{role}"\n' + (f'community = "{community}"\n' if community else ""))
    return "\n".join(lines)


@pytest.fixture(params=[True, False], ids=["learning", "static-roles"])
def tenant(request, namespaces, tmp_path):
    learning = request.param
    ul = namespaces("ul")
    ul[1].link("add", ifname="br0", kind="bridge", br_stp_state=0)
    v.link_up(ul, "br0")
    bridge = ul[1].link_lookup(ifname="br0")[0]
    vteps, hosts = {}, {}
    for n, address in VTEPS.items():
        V = vteps[n] = namespaces(f"v{n}")
        v.veth(ul, f"ul{n}", V, "ul0")
        v.link_up(ul, f"ul{n}", master=bridge)
        v.address(V, "ul0", address, 24)
    for host, (n, _) in HOSTS.items():
        H = hosts[host] = namespaces(host)
        v.veth(vteps[n], host, H, "eth0", mtu=1450)
        v.link_up(H, "eth0", address=mac(host))
        v.address(H, "eth0", ip(host), 24)
    daemons = []
    try:
        for n, V in vteps.items():
            daemons.append(v.Vtepd(V[0], config(n, learning), tmp_path, name=f"v{n}"))
        # Every next hop resolved before traffic starts.
        for d in daemons:
            assert v.wait_for(lambda: all(r["next_hop"] for r in d.ctl("show-remotes")))
        yield {"hosts": hosts, "vteps": vteps, "daemons": daemons, "learning": learning}
    finally:
        for d in daemons:
            assert d.stop() == 0


def ping_all(hosts, pairs):
    """{(a, b): answered} with every ping running at once."""
    procs = {(a, b): subprocess.Popen(["ping", "-n", "-q", "-c", "2", "-i", "0.3", "-W", "1", ip(b)],
                                      preexec_fn=v.in_netns(hosts[a][0]), stdout=subprocess.DEVNULL)
             for a, b in pairs}
    return {pair: p.wait(15) == 0 for pair, p in procs.items()}


def test_matrix(tenant):
    hosts = tenant["hosts"]
    eight = [h for h in HOSTS if h != "h3p"]
    pairs = [(a, b) for a in eight for b in eight if a != b]
    measured = ping_all(hosts, pairs)
    wrong = {pair: got for pair, got in measured.items() if got != allowed(*pair)}
    assert wrong == {}, f"PVLAN verdicts differ from DESIGN.md's table: {wrong}"
    # ARP followed the same rule: an isolated host resolved only promiscuous hosts.
    resolved = {e.get_attr("NDA_DST") for e in hosts["h1i"][1].get_neighbours(family=socket.AF_INET)
                if e.get_attr("NDA_LLADDR") and e["state"] & 0x1E}  # reachable, stale, delay or probe
    assert resolved == {ip("h1p"), ip("h2p")}
    if not tenant["learning"]:
        # Learning off: the FDB holds exactly the static entries.
        for d in tenant["daemons"]:
            fdb = d.ctl("show-fdb")
            assert all(e["static"] for e in fdb) and len(fdb) == len(HOSTS)


def listeners(hosts):
    socks = {}
    for host, H in hosts.items():
        s = _packet_socket(H[0])
        s.bind(("eth0", 0))
        s.settimeout(0.05)
        socks[host] = s
    return socks


def _packet_socket(ns):
    return netns.create_socket(ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(PROBE_TYPE))


def broadcast(hosts, sender, tag):
    """Send one broadcast probe from "sender"; {host: copies received}."""
    socks = listeners(hosts)
    try:
        out = _packet_socket(hosts[sender][0])
        out.bind(("eth0", 0))
        src = bytes.fromhex(mac(sender).replace(":", ""))
        out.send(b"\xff" * 6 + src + PROBE_TYPE.to_bytes(2, "big") + tag + bytes(46 - len(tag)))
        out.close()
        time.sleep(0.5)
        copies = {}
        for host, s in socks.items():
            n = 0
            try:
                while True:
                    if tag in s.recv(2048):
                        n += 1
            except (socket.timeout, BlockingIOError):
                pass
            copies[host] = n
        return copies
    finally:
        for s in socks.values():
            s.close()


def test_broadcast_from_isolated_reaches_promiscuous_only(tenant):
    copies = broadcast(tenant["hosts"], "h1i", b"from-isolated")
    reached = {h for h, n in copies.items() if n and h != "h1i"}
    assert reached == {"h1p", "h2p", "h3p"}


def test_head_end_replication_one_copy_per_remote(tenant):
    """A broadcast from a promiscuous host behind v1 goes once to v2 and once
    to v3: every host there gets exactly one copy."""
    copies = broadcast(tenant["hosts"], "h1p", b"from-promiscuous")
    assert {h: n for h, n in copies.items() if h != "h1p"} == {h: 1 for h in HOSTS if h != "h1p"}
    v1 = tenant["daemons"][0].counters()
    assert v1["underlay"]["tx_packets"] >= 2


def test_forbidden_unicast_dies_at_the_sending_vtep(tenant):
    """Isolated to isolated, with the MAC and its role known: dropped at v1."""
    hosts, (v1, v2, _) = tenant["hosts"], tenant["daemons"]
    h1i = hosts["h1i"][1]
    h1i.neigh("add", dst=ip("h2i"), lladdr=mac("h2i"), ifindex=h1i.link_lookup(ifname="eth0")[0],
              state="permanent")
    if tenant["learning"]:
        # v1 must know where h2i is: let h2i talk to a promiscuous host first.
        assert v.ping(hosts["h2i"], ip("h1p"))
    icmp = netns.create_socket(hosts["h2i"][0], socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    icmp.settimeout(0.1)
    assert not v.ping(hosts["h1i"], ip("h2i"), count=3, wait=1)
    arrived = []
    try:
        while True:
            data, (src, _) = icmp.recvfrom(2048)
            arrived.append(src)
    except socket.timeout:
        pass
    icmp.close()
    deny_v1 = v1.counters()["ports"]["h1i"]["drops"]["pvlan_deny"]
    deny_v2 = v2.counters()["underlay"]["drops"]["pvlan_deny"]
    # A learned remote MAC's role is the VNI it came with, so with learning
    # on v1 knows it as well as with static entries: the echo requests die at
    # v1 and never cost the underlay.
    assert deny_v1 >= 3 and deny_v2 == 0
    assert ip("h1i") not in arrived
