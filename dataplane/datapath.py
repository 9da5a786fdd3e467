"""The running fast path: the tables, one C worker loop per configured
worker, and the packet I/O of every port and of the underlay.

With several workers, each loop has its own handle on every link: the
underlay and AF_PACKET ports share their traffic through a PACKET_FANOUT
group (hashed by flow, so a flow stays in order on one worker), TAP ports
through their queues (IFF_MULTI_QUEUE)."""
import fcntl
import logging
import os
import socket
import struct

from ._engine import Loop, open_afpacket, open_tap, stack_bypass
from .tables import Tables

log = logging.getLogger("vtepd.datapath")

# AF_PACKET ring slots hold the TPACKET header, its alignment and a frame of
# MTU + Ethernet + one VLAN tag; the C side rounds up to a power of two.
_SLOT_OVERHEAD = 14 + 4 + 128
# TAP reads get room for the largest frame the engine takes, so none is cut.
_TAP_FRAME = 65536 + 1024  # a 64 KB super-frame, its Ethernet and virtio-net headers


def _mtu(ifname):
    """The link's MTU, from this process's namespace (/sys may show another)."""
    SIOCGIFMTU = 0x8921
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = fcntl.ioctl(s, SIOCGIFMTU, struct.pack("16si", ifname.encode(), 0))
    return struct.unpack("16si", ifreq)[1]


def _exists(ifname):
    try:
        socket.if_nametoindex(ifname)
        return True
    except OSError:
        return False


class PortError(OSError):
    """A port's link or TAP cannot be used; the message names the port."""


class Datapath:
    def __init__(self, config, underlay):
        """Tables for "config" on the "underlay" link (a netlink.Link), with
        every port's I/O open; the loops start with start()."""
        v = config.vtep
        self.workers = v.workers
        self.tables = Tables.build(config, underlay_mac=underlay.mac, underlay_mtu=underlay.mtu)
        self.engine = self.tables.engine
        self.loops = []
        self._bypass = None       # the tcx program's BPF link, or None
        self._taps_held = {}  # TAP name -> ports of ours holding its queues (a reload overlaps two)
        try:
            self.loops = [Loop(self.engine) for _ in range(self.workers)]
            group = self._fanout_group(underlay.index)
            for loop in self.loops:
                loop.attach_underlay(open_afpacket(
                    underlay.name, underlay=True, local=str(v.local), destination_port=v.destination_port,
                    fanout_group=group, frame_size=underlay.mtu + _SLOT_OVERHEAD,
                    offload=v.generic_segmentation_offload))
            self._bypass_stack(underlay.name, v)
            # Ports were put in the tables without I/O by build(): give them theirs.
            for p in config.ports:
                self.attach(self.tables.ports[p.name], self.open(p))
        except BaseException:
            self.close()
            raise

    def _bypass_stack(self, ifname, v):
        """Once the underlay's packet sockets have a tunnel packet, the
        kernel's IP stack need not see it (csrc/tunnel_bpf.h); without
        this, the tunnel claim still keeps the kernel from answering it."""
        try:
            self._bypass = stack_bypass(ifname, str(v.local), v.destination_port)
        except OSError as e:
            log.warning("underlay %s: tunnel packets also go through the kernel's IP stack (%s)", ifname, e.strerror)

    def _fanout_group(self, ifindex):
        # A fanout group is per namespace and per link: the link's index names it.
        return ifindex & 0xffff if self.workers > 1 else 0

    # The I/O side of Tables.apply().
    def open(self, port):
        """One handle per loop for config port "port"; PortError if it cannot."""
        try:
            if port.backend == "tap":
                return self._open_tap(port.name)
            try:
                ifindex = socket.if_nametoindex(port.name)
            except OSError:
                raise PortError(19, f"port {port.name}: no interface named {port.name!r}") from None
            mtu = _mtu(port.name)
            return [open_afpacket(port.name, fanout_group=self._fanout_group(ifindex), frame_size=mtu + _SLOT_OVERHEAD,
                                  offload=True)
                    for _ in range(self.workers)]
        except PortError:
            raise
        except OSError as e:
            raise PortError(e.errno, f"port {port.name}: {e.strerror or e}") from None

    def _open_tap(self, name):
        """A TAP that exists and is not ours is adopted: a persistent one an
        operator or a hypervisor made (a vtepd, even a killed one, leaves none:
        its TAPs die with their queues).  It stays when vtepd stops."""
        leftover = not self._taps_held.get(name) and _exists(name)
        try:
            handles = [open_tap(name, multiqueue=self.workers > 1, frame_size=_TAP_FRAME)
                       for _ in range(self.workers)]
        except OSError as e:
            if leftover:
                raise PortError(e.errno, f"port {name}: an interface named {name!r} exists and is not a TAP "
                                         f"vtepd can take over ({e.strerror}); remove it or rename the port") from None
            raise
        if leftover:
            log.info("port %s: adopted the existing TAP %s (it is not removed when vtepd stops)", name, name)
        self._taps_held[name] = self._taps_held.get(name, 0) + 1
        return handles

    def attach(self, port_id, handles):
        for loop, handle in zip(self.loops, handles):
            loop.attach_port(port_id, handle)

    def detach(self, port_id):
        for loop in self.loops:
            loop.detach_port(port_id)
        name = next((n for n, pid in self.tables.ports.items() if pid == port_id), None)
        if self._taps_held.get(name):
            self._taps_held[name] -= 1

    def apply(self, config):
        """Reload: make the running tables and I/O hold "config"; returns the
        changes (tables.ReloadError or PortError: nothing changed)."""
        return self.tables.apply(config, io=self)

    def start(self):
        for loop in self.loops:
            loop.start()

    def close(self):
        """Stop the loops and close all I/O: TAPs vanish with their last queue."""
        for loop in self.loops:
            loop.close()
        self.loops = []
        if self._bypass is not None:
            os.close(self._bypass)
            self._bypass = None


__all__ = ["Datapath", "PortError"]
