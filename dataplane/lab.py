"""The namespace lab: `vtepctl lab up|down`, and `make demo` (DESIGN.md section 4).

Entry points (the CLI and the Makefile call exactly these):

    up(vtepd=VTEPD) -> Lab       build the lab, start one vtepd per VTEP namespace and
                                 wait for each one's READY=1; on any failure everything
                                 is torn down again and LabError says why
    down() -> list[str]          stop the lab's vtepds and remove every vtlab-* namespace
                                 (works from the state file, and without it); returns
                                 the namespaces it removed
    ping_matrix(lab) -> {(src, dst): bool}
                                 every ordered pair of the 8 tenant hosts plus the plain
                                 pair (h1k, hk) both ways; all probes run at once, like
                                 `ping -c 2 -W 1` each (about 2 s in all)
    expected(src_role, dst_role) -> bool
                                 DESIGN.md's PVLAN table; a role is "promiscuous",
                                 "isolated" or "community:NAME"
    iperf3(lab, src, dst, seconds=3) -> float
                                 TCP throughput in bit/s from host "src" to host "dst"
                                 (e.g. "h1p" -> "h2p" over the overlay, "h1k" -> "hk"
                                 through the kernel's VXLAN device)
    demo() -> int                up, the ping matrix against the expected one, the iperf3
                                 lines, then down (always); 0 when everything matched
    main(argv) -> int            `python -m dataplane.lab up|down|demo|ping`

    LAB_COMMANDS                 (words, help, run(args), add_arguments) for vtepctl's
                                 COMMANDS table: lab up, lab down, lab demo

`vtepd` is the command that starts the daemon, given "-c FILE" after it; the
default runs this checkout's daemon with this Python.  Its contract: it runs in
the foreground in the namespace it serves, sends READY=1 on $NOTIFY_SOCKET (a
datagram Unix socket, the systemd protocol) when its ports are up, and exits
cleanly on SIGTERM.  It is started the way `ip netns exec` starts a program: in
the VTEP's network namespace with a private mount namespace whose /sys is that
namespace's sysfs, in a session of its own (it outlives `vtepctl lab up`),
stdout and stderr to /run/vtep-lab/vtepN.log.

Topology (every name starts with vtlab-, so down() always finds it):

    vtlab-ul      bridge br0 joining ul-vtep1, ul-vtep2, ul-kvtep: the underlay 198.18.0.0/24
    vtlab-vtep1   ul0 198.18.0.1 (MTU 1500), vtepd; access ports (afpacket) h1p h1i h1w h1d h1k
    vtlab-vtep2   ul0 198.18.0.2 (MTU 1500), vtepd; access ports (afpacket) h2p h2i h2w h2d
    vtlab-kvtep   ul0 198.18.0.3; the kernel's vxlan device vx100 (VNI 100, port 4789,
                  learning, remote 198.18.0.1 as an all-zeros FDB entry) and veth hk in bridge br0
    vtlab-HOST    one namespace per host, its veth end eth0 (MTU 1450) with HOST's address

    host  VTEP   segment  role              address
    h1p   vtep1  tenant   promiscuous       192.0.2.11/25
    h1i   vtep1  tenant   isolated          192.0.2.12/25
    h1w   vtep1  tenant   community web     192.0.2.13/25
    h1d   vtep1  tenant   community db      192.0.2.14/25
    h2p..h2d     vtep2, the same roles      192.0.2.21..24/25
    h1k   vtep1  plain    promiscuous       192.0.2.131/25
    hk    kvtep  plain    (kernel bridge)   192.0.2.132/25

Offloads: hosts keep those veths come with.  Their TCP reaches vtepd as 64 KiB
super-frames with checksums unfinished, which vtepd finishes and segments
(csrc/offload.h).  Only the kernel VTEP's ul0 has segmentation of tunnel
packets off: AF_PACKET cannot describe a 64 KiB VXLAN super-packet to vtepd
(see no_tunnel_segmentation).

Segment tenant: VXLAN VNI 5000, isolated 5001, communities web 5002 and db 5003,
each vtepd's remote is the other one.  Segment plain (vtep1 only): VNI 100,
remote 198.18.0.3, the kernel VTEP.  Hosts have MTU 1450 so that VXLAN over
IPv4 (50 bytes) fits the underlay's 1500.

State lives in /run/vtep-lab/: state.json (vtepd PIDs, config, socket and log
paths), vtepN.toml, vtepN.sock (control sockets: `vtepctl -s
/run/vtep-lab/vtep1.sock show fdb`), vtepN.log, vtepN.notify.

Every change to links, addresses and the FDB goes through pyroute2; ping is a
raw ICMP socket in the host's namespace (the `ping` binary is not needed);
iperf3 runs inside the host namespaces."""
import argparse
import ctypes
import json
import os
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, field

