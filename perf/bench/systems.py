"""The devices under test, each in its own three namespaces:

    A: a0 ──veth── acc  D (device under test)  ul ──veth── u0 :U
       (access side)        198.18.0.1/24                  (underlay side)

Encap: the generator sends inner frames from a0 into the access port acc and
U counts tunnel packets on u0.  Decap: the generator sends tunnel packets
from u0 into the underlay port ul and A counts inner frames on a0.  Neither
a0 nor u0 has an address (nothing answers); D has a permanent neighbour
entry for the remote VTEP 198.18.0.2, so nobody ARPs.  Its MAC is not
u0's (SINK_MAC): U's kernel drops each tunnel packet on arrival as another
host's, after u0 counted it, as it does the null forwarder's inner frames.
Addressed to u0, every tunnel packet would go up U's IP layer, and a veth
delivers on the sender's CPU: the sink's work would be charged to the
device, and to every device but the null forwarder.  The
underlay veth has MTU 1600, so 1518-byte inner frames fit after 50 bytes of
VXLAN.  The device's processes run on "dut_cpus" (taskset); vtepd's worker
threads only, its Python thread (control socket, housekeeping) on "gen_cpus",
so that it never preempts a worker.

- nullfwd: build/nullfwd between acc and ul (copies frames both ways as they are);
- vtepd: one segment (VNI 5000, remote 198.18.0.2), acc an AF_PACKET port;
  FDB entries loaded through the control socket; optional PVLAN;
- kernel: bridge br0 with acc and a VXLAN device vx0 (VNI 5000, remote
  198.18.0.2), with RPS moving the receive work of acc and ul to dut_cpus;
- ovs: Open vSwitch's userspace datapath (datapath_type=netdev): br-int with
  acc and a vxlan port, br-phy with ul and the underlay address, tunnel
  route and neighbour set by hand (ovs/route/add, tnl/neigh/set)."""
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from dataplane import control

from . import frames
from .topology import cpu_mask, pin_threads, wait_for
from .trials import Path, wait_ready

LOCAL, REMOTE, PREFIXLEN = "198.18.0.1", "198.18.0.2", 24
SINK_MAC = "02:00:00:00:fe:02"   # the remote VTEP's MAC as the devices see it (module doc)
VNI, ISOLATED_VNI, COMMUNITY_VNI = 5000, 5001, 5002
UNDERLAY_MTU = 1600
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FDB_CHUNK = 10000


class System:
    """Base: the three namespaces and their veths.  Subclasses add the device."""
    name = "?"
    label = "?"

    def __init__(self, lab, tag, opts):
        self.lab = lab
        self.opts = opts
        self.tag = tag
        self.commands = []        # exact commands and configs, for RESULTS.md
        self.notes = []
        self.a = lab.ns(f"{tag}-a")
        self.d = lab.ns(f"{tag}-d")
        self.u = lab.ns(f"{tag}-u")
        lab.veth(self.a, "a0", self.d, "acc")
        lab.veth(self.d, "ul", self.u, "u0", mtu=UNDERLAY_MTU)

    def underlay_mac(self):
        """The destination MAC of decap-direction tunnel packets."""
        return self.d.mac("ul")

    def vni_in(self):
        """The VNI that decap-direction packets carry."""
        return VNI

    def pids(self):
        """The processes whose CPU time is the device's ([] for the kernel)."""
        return []

    def path(self, direction, pcaps, size, flows, fdb_macs):
        if direction == "encap":
            return Path(self.a, "a0", self.u, "u0", pcaps.inner("encap", size, flows, fdb_macs), self.d, "acc", "ul")
        pcap = pcaps.tunnel(size, flows, fdb_macs, vni=self.vni_in(), local=REMOTE, remote=LOCAL,
                            src_mac=self.u.mac("u0"), dst_mac=self.underlay_mac())
        return Path(self.u, "u0", self.a, "a0", pcap, self.d, "ul", "acc")

    def underlay_address(self, ifname="ul"):
        self.d.addr(ifname, LOCAL, PREFIXLEN)
        self.d.neigh(ifname, REMOTE, SINK_MAC)

    def start(self):
        pass

    def stop(self):
        pass

    def close(self):
        try:
            self.stop()
        finally:
            for ns in (self.a, self.d, self.u):
                self.lab.remove(ns)

    def describe(self):
        return {"system": self.name, "label": self.label, "commands": self.commands, "notes": self.notes}


