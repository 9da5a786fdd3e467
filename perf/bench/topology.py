"""Network namespaces for the system benchmark, and what the harness does in
them: veths, addresses, neighbours, counters, sysctls, sysfs files and
processes.  Links, addresses, neighbours and routes go through pyroute2 (the
project never runs `ip`); /proc/sys and /sys are written directly.

Every namespace of a run is named PREFIX + role, PREFIX being unique to the
run ("vtb<pid>-"), and Lab.close() removes them all, after it has stopped
every process it started, whatever happened before (bench_system calls it
from a finally, and again from atexit and its signal handlers)."""
import os
import re
import signal
import subprocess
import sys
import time

from pyroute2 import NetNS, netns

from dataplane.lab import set_offloads

IFA_F_NODAD = 0x02
NUD_PERMANENT = 0x80
NAME_BASE = "vtb"    # namespaces are vtb<pid>-<role>

# ethtool -K IFNAME tx off: without them the kernel also drops TSO and sends
# MTU-sized frames (dataplane/lab.py does the same for its hosts).
TX_CHECKSUM = ("tx-checksum-ip-generic", "tx-checksum-ipv4", "tx-checksum-ipv6", "tx-checksum-sctp")


def cpu_set(cpus):
    """"1" -> {1}, "0,2-3" -> {0, 2, 3}: a taskset-style CPU list."""
    out = set()
    for cpu in str(cpus).split(","):
        first, _, last = cpu.partition("-")
        out.update(range(int(first), int(last or first) + 1))
    return out


def cpu_mask(cpus):
    """"1" -> "2", "0,1" -> "3": the hex mask of a taskset-style CPU list."""
    return f"{sum(1 << c for c in cpu_set(cpus)):x}"


def pin_threads(pid, name, cpus, other_cpus):
    """Threads of "pid" called "name" on "cpus", the rest on "other_cpus";
    returns {thread name: count}."""
    seen = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                comm = f.read().strip()
            os.sched_setaffinity(int(tid), cpu_set(cpus if comm == name else other_cpus))
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
        seen[comm] = seen.get(comm, 0) + 1
    return seen


def remove_stale():
    """Namespaces of earlier runs whose process is gone (killed with -9):
    removed.  Returns their names."""
    removed = []
    for name in netns.listnetns():
        m = re.fullmatch(rf"{NAME_BASE}(\d+)-.*", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            try:
                netns.remove(name)
                removed.append(name)
            except OSError:
                pass
    return removed


class Ns:
    """One namespace: its name and a pyroute2 NetNS handle."""

    def __init__(self, lab, name):
        self.lab = lab
        self.name = name
        self.ipr = NetNS(name, flags=os.O_CREAT)

    # -- links --------------------------------------------------------------------------------

    def index(self, ifname):
        found = self.ipr.link_lookup(ifname=ifname)
        if not found:
            raise LookupError(f"{self.name}: no link {ifname}")
        return found[0]

    def up(self, ifname, **kwargs):
        self.ipr.link("set", index=self.index(ifname), state="up", **kwargs)

    def mac(self, ifname):
        return self.ipr.get_links(self.index(ifname))[0].get_attr("IFLA_ADDRESS")

    def addr(self, ifname, address, prefixlen):
        self.ipr.addr("add", index=self.index(ifname), address=address, prefixlen=prefixlen, flags=IFA_F_NODAD)

    def neigh(self, ifname, address, mac):
        """A permanent neighbour entry: the kernel never asks (no ARP on the wire)."""
        self.ipr.neigh("add", dst=address, lladdr=mac, ifindex=self.index(ifname), state=NUD_PERMANENT)

    def stats(self, ifname):
        """The link's IFLA_STATS64 as a dict (rx_packets, tx_packets, rx_dropped, ...)."""
        link = self.ipr.get_links(self.index(ifname))[0]
        return dict(link.get_attr("IFLA_STATS64"))

    def tx_checksum(self, ifname, enable):
        """Transmit checksum offload (and with it TSO) on or off: `ethtool -K
        IFNAME tx on|off`."""
        set_offloads(self.name, ifname, TX_CHECKSUM, enable)

    # -- /proc/sys and /sys -------------------------------------------------------------------

    def sysctl(self, key, value):
        """Write /proc/sys/"key" (net.* files are those of the opener's namespace)."""
        netns.pushns(self.name)
        try:
            with open(f"/proc/sys/{key}", "w") as f:
                f.write(str(value))
        finally:
            netns.popns()

    def sysfs_write(self, path, value):
        """Write "path" under /sys as this namespace sees it: /sys/class/net
        shows the links of the namespace that mounted sysfs, so a child enters
        the namespace, takes a private mount namespace and mounts its own
        sysfs there.  Returns what the file reads afterwards."""
        done = subprocess.run([sys.executable, "-c", _SYSFS_WRITER, path, str(value)],
                              preexec_fn=self.enter, capture_output=True, text=True, timeout=20)
        if done.returncode:
            raise OSError(f"{self.name}: writing {value} to {path}: {done.stderr.strip()}")
        return done.stdout.strip()

    # -- processes ----------------------------------------------------------------------------

    def enter(self):
        netns.setns(self.name, flags=0)

    def argv(self, argv, cpus=None):
        return (["taskset", "-c", str(cpus)] if cpus is not None else []) + [str(a) for a in argv]

    def popen(self, argv, cpus=None, **kwargs):
        """A process in this namespace (on "cpus", taskset's list), registered
        with the lab so that close() stops it."""
        proc = subprocess.Popen(self.argv(argv, cpus), preexec_fn=self.enter, **kwargs)
        self.lab.procs.append(proc)
        return proc

    def run(self, argv, cpus=None, timeout=60, check=True, **kwargs):
        done = subprocess.run(self.argv(argv, cpus), preexec_fn=self.enter, capture_output=True, text=True,
                              timeout=timeout, **kwargs)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(map(str, argv))} in {self.name}: exit {done.returncode}: "
                               f"{done.stderr.strip()[-2000:]}")
        return done


