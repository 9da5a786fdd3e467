"""The namespace lab (dataplane/lab.py) without the real vtepd: the topology,
the kernel VTEP, the start/READY/stop contract with stand-in daemons, and
down() in every state (whole lab, half-built lab, no state file)."""
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
from pyroute2 import NetNS, netns
from pyroute2.ethtool import Ethtool

from dataplane import config, lab

# -- without root: the tables ------------------------------------------------------------------


def test_expected_is_designs_table():
    prom, iso, web, db = "promiscuous", "isolated", "community:web", "community:db"
    table = {prom: {prom: 1, iso: 1, web: 1, db: 1},
             iso: {prom: 1, iso: 0, web: 0, db: 0},
             web: {prom: 1, iso: 0, web: 1, db: 0},
             db: {prom: 1, iso: 0, web: 0, db: 1}}
    for src, row in table.items():
        for dst, allowed in row.items():
            assert lab.expected(src, dst) is bool(allowed), (src, dst)
    for bad in ("community", "isolated:web", "prom", ""):
        with pytest.raises(ValueError):
            lab.expected(bad, prom)


def test_hosts_and_pairs():
    assert lab.TENANT_HOSTS == ("h1p", "h1i", "h1w", "h1d", "h2p", "h2i", "h2w", "h2d")
    assert [lab.HOSTS[h].address for h in lab.TENANT_HOSTS] == \
        [f"192.0.2.{n}" for n in (11, 12, 13, 14, 21, 22, 23, 24)]
    assert lab.HOSTS["h1k"].address == "192.0.2.131" and lab.HOSTS["hk"].address == "192.0.2.132"
    assert all(ns.startswith("vtlab-") for ns in lab.NAMESPACES)
    assert len(set(lab.NAMESPACES)) == len(lab.NAMESPACES) == 14
    pairs = lab.pairs()
    assert len(pairs) == 8 * 7 + 2 == len(set(pairs))
    assert ("h1k", "hk") in pairs and ("hk", "h1k") in pairs


@pytest.mark.parametrize("name", lab.VTEPDS)
def test_vtepd_configs_are_valid(name, tmp_path):
    path = tmp_path / f"{name}.toml"
    path.write_text(lab.vtepd_config(name, str(tmp_path)))
    cfg = config.load(path)
    assert str(cfg.vtep.local) == lab.VTEPS[name] and cfg.vtep.underlay == "ul0"
    assert cfg.vtep.control_socket == str(tmp_path / f"{name}.sock")
    tenant = next(s for s in cfg.segments if s.name == "tenant")
    assert (tenant.vni, tenant.isolated_vni, tenant.community_vni) == (5000, 5001, {"web": 5002, "db": 5003})
    other = lab.VTEPS["vtep2" if name == "vtep1" else "vtep1"]
    assert [str(r) for r in tenant.remote] == [other]
    ports = {p.name: p for p in cfg.ports}
    n = name[-1]
    assert {p: (ports[p].role, ports[p].community) for p in ports if ports[p].segment == "tenant"} == {
        f"h{n}p": ("promiscuous", None), f"h{n}i": ("isolated", None),
        f"h{n}w": ("community", "web"), f"h{n}d": ("community", "db")}
    assert all(p.backend == "afpacket" for p in cfg.ports)
    plain = [s for s in cfg.segments if s.name == "plain"]
    if name == "vtep1":
        assert plain[0].vni == 100 and [str(r) for r in plain[0].remote] == ["198.18.0.3"]
        assert ports["h1k"].segment == "plain"
    else:
        assert not plain


def test_format_matrix_marks_surprises():
    the_lab = lab.Lab()
    matrix = {(s, d): lab.expected(the_lab.host(s).role_label, the_lab.host(d).role_label) for s, d in lab.pairs()}
    matrix[("h1i", "h2i")] = True  # isolated reaching isolated: wrong
    matrix[("hk", "h1k")] = False
    text = lab.format_matrix(the_lab, matrix)
    assert sorted(lab.mismatches(the_lab, matrix)) == [("h1i", "h2i"), ("hk", "h1k")]
    row = next(line for line in text.splitlines() if line.startswith("h1i iso"))
    assert row.split()[2:] == ["yes", "-", "no", "no", "yes", "yes!", "no", "no"]
    assert "hk -> h1k: no!" in text and "h1k -> hk: yes" in text


# -- as root: the lab itself -------------------------------------------------------------------

def _links(namespace):
    with NetNS(namespace, flags=0) as ns:
        return {link.get_attr("IFLA_IFNAME"): link for link in ns.get_links()}