from pyroute2 import NetNS, netns
from pyroute2.ethtool import Ethtool

from . import config
from .packet import checksum

PREFIX = "vtlab-"
STATE_DIR = "/run/vtep-lab"
STATE_FILE = os.path.join(STATE_DIR, "state.json")
NETNS_DIR = "/run/netns"
VTEPD = (sys.executable, "-m", "dataplane.daemon")
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0

UNDERLAY_NS = PREFIX + "ul"
UNDERLAY_PREFIXLEN = 24
UNDERLAY_MTU = 1500
HOST_MTU = 1450
HOST_PREFIXLEN = 25
KERNEL_VNI = 100
VXLAN_PORT = 4789
IFA_F_NODAD = 0x02

# name -> underlay address.  "kernel" VTEPs run Linux's vxlan device, the others vtepd.
VTEPS = {"vtep1": "198.18.0.1", "vtep2": "198.18.0.2", "kvtep": "198.18.0.3"}
VTEPDS = ("vtep1", "vtep2")

TENANT = {"name": "tenant", "vni": 5000, "isolated_vni": 5001, "community_vni": {"web": 5002, "db": 5003}}
PLAIN = {"name": "plain", "vni": KERNEL_VNI}


@dataclass(frozen=True)
class Host:
    name: str           # also the VTEP-side veth (the vtepd port); the host side is eth0
    vtep: str
    segment: str
    role: str           # promiscuous | isolated | community
    community: str | None
    address: str

    @property
    def namespace(self):
        return PREFIX + self.name

    @property
    def mac(self):
        """Fixed, locally administered: 02:1a:00:00:00:<last address byte>."""
        return "02:1a:00:00:00:%02x" % int(self.address.rsplit(".", 1)[1])

    @property
    def role_label(self):
        """The role as expected() takes it: "promiscuous", "isolated", "community:web"."""
        return f"community:{self.community}" if self.role == "community" else self.role


def _tenant_hosts(n, vtep):
    return [Host(f"h{n}p", vtep, "tenant", "promiscuous", None, f"192.0.2.{n}1"),
            Host(f"h{n}i", vtep, "tenant", "isolated", None, f"192.0.2.{n}2"),
            Host(f"h{n}w", vtep, "tenant", "community", "web", f"192.0.2.{n}3"),
            Host(f"h{n}d", vtep, "tenant", "community", "db", f"192.0.2.{n}4")]


HOSTS = {h.name: h for h in [*_tenant_hosts(1, "vtep1"), *_tenant_hosts(2, "vtep2"),
                             Host("h1k", "vtep1", "plain", "promiscuous", None, "192.0.2.131"),
                             Host("hk", "kvtep", "plain", "promiscuous", None, "192.0.2.132")]}
TENANT_HOSTS = tuple(h for h in HOSTS if HOSTS[h].segment == "tenant")
PLAIN_PAIR = ("h1k", "hk")
NAMESPACES = (UNDERLAY_NS, *(PREFIX + v for v in VTEPS), *(h.namespace for h in HOSTS.values()))


class LabError(RuntimeError):
    pass


@dataclass
class Vtepd:
    name: str
    namespace: str
    config: str
    socket: str
    log: str
    notify: str
    pid: int | None = None


@dataclass
class Lab:
    hosts: dict = field(default_factory=lambda: dict(HOSTS))
    vtepds: dict = field(default_factory=dict)      # name -> Vtepd
    state_dir: str = STATE_DIR
    processes: dict = field(default_factory=dict, repr=False)  # name -> Popen, in the process that started them

    def host(self, name):
        """A Host by its name ("h1p") or namespace ("vtlab-h1p")."""
        key = name[len(PREFIX):] if name.startswith(PREFIX) else name
        try:
            return self.hosts[key]
        except KeyError:
            raise LabError(f"no host {name!r} in the lab (hosts: {', '.join(self.hosts)})") from None


# -- configuration ------------------------------------------------------------------------------

def _toml_value(value):
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return str(value)


def _table(header, values):
    return [header, *(f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None), ""]


