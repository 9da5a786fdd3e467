"""`make demo`: two VTEPs, one PVLAN segment, a host in every role on each,
run through the C engine in memory.  Prints who reaches whom (broadcast and
unicast, locally and over VXLAN), the VNI each role sends with, and writes
the underlay traffic to a pcap that tshark decodes.

The namespace lab with real interfaces (vtepctl lab up) needs the packet I/O
of the daemon; this shows the fast path's decisions on their own."""
import ipaddress
import shutil
import struct
import subprocess
import sys
from pathlib import Path

from ._engine import Engine
from .packet import DROP_REASONS, decap
from .pcap import Writer

VTEPS = {"A": "198.18.0.1", "B": "198.18.0.2"}
ROLES = {"gw": ("promiscuous", None), "iso": ("isolated", None), "web": ("community", 0), "db": ("community", 1)}
VNIS = {"vni": 5000, "isolated_vni": 5001, "communities": [5002, 5003]}  # web, db


def host_mac(n):
    return bytes([2, 0, 0, 0, 0, n])


def arp_request(src_mac, src_ip, dst_ip):
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src_mac, src_ip, bytes(6), dst_ip)
    return b"\xff" * 6 + src_mac + b"\x08\x06" + arp + bytes(18)


def udp_frame(dst_mac, src_mac, src_ip, dst_ip):
    payload = b"vtep demo"
    udp = struct.pack("!HHHH", 40000, 7, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src_ip, dst_ip)
    return dst_mac + src_mac + b"\x08\x00" + ip + udp


class Lab:
    def __init__(self):
        self.hosts = {}  # "A/web" -> (vtep, port id, mac, ip)
        self.engines = {}
        self.underlay = []  # every packet that crossed the underlay
        n = 0
        for name, local in VTEPS.items():
            e = Engine(local, underlay_mac=f"02:00:00:00:ff:0{len(self.engines) + 1}")
            seg = e.add_segment("vxlan", VNIS["vni"], VNIS["isolated_vni"], VNIS["communities"])
            for other, address in VTEPS.items():
                if other != name:
                    remote = e.add_remote(address)
                    e.set_neighbour(remote, f"02:00:00:00:ff:0{list(VTEPS).index(other) + 1}")
                    e.segment_add_remote(seg, remote)
            for role_name, (role, community) in ROLES.items():
                n += 1
                port = e.add_port(seg, role, community)
                self.hosts[f"{name}/{role_name}"] = (name, port, host_mac(n), bytes([192, 0, 2, n]))
            self.engines[name] = e

    def send(self, sender, frame):
        """Deliver "frame" from host "sender"; returns ({host: True}, [why dropped])."""
        vtep, port, _, _ = self.hosts[sender]
        verdicts, outs = self.engines[vtep].access(port, [frame])
        reached, why = set(), [] if verdicts[0] == 0 else [f"{DROP_REASONS[verdicts[0]]} at {vtep}"]
        for _, kind, target, data in outs:
            if kind == "port":
                reached.add(self.host_at(vtep, target))
                continue
            self.underlay.append(data)
            far = next(n for n, a in VTEPS.items() if n != vtep and ipaddress.ip_address(a) == decap(data).dst)
            far_verdicts, far_outs = self.engines[far].underlay([data])
            if far_verdicts[0]:
                why.append(f"{DROP_REASONS[far_verdicts[0]]} at {far}")
            reached |= {self.host_at(far, t) for _, _, t, _ in far_outs}
        return reached, why

    def host_at(self, vtep, port):
        return next(h for h, (v, p, _, _) in self.hosts.items() if (v, p) == (vtep, port))


def main():
    lab = Lab()
    names = list(lab.hosts)
    print("vtep demo: VTEP A 198.18.0.1 and VTEP B 198.18.0.2, segment 'tenant-a' (VXLAN),")
    print("  VNIs: promiscuous 5000, isolated 5001, community web 5002, community db 5003\n")

    print("Broadcast (ARP request from each host; MACs are learned on the way):")
    for sender in names:
        _, _, mac, ip = lab.hosts[sender]
        reached, _ = lab.send(sender, arp_request(mac, ip, bytes([192, 0, 2, 254])))
        print(f"  {sender:6} -> {', '.join(sorted(reached)) or 'nobody'}")

    print("\nUnicast after learning (Y: delivered; deny@X: private VLAN refused it at VTEP X):")
    print("  from \\ to" + "".join(f"{n:>8}" for n in names))
    for sender in names:
        _, _, smac, sip = lab.hosts[sender]
        cells = []
        for receiver in names:
            if receiver == sender:
                cells.append("-")
                continue
            _, _, dmac, dip = lab.hosts[receiver]
            reached, why = lab.send(sender, udp_frame(dmac, smac, sip, dip))
            cells.append("Y" if reached == {receiver} else ", ".join(why).replace("pvlan_deny at ", "deny@") or "?")
        print(f"  {sender:9}" + "".join(f"{c:>8}" for c in cells))

    print("\nOn the wire, the VNI says the sender's role:")
    seen = {}
    for packet in lab.underlay:
        d = decap(packet)
        seen.setdefault(d.vni, d.inner[6:12])
    for vni, mac in sorted(seen.items()):
        sender = next(h for h, (_, _, m, _) in lab.hosts.items() if m == mac)
        print(f"  VNI {vni}: e.g. from {sender} ({ROLES[sender.split('/')[1]][0]})")

    out = Path("build/demo-underlay.pcap")
    out.parent.mkdir(exist_ok=True)
    with open(out, "wb") as f:
        writer = Writer(f)
        for i, packet in enumerate(lab.underlay):
            writer.write(i // 1000, i % 1000 * 1_000_000, packet)  # a millisecond apart
    print(f"\n{len(lab.underlay)} underlay packets written to {out}")
    if shutil.which("tshark"):
        fields = ["-T", "fields", "-E", "occurrence=l", "-e", "ip.src", "-e", "ip.dst", "-e", "vxlan.vni",
                  "-e", "eth.src"]
        shown = subprocess.run(["tshark", "-r", str(out), "-c", "4", *fields], capture_output=True, text=True)
        print("tshark decodes them (outer src, outer dst, VNI, inner src MAC):")
        print("".join(f"  {line}\n" for line in shown.stdout.splitlines()), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
