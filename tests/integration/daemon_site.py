"""The topology of the vtepd daemon tests (test_vtepd_daemon.py,
test_vtepd_abuse.py; the `site` fixture in conftest.py builds it).

vtepd in namespace V (underlay ul0 198.18.0.1) with afpacket ports
h1..h3, veths to host namespaces H1..H3 (192.0.2.1..3); the Linux kernel's
VXLAN device in namespace K (198.18.0.2) is the remote VTEP, with the
overlay address 192.0.2.100 on the device itself."""
import ipaddress
import os
import subprocess

from . import vtepd as v

KERNEL_HOST = "192.0.2.100"
CONFIG = """
[vtep]
underlay = "ul0"
local = "198.18.0.1"

[[segment]]
name = "plain"
vni = 5000
remote = ["198.18.0.2"]
{ports}
[[fdb]]
segment = "plain"
mac = "02:00:00:00:aa:01"
{fdb_target}
"""
PORT = """
[[port]]
name = "{name}"
backend = "afpacket"
segment = "plain"
"""


def config(ports, fdb_target='remote = "198.18.0.2"'):
    return CONFIG.format(ports="".join(PORT.format(name=p) for p in ports), fdb_target=fdb_target)


def build(namespaces):
    """The namespaces, veths and kernel VTEP: {"V", "K", "h1".."h3"} -> (name, NetNS)."""
    V, K = namespaces("v"), namespaces("k")
    v.veth(V, "ul0", K, "ul0")
    v.address(V, "ul0", "198.18.0.1", 24)
    v.address(K, "ul0", "198.18.0.2", 24)
    _, k = K
    k.link("add", ifname="vx0", kind="vxlan", vxlan_id=5000, vxlan_port=4789, vxlan_local="198.18.0.2",
           vxlan_group="198.18.0.1", vxlan_link=k.link_lookup(ifname="ul0")[0])
    v.address(K, "vx0", KERNEL_HOST, 24)
    v.link_up(K, "vx0")
    hosts = {}
    for i in (1, 2, 3):
        H = namespaces(f"h{i}")
        v.veth(V, f"h{i}", H, "eth0", mtu=1450)
        v.address(H, "eth0", f"192.0.2.{i}", 24)
        hosts[f"h{i}"] = H
    return {"V": V, "K": K, **hosts}


def reachable(host, target=KERNEL_HOST):
    """Pings until one passes: the first ones wait for ARP and the next hop."""
    return v.wait_for(lambda: v.ping(host, target, count=1, wait=1), timeout=6)


def pinger(host, target=KERNEL_HOST, count=400, interval=0.01):
    """A steady flow: one echo every "interval" seconds, in the background."""
    return subprocess.Popen(["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", "1", target],
                            preexec_fn=v.in_netns(host[0]), stdout=subprocess.PIPE, text=True)


def loss(proc):
    """(sent, lost) of a pinger, once it has finished."""
    out = proc.communicate(timeout=30)[0]
    sent, received = (int(w.split()[0]) for w in out.split("\n")[-3].split(",")[:2])
    return sent, sent - received


# What a process holds, from /proc: its sockets, found by inode in the tables
# of its own network namespace (/proc/PID/net/...), and its threads' capabilities.

# The inode's field in each table's lines.
_INODE_FIELD = {"tcp": 9, "tcp6": 9, "udp": 9, "udp6": 9, "raw": 9, "raw6": 9, "unix": 6, "packet": 8,
                "netlink": 9}
TCP_LISTEN = "0A"
UNIX_LISTENING = 0x10000  # __SO_ACCEPTCON in the Flags field


def socket_inodes(pid):
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:["):-1]))
    return inodes


def sockets_of(pid):
    """{table: [fields of each of the process's sockets in /proc/PID/net/table]},
    and the inodes found in no table (which should be none)."""
    inodes = socket_inodes(pid)
    found = {table: [] for table in _INODE_FIELD}
    for table, field in _INODE_FIELD.items():
        with open(f"/proc/{pid}/net/{table}") as f:
            for line in f.read().splitlines()[1:]:
                fields = line.split()
                if len(fields) > field and int(fields[field]) in inodes:
                    found[table].append(fields)
                    inodes.discard(int(fields[field]))
    return found, inodes


def inet_address(text):
    """(address, port) of a /proc/net/{tcp,udp,raw}[6] address field (raw: the port is the protocol)."""
    address, port = text.split(":")
    raw = bytes.fromhex(address)
    # The kernel prints each 32-bit word of the address in host (little-endian) order.
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw)), int(port, 16)


def capabilities(pid):
    """{thread id: {"name", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb" (ints), "NoNewPrivs"}}
    for every thread of "pid"."""
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
        except FileNotFoundError:
            continue  # the thread ended meanwhile
        sets = {k: int(status[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
        threads[int(tid)] = {"name": status["Name"].strip(), "NoNewPrivs": int(status["NoNewPrivs"]), **sets}
    return threads