def _addresses(namespace):
    with NetNS(namespace, flags=0) as ns:
        return {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ns.get_addr(family=socket.AF_INET)}


def _tx_checksum(namespace, ifname):
    netns.pushns(namespace)
    try:
        tool = Ethtool()
        try:
            features = tool.get_features(ifname).features
        finally:
            tool.close()
    finally:
        netns.popns()
    return {n: features[n].enable for n in ("tx-checksum-ip-generic", "tx-tcp-segmentation", "tx-udp_tnl-segmentation")}


@pytest.fixture
def clean():
    """No lab before the test (a running one is not ours to remove), none after it."""
    if lab.lab_namespaces():
        pytest.fail(f"a vtep lab is up ({', '.join(lab.lab_namespaces())}): `vtepctl lab down` first")
    try:
        yield
    finally:
        lab.down()
        assert lab.lab_namespaces() == []


@pytest.mark.root
def test_topology_without_vtepd(clean):
    the_lab = lab.up(start_vtepd=False)
    assert lab.lab_namespaces() == sorted(lab.NAMESPACES)
    state = json.load(open(lab.STATE_FILE))
    assert set(state["vtepd"]) == {"vtep1", "vtep2"}
    for name, v in the_lab.vtepds.items():
        assert v.pid is None and v.socket == f"/run/vtep-lab/{name}.sock"
        assert str(config.load(v.config).vtep.local) == lab.VTEPS[name]

    # Underlay: one bridge, a veth per VTEP host, MTU 1500, addresses .1 .2 .3.
    ul = _links("vtlab-ul")
    bridge = ul["br0"]["index"]
    assert {n for n, link in ul.items() if link.get_attr("IFLA_MASTER") == bridge} == \
        {"ul-vtep1", "ul-vtep2", "ul-kvtep"}
    for vtep, address in lab.VTEPS.items():
        assert _links(f"vtlab-{vtep}")["ul0"].get_attr("IFLA_MTU") == 1500
        assert _addresses(f"vtlab-{vtep}") >= {(address, 24)}

    # Hosts: eth0 with MTU 1450 and the address; the other end in the VTEP namespace.
    for host in lab.HOSTS.values():
        eth0 = _links(host.namespace)["eth0"]
        assert eth0.get_attr("IFLA_MTU") == 1450 and eth0.get_attr("IFLA_OPERSTATE") == "UP"
        assert eth0.get_attr("IFLA_ADDRESS") == host.mac
        assert _addresses(host.namespace) == {(host.address, 25), ("127.0.0.1", 8)}
        assert _links(f"vtlab-{host.vtep}")[host.name].get_attr("IFLA_MTU") == 1450
        # Hosts keep their offloads: vtepd finishes them (lab.py's module doc).
        assert all(_tx_checksum(host.namespace, "eth0").values())
    # The kernel VTEP segments its VXLAN packets itself; its checksum offload stays.
    assert _tx_checksum("vtlab-kvtep", "ul0") == {"tx-checksum-ip-generic": True, "tx-tcp-segmentation": True,
                                                  "tx-udp_tnl-segmentation": False}

    # The kernel VTEP: VNI 100, port 4789, local .3, learning, floods to .1; in a bridge with hk.
    k = _links("vtlab-kvtep")
    vx = k["vx100"]
    data = vx.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
    assert data.get_attr("IFLA_VXLAN_ID") == 100
    assert data.get_attr("IFLA_VXLAN_PORT") == 4789
    assert data.get_attr("IFLA_VXLAN_LOCAL") == "198.18.0.3"
    assert data.get_attr("IFLA_VXLAN_LEARNING") == 1
    assert vx.get_attr("IFLA_MASTER") == k["hk"].get_attr("IFLA_MASTER") == k["br0"]["index"]
    with NetNS("vtlab-kvtep", flags=0) as ns:
        fdb = {(e.get_attr("NDA_LLADDR"), e.get_attr("NDA_DST")) for e in ns.fdb("dump", ifindex=vx["index"])}
    assert ("00:00:00:00:00:00", "198.18.0.1") in fdb

    # The underlay carries traffic; nothing crosses the overlay without vtepd.
    reached = lab.ping_many([("vtlab-vtep1", "198.18.0.2"), ("vtlab-vtep1", "198.18.0.3"),
                             ("vtlab-vtep2", "198.18.0.3"), ("vtlab-vtep1", "198.18.0.99"),
                             ("vtlab-h1p", "192.0.2.21")])
    assert list(reached.values()) == [True, True, True, False, False]

    assert lab.attach().vtepds.keys() == the_lab.vtepds.keys()
    with pytest.raises(lab.LabError, match="already up"):
        lab.up(start_vtepd=False)
    assert lab.lab_namespaces() == sorted(lab.NAMESPACES)  # the refused second up left it alone

    assert sorted(lab.down()) == sorted(lab.NAMESPACES)
    assert lab.lab_namespaces() == [] and not os.path.exists(lab.STATE_DIR)
    assert lab.down() == []  # twice is fine


