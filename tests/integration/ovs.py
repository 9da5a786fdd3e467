"""Open vSwitch's userspace datapath in a namespace: the second reference
peer (STYLE.md 16), and the only one here for NVGRE (this kernel has no
gretap).  Its own ovsdb-server and ovs-vswitchd run inside the namespace with
a private run directory, and are stopped and removed on close().

br-phy holds the veth end "o0" and the underlay address; br-int holds a
tunnel port "tun0" (gre or vxlan, key=flow) and an internal port "vm0" with
an overlay address.  Two OpenFlow rules move frames between them and check
or set the tunnel key, so the VNI/VSID is verified, not just carried."""
import os
import shutil
import subprocess
import tempfile
import time

from pyroute2 import netns

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


class Ovs:
    def __init__(self, ns_name):
        self.ns = ns_name
        self.dir = tempfile.mkdtemp(prefix="vtep-ovs-")
        self.env = dict(os.environ, OVS_RUNDIR=self.dir, OVS_DBDIR=self.dir, OVS_LOGDIR=self.dir,
                        OVS_SYSCONFDIR=self.dir)
        self.daemons = []
        try:
            self.run("ovsdb-tool", "create", f"{self.dir}/conf.db", SCHEMA)
            self._start("ovsdb-server", f"{self.dir}/conf.db", f"--remote=punix:{self.dir}/db.sock",
                        f"--unixctl={self.dir}/ovsdb.ctl", f"--log-file={self.dir}/ovsdb.log")
            self._wait_for(f"{self.dir}/db.sock")
            self.vsctl("--no-wait", "init")
            # --disable-system: userspace datapath only, no kernel module.
            self._start("ovs-vswitchd", f"unix:{self.dir}/db.sock", f"--unixctl={self.dir}/vswitchd.ctl",
                        f"--log-file={self.dir}/vswitchd.log", "--disable-system")
            self._wait_for(f"{self.dir}/vswitchd.ctl")
        except BaseException:
            self.close()
            raise

    def run(self, *cmd):
        done = subprocess.run(cmd, env=self.env, preexec_fn=self._enter, capture_output=True, text=True,
                              timeout=20)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")
        return done.stdout

    def vsctl(self, *args):
        return self.run("ovs-vsctl", f"--db=unix:{self.dir}/db.sock", "--timeout=10", *args)

    def ofctl(self, bridge, *args):
        return self.run("ovs-ofctl", args[0], f"unix:{self.dir}/{bridge}.mgmt", *args[1:])

    def appctl(self, *args):
        return self.run("ovs-appctl", f"--target={self.dir}/vswitchd.ctl", *args)

    def log(self):
        try:
            with open(f"{self.dir}/vswitchd.log") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def close(self):
        for daemon in reversed(self.daemons):
            daemon.terminate()
        for daemon in self.daemons:
            try:
                daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                daemon.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _enter(self):
        netns.setns(self.ns, flags=0)

    def _start(self, *cmd):
        self.daemons.append(subprocess.Popen(cmd, env=self.env, preexec_fn=self._enter,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def _wait_for(self, path):
        for _ in range(100):
            if os.path.exists(path):
                return
            if any(d.poll() is not None for d in self.daemons):
                raise RuntimeError(f"an OVS daemon exited: {self.log()}")
            time.sleep(0.05)
        raise RuntimeError(f"{path} did not appear: {self.log()}")
