"""Hostile tenants and a hostile underlay (issue 5): what a tenant host or
a sender on the underlay can do to vtepd and its other tenants, measured
with real frames through a running vtepd.

Topology: vtepd in namespace V, underlay ul0 to namespace P, which plays
the remote VTEP (198.18.0.2, the segment's fixed remote list) and an
underlay attacker (198.18.0.66, and anyone it spoofs): its kernel receives
vtepd's VXLAN on a UDP socket, and the test writes raw underlay frames on
an AF_PACKET socket.  Segment "tenant" (VNIs 5000 primary, 5001 isolated,
5002 web, 5003 db) has afpacket ports to hosts in every role: hp and hp2
promiscuous, hi and hi2 isolated, hw web, hd db; segment "other" (6000)
has ho1 and ho2.  Hosts send and receive raw frames (AF_PACKET, EtherType
0x88B5 with a tag and a sequence number), so nothing but the test's own
frames is counted, and tags can be what no Linux host would send."""
import collections
import contextlib
import socket
import struct
import threading
import time

import pytest
from pyroute2 import netns

from dataplane.packet import Tunnel

from . import vtepd as v

pytestmark = pytest.mark.root

VTEP = {4: "198.18.0.1", 6: "2001:db8:f::1"}
PEER = {4: "198.18.0.2", 6: "2001:db8:f::2"}
STRANGER = {4: "198.18.0.66", 6: "2001:db8:f::66"}
PREFIX = {4: 24, 6: 64}
TENANT = {"hp": ("promiscuous", None), "hp2": ("promiscuous", None), "hi": ("isolated", None),
          "hi2": ("isolated", None), "hw": ("community", "web"), "hd": ("community", "db")}
OTHER = ("ho1", "ho2")
HOSTS = (*TENANT, *OTHER)
VNI = {"promiscuous": 5000, "isolated": 5001, "web": 5002, "db": 5003}
REMOTE_HOST = "02:00:00:00:09:01"  # a host behind the remote VTEP P
PROBE, FLOOD = 0x88B5, 0x88B6      # IEEE local experimental EtherTypes
BROADCAST = "ff:ff:ff:ff:ff:ff"
MIN_FRAME = 60


def mac(host):
    return f"02:00:00:00:0{1 + (host in OTHER)}:{HOSTS.index(host) + 1:02x}"


def raw_mac(m):
    return bytes.fromhex(m.replace(":", ""))


def probe(dst, src, tag, seq=0, ethertype=PROBE, size=MIN_FRAME):
    """A frame the listeners count: "tag" (8 bytes) then a sequence number."""
    body = tag + struct.pack("!I", seq)
    frame = raw_mac(dst) + raw_mac(src) + struct.pack("!H", ethertype) + body
    return frame + bytes(max(0, size - len(frame)))


def reachable_from(role):
    """DESIGN.md's table: the tenant hosts a sender of "role" (a VNI's role
    name) may reach."""
    def allowed(to):
        r, c = TENANT[to]
        return role == "promiscuous" or r == "promiscuous" or (role == c)
    return {h for h in TENANT if allowed(h)}


def config(family=4, port_keys=None, vtep_keys="", fdb=""):
    """vtepd's config; "port_keys" adds lines to named ports."""
    port_keys = port_keys or {}
    lines = [f'[vtep]\nunderlay = "ul0"\nlocal = "{VTEP[family]}"\n{vtep_keys}\n',
             '[[segment]]\nname = "tenant"\nvni = 5000\nisolated_vni = 5001\n'
             'community_vni = { web = 5002, db = 5003 }\n'
             f'remote = ["{PEER[family]}"]\nmaximum_fdb_entries = 1024\n',
             f'[[segment]]\nname = "other"\nvni = 6000\nremote = ["{PEER[family]}"]\n']
    for host in HOSTS:
        role, community = TENANT.get(host, ("promiscuous", None))
        lines.append(f'[[port]]\nname = "{host}"\nbackend = "afpacket"\n'
                     f'segment = "{"other" if host in OTHER else "tenant"}"\nrole = "{role}"\n'
                     + (f'community = "{community}"\n' if community else "") + port_keys.get(host, ""))
    return "\n".join(lines) + fdb


def packet_socket(ns, ifname, protocol=0):
    """A raw socket on "ifname" in "ns" receiving "protocol" (0: nothing, send only)."""
    s = netns.create_socket(ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(protocol))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((ifname, protocol))
    s.setblocking(False)
    return s