@pytest.mark.root
@pytest.mark.slow
def test_plain_pair_through_the_kernel_vtep(clean):
    """With a kernel VXLAN device standing in for vtepd in vtlab-vtep1 (VNI 100 to .3,
    bridged with h1k), h1k and hk reach each other through vtlab-kvtep: the kernel
    side of the lab, ping_matrix() and iperf3() work; the tenant hosts (no vtepd) don't."""
    the_lab = lab.up(start_vtepd=False)
    with NetNS("vtlab-vtep1", flags=0) as ns:
        ul0 = ns.link_lookup(ifname="ul0")[0]
        ns.link("add", ifname="vx100", kind="vxlan", vxlan_id=100, vxlan_local="198.18.0.1", vxlan_port=4789,
                vxlan_link=ul0, mtu=1450)
        vx = ns.link_lookup(ifname="vx100")[0]
        ns.fdb("append", ifindex=vx, lladdr="00:00:00:00:00:00", dst="198.18.0.3")
        ns.link("add", ifname="brk", kind="bridge", br_stp_state=0)
        brk = ns.link_lookup(ifname="brk")[0]
        ns.link("set", index=brk, state="up")
        for name in ("vx100", "h1k"):
            ns.link("set", index=ns.link_lookup(ifname=name)[0], master=brk, state="up")
    matrix = lab.ping_matrix(the_lab)
    assert set(matrix) == set(lab.pairs())
    assert matrix.pop(("h1k", "hk")) and matrix.pop(("hk", "h1k"))
    assert not any(matrix.values())
    if lab.shutil.which("iperf3"):
        assert lab.iperf3(the_lab, "h1k", "hk", seconds=1) > 1e6


FAKE_VTEPD = textwrap.dedent('''
    """A stand-in for vtepd: checks where it runs, READY=1, waits for SIGTERM."""
    import os, signal, socket, sys, time
    from dataplane import config
    out, path = sys.argv[1], sys.argv[3]
    assert sys.argv[2] == "-c"
    cfg = config.load(path)
    name = os.path.basename(path).split(".")[0]
    for port in [cfg.vtep.underlay, *(p.name for p in cfg.ports)]:
        socket.if_nametoindex(port)                      # its namespace's links,
        assert os.path.exists(f"/sys/class/net/{port}")  # and its namespace's sysfs
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(1))
    with open(os.path.join(out, name + ".pid"), "w") as f:
        f.write(str(os.getpid()))
    mode = os.environ.get("FAKE_VTEPD_MODE", "ok")
    if mode != "silent":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(b"STATUS=starting\\nREADY=1", os.environ["NOTIFY_SOCKET"])
    while not stopped:
        time.sleep(0.05)
    with open(os.path.join(out, name + ".stopped"), "w") as f:
        f.write("SIGTERM")
''')


@pytest.fixture
def fake_vtepd(tmp_path):
    script = tmp_path / "fake_vtepd.py"
    script.write_text(FAKE_VTEPD)
    out = tmp_path / "out"
    out.mkdir()
    return [sys.executable, str(script), str(out)], out


@pytest.mark.root
def test_stand_in_vtepds_start_ready_and_stop(clean, fake_vtepd, monkeypatch):
    command, out = fake_vtepd
    monkeypatch.setenv("PYTHONPATH", os.path.dirname(os.path.dirname(lab.__file__)))
    the_lab = lab.up(command, timeout=20)
    state = json.load(open(lab.STATE_FILE))
    for name in lab.VTEPDS:
        pid = int((out / f"{name}.pid").read_text())
        assert the_lab.vtepds[name].pid == pid == state["vtepd"][name]["pid"]
        assert os.readlink(f"/proc/{pid}/ns/net") == f"net:[{os.stat(f'/run/netns/vtlab-{name}').st_ino}]"
    lab.down()
    for name in lab.VTEPDS:
        assert (out / f"{name}.stopped").read_text() == "SIGTERM"  # stopped cleanly, not killed
        assert the_lab.processes[name].poll() is not None or not os.path.exists(f"/proc/{the_lab.vtepds[name].pid}")
    assert lab.lab_namespaces() == []