_SYSFS_WRITER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x00020000, 0x4000, 1 << 18
def check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        sys.exit(f"{what}: {os.strerror(e)}")
check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
check(libc.mount(b"sysfs", b"/sys", b"sysfs", 0, None), "mount sysfs")
path, value = sys.argv[1], sys.argv[2]
with open(path, "w") as f:
    f.write(value)
with open(path) as f:
    print(f.read().strip())
"""


class Lab:
    """The namespaces and processes of one run."""

    def __init__(self, prefix=None):
        self.prefix = prefix or f"{NAME_BASE}{os.getpid()}-"
        self.namespaces = {}
        self.procs = []
        self.pid = os.getpid()    # a forked child (pyroute2 makes some) must not clean up

    def ns(self, role, ipv6=False):
        """A new namespace PREFIX+role, loopback up; IPv6 off unless asked
        (no router or neighbour solicitations mixed into the counts)."""
        name = self.prefix + role
        if name in self.namespaces:
            raise ValueError(f"namespace {name} exists already")
        ns = Ns(self, name)
        self.namespaces[name] = ns
        ns.up("lo")
        if not ipv6:
            for scope in ("all", "default"):
                ns.sysctl(f"net/ipv6/conf/{scope}/disable_ipv6", 1)
        return ns

    def veth(self, a, name_a, b, name_b, mtu=1500):
        """A veth pair from namespace "a" to namespace "b", both ends up."""
        a.ipr.link("add", ifname=name_a, kind="veth", mtu=mtu, peer={"ifname": name_b, "net_ns_fd": b.name, "mtu": mtu})
        a.up(name_a)
        b.up(name_b)

    def stop(self, proc, timeout=10):
        """SIGTERM, then SIGKILL: the process's exit status."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        rc = proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)
        return rc

    def remove(self, ns):
        """Remove one namespace (its processes must be gone)."""
        ns = self.namespaces.pop(ns.name, None) or ns
        try:
            ns.ipr.close()
        except Exception:  # noqa: BLE001 - closing is best effort, removal is what counts
            pass
        try:
            netns.remove(ns.name)
        except OSError:
            pass

    def close(self):
        """Stop every process and remove every namespace; safe to call twice."""
        if os.getpid() != self.pid:
            return
        for proc in list(self.procs):
            try:
                self.stop(proc, timeout=5)
            except Exception:  # noqa: BLE001
                pass
        for ns in list(self.namespaces.values()):
            self.remove(ns)
        # A namespace of ours that a crash left unregistered goes too.
        for name in netns.listnetns():
            if name.startswith(self.prefix):
                try:
                    netns.remove(name)
                except OSError:
                    pass


def wait_for(condition, timeout=5.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False