def quiet(ns):
    """No IPv6 in host namespace "ns": its kernel then sends nothing (no
    router solicitations, no MLD) that would move or refresh its MAC."""
    netns.pushns(ns)
    try:
        with open("/proc/sys/net/ipv6/conf/all/disable_ipv6", "w") as f:
            f.write("1")
    finally:
        netns.popns()


def drain(sock):
    """Every datagram waiting on "sock"."""
    got = []
    with contextlib.suppress(BlockingIOError):
        while True:
            got.append(sock.recv(65536))
    return got


class Site:
    """The namespaces, links and sockets above, and vtepd running "toml"."""

    def __init__(self, namespaces, tmp_path, family=4, **keys):
        self.family = family
        self.V, self.P = namespaces("v"), namespaces("p")
        v.veth(self.V, "ul0", self.P, "ul0")
        v.address(self.V, "ul0", VTEP[family], PREFIX[family])
        for address in (PEER[family], STRANGER[family]):
            v.address(self.P, "ul0", address, PREFIX[family])
        self.hosts = {}
        for host in HOSTS:
            H = self.hosts[host] = namespaces(host)
            quiet(H[0])
            v.veth(self.V, host, H, "eth0")
            v.link_up(H, "eth0", address=mac(host))
        self.v_mac, self.p_mac = v.mac_of(self.V, "ul0"), v.mac_of(self.P, "ul0")
        # P's kernel takes vtepd's VXLAN on a socket (and so sends no ICMP back).
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        self.vxlan = netns.create_socket(self.P[0], af, socket.SOCK_DGRAM)
        self.vxlan.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.vxlan.bind((PEER[family], 4789))
        self.vxlan.setblocking(False)
        self.underlay = packet_socket(self.P[0], "ul0")
        self.listen = {h: packet_socket(H[0], "eth0", PROBE) for h, H in self.hosts.items()}
        self.send_on = {h: packet_socket(H[0], "eth0") for h, H in self.hosts.items()}
        self.tmp_path = tmp_path
        self.d = None
        self.start(config(family, **keys))

    def start(self, toml):
        self.d = v.Vtepd(self.V[0], toml, self.tmp_path)
        assert v.wait_for(lambda: all(r["next_hop"] for r in self.d.ctl("show-remotes")), timeout=10)

    def close(self):
        try:
            if self.d:
                assert self.d.stop() == 0
        finally:
            for s in (self.vxlan, self.underlay, *self.listen.values(), *self.send_on.values()):
                s.close()

    # -- traffic --

    def send(self, host, frames):
        for f in frames:
            self.send_on[host].send(f)

    def tunnel(self, source=None):
        """A VXLAN tunnel from "source" (the peer by default) to vtepd."""
        return Tunnel("vxlan", source or PEER[self.family], VTEP[self.family], src_mac=self.p_mac,
                      dst_mac=self.v_mac)

    def inject(self, packets):
        """Raw underlay frames from P."""
        for p in packets:
            self.underlay.send(p)

    def remote_send(self, vni, frames, source=None):
        t = self.tunnel(source)
        self.inject(t.encap(vni, f) for f in frames)

    def settle(self):
        """Wait until vtepd's counters stop moving: every frame sent is done."""
        def snapshot():
            c = self.d.counters()
            return (c["underlay"]["rx_packets"], c["underlay"]["tx_packets"],
                    [(p["rx_packets"], p["tx_packets"]) for p in c["ports"].values()])
        before = snapshot()
        for _ in range(100):
            time.sleep(0.2)
            now = snapshot()
            if now == before:
                return
            before = now
        raise AssertionError("vtepd's counters did not settle in 20 s")

    def collect(self):
        """After settle(): the probes that arrived, {tag: {host or "remote":
        count}} (a bare Ethernet header has tag b"")."""
        self.settle()
        counts = collections.defaultdict(lambda: dict.fromkeys((*HOSTS, "remote"), 0))
        for h, sock in self.listen.items():
            for f in drain(sock):
                counts[f[14:22]][h] += 1
        for datagram in drain(self.vxlan):
            inner = datagram[8:]  # after the VXLAN header
            if inner[12:14] == PROBE.to_bytes(2, "big"):
                counts[inner[14:22]]["remote"] += 1
        return counts

    def received(self, tag):
        return self.collect()[tag]

    def announce(self, *hosts):
        """Each host sends one broadcast, so vtepd learns where it is."""
        for h in hosts:
            self.send(h, [probe(BROADCAST, mac(h), b"announce")])
        self.received(b"announce")

    # -- vtepd's view --

    def drops(self, reason, where="underlay", name=None):
        c = self.d.counters()
        return (c["underlay"] if where == "underlay" else c[where][name])["drops"][reason]

    def fdb(self, segment="tenant"):
        return {e["mac"]: e for e in self.d.ctl("show-fdb", {"segment": segment})}