class NullFwd(System):
    name = "nullfwd"
    label = "null forwarder"

    def __init__(self, lab, tag, opts, workers=1):
        super().__init__(lab, tag, opts)
        # It copies frames as they are, tunnel packets too: the access side
        # must carry the underlay's MTU (a frame too big for a link is dropped).
        for ns, ifname in ((self.a, "a0"), (self.d, "acc")):
            ns.ipr.link("set", index=ns.index(ifname), mtu=UNDERLAY_MTU)
        self.workers = workers
        self.proc = None
        self.result = None

    def start(self):
        argv = [self.opts.nullfwd, "--a", "acc", "--b", "ul", "--workers", str(self.workers),
                "--stack-bypass", LOCAL]  # vtepd's tcx program on its underlay, the same work for the kernel
        self.commands.append(shlex.join(self.d.argv(argv, self.opts.dut_cpus)))
        self.proc = self.d.popen(argv, cpus=self.opts.dut_cpus, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        if not wait_ready(self.proc, 10):
            err = self.proc.stderr.read() if self.proc.poll() is not None else "(no ready line)"
            self.lab.stop(self.proc)
            raise RuntimeError(f"nullfwd did not start: {err}")

    def pids(self):
        return [self.proc.pid]

    def stop(self):
        if self.proc is not None:
            self.lab.stop(self.proc)
            out = self.proc.stdout.read()
            try:
                self.result = [line for line in out.splitlines() if line.startswith("{")][-1]
            except IndexError:
                self.result = None
            self.proc = None


class Vtepd(System):
    name = "vtepd"
    label = "vtepd"

    def __init__(self, lab, tag, opts, workers=1, fdb=100, pvlan=False):
        super().__init__(lab, tag, opts)
        self.workers, self.fdb, self.pvlan = workers, fdb, pvlan
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix=f"{lab.prefix}{tag}-")
        self.socket = os.path.join(self.dir, "vtepd.sock")
        self.underlay_address()

    def config(self):
        pvlan = (f"isolated_vni = {ISOLATED_VNI}\ncommunity_vni = {{ web = {COMMUNITY_VNI} }}\n"
                 if self.pvlan else "")
        role = 'role = "community"\ncommunity = "web"' if self.pvlan else 'role = "promiscuous"'
        return f"""[vtep]
underlay = "ul"
local = "{LOCAL}"
workers = {self.workers}
control_socket = "{self.socket}"

[[segment]]
name = "bench"
encapsulation = "vxlan"
vni = {VNI}
{pvlan}remote = ["{REMOTE}"]
maximum_fdb_entries = {max(65536, int(self.fdb * 1.1))}

[[port]]
name = "acc"
backend = "afpacket"
segment = "bench"
{role}
"""

    def start(self):
        path = os.path.join(self.dir, "vtepd.toml")
        with open(path, "w") as f:
            f.write(self.config())
        notify_path = os.path.join(self.dir, "notify")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.settimeout(0.2)
        argv = [sys.executable, "-m", "dataplane.daemon", "-c", path]
        self.commands.append(shlex.join(self.d.argv(argv, self.opts.dut_cpus)))
        self.commands.append("config:\n" + self.config())
        self.log = open(os.path.join(self.dir, "vtepd.log"), "wb")
        self.proc = self.d.popen(argv, cpus=self.opts.dut_cpus, stdout=self.log, stderr=self.log, cwd=ROOT,
                                 env=dict(os.environ, NOTIFY_SOCKET=notify_path))
        try:
            deadline = time.monotonic() + 20
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"vtepd exited with {self.proc.returncode}: {self.log_text()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"vtepd not ready in 20 s: {self.log_text()}")
                try:
                    if b"READY=1" in notify.recv(4096):
                        break
                except socket.timeout:
                    continue
        finally:
            notify.close()
        threads = pin_threads(self.proc.pid, "vtep-worker", self.opts.dut_cpus, self.opts.gen_cpus)
        self.commands.append(f"vtep-worker threads on CPU {self.opts.dut_cpus}, the others on CPU "
                             f"{self.opts.gen_cpus} (sched_setaffinity per thread): {threads}")
        if not wait_for(lambda: all(r["next_hop"] for r in self.ctl("show-remotes")), 10):
            raise RuntimeError(f"vtepd: remote not resolved: {self.ctl('show-remotes')}")
        self.load_fdb()

    def ctl(self, command, args=None, timeout=10):
        return control.request(self.socket, command, args or {}, timeout=timeout)

    def load_fdb(self):
        """The FDB: fdb_split(n) remote MACs (static, promiscuous role) and
        local MACs on acc, in batches of FDB_CHUNK."""
        remote, local = frames.fdb_split(self.fdb)
        entries = [{"segment": "bench", "mac": frames.fdb_mac(frames.REMOTE_KIND, i), "remote": REMOTE,
                    "role": "promiscuous"} for i in range(remote)]
        entries += [{"segment": "bench", "mac": frames.fdb_mac(frames.LOCAL_KIND, i), "port": "acc"}
                    for i in range(local)]
        t0 = time.monotonic()
        for i in range(0, len(entries), FDB_CHUNK):
            chunk = entries[i:i + FDB_CHUNK]
            self.ctl("fdb-add", {"entries": chunk}, timeout=120)
        self.fdb_load_seconds = time.monotonic() - t0
        segments = self.ctl("show-segments")
        count = [s for s in segments if s["name"] == "bench"][0]["fdb_entries"]
        if count < self.fdb:
            raise RuntimeError(f"vtepd: {count} FDB entries after loading {self.fdb}")
        self.notes.append(f"FDB: {count} entries ({remote} remote, {local} local on acc) loaded in "
                          f"{self.fdb_load_seconds:.1f} s through fdb-add batches of {FDB_CHUNK}")

    def pids(self):
        return [self.proc.pid]

    def counters(self):
        return self.ctl("show-counters")

    def log_text(self):
        try:
            with open(os.path.join(self.dir, "vtepd.log"), errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None:
            self.lab.stop(self.proc)
            self.proc = None
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Kernel(System):
    name = "kernel"
    label = "kernel bridge+VXLAN"

    def start(self):
        d = self.d
        self.underlay_address()
        ul = d.index("ul")
        d.ipr.link("add", ifname="vx0", kind="vxlan", vxlan_id=VNI, vxlan_port=4789, vxlan_link=ul,
                   vxlan_local=LOCAL, vxlan_group=REMOTE, mtu=1500)
        d.ipr.link("add", ifname="br0", kind="bridge", br_stp_state=0)
        d.up("br0")
        br0 = d.index("br0")
        d.up("vx0", master=br0)
        d.up("acc", master=br0)
        self.commands.append("pyroute2 in D: vx0 = vxlan id 5000 dstport 4789 local 198.18.0.1 remote 198.18.0.2 "
                             "dev ul; br0 = bridge stp 0 with acc and vx0")
        mask = cpu_mask(self.opts.dut_cpus)
        for ifname in ("acc", "ul"):
            got = d.sysfs_write(f"/sys/class/net/{ifname}/queues/rx-0/rps_cpus", mask)
            self.commands.append(f"in D: echo {mask} > /sys/class/net/{ifname}/queues/rx-0/rps_cpus  (reads {got})")
            if int(got.replace(",", ""), 16) != int(mask, 16):
                raise RuntimeError(f"RPS on {ifname}: wrote {mask}, reads {got}")


class Ovs(System):
    name = "ovs"
    label = "OVS userspace"
    BR_PHY_MAC = "02:00:00:00:0f:01"
    SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"

    def __init__(self, lab, tag, opts):
        super().__init__(lab, tag, opts)
        self.dir = tempfile.mkdtemp(prefix=f"{lab.prefix}{tag}-")
        self.env = dict(os.environ, OVS_RUNDIR=self.dir, OVS_DBDIR=self.dir, OVS_LOGDIR=self.dir,
                        OVS_SYSCONFDIR=self.dir)
        self.daemons = []

    def underlay_mac(self):
        return self.BR_PHY_MAC

    def _run(self, *argv, record=True):
        done = self.d.run(list(argv), env=self.env, timeout=30, check=False)
        if record:
            self.commands.append(shlex.join(argv))
        if done.returncode:
            raise RuntimeError(f"{shlex.join(argv)}: {done.stderr.strip()} {self.log()}")
        return done.stdout

    def vsctl(self, *args):
        return self._run("ovs-vsctl", f"--db=unix:{self.dir}/db.sock", "--timeout=10", *args)

    def appctl(self, *args, record=True):
        return self._run("ovs-appctl", f"--target={self.dir}/vswitchd.ctl", *args, record=record)

    def start(self):
        d, cpus = self.d, self.opts.dut_cpus
        self._run("ovsdb-tool", "create", f"{self.dir}/conf.db", self.SCHEMA)
        db = [f"{self.dir}/conf.db", f"--remote=punix:{self.dir}/db.sock", f"--unixctl={self.dir}/ovsdb.ctl",
              f"--log-file={self.dir}/ovsdb.log"]
        self.daemons.append(d.popen(["ovsdb-server", *db], cpus=self.opts.gen_cpus, env=self.env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self._wait_for(f"{self.dir}/db.sock")
        self.vsctl("--no-wait", "init")
        self.vsctl("--no-wait", "set", "Open_vSwitch", ".", f"other_config:pmd-cpu-mask=0x{cpu_mask(cpus)}",
                   "other_config:n-handler-threads=1", "other_config:n-revalidator-threads=1")
        argv = ["ovs-vswitchd", f"unix:{self.dir}/db.sock", f"--unixctl={self.dir}/vswitchd.ctl",
                f"--log-file={self.dir}/vswitchd.log", "--disable-system"]
        self.commands.append(shlex.join(d.argv(argv, cpus)))
        self.daemons.append(d.popen(argv, cpus=cpus, env=self.env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL))
        self._wait_for(f"{self.dir}/vswitchd.ctl")
        self.vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
                   f'other-config:hwaddr="{self.BR_PHY_MAC}"')
        self.vsctl("add-port", "br-phy", "ul")
        self.vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev")
        self.vsctl("add-port", "br-int", "acc")
        self.vsctl("add-port", "br-int", "vx0", "--", "set", "interface", "vx0", "type=vxlan",
                   f"options:remote_ip={REMOTE}", f"options:local_ip={LOCAL}", f"options:key={VNI}")
        d.addr("br-phy", LOCAL, PREFIXLEN)
        d.up("br-phy")
        self.commands.append(f"pyroute2 in D: br-phy {LOCAL}/{PREFIXLEN} up")
        try:
            self.appctl("ovs/route/add", f"{REMOTE}/32", "br-phy")
        except RuntimeError as e:
            self.notes.append(f"ovs/route/add: {e}")
        self.appctl("tnl/neigh/set", "br-phy", REMOTE, SINK_MAC)
        if not wait_for(lambda: self.BR_PHY_MAC in d.mac("br-phy"), 5):
            self.notes.append(f"br-phy MAC is {d.mac('br-phy')}, not {self.BR_PHY_MAC}")

    def pids(self):
        return [self.daemons[1].pid]

    def log(self):
        try:
            with open(f"{self.dir}/vswitchd.log") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def state(self):
        """What OVS thinks, for a failure note."""
        out = []
        for args in (("ovs/route/show",), ("tnl/neigh/show",), ("dpctl/dump-flows",), ("dpif/show",)):
            try:
                out.append(self.appctl(*args, record=False))
            except RuntimeError as e:
                out.append(str(e))
        return "\n".join(out)

    def _wait_for(self, path):
        if not wait_for(lambda: os.path.exists(path) or any(p.poll() is not None for p in self.daemons), 10) \
                or not os.path.exists(path):
            raise RuntimeError(f"OVS: {path} did not appear: {self.log()}")

    def stop(self):
        for proc in reversed(self.daemons):
            self.lab.stop(proc)
        self.daemons = []
        shutil.rmtree(self.dir, ignore_errors=True)


SYSTEMS = {"nullfwd": NullFwd, "vtepd": Vtepd, "kernel": Kernel, "ovs": Ovs}
