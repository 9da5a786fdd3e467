"""vtepd as integration tests run it: a real daemon process in a test
namespace, started the way systemd starts it (READY=1 on $NOTIFY_SOCKET)
and talked to through its control socket, plus the small topology helpers
the tests share (veths, addresses, hosts in namespaces)."""
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time

from pyroute2 import NetNS, netns

from dataplane import control

IFA_F_NODAD = 0x02
_serial = itertools.count()
READY_TIMEOUT = 15


@contextlib.contextmanager
def fresh_namespaces():
    """make(role) -> (name, NetNS): a new namespace named vtept<pid>-<n><role>;
    all of them removed on the way out, also after a failure."""
    made = []

    def make(role):
        name = f"vtept{os.getpid()}-{next(_serial)}{role}"
        made.append((name, NetNS(name, flags=os.O_CREAT)))
        return made[-1]

    try:
        yield make
    finally:
        for name, ns in made:
            ns.close()
            with contextlib.suppress(OSError):
                netns.remove(name)


def in_netns(name):
    return lambda: netns.setns(name, flags=0)


def _then(first, second):
    if second is None:
        return first
    return lambda: (first(), second())


class Vtepd:
    """One vtepd in namespace "ns" with config text "toml" (its
    control_socket is filled in: leave it out).  "preexec" runs in the child
    just before vtepd is executed, in its namespace."""

    def __init__(self, ns, toml, tmp_path, name="vtepd", preexec=None):
        self.ns = ns
        self.dir = tmp_path
        self.config = tmp_path / f"{name}.toml"
        self.socket = str(tmp_path / f"{name}.sock")
        self.log = tmp_path / f"{name}.log"
        self.write_config(toml)
        notify_path = str(tmp_path / f"{name}.notify")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if os.path.exists(notify_path):
            os.unlink(notify_path)  # an earlier start in the same test
        notify.bind(notify_path)
        notify.settimeout(0.2)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dataplane.daemon", "-c", str(self.config), "--log-level", "debug"],
                stdout=log, stderr=log, env=env, preexec_fn=_then(in_netns(ns), preexec))
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"vtepd exited with {self.proc.returncode}:\n{self.log_text()}")
                try:
                    if b"READY=1" in notify.recv(4096):
                        return
                except socket.timeout:
                    continue
            raise RuntimeError(f"vtepd not ready in {READY_TIMEOUT} s:\n{self.log_text()}")
        except BaseException:
            self.kill()
            raise
        finally:
            notify.close()

    def write_config(self, toml):
        self.config.write_text(f'{toml.strip()}\n'.replace("[vtep]\n", f'[vtep]\ncontrol_socket = "{self.socket}"\n', 1))

    def ctl(self, command, args=None, timeout=10):
        return control.request(self.socket, command, args or {}, timeout=timeout)

    def counters(self):
        return self.ctl("show-counters")

    def log_text(self):
        return self.log.read_text(errors="replace")

    def stop(self, timeout=10):
        """SIGTERM; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def one_segment_config(local, remote, port, *, backend="afpacket", encapsulation="vxlan", vni=5000):
    """vtepd with one plain segment "plain" to one remote and one promiscuous port."""
    return f"""
[vtep]
underlay = "ul0"
local = "{local}"
[[segment]]
name = "plain"
encapsulation = "{encapsulation}"
vni = {vni}
remote = ["{remote}"]
[[port]]
name = "{port}"
backend = "{backend}"
segment = "plain"
role = "promiscuous"
"""


def wait_for(condition, timeout=5.0):
    """Whether "condition()" came true within "timeout" seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def veth(ns_a, name_a, ns_b, name_b, mtu=1500):
    """A veth pair between two (name, NetNS) namespaces, both ends up."""
    (_, a), (b_name, b) = ns_a, ns_b
    a.link("add", ifname=name_a, kind="veth", mtu=mtu, peer={"ifname": name_b, "net_ns_fd": b_name, "mtu": mtu})
    for ns, ifname in ((a, name_a), (b, name_b)):
        ns.link("set", index=ns.link_lookup(ifname=ifname)[0], state="up")


def address(ns, ifname, addr, prefixlen):
    _, ns = ns
    ns.addr("add", index=ns.link_lookup(ifname=ifname)[0], address=addr, prefixlen=prefixlen, flags=IFA_F_NODAD)


def link_up(ns, ifname, **kwargs):
    _, ns = ns
    ns.link("set", index=ns.link_lookup(ifname=ifname)[0], state="up", **kwargs)


def mac_of(ns, ifname):
    _, ns = ns
    return ns.get_links(ns.link_lookup(ifname=ifname)[0])[0].get_attr("IFLA_ADDRESS")


def links(ns):
    _, ns = ns
    return sorted(link.get_attr("IFLA_IFNAME") for link in ns.get_links())


def link_stats(ns, ifname):
    """The link's IFLA_STATS64: rx_packets, rx_bytes, tx_packets, rx_dropped..."""
    _, ns = ns
    [link] = ns.get_links(ifname=ifname)
    return link.get_attr("IFLA_STATS64")


def rss_mib(pid):
    """Process "pid"'s resident memory (VmRSS), MiB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def run(ns, *argv, timeout=30, check=False):
    """A command in namespace "ns"; the CompletedProcess."""
    return subprocess.run(argv, preexec_fn=in_netns(ns[0]), capture_output=True, text=True, timeout=timeout,
                          check=check)


# BPF_PROG_QUERY of a link's tcx ingress programs (csrc/tunnel_bpf.h), in
# the namespace it runs in: union bpf_attr's query is target ifindex,
# attach type (BPF_TCX_INGRESS, 46), query and attach flags, then the
# buffer for program IDs and its count.
_TCX_QUERY = r"""
import ctypes, socket, struct, sys
ids = (ctypes.c_uint32 * 16)()
attr = ctypes.create_string_buffer(128)
struct.pack_into("=IIIIQI", attr, 0, socket.if_nametoindex(sys.argv[1]), 46, 0, 0, ctypes.addressof(ids), 16)
libc = ctypes.CDLL(None, use_errno=True)
if libc.syscall(321, 16, attr, len(attr)) < 0:  # bpf(BPF_PROG_QUERY) on x86-64
    sys.exit(f"BPF_PROG_QUERY: errno {ctypes.get_errno()}")
print(struct.unpack_from("=I", attr, 24)[0])
"""


def tcx_programs(ns, ifname):
    """How many tcx ingress programs link "ifname" of namespace "ns" has."""
    return int(run(ns, sys.executable, "-c", _TCX_QUERY, ifname, check=True).stdout)


def ping(ns, target, count=2, wait=1, interval=0.2, size=None):
    """Whether every echo was answered."""
    argv = ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", str(wait), target]
    if size is not None:
        argv[1:1] = ["-s", str(size), "-M", "do"]
    return run(ns, *argv).returncode == 0


def drops(counters, where, name, reason):
    """A drop counter from show-counters ("ports"/"segments" with a name, or "underlay")."""
    block = counters["underlay"] if where == "underlay" else counters[where][name]
    return block["drops"][reason]