def vtepd_config(name, state_dir=STATE_DIR):
    """The TOML text of vtepd "name" ("vtep1" or "vtep2")."""
    local = VTEPS[name]
    other = VTEPS["vtep2" if name == "vtep1" else "vtep1"]
    lines = [f"# vtep lab: {name} in namespace {PREFIX}{name} (dataplane/lab.py writes this file)", ""]
    lines += _table("[vtep]", {"underlay": "ul0", "local": local, "destination_port": VXLAN_PORT,
                               "control_socket": os.path.join(state_dir, f"{name}.sock"),
                               "metrics": "127.0.0.1:9477"})  # the namespace's own loopback
    lines += _table("[[segment]]", {**TENANT, "encapsulation": "vxlan", "remote": [other]})
    hosts = [h for h in HOSTS.values() if h.vtep == name]
    if any(h.segment == "plain" for h in hosts):
        lines += _table("[[segment]]", {**PLAIN, "encapsulation": "vxlan", "remote": [VTEPS["kvtep"]]})
    for h in hosts:
        lines += _table("[[port]]", {"name": h.name, "backend": "afpacket", "segment": h.segment,
                                     "role": h.role, "community": h.community})
    text = "\n".join(lines)
    config.parse(tomllib.loads(text))  # our own mistake must not reach vtepd
    return text


# -- running things inside namespaces -----------------------------------------------------------

_CLONE_NEWNS = 0x00020000
_MS_REC, _MS_SLAVE = 0x4000, 0x80000
_MNT_DETACH = 2


def _enter(namespace, private_sysfs=False):
    """A preexec_fn: join "namespace"; with "private_sysfs", also what `ip netns exec`
    does for /sys (a private mount namespace with the namespace's own sysfs), so a
    program reading /sys/class/net sees its namespace's links."""
    def preexec():
        netns.setns(namespace, flags=0)
        if private_sysfs:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(_CLONE_NEWNS) == 0 and \
                    libc.mount(b"none", b"/", None, _MS_REC | _MS_SLAVE, None) == 0 and \
                    libc.umount2(b"/sys", _MNT_DETACH) == 0:
                libc.mount(namespace.encode(), b"/sys", b"sysfs", 0, None)
    return preexec


def _require_root():
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, veths, raw sockets)")


def lab_namespaces():
    """The vtlab-* namespaces that exist now."""
    return sorted(n for n in netns.listnetns() if n.startswith(PREFIX))


# -- building the topology ----------------------------------------------------------------------

def _up(ns, ifname, **kwargs):
    index = ns.link_lookup(ifname=ifname)[0]
    ns.link("set", index=index, state="up", **kwargs)
    return index


def _veth(ns, ifname, peer_ns, peer_ifname, mtu):
    ns.link("add", ifname=ifname, kind="veth", mtu=mtu,
            peer={"ifname": peer_ifname, "net_ns_fd": peer_ns, "mtu": mtu})


def _build(handles):
    """Create the whole topology; "handles" collects the open NetNS objects (the
    caller closes them, also on failure)."""
    for name in NAMESPACES:
        handles[name] = NetNS(name, flags=os.O_CREAT | os.O_EXCL)
        _up(handles[name], "lo")

    ul = handles[UNDERLAY_NS]
    ul.link("add", ifname="br0", kind="bridge", br_stp_state=0)
    bridge = _up(ul, "br0")
    for vtep, address in VTEPS.items():
        ns = handles[PREFIX + vtep]
        _veth(ul, f"ul-{vtep}", PREFIX + vtep, "ul0", UNDERLAY_MTU)
        _up(ul, f"ul-{vtep}", master=bridge)
        index = ns.link_lookup(ifname="ul0")[0]
        ns.addr("add", index=index, address=address, prefixlen=UNDERLAY_PREFIXLEN, flags=IFA_F_NODAD)
        _up(ns, "ul0")

    for host in HOSTS.values():
        vtep_ns, host_ns = handles[PREFIX + host.vtep], handles[host.namespace]
        _veth(vtep_ns, host.name, host.namespace, "eth0", HOST_MTU)
        _up(vtep_ns, host.name)
        eth0 = host_ns.link_lookup(ifname="eth0")[0]
        host_ns.link("set", index=eth0, address=host.mac)
        host_ns.addr("add", index=eth0, address=host.address, prefixlen=HOST_PREFIXLEN, flags=IFA_F_NODAD)
        _up(host_ns, "eth0")

    _build_kernel_vtep(handles[PREFIX + "kvtep"])
    no_tunnel_segmentation(PREFIX + "kvtep", "ul0")