@pytest.fixture
def make_site(namespaces, tmp_path):
    sites = []

    def make(**kwargs):
        sites.append(Site(namespaces, tmp_path, **kwargs))
        return sites[-1]

    try:
        yield make
    finally:
        for s in sites:
            s.close()


def entry(s, m, segment="tenant"):
    """Where the FDB puts MAC "m", and as what (not its age)."""
    e = s.fdb(segment)[m]
    return {k: e[k] for k in ("kind", "target", "role", "community", "static")}


def delta(before, after):
    return {k: after[k] - before[k] for k in after}


# ================================ hostile tenants ================================

@pytest.mark.reliability("Hostile tenant", "An isolated host (hi) sends 100 frames with the source MAC of a "
                         "promiscuous host, of a community host, or of a host behind the remote VTEP",
                         expected="MAC-move policy: a learned MAC moves only within its role, so every forged "
                                  "frame is dropped (foreign_src_mac) and reaches no one; the owner keeps its "
                                  "FDB entry and receives all unicast sent to it")
@pytest.mark.parametrize("victim", ["hp", "hw", "remote"])
def test_isolated_host_forges_the_mac_of_another_role(make_site, measured, victim):
    s = make_site()
    s.announce(*TENANT)
    s.remote_send(VNI["promiscuous"], [probe(BROADCAST, REMOTE_HOST, b"announce")])
    s.received(b"announce")
    victim_mac = REMOTE_HOST if victim == "remote" else mac(victim)
    owner = entry(s, victim_mac)
    foreign = s.drops("foreign_src_mac", "ports", "hi")

    # 50 broadcast and 50 unicast to hp2, which an isolated host may reach.
    s.send("hi", [probe(BROADCAST if n % 2 else mac("hp2"), victim_mac, b"forged!!", n) for n in range(100)])
    forged = s.received(b"forged!!")
    foreign = s.drops("foreign_src_mac", "ports", "hi") - foreign
    assert forged == {h: 0 for h in forged}
    assert foreign == 100
    assert entry(s, victim_mac) == owner

    # The owner's traffic: hp2 sends it 100 unicast frames.
    s.send("hp2", [probe(victim_mac, mac("hp2"), b"to-owner", n) for n in range(100)])
    got = s.received(b"to-owner")
    owner_got = got[victim]
    assert owner_got == 100 and got["hi"] == 0
    assert sum(got.values()) == 100  # known unicast: to the owner only
    measured(f"victim {victim} ({owner['role']}, {owner['kind']} entry): {sum(forged.values())} of 100 forged frames "
             f"reached anyone; foreign_src_mac +{foreign}; the owner's FDB entry unchanged; owner received "
             f"{owner_got}/100 of hp2's unicast, the forger {got['hi']}")


@pytest.mark.reliability("Hostile tenant", "An isolated host (hi) sends 100 frames with the source MAC of "
                         "another isolated host (hi2), whose entry is learned, then static",
                         expected="same role: a learned entry moves to the forger (as a migrating VM's would) "
                                  "and unicast to that MAC follows it; a static entry never moves; either way "
                                  "the forger still reaches promiscuous hosts only")
@pytest.mark.parametrize("entry", ["learned", "static"])
def test_isolated_host_forges_the_mac_of_the_same_role(make_site, measured, entry):
    fdb = '[[fdb]]\nsegment = "tenant"\nmac = "%s"\nport = "hi2"\n' % mac("hi2") if entry == "static" else ""
    s = make_site(fdb=fdb)
    s.announce(*TENANT)
    refused = s.d.counters()["segments"]["tenant"]["learn_refused"]
    s.send("hi", [probe(BROADCAST, mac("hi2"), b"samerole", n) for n in range(100)])
    forged = s.received(b"samerole")
    refused = s.d.counters()["segments"]["tenant"]["learn_refused"] - refused
    where = s.fdb()[mac("hi2")]["target"]
    assert {h for h, n in forged.items() if n} == {"hp", "hp2", "remote"}  # isolation holds
    s.send("hp2", [probe(mac("hi2"), mac("hp2"), b"to-hi2!!", n) for n in range(100)])
    got = s.received(b"to-hi2!!")
    if entry == "learned":
        assert where == "hi" and got["hi"] == 100 and got["hi2"] == 0 and refused == 0
    else:
        assert where == "hi2" and got["hi2"] == 100 and got["hi"] == 0 and refused == 100
    measured(f"{entry} entry: forged broadcasts reached {sorted(h for h, n in forged.items() if n)}; the "
             f"entry now points to {where} (learn_refused +{refused}); of hp2's 100 unicast to hi2's MAC, "
             f"hi2 received {got['hi2']}, the forger {got['hi']}")


