"""Steady, numbered flows for fault and load tests: UDP datagrams sent at a
fixed rate from one namespace to a socket in another, every send and every
arrival timed with time.monotonic() (one clock for all namespaces), so a
test can count loss exactly and say when traffic stopped and came back.

Two threads of the test process per flow; at a few hundred datagrams per
second the GIL is no bottleneck and nothing is lost on the sending side:
a datagram counts as sent once the sending kernel took it.  A flow to a
broadcast address (bind_ip "" on the receiving side) is received by one
namespace per Flow: make one Flow per receiver.  iperf3() measures bulk TCP."""
import array
import json
import socket
import struct
import subprocess
import threading
import time

import pytest
from pyroute2 import netns

from .vtepd import in_netns

_SEQ = struct.Struct("!Q")
RCVBUF = 4 << 20


class Flow:
    """Datagrams from namespace "src" (a (name, NetNS) pair) to "dst_ip":"port"
    in namespace "dst", "rate" per second, "size" bytes of UDP payload.
    Send and arrival times live in arrays (8 bytes a datagram), so an hour
    of a few flows stays small."""

    def __init__(self, src, dst, dst_ip, port, rate=200, size=64, name=None, bind_ip=None):
        self.name = name or f"{src[0]}->{dst_ip}"
        self.rate = rate
        self.size = max(size, _SEQ.size)
        self.sent = array.array("d")      # send time of datagram i
        self.arrival = array.array("d")   # its first arrival time; 0: not (yet)
        self.duplicates = 0
        self._stop = threading.Event()
        self._rx = netns.create_socket(dst[0], socket.AF_INET, socket.SOCK_DGRAM)
        self._rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self._rx.bind((dst_ip if bind_ip is None else bind_ip, port))
        self._rx.settimeout(0.1)
        self._tx = netns.create_socket(src[0], socket.AF_INET, socket.SOCK_DGRAM)
        self._tx.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self._tx.connect((dst_ip, port))
        self._threads = [threading.Thread(target=self._send, daemon=True),
                         threading.Thread(target=self._receive, daemon=True)]
        self._sending = threading.Event()

    def start(self):
        self._sending.set()
        for t in self._threads:
            t.start()
        return self

    def _send(self):
        pad = bytes(self.size - _SEQ.size)
        interval = 1.0 / self.rate
        due = time.monotonic()
        while not self._stop.is_set():
            if not self._sending.wait(0.1):
                due = time.monotonic()
                continue
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            seq = len(self.sent)
            # Room for its arrival before it can arrive.
            self.arrival.append(0.0)
            self.sent.append(time.monotonic())
            try:
                self._tx.send(_SEQ.pack(seq) + pad)
            except OSError:
                # The source could not send it (no route or neighbour there
                # for a moment): not a datagram vtepd ever saw.
                self.sent.pop()
                self.arrival.pop()
            # Keep the schedule, but never burst to catch up after a stall.
            due = max(due + interval, time.monotonic() - interval)

    def _receive(self):
        while not self._stop.is_set():
            try:
                data = self._rx.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.monotonic()
            (seq,) = _SEQ.unpack_from(data)
            if seq >= len(self.arrival):
                continue  # not ours (a stray datagram on the port)
            if self.arrival[seq]:
                self.duplicates += 1
            else:
                self.arrival[seq] = now

    def stop_sending(self):
        self._sending.clear()

    def stop(self, drain=0.5):
        """Stop sending, give datagrams in flight "drain" seconds, stop receiving."""
        self._sending.clear()
        time.sleep(drain)
        self._stop.set()
        for t in self._threads:
            if t.ident is not None:
                t.join(5)
        self._tx.close()
        self._rx.close()
        return self

    # What happened.

    def lost(self, start=None, end=None):
        """Datagrams sent in [start, end) that never arrived."""
        return [i for i in self._sent_between(start, end) if not self.arrival[i]]

    def count(self, start=None, end=None):
        return len(self._sent_between(start, end))

    def received(self):
        return len(self.sent) - self.arrival[:len(self.sent)].count(0.0)

    def _sent_between(self, start, end):
        if start is None and end is None:
            return range(len(self.sent))
        return [i for i, t in enumerate(self.sent) if (start is None or t >= start) and (end is None or t < end)]

    def first_arrival_after(self, t):
        """When the first datagram arrived after time "t", or None."""
        after = [a for a in self.arrival if a > t]
        return min(after) if after else None

    def recovery(self, t):
        """Seconds from "t" until the first datagram sent at or after "t"
        arrived, or None if none did."""
        arrived = [self.arrival[i] for i in self._sent_between(t, None) if self.arrival[i]]
        return min(arrived) - t if arrived else None

    def received_since(self, t):
        return sum(1 for a in self.arrival if a >= t)

    def wait_flowing(self, timeout=10.0, n=10):
        """Whether "n" datagrams arrived in a row within "timeout" seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            start = time.monotonic()
            time.sleep(n / self.rate + 0.05)
            if self.received_since(start) >= n:
                return True
        return False

    def __repr__(self):
        return f"<Flow {self.name}: {len(self.sent)} sent, {self.received()} received>"


# The kernel's neighbour table, as the tests see it change.

_NLMSG = struct.Struct("=IHHII")
_NDMSG = struct.Struct("=BxxxiHBB")
_RTA = struct.Struct("=HH")
RTM_NEWNEIGH, RTM_DELNEIGH = 28, 29
RTMGRP_NEIGH = 0x4
NDA_DST, NDA_LLADDR = 1, 2
NUD_FAILED = 0x20
NUD_USABLE = 0x02 | 0x04 | 0x08 | 0x10 | 0x80  # REACHABLE, STALE, DELAY, PROBE, PERMANENT: has a MAC


class NeighbourLog:
    """Every neighbour event of namespace "ns", timed: (time, "new"|"del",
    address, MAC or None, NUD state), in a thread of this process."""

    def __init__(self, ns):
        self.events = []
        self.error = None  # why the reader stopped early: its events are incomplete
        self._sock = netns.create_socket(ns[0], socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._sock.bind((0, RTMGRP_NEIGH))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        while not self._stop.is_set():
            try:
                data = self._sock.recv(1 << 16)
            except socket.timeout:
                continue
            except OSError as e:
                if not self._stop.is_set():
                    self.error = e
                return
            now = time.monotonic()
            offset = 0
            while offset + _NLMSG.size <= len(data):
                length, kind, _, _, _ = _NLMSG.unpack_from(data, offset)
                if length < _NLMSG.size:
                    break
                if kind in (RTM_NEWNEIGH, RTM_DELNEIGH):
                    self.events.append((now, "new" if kind == RTM_NEWNEIGH else "del",
                                        *_neighbour(data[offset + _NLMSG.size:offset + length])))
                offset += (length + 3) & ~3

    def first(self, address, since, *, mac=None, state=None, kind="new"):
        """Time of the first event for "address" after "since" matching
        "mac" and "state" (a NUD bit mask), or None."""
        if self.error is not None:
            raise RuntimeError(f"the neighbour log stopped reading: {self.error}")
        for t, k, addr, lladdr, nud in list(self.events):
            if t >= since and k == kind and addr == address and (mac is None or lladdr == mac) \
                    and (state is None or nud & state):
                return t
        return None

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


def _neighbour(payload):
    """(address, MAC, state) of an ndmsg."""
    family, _, state, _, _ = _NDMSG.unpack_from(payload)
    address = mac = None
    offset = _NDMSG.size
    while offset + _RTA.size <= len(payload):
        length, kind = _RTA.unpack_from(payload, offset)
        if length < _RTA.size:
            break
        value = payload[offset + _RTA.size:offset + length]
        if kind == NDA_DST:
            address = socket.inet_ntop(family, value)
        elif kind == NDA_LLADDR and len(value) == 6:
            mac = ":".join(f"{b:02x}" for b in value)
        offset += (length + 3) & ~3
    return address, mac, state


# TCP bulk transfer.

def iperf3(client_ns, server_ns, server_ip, seconds=2, port=5201):
    """TCP goodput in bit/s from "client_ns" to a server at "server_ip" in "server_ns"."""
    server = subprocess.Popen(["iperf3", "-s", "-1", "-B", server_ip, "-p", str(port)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              preexec_fn=in_netns(server_ns[0]))
    try:
        error = "no attempt"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert server.poll() is None, f"iperf3 server exited: {server.stderr.read().decode()}"
            client = subprocess.run(["iperf3", "-c", server_ip, "-p", str(port), "-t", str(seconds), "-J",
                                     "--connect-timeout", "2000"], capture_output=True, text=True,
                                    timeout=seconds + 15, preexec_fn=in_netns(client_ns[0]))
            try:
                result = json.loads(client.stdout)
            except ValueError:
                result = {"error": client.stderr.strip() or f"exit {client.returncode}"}
            error = result.get("error")
            if not error:
                return result["end"]["sum_received"]["bits_per_second"]
            if "refused" not in error:  # only a server not listening yet is worth another try
                break
            time.sleep(0.1)
        pytest.fail(f"iperf3 to {server_ip}: {error}")
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
        server.stderr.close()