_TUNNEL_GSO = ("tx-udp_tnl-segmentation", "tx-udp_tnl-csum-segmentation")


def no_tunnel_segmentation(namespace, ifname):
    """Segmentation offload of tunnel packets off on veth "ifname" of a local
    kernel VTEP that talks to vtepd (`ethtool -K IFNAME tx-udp_tnl-segmentation
    off tx-udp_tnl-csum-segmentation off`).  Left on, the kernel hands the veth
    one 64 KiB VXLAN super-packet per TCP burst, which AF_PACKET's virtio-net
    header cannot describe (it has no UDP-tunnel GSO type); a VXLAN packet from
    a NIC is never one.  The kernel then segments them itself; the inner
    checksums it leaves unfinished vtepd finishes."""
    set_offloads(namespace, ifname, _TUNNEL_GSO, False)


def set_offloads(namespace, ifname, names, enable):
    """Turn the ethtool features "names" (those the link has) of "ifname" in
    "namespace" on or off, through pyroute2 (ethtool's ioctl runs in the
    calling thread's namespace, hence the push and pop)."""
    netns.pushns(namespace)
    try:
        tool = Ethtool()
        try:
            features = tool.get_features(ifname)
            for name in names:
                if name in features.features:
                    features.features[name].enable = enable
            tool.set_features(ifname, features)
        finally:
            tool.close()
    finally:
        netns.popns()


def _build_kernel_vtep(k):
    """Linux's own VTEP for segment plain: vx100 and the veth to hk in bridge br0;
    BUM (and unknown unicast) goes to vtep1 through an all-zeros FDB entry."""
    ul0 = k.link_lookup(ifname="ul0")[0]
    k.link("add", ifname="vx100", kind="vxlan", vxlan_id=KERNEL_VNI, vxlan_local=VTEPS["kvtep"],
           vxlan_port=VXLAN_PORT, vxlan_link=ul0, vxlan_learning=1, mtu=HOST_MTU)
    vx = k.link_lookup(ifname="vx100")[0]
    k.fdb("append", ifindex=vx, lladdr="00:00:00:00:00:00", dst=VTEPS["vtep1"])
    k.link("add", ifname="br0", kind="bridge", br_stp_state=0)
    bridge = _up(k, "br0")
    _up(k, "vx100", master=bridge)
    _up(k, "hk", master=bridge)


# -- vtepd --------------------------------------------------------------------------------------

def _vtepd_paths(name, state_dir):
    return Vtepd(name=name, namespace=PREFIX + name, config=os.path.join(state_dir, f"{name}.toml"),
                 socket=os.path.join(state_dir, f"{name}.sock"), log=os.path.join(state_dir, f"{name}.log"),
                 notify=os.path.join(state_dir, f"{name}.notify"))


def _command(vtepd):
    return shlex.split(vtepd) if isinstance(vtepd, str) else list(vtepd)


def _start_vtepd(lab, v, vtepd):
    """Start "v" and return its notify socket (bound before the daemon starts)."""
    try:
        os.unlink(v.notify)
    except FileNotFoundError:
        pass
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(v.notify)
    env = {**os.environ, "NOTIFY_SOCKET": v.notify, "PYTHONUNBUFFERED": "1"}
    env.pop("WATCHDOG_USEC", None)
    env.pop("WATCHDOG_PID", None)
    command = [*_command(vtepd), "-c", v.config]
    try:
        with open(v.log, "ab") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       env=env, preexec_fn=_enter(v.namespace, private_sysfs=True),
                                       start_new_session=True, close_fds=True)
    except OSError as e:
        notify.close()
        raise LabError(f"cannot start vtepd for {v.name} ({shlex.join(command)}): {e}") from e
    v.pid = process.pid
    lab.processes[v.name] = process
    return notify


def _log_tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            text = f.read().rstrip().splitlines()[-lines:]
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text) or "    (empty)"