@pytest.mark.root
def test_down_from_another_process(clean, fake_vtepd, monkeypatch):
    """`vtepctl lab up` returns while the vtepds run on; `vtepctl lab down` (a new
    process) stops them from the state file."""
    command, out = fake_vtepd
    monkeypatch.setenv("PYTHONPATH", os.path.dirname(os.path.dirname(lab.__file__)))
    up = subprocess.run([sys.executable, "-m", "dataplane.lab", "up", "--vtepd", " ".join(command)],
                        capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    assert "vtep1: namespace vtlab-vtep1, vtepd pid" in up.stdout
    pids = [int((out / f"{n}.pid").read_text()) for n in lab.VTEPDS]
    assert all(os.path.exists(f"/proc/{p}") for p in pids)
    down = subprocess.run([sys.executable, "-m", "dataplane.lab", "-j", "down"], capture_output=True, text=True,
                          timeout=60)
    assert down.returncode == 0, down.stderr
    assert sorted(json.loads(down.stdout)["removed"]) == sorted(lab.NAMESPACES)
    assert all((out / f"{n}.stopped").exists() for n in lab.VTEPDS)
    assert lab.lab_namespaces() == []


@pytest.mark.root
def test_vtepd_that_exits_tears_everything_down(clean):
    command = [sys.executable, "-c", "import sys; print('vtepd: not built yet'); sys.exit(2)"]
    with pytest.raises(lab.LabError, match=r"(?s)exited with status 2 before READY=1.*not built yet"):
        lab.up(command)
    assert lab.lab_namespaces() == [] and not os.path.exists(lab.STATE_DIR)


@pytest.mark.root
def test_vtepd_that_is_never_ready(clean, fake_vtepd, monkeypatch):
    command, out = fake_vtepd
    monkeypatch.setenv("PYTHONPATH", os.path.dirname(os.path.dirname(lab.__file__)))
    monkeypatch.setenv("FAKE_VTEPD_MODE", "silent")
    with pytest.raises(lab.LabError, match="sent no READY=1 within 3 s"):
        lab.up(command, timeout=3)
    assert lab.lab_namespaces() == []
    for name in lab.VTEPDS:
        pid_file = out / f"{name}.pid"
        if pid_file.exists():
            assert not os.path.exists(f"/proc/{int(pid_file.read_text())}")
            assert (out / f"{name}.stopped").exists()


@pytest.mark.root
def test_missing_vtepd_command(clean):
    with pytest.raises(lab.LabError, match="cannot start vtepd"):
        lab.up(["/nonexistent/vtepd"])
    assert lab.lab_namespaces() == []


@pytest.mark.root
def test_down_after_a_half_built_up(clean, monkeypatch):
    def broken(ns):
        raise OSError(17, "injected failure")

    monkeypatch.setattr(lab, "_build_kernel_vtep", broken)
    with pytest.raises(lab.LabError, match="building the topology failed.*injected failure"):
        lab.up(start_vtepd=False)
    assert lab.lab_namespaces() == [] and not os.path.exists(lab.STATE_DIR)


@pytest.mark.root
def test_down_without_a_state_file(clean):
    """Leftovers of a crash: some namespaces, a process in one, no /run/vtep-lab."""
    with NetNS("vtlab-ul", flags=os.O_CREAT) as ul, NetNS("vtlab-h1p", flags=os.O_CREAT):
        ul.link("add", ifname="ul-x", kind="veth", peer={"ifname": "eth0", "net_ns_fd": "vtlab-h1p"})
    sleeper = subprocess.Popen(["sleep", "60"], preexec_fn=lambda: netns.setns("vtlab-h1p", flags=0))
    try:
        assert not os.path.exists(lab.STATE_FILE)
        assert sorted(lab.down()) == ["vtlab-h1p", "vtlab-ul"]
        assert sleeper.wait(timeout=5) is not None
        assert lab.lab_namespaces() == []
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()


@pytest.mark.root
@pytest.mark.slow
def test_with_vtepd(clean):
    """The whole lab with the real daemon: every verdict as DESIGN.md's table says,
    TCP through the overlay and to and from the kernel's VXLAN device."""
    the_lab = lab.up()
    for v in the_lab.vtepds.values():
        assert os.path.exists(v.socket)
    matrix = lab.ping_matrix(the_lab)
    assert lab.mismatches(the_lab, matrix) == [], lab.format_matrix(the_lab, matrix)
    for src, dst in (("h1p", "h2p"), ("h1k", "hk"), ("hk", "h1k")):
        assert lab.iperf3(the_lab, src, dst, seconds=1) > 10e6, (src, dst)