@pytest.mark.reliability("Hostile tenant", "A promiscuous host sends 50 single-tagged (802.1Q), 50 double-"
                         "tagged (802.1ad + 802.1Q), 50 multicast-source and 50 zero-source frames",
                         expected="all dropped at the port (vlan_tagged, bad_src_mac); none reaches a host "
                                  "or the underlay")
def test_tagged_frames_and_bad_source_macs(make_site, measured):
    s = make_site()
    s.announce("hp", "hp2")
    before = s.d.counters()["ports"]["hp"]["drops"]
    src, dst = raw_mac(mac("hp")), raw_mac(BROADCAST)
    tail = struct.pack("!H", PROBE) + b"tagged!!" + bytes(40)
    single = [dst + src + struct.pack("!HH", 0x8100, 5) + tail] * 50
    double = [dst + src + struct.pack("!HHHH", 0x88A8, 10, 0x8100, 5) + tail] * 50
    bad_src = [probe(BROADCAST, "01:00:5e:00:00:01", b"tagged!!")] * 50 + \
              [probe(mac("hp2"), "00:00:00:00:00:00", b"tagged!!")] * 50
    s.send("hp", single + double + bad_src)
    got = s.received(b"tagged!!")
    after = s.d.counters()["ports"]["hp"]["drops"]
    d = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    assert got == {h: 0 for h in got}
    assert d == {"vlan_tagged": 100, "bad_src_mac": 100}
    measured(f"{sum(got.values())} of 200 frames delivered; port hp drops: {d}")


@pytest.mark.reliability("Hostile tenant", "A host sends runts (13 bytes, 14 bytes: a bare Ethernet header) and "
                         "frames over the underlay MTU (1514-byte frames on a 1500-byte underlay)",
                         expected="the kernel refuses frames under 14 bytes (a runt never reaches vtepd from a "
                                  "veth); a bare header is forwarded as is; a frame that would exceed the "
                                  "underlay MTU once encapsulated is dropped (mtu) and never fragmented, "
                                  "while its local copies go out")
def test_runts_and_frames_over_the_mtu(make_site, measured):
    s = make_site()
    s.announce("hp", "hp2")
    s.remote_send(VNI["promiscuous"], [probe(BROADCAST, REMOTE_HOST, b"announce")])
    s.received(b"announce")
    with pytest.raises(OSError) as refused:
        s.send("hp", [raw_mac(BROADCAST) + raw_mac(mac("hp")) + b"\x88"])
    # A bare 14-byte header: no payload, so no tag (b"").
    s.send("hp", [raw_mac(mac("hp2")) + raw_mac(mac("hp")) + struct.pack("!H", PROBE)] * 10)
    bare_got = s.received(b"")["hp2"]
    mtu = s.drops("mtu", "ports", "hp")
    largest = 1500 - 36  # the largest inner frame VXLAN over IPv4 carries in 1500 bytes
    s.send("hp", [probe(REMOTE_HOST, mac("hp"), b"fits-mtu", n, size=largest) for n in range(20)])
    s.send("hp", [probe(REMOTE_HOST, mac("hp"), b"over-mtu", n, size=1514) for n in range(20)])
    s.send("hp", [probe(BROADCAST, mac("hp"), b"bcast-bi", n, size=1514) for n in range(20)])
    got = s.collect()
    fits, over, big = got[b"fits-mtu"]["remote"], got[b"over-mtu"], got[b"bcast-bi"]
    mtu = s.drops("mtu", "ports", "hp") - mtu
    assert bare_got == 10
    assert fits == 20 and over["remote"] == 0
    assert big["remote"] == 0 and big["hp2"] == big["hi"] == 20
    assert mtu == 40
    measured(f"13-byte frame: the kernel refused it ({refused.value.strerror}); 10 of 10 bare 14-byte headers "
             f"delivered; {largest}-byte frames to the remote host: {fits}/20 delivered; 1514-byte: "
             f"{over['remote']}/20 unicast and {big['remote']}/20 broadcast copies sent to the underlay, "
             f"mtu +{mtu}; the broadcast's local copies {big['hp2']}/20 at hp2")