def _wait_ready(lab, notify, timeout):
    """Wait for READY=1 from every vtepd in "notify" (name -> socket)."""
    pending = dict(notify)
    deadline = time.monotonic() + timeout
    while pending:
        for name in list(pending):
            process = lab.processes[name]
            if process.poll() is not None:
                v = lab.vtepds[name]
                raise LabError(f"vtepd for {name} exited with status {process.returncode} before READY=1; "
                               f"the end of {v.log}:\n{_log_tail(v.log)}")
        left = deadline - time.monotonic()
        if left <= 0:
            names = ", ".join(sorted(pending))
            logs = "\n".join(f"  {lab.vtepds[n].log}:\n{_log_tail(lab.vtepds[n].log)}" for n in sorted(pending))
            raise LabError(f"vtepd for {names} sent no READY=1 within {timeout:g} s\n{logs}")
        readable, _, _ = select.select(list(pending.values()), [], [], min(0.2, left))
        for sock in readable:
            name = next(n for n, s in pending.items() if s is sock)
            message = sock.recv(65536).decode(errors="replace")
            if "READY=1" in message.splitlines():
                del pending[name]


def _save_state(lab):
    state = {"vtepd": {name: asdict(v) for name, v in lab.vtepds.items()},
             "namespaces": list(NAMESPACES), "created": time.time()}
    tmp = STATE_FILE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=2)
    os.replace(tmp, STATE_FILE)


def _load_state():
    try:
        with open(STATE_FILE) as f:
            state = json.load(f)
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def attach():
    """The Lab that is up now (from the state file), e.g. for ping_matrix() after
    `vtepctl lab up`; raises LabError when there is none."""
    missing = [n for n in NAMESPACES if n not in set(lab_namespaces())]
    if missing:
        raise LabError(f"the lab is not up (missing namespaces: {', '.join(missing)})")
    lab = Lab()
    for name, v in _load_state().get("vtepd", {}).items():
        lab.vtepds[name] = Vtepd(**v)
    return lab


# -- up and down --------------------------------------------------------------------------------

def up(vtepd=VTEPD, *, start_vtepd=True, timeout=READY_TIMEOUT):
    """Build the lab and start its vtepds ("vtepd": the command, as a list or a shell-quoted
    string, that "-c FILE" is appended to).  With "start_vtepd" False only the topology,
    the configs and the state file are made (tests).  Returns a Lab; raises LabError
    after tearing everything down again."""
    _require_root()
    existing = lab_namespaces()
    if existing:
        raise LabError(f"a lab is already up ({', '.join(existing)}): run `vtepctl lab down` first")
    lab = Lab()
    try:
        os.makedirs(STATE_DIR, mode=0o755, exist_ok=True)
        for name in VTEPDS:
            v = lab.vtepds[name] = _vtepd_paths(name, STATE_DIR)
            with open(v.config, "w") as f:
                f.write(vtepd_config(name, STATE_DIR))
        _save_state(lab)
        handles = {}
        try:
            _build(handles)
        except Exception as e:
            raise LabError(f"building the topology failed: {type(e).__name__}: {e}") from e
        finally:
            for ns in handles.values():
                ns.close()
        if start_vtepd:
            notify = {}
            try:
                for name in VTEPDS:
                    notify[name] = _start_vtepd(lab, lab.vtepds[name], vtepd)
                    _save_state(lab)  # down() finds the PID even if we die now
                _wait_ready(lab, notify, timeout)
            finally:
                for sock in notify.values():
                    sock.close()
        return lab
    except BaseException as e:
        try:
            down()
        except Exception as cleanup:  # report the first failure; mention the second
            e.add_note(f"and tearing the lab down failed too: {cleanup}")
        if isinstance(e, LabError) or not isinstance(e, Exception):
            raise
        raise LabError(f"lab up failed: {type(e).__name__}: {e}") from e


def _netns_inode(name):
    try:
        return os.stat(os.path.join(NETNS_DIR, name)).st_ino
    except OSError:
        return None


def _processes_in(namespaces):
    """PIDs of the processes whose network namespace is one of "namespaces"."""
    inodes = {i for i in (_netns_inode(n) for n in namespaces) if i is not None}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            link = os.readlink(f"/proc/{entry}/ns/net")  # "net:[4026532281]"
        except OSError:
            continue
        if link.startswith("net:[") and int(link[5:-1]) in inodes:
            found.append(int(entry))
    return found


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def _alive(pid):
    """True while "pid" runs; reaps it when it is our own exited child."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _stop(pids, timeout=STOP_TIMEOUT):
    """SIGTERM, then SIGKILL whatever is still there after "timeout" seconds."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        pids = [p for p in pids if _alive(p)]
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = [p for p in pids if _alive(p)]
        if not pids:
            return []
    return pids


