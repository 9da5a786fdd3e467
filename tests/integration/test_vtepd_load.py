"""One million FDB entries installed through vtepd's control socket while
traffic flows (issue 5, "Load"): at least 100,000 entries a second, and
not one datagram lost on the flows that were established before.

Topology: two_remotes.py (vtepd between host H1 and two kernel VTEPs, every
MAC of the flows static in the FDB, so nothing is flooded)."""
import json
import socket
import time

import pytest

from . import vtepd as v
from .two_remotes import CONFIG, K2_ADDR, K_ADDR, build, flows, stop_all

pytestmark = [pytest.mark.root, pytest.mark.slow]

ENTRIES = 1_000_000
BATCH = 10_000          # ~740 KB a request: under the control socket's 1 MiB line limit
MIN_RATE = 100_000      # entries per second, the floor
FLOW_RATE = 500         # datagrams per second, each direction
STATIC = 3              # the [[fdb]] entries of two_remotes.CONFIG


@pytest.fixture
def topo(namespaces):
    return build(namespaces)


def requests(n, batch):
    """`fdb-add` request lines for "n" static remote entries, "batch" a
    request, alternately behind each kernel VTEP."""
    lines = []
    for start in range(0, n, batch):
        remote = (K_ADDR, K2_ADDR)[start // batch % 2]
        entries = [{"segment": "plain", "mac": "02:10:" + ":".join(f"{i:08x}"[j:j + 2] for j in range(0, 8, 2)),
                    "remote": remote} for i in range(start, min(n, start + batch))]
        lines.append(json.dumps({"command": "fdb-add", "args": {"entries": entries}}).encode() + b"\n")
    return lines


def send_all(path, lines):
    """Every request on one connection, each answered before the next;
    returns the entries added."""
    added = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(path)
        replies = sock.makefile("rb")
        for line in lines:
            sock.sendall(line)
            reply = json.loads(replies.readline())
            assert reply["ok"], reply
            added += reply["result"]["added"]
    return added


@pytest.mark.reliability(
    "Load", "1,000,000 static FDB entries are installed through the control socket (100 batches) while "
            "established flows run",
    expected="at least 100,000 entries a second; zero loss on the established flows")
def test_a_million_fdb_entries_under_traffic(topo, tmp_path, measured):
    toml = CONFIG.replace("vni = 5000\n", f"vni = 5000\nmaximum_fdb_entries = {ENTRIES + 1000}\n")
    lines = requests(ENTRIES, BATCH)  # made before the clock starts: the client's cost is not vtepd's
    d = v.Vtepd(topo["V"][0], toml, tmp_path)
    try:
        rss_before = v.rss_mib(d.proc.pid)
        made = flows(topo, rate=FLOW_RATE)
        time.sleep(1)
        start = time.monotonic()
        added = send_all(d.socket, lines)
        elapsed = time.monotonic() - start
        time.sleep(1)
        stop_all(made)
        rate = added / elapsed
        assert added == ENTRIES
        # Learned entries come and go (vm1's kernel side sends ND): without
        # them, the config's three static entries and ours.
        d.ctl("fdb-flush", {"segment": "plain"})
        assert d.ctl("show-segments")[0]["fdb_entries"] == STATIC + ENTRIES
        lost = {name: len(f.lost()) for name, f in made.items()}
        sent = {name: f.count() for name, f in made.items()}
        assert lost == {name: 0 for name in made}, f"lost {lost} of {sent}"
        assert all(f.duplicates == 0 for f in made.values())
        assert rate >= MIN_RATE, f"{rate:.0f} entries/s"
        rss_after = v.rss_mib(d.proc.pid)
        assert d.proc.poll() is None
    finally:
        d.stop()
    measured(f"{added:,} entries in {elapsed:.2f} s: {rate:,.0f} entries/s; flows: "
             + ", ".join(f"{n} {sent[n]}/{sent[n]} received" for n in made)
             + f"; vtepd RSS {rss_before:.0f} -> {rss_after:.0f} MiB")