@pytest.mark.reliability("Hostile tenant", "An isolated host sends broadcasts from 5000 source MACs against "
                         "maximum_fdb_entries = 1024",
                         expected="the segment's table stops at 1024 (learn_refused counts the rest, whose "
                                  "frames are still forwarded); known MACs keep forwarding as unicast; another "
                                  "segment learns and forwards as before")
def test_mac_flooding_from_one_port(make_site, measured):
    s = make_site()
    s.announce(*TENANT)
    c = s.d.counters()
    before, rx_before = c["segments"]["tenant"]["learn_refused"], c["ports"]["hi"]["rx_packets"]
    sent = 0
    for batch in range(25):  # paced so that the port's ring (256 slots) never overflows
        s.send("hi", [probe(BROADCAST, f"02:66:00:00:{n >> 8:02x}:{n & 0xff:02x}", b"flooding", n,
                            ethertype=FLOOD) for n in range(batch * 200, batch * 200 + 200)])
        sent += 200
        s.settle()
    c = s.d.counters()
    table = len(s.fdb())
    refused = c["segments"]["tenant"]["learn_refused"] - before
    handled = c["ports"]["hi"]["rx_packets"] - rx_before
    ring_full = c["ports"]["hi"]["drops"]["ring_full"]
    assert table == 1024
    assert refused == handled - (1024 - len(TENANT))  # every MAC past the limit
    # Known MACs still go as unicast, to their owner only.
    s.send("hp2", [probe(mac("hw"), mac("hp2"), b"knownmac", n) for n in range(100)])
    known = s.received(b"knownmac")
    assert known["hw"] == 100 and sum(known.values()) == 100
    # A new MAC in the full segment is not learned, and its frames are still flooded.
    s.send("hd", [probe(mac("hp"), "02:77:00:00:00:01", b"newcomer")])
    newcomer = s.received(b"newcomer")
    assert newcomer["hp"] == 1 and "02:77:00:00:00:01" not in s.fdb()
    # The other segment: learning and forwarding unaffected.
    s.announce(*OTHER)
    s.send("ho1", [probe(mac("ho2"), mac("ho1"), b"othersgm", n) for n in range(100)])
    other = s.received(b"othersgm")
    other_fdb = s.fdb("other")
    assert set(other_fdb) == {mac("ho1"), mac("ho2")}
    assert other["ho2"] == 100 and sum(other.values()) == 100
    measured(f"{sent} flooding MACs sent, {handled} taken by vtepd (ring_full {ring_full}): tenant table "
             f"{table}/1024, learn_refused +{refused}; known unicast hp2 -> hw {known['hw']}/100 (none flooded); a new MAC forwarded "
             f"({newcomer['hp']}/1) but not learned; segment other learned {len(other_fdb)}/2 MACs and "
             f"delivered {other['ho2']}/100")


def storm(s, host, stop, seconds=10):
    """Broadcast IPv4/UDP frames from "host", as fast as one thread sends,
    until "stop" (at most "seconds"), with changing UDP ports so that the
    fanout hash spreads them over the workers.  Returns (frames sent, the
    first send's time)."""
    head = raw_mac(BROADCAST) + raw_mac(mac(host)) + b"\x08\x00"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 46, 0, 0, 64, 17, 0, bytes([192, 0, 2, 66]), bytes([255] * 4))
    frames = [head + ip + struct.pack("!HHHH", 1024 + n, 9, 26, 0) + b"stormstm" + bytes(10) for n in range(512)]
    sock, sent, first = s.send_on[host], 0, time.monotonic()
    while time.monotonic() < first + seconds and not stop.is_set():
        for f in frames:
            with contextlib.suppress(BlockingIOError):
                sock.send(f)
                sent += 1
    return sent, first


@pytest.mark.reliability("Hostile tenant", "An isolated host floods broadcasts as fast as one thread sends for "
                         "2 s, its port limited to bum_rate_limit = 1000 frames/s (burst 100), 2 workers "
                         "sharing the port",
                         expected="at most 1000 storm frames/s plus one burst pass, the rest are dropped as "
                                  "bum_rate_limit; the other ports' broadcast and unicast all get through")