def down():
    """Stop the lab's vtepds (from the state file) and anything else still running in a
    vtlab-* namespace, then remove every vtlab-* namespace and /run/vtep-lab.  Safe to
    call at any time: with a half-built lab, without a state file, twice.  Returns the
    namespaces removed; raises LabError when something could not be removed."""
    _require_root()
    pids = []
    for v in _load_state().get("vtepd", {}).values():
        pid, conf = v.get("pid"), v.get("config", "")
        cmdline = _cmdline(pid) if isinstance(pid, int) else None
        # A PID from an old state file may belong to someone else by now: only ours.
        if cmdline is not None and conf and conf in cmdline:
            pids.append(pid)
    namespaces = lab_namespaces()
    pids += [p for p in _processes_in(namespaces) if p not in pids]
    survivors = _stop(pids)
    problems = [f"process {p} did not stop" for p in survivors]
    for name in namespaces:
        try:
            netns.remove(name)
        except OSError as e:
            problems.append(f"namespace {name}: {e}")
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    if problems:
        raise LabError("lab down: " + "; ".join(problems))
    return namespaces


# -- ping ---------------------------------------------------------------------------------------

def _echo_request(ident, seq):
    payload = struct.pack("!d", time.time()) + bytes(range(48))  # 56 bytes, like ping
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq) + payload


def ping_many(probes, count=2, wait=1.0, interval=1.0):
    """Send "count" ICMP echo requests for each (namespace, address) in "probes", all at
    once, "interval" apart, and wait "wait" seconds after the last; like `ping -c 2 -W 1`
    for each.  Returns {probe: True when any reply came}."""
    probes = list(dict.fromkeys(probes))
    sockets = {}
    base = os.getpid() & 0x3FFF
    idents = {probe: (base + i) & 0xFFFF for i, probe in enumerate(probes)}
    by_ident = {ident: probe for probe, ident in idents.items()}
    replied = dict.fromkeys(probes, False)
    try:
        for namespace, _ in probes:
            if namespace not in sockets:
                sockets[namespace] = netns.create_socket(namespace, socket.AF_INET, socket.SOCK_RAW,
                                                         socket.IPPROTO_ICMP)
                sockets[namespace].setblocking(False)
        start = time.monotonic()
        sent = 0
        end = start + (count - 1) * interval + wait
        while True:
            now = time.monotonic()
            if sent < count and now >= start + sent * interval:
                sent += 1
                for (namespace, address), ident in idents.items():
                    if not replied[(namespace, address)]:
                        try:
                            sockets[namespace].sendto(_echo_request(ident, sent), (address, 0))
                        except OSError:
                            pass  # unreachable now (no route, neighbour failed): a lost probe
                continue
            if now >= end or all(replied.values()):
                break
            next_send = start + sent * interval if sent < count else end
            readable, _, _ = select.select(list(sockets.values()), [], [], max(0.0, min(next_send, end) - now))
            for namespace, sock in sockets.items():
                if sock not in readable:
                    continue
                while True:
                    try:
                        data, (source, _) = sock.recvfrom(65535)
                    except BlockingIOError:
                        break
                    ihl = (data[0] & 0x0F) * 4
                    if len(data) < ihl + 8:
                        continue
                    kind, _, _, ident, _ = struct.unpack("!BBHHH", data[ihl:ihl + 8])
                    probe = by_ident.get(ident)
                    if kind == 0 and probe is not None and probe == (namespace, source):
                        replied[probe] = True
    finally:
        for sock in sockets.values():
            sock.close()
    return replied


def pairs():
    """Every ordered pair ping_matrix() tries: the tenant hosts, then the plain pair."""
    tenant = [(s, d) for s in TENANT_HOSTS for d in TENANT_HOSTS if s != d]
    return [*tenant, PLAIN_PAIR, PLAIN_PAIR[::-1]]


def ping_matrix(lab):
    """{(src, dst): True when src's echo requests to dst were answered} for pairs()."""
    probes = {(s, d): (lab.host(s).namespace, lab.host(d).address) for s, d in pairs()}
    replied = ping_many(probes.values())
    return {pair: replied[probe] for pair, probe in probes.items()}


def expected(src_role, dst_role):
    """DESIGN.md section 2's table: may a port with "src_role" reach one with "dst_role"?
    Roles are "promiscuous", "isolated" or "community:NAME"."""
    def parse(role):
        kind, _, community = role.partition(":")
        if kind not in ("promiscuous", "isolated", "community") or (kind == "community") != bool(community):
            raise ValueError(f"not a role: {role!r} (promiscuous, isolated or community:NAME)")
        return kind, community

    (src, src_community), (dst, dst_community) = parse(src_role), parse(dst_role)
    if src == "promiscuous" or dst == "promiscuous":
        return True
    return src == dst == "community" and src_community == dst_community


# -- iperf3 -------------------------------------------------------------------------------------

def iperf3(lab, src, dst, seconds=3, port=5201):
    """TCP throughput from host "src" to host "dst" in bit/s (iperf3's receiver side)."""
    if shutil.which("iperf3") is None:
        raise LabError("iperf3 is not installed (`make build` installs it)")
    source, sink = lab.host(src), lab.host(dst)
    server = subprocess.Popen(["iperf3", "-s", "-1", "-B", sink.address, "-p", str(port)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              preexec_fn=_enter(sink.namespace))
    try:
        error = "no attempt"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise LabError(f"iperf3 server in {sink.namespace} exited: {server.stderr.read().decode().strip()}")
            client = subprocess.run(["iperf3", "-c", sink.address, "-p", str(port), "-t", str(seconds), "-J",
                                     "--connect-timeout", "3000"], capture_output=True, text=True,
                                    timeout=seconds + 30, preexec_fn=_enter(source.namespace))
            try:
                result = json.loads(client.stdout)
            except ValueError:
                result = {"error": client.stderr.strip() or client.stdout.strip() or f"exit {client.returncode}"}
            error = result.get("error")
            if not error:
                return float(result["end"]["sum_received"]["bits_per_second"])
            if "refused" not in error:  # the server not listening yet is worth another try
                break
            time.sleep(0.2)
        raise LabError(f"iperf3 {src} -> {dst}: {error}")
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
        server.stderr.close()


# -- the demo -----------------------------------------------------------------------------------

_SHORT = {"promiscuous": "prom", "isolated": "iso"}


def _short_role(host):
    return host.community if host.role == "community" else _SHORT[host.role]


def format_matrix(lab, matrix):
    """The ping matrix as text; "!" marks a verdict that differs from expected()."""
    names = list(TENANT_HOSTS)
    label = {n: f"{n} {_short_role(lab.host(n))}" for n in [*names, *PLAIN_PAIR]}
    width = max(len(v) for v in label.values()) + 2
    lines = ["ping from row to column (2 echo requests, 1 s wait); '!' marks a verdict DESIGN.md's table "
             "does not expect", "",
             (" " * width + "".join(f"{n:<6}" for n in names)).rstrip(),
             (" " * width + "".join(f"{_short_role(lab.host(n)):<6}" for n in names)).rstrip()]
    for src in names:
        cells = []
        for dst in names:
            if src == dst:
                cells.append(f"{'-':<6}")
                continue
            got = matrix[(src, dst)]
            want = expected(lab.host(src).role_label, lab.host(dst).role_label)
            cells.append(f"{('yes' if got else 'no') + ('!' if got != want else ''):<6}")
        lines.append(f"{label[src]:<{width}}" + "".join(cells).rstrip())
    lines.append("")
    for src, dst in (PLAIN_PAIR, PLAIN_PAIR[::-1]):
        got = matrix[(src, dst)]
        mark = "" if got else "!"
        where = "vtepd -> kernel VXLAN" if lab.host(dst).vtep == "kvtep" else "kernel VXLAN -> vtepd"
        lines.append(f"plain VNI {KERNEL_VNI} ({where}): {src} -> {dst}: {'yes' if got else 'no'}{mark}")
    return "\n".join(lines)


def mismatches(lab, matrix):
    """The pairs whose verdict differs from expected()."""
    return [(s, d) for (s, d), got in matrix.items()
            if got != expected(lab.host(s).role_label, lab.host(d).role_label)]


def demo(vtepd=VTEPD, out=None, seconds=3):
    """Up, the ping matrix, iperf3 over the overlay and through the kernel peer, down
    (always).  Returns 0 when every verdict was as expected and iperf3 ran, else 1."""
    out = out or sys.stdout
    failures = 0
    print("vtep lab: building namespaces and starting two vtepds ...", file=out, flush=True)
    lab = up(vtepd)
    try:
        print(f"vtepds ready: {', '.join(f'{n} (pid {v.pid})' for n, v in lab.vtepds.items())}\n", file=out)
        matrix = ping_matrix(lab)
        print(format_matrix(lab, matrix), file=out)
        wrong = mismatches(lab, matrix)
        print(f"\n{len(matrix) - len(wrong)} of {len(matrix)} verdicts as expected", file=out, flush=True)
        failures += len(wrong)
        for src, dst, what in (("h1p", "h2p", "over the overlay, vtepd to vtepd"),
                               ("h1k", "hk", "vtepd to the kernel's VXLAN device")):
            try:
                rate = iperf3(lab, src, dst, seconds)
                print(f"iperf3 TCP {src} -> {dst} ({what}): {rate / 1e6:.1f} Mbit/s", file=out, flush=True)
            except (LabError, subprocess.TimeoutExpired) as e:
                failures += 1
                print(f"iperf3 TCP {src} -> {dst} ({what}): failed: {e}", file=out, flush=True)
    finally:
        down()
        print("vtep lab: removed", file=out, flush=True)
    return 0 if failures == 0 else 1


# -- command line -------------------------------------------------------------------------------

def _vtepd_argument(p):
    p.add_argument("--vtepd", metavar="COMMAND", default=None,
                   help="command that starts vtepd, '-c FILE' is appended "
                        f"(default: {shlex.join(VTEPD)})")


def run_up(args):
    lab = up(shlex.split(args.vtepd) if getattr(args, "vtepd", None) else VTEPD)
    if getattr(args, "json", False):
        print(json.dumps({"vtepd": {n: asdict(v) for n, v in lab.vtepds.items()},
                          "hosts": {n: {**asdict(h), "namespace": h.namespace, "mac": h.mac}
                                    for n, h in lab.hosts.items()}}))
        return 0
    for name, v in lab.vtepds.items():
        print(f"{name}: namespace {v.namespace}, vtepd pid {v.pid}, {VTEPS[name]}, control socket {v.socket}, "
              f"log {v.log}")
    print(f"kvtep: namespace {PREFIX}kvtep, Linux vxlan VNI {KERNEL_VNI}, {VTEPS['kvtep']}")
    for h in lab.hosts.values():
        role = h.role + (f" {h.community}" if h.community else "")
        print(f"  {h.name:<4} {h.namespace:<10} {h.address:<12} behind {h.vtep:<6} {h.segment:<7} {role}")
    print("try: vtepctl -s /run/vtep-lab/vtep1.sock show fdb; `vtepctl lab down` removes it all")
    return 0


def run_down(args):
    removed = down()
    if getattr(args, "json", False):
        print(json.dumps({"removed": removed}))
    else:
        print(f"removed {len(removed)} namespaces" if removed else "no lab was up")
    return 0


def run_demo(args):
    return demo(shlex.split(args.vtepd) if getattr(args, "vtepd", None) else VTEPD)


def run_ping(args):
    lab = attach()
    matrix = ping_matrix(lab)
    if getattr(args, "json", False):
        print(json.dumps([{"src": s, "dst": d, "reached": v,
                           "expected": expected(lab.host(s).role_label, lab.host(d).role_label)}
                          for (s, d), v in matrix.items()]))
    else:
        print(format_matrix(lab, matrix))
    return 0 if not mismatches(lab, matrix) else 1


# For vtepctl's COMMANDS table: (words, help, run(args), add_arguments).  run() raises
# LabError for a failure the user should read; the caller prints it and exits 1.
LAB_COMMANDS = (
    (("lab", "up"), "build the namespace lab and start its vtepds", run_up, _vtepd_argument),
    (("lab", "down"), "stop the lab's vtepds and remove its namespaces", run_down, None),
    (("lab", "demo"), "lab up, ping matrix and iperf3, lab down", run_demo, _vtepd_argument),
    (("lab", "ping"), "print the ping matrix of the lab that is up", run_ping, None),
)


def main(argv=None):
    """`python -m dataplane.lab up|down|demo|ping [--vtepd COMMAND] [-j]`."""
    parser = argparse.ArgumentParser(prog="vtep-lab", description="The vtep namespace lab.")
    parser.add_argument("-j", "--json", action="store_true", help="print JSON")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for (_, name), text, run, add_arguments in LAB_COMMANDS:
        p = sub.add_parser(name, help=text, description=text)
        if add_arguments:
            add_arguments(p)
        p.set_defaults(run=run)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except LabError as e:
        print(f"vtep lab: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