def test_broadcast_storm_is_held_to_the_ports_limit(make_site, measured):
    s = make_site(vtep_keys="workers = 2", port_keys={"hi": "bum_rate_limit = 1000\n"})
    s.announce(*TENANT)
    listener = packet_socket(s.hosts["hp2"][0], "eth0", 0x0800)
    before = s.d.counters()["ports"]
    stop, result = threading.Event(), {}
    attacker = threading.Thread(target=lambda: result.update(zip(("sent", "first"), storm(s, "hi", stop))))
    attacker.start()
    try:
        # Meanwhile, 100 broadcasts from hp and 100 unicast hp2 -> hw, 50 of each a second.
        for n in range(100):
            s.send("hp", [probe(BROADCAST, mac("hp"), b"bystandb", n)])
            s.send("hp2", [probe(mac("hw"), mac("hp2"), b"bystandu", n)])
            time.sleep(0.02)
    finally:
        stop.set()
        attacker.join()
    got = s.collect()
    window = time.monotonic() - result["first"]  # vtepd handled every storm frame within it
    passed = sum(1 for f in drain(listener) if f[42:50] == b"stormstm")
    listener.close()
    bcast, ucast = got[b"bystandb"], got[b"bystandu"]
    after = s.d.counters()["ports"]
    hi = delta(before["hi"]["drops"], after["hi"]["drops"])
    handled = after["hi"]["rx_packets"] - before["hi"]["rx_packets"]
    assert bcast["hp2"] == bcast["hw"] == bcast["hd"] == bcast["remote"] == 100
    assert ucast["hw"] == 100
    assert hi["bum_rate_limit"] > 0 and passed + hi["bum_rate_limit"] <= handled
    assert 100 <= passed <= 1000 * window + 100
    measured(f"storm: {result['sent']} frames sent ({result['sent'] / window:.0f}/s), {handled} taken by vtepd "
             f"(the rest ring_full: {hi['ring_full']}); {passed} reached hp2 in a {window:.1f} s window "
             f"({passed / window:.0f}/s), {hi['bum_rate_limit']} dropped as bum_rate_limit; meanwhile hp's "
             f"broadcasts reached hp2 {bcast['hp2']}/100 and the remote {bcast['remote']}/100, hp2 -> hw "
             f"unicast {ucast['hw']}/100")


def test_a_reload_changes_the_limit_in_place(make_site):
    """bum_rate_limit 1000 -> 20 by `vtepctl reload`: the port is not
    reopened, a unicast flow from it loses nothing, and the new limit
    (burst 2) holds at once."""
    s = make_site(port_keys={"hi": "bum_rate_limit = 1000\n"})
    s.announce(*TENANT)
    stop, sent = threading.Event(), []

    def flow():
        while not stop.is_set():
            s.send("hi", [probe(mac("hp"), mac("hi"), b"flow-hi!", len(sent))])
            sent.append(1)
            time.sleep(0.01)
    sender = threading.Thread(target=flow)
    sender.start()
    try:
        time.sleep(0.5)
        s.d.write_config(config(port_keys={"hi": "bum_rate_limit = 20\n"}))
        changes = s.d.ctl("reload")["changes"]
        time.sleep(0.5)
    finally:
        stop.set()
        sender.join()
    got = s.received(b"flow-hi!")
    assert changes == ["port hi: bum_rate_limit 20"]
    assert {p["name"]: p["bum_rate_limit"] for p in s.d.ctl("show-ports")}["hi"] == 20
    assert got["hp"] == len(sent)
    start = time.monotonic()
    s.send("hi", [probe(BROADCAST, mac("hi"), b"afterrld", n) for n in range(200)])
    after = s.received(b"afterrld")
    assert after["hp"] <= 2 + 20 * (time.monotonic() - start) + 1


# ================================ hostile underlay ================================

FAMILIES = pytest.mark.parametrize("family", [4, 6], ids=["ipv4-underlay", "ipv6-underlay"])


@pytest.mark.reliability("Hostile underlay", "An underlay host that is not on the segment's fixed remote list "
                         "sends 50 valid VXLAN broadcasts on the primary VNI",
                         expected="all dropped (unknown_remote) and nothing learned; the listed remote's "
                                  "traffic is delivered meanwhile")
@FAMILIES
def test_vxlan_from_an_address_not_on_the_remote_list(make_site, measured, family):
    s = make_site(family=family)
    before = s.drops("unknown_remote")
    s.remote_send(VNI["promiscuous"], [probe(BROADCAST, "02:00:00:00:66:01", b"stranger", n) for n in range(50)],
                  source=STRANGER[family])
    s.remote_send(VNI["promiscuous"], [probe(BROADCAST, REMOTE_HOST, b"listedrm", n) for n in range(50)])
    got = s.collect()
    stranger, listed = got[b"stranger"], got[b"listedrm"]
    dropped = s.drops("unknown_remote") - before
    assert stranger == {h: 0 for h in stranger} and dropped == 50
    assert "02:00:00:00:66:01" not in s.fdb()
    assert all(listed[h] == 50 for h in TENANT)
    measured(f"IPv{family}: {sum(stranger.values())} of 50 stranger frames delivered, unknown_remote +{dropped}; "
             f"the listed remote's 50 broadcasts reached all {len(TENANT)} tenant hosts")


@pytest.mark.reliability("Hostile underlay", "The listed remote sends 50 VXLAN frames with a VNI no segment has",
                         expected="all dropped (unknown_vni)")
def test_unknown_vni(make_site, measured):
    s = make_site()
    before = s.drops("unknown_vni")
    s.remote_send(7777, [probe(BROADCAST, REMOTE_HOST, b"unknownv", n) for n in range(50)])
    got = s.received(b"unknownv")
    dropped = s.drops("unknown_vni") - before
    assert got == {h: 0 for h in got} and dropped == 50
    measured(f"{sum(got.values())} of 50 delivered; unknown_vni +{dropped}")


@pytest.mark.reliability("Hostile underlay", "A sender that spoofs the listed remote's address sends 20 "
                         "broadcasts on each of the segment's VNIs (primary, isolated, each community)",
                         expected="the underlay is trusted as far as the remote list says: each VNI's frames "
                                  "reach exactly the hosts its role may reach, so a spoofer can inject as any role")
@FAMILIES
def test_spoofed_remote_injects_as_the_role_of_the_vni(make_site, measured, family):
    s = make_site(family=family)
    reach = {}
    for role, vni in VNI.items():
        tag = f"vni-{vni}".encode().ljust(8, b"!")
        s.remote_send(vni, [probe(BROADCAST, f"02:00:00:00:0a:{vni % 256:02x}", tag, n) for n in range(20)])
        got = s.received(tag)
        reach[role] = {h for h, n in got.items() if n}
        assert all(got[h] == 20 for h in reach[role])
        assert reach[role] == reachable_from(role)
    measured(f"IPv{family}: " + "; ".join(f"VNI {VNI[r]} ({r}) reached {sorted(hosts)}" for r, hosts in reach.items()))


@pytest.mark.reliability("Hostile underlay", "A spoofer of the listed remote sends 50 frames claiming a local "
                         "host's MAC: promiscuous hp's on the isolated VNI, then hp's on the primary VNI, then "
                         "static hp2's on the primary VNI",
                         expected="another role: dropped (foreign_src_mac); the same role: the learned entry "
                                  "moves to the remote (hp's unicast is hijacked); a static entry never moves")
def test_spoofed_remote_claims_local_macs(make_site, measured):
    static = f'[[fdb]]\nsegment = "tenant"\nmac = "{mac("hp2")}"\nport = "hp2"\n'
    s = make_site(fdb=static)
    s.announce(*TENANT)
    tenant = s.d.counters()["segments"]["tenant"]
    s.remote_send(VNI["isolated"], [probe(BROADCAST, mac("hp"), b"claim-is", n) for n in range(50)])
    other_role = s.received(b"claim-is")
    after = s.d.counters()["segments"]["tenant"]
    foreign = after["drops"]["foreign_src_mac"] - tenant["drops"]["foreign_src_mac"]
    assert other_role == {h: 0 for h in other_role} and foreign == 50
    assert s.fdb()[mac("hp")]["target"] == "hp"

    s.remote_send(VNI["promiscuous"], [probe(mac("hp2"), mac("hp2"), b"claim-st", n) for n in range(50)])
    static_claim = s.received(b"claim-st")
    refused = s.d.counters()["segments"]["tenant"]["learn_refused"] - after["learn_refused"]
    assert s.fdb()[mac("hp2")]["target"] == "hp2" and refused == 50

    s.remote_send(VNI["promiscuous"], [probe(BROADCAST, mac("hp"), b"claim-pr", n) for n in range(50)])
    s.received(b"claim-pr")
    hijacked = s.fdb()[mac("hp")]
    s.send("hw", [probe(mac("hp"), mac("hw"), b"to-hp!!!", n) for n in range(20)])
    to_hp = s.received(b"to-hp!!!")
    assert (hijacked["kind"], hijacked["target"]) == ("remote", PEER[4])
    assert to_hp["remote"] == 20 and to_hp["hp"] == 0
    measured(f"hp's MAC on the isolated VNI: {sum(other_role.values())} of 50 delivered, foreign_src_mac "
             f"+{foreign}, entry stays on port hp; static hp2's MAC on the primary VNI: entry stays on hp2, "
             f"learn_refused +{refused}, frames delivered to hp2 {static_claim['hp2']}/50 (PVLAN allows it); "
             f"hp's MAC on the primary VNI: the entry moved to {hijacked['target']}, and {to_hp['remote']}/20 "
             f"of hw's unicast to hp went to the underlay, {to_hp['hp']} to hp")


MALFORMED = ["truncated-ip", "truncated-vxlan", "first-fragment", "later-fragment", "ip-options",
             "bad-ip-checksum", "bad-udp-checksum"]
EXPECTED_REASON = {"truncated-ip": "bad_header", "truncated-vxlan": "runt", "first-fragment": "fragment",
                   "later-fragment": "not_tunnel", "ip-options": "ip_options",
                   "bad-ip-checksum": "bad_checksum", "bad-udp-checksum": "bad_checksum"}


def malformed(s, how, inner):
    """A VXLAN packet from the listed remote (IPv4), broken in one way, built with scapy."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN
    ip = dict(src=PEER[4], dst=VTEP[4], flags="DF")
    udp = dict(sport=49999, dport=4789, chksum=0)
    if how == "first-fragment":
        ip.update(flags="MF", frag=0)
    elif how == "later-fragment":
        ip.update(flags=0, frag=8)
    elif how == "ip-options":
        ip.update(options=b"\x01\x01\x01\x00")  # NOP, NOP, NOP, end: a 24-byte header
    elif how == "bad-ip-checksum":
        ip.update(chksum=0x1234)
    elif how == "bad-udp-checksum":
        udp.update(chksum=0x1234)
    pkt = Ether(src=s.p_mac, dst=s.v_mac) / IP(**ip) / UDP(**udp) / VXLAN(vni=VNI["promiscuous"], flags=0x08) / inner
    data = bytes(pkt)
    if how == "truncated-ip":
        return data[:14 + 20 + 8 + 16]  # IP and UDP lengths say more than arrives
    if how == "truncated-vxlan":
        cut = Ether(src=s.p_mac, dst=s.v_mac) / IP(**ip) / UDP(**udp) / bytes(VXLAN(vni=5000, flags=0x08))[:4]
        return bytes(cut)  # consistent lengths, half a VXLAN header
    return data


@pytest.mark.reliability("Hostile underlay", "The listed remote's address sends 20 each of: packets cut short, "
                         "half a VXLAN header, first and later fragments, IPv4 options, a bad IPv4 header "
                         "checksum, a bad UDP checksum; 10 valid broadcasts interleaved with each kind",
                         expected="each broken packet is dropped and counted under its reason (bad_header, runt, "
                                  "fragment, not_tunnel, ip_options, bad_checksum); the valid traffic is all "
                                  "delivered")
def test_malformed_outer_packets(make_site, measured):
    s = make_site()
    results, valid = {}, collections.Counter()
    for k, how in enumerate(MALFORMED):
        before = s.d.counters()["underlay"]["drops"]
        tag = how[:8].encode().ljust(8, b"!")
        broken = [malformed(s, how, probe(BROADCAST, REMOTE_HOST, tag, n)) for n in range(20)]
        good = [s.tunnel().encap(VNI["promiscuous"], probe(BROADCAST, REMOTE_HOST, b"validtrf", 10 * k + n))
                for n in range(10)]
        s.inject(p for pair in zip(broken, good + [None] * 10) for p in pair if p is not None)  # interleaved
        got = s.collect()
        valid.update(got[b"validtrf"])
        d = delta(before, s.d.counters()["underlay"]["drops"])
        results[how] = (sum(got[tag].values()), {k: n for k, n in d.items() if n})
        assert results[how] == (0, {EXPECTED_REASON[how]: 20}), how
    assert all(valid[h] == 10 * len(MALFORMED) for h in TENANT)
    measured("; ".join(f"{how}: {n} of 20 delivered, {drops}" for how, (n, drops) in results.items())
             + f"; valid broadcasts interleaved: {valid['hp']}/{10 * len(MALFORMED)} at hp, "
               f"{valid['hi']}/{10 * len(MALFORMED)} at hi")
