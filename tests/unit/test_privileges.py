"""dataplane/privileges.py: what drop() leaves a thread, as the kernel shows
it in /proc, with full root, without CAP_SETPCAP, without the two kept
capabilities, and with a thread started too early.  Each case runs in a
child process: a drop cannot be undone."""
import json
import subprocess
import sys
import textwrap

import pytest

from dataplane import privileges

pytestmark = pytest.mark.root

KEPT = privileges.mask(privileges.KEEP)

CHILD = """
import json, threading, time
from dataplane import privileges as p

def status(path="/proc/thread-self/status"):
    with open(path) as f:
        fields = dict(line.split(":\\t", 1) for line in f.read().splitlines() if ":\\t" in line)
    caps = {k: int(fields[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
    return {**caps, "NoNewPrivs": int(fields["NoNewPrivs"])}

early = None
BEFORE
outcome = p.drop()
print(json.dumps({"kept": outcome.kept, "problems": outcome.problems, "text": str(outcome), "self": status(),
                  "early": early and status(f"/proc/self/task/{early}/status")}))
"""


def dropped(before=""):
    """drop() in a child that first runs the code "before"; its outcome and status."""
    code = CHILD.replace("BEFORE", textwrap.dedent(before))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    return json.loads(done.stdout)


def test_root_keeps_net_admin_and_net_raw_only():
    r = dropped()
    assert r["problems"] == [] and r["kept"] == [privileges.CAP_NET_ADMIN, privileges.CAP_NET_RAW]
    s = r["self"]
    assert (s["CapEff"], s["CapPrm"], s["CapBnd"]) == (KEPT, KEPT, KEPT)
    assert (s["CapInh"], s["CapAmb"], s["NoNewPrivs"]) == (0, 0, 1)
    assert r["text"] == "kept CAP_NET_ADMIN, CAP_NET_RAW"


def test_without_setpcap_the_bounding_set_stays_and_it_says_so():
    r = dropped(f"p._capset({KEPT})  # started with these two only: no CAP_SETPCAP")
    (problem,) = r["problems"]
    assert "bounding set keeps" in problem and "needs CAP_SETPCAP" in problem
    s = r["self"]
    assert (s["CapEff"], s["CapPrm"], s["CapInh"], s["CapAmb"], s["NoNewPrivs"]) == (KEPT, KEPT, 0, 0, 1)
    assert s["CapBnd"] & ~KEPT  # not shrunk, but reported


def test_without_the_two_capabilities_it_keeps_none_and_says_so():
    r = dropped("p._capset(0)  # an unprivileged start")
    assert r["kept"] == []
    assert any("never had CAP_NET_ADMIN, CAP_NET_RAW" in p for p in r["problems"])
    assert (r["self"]["CapEff"], r["self"]["CapPrm"]) == (0, 0)


def test_a_thread_started_before_keeps_its_capabilities_and_is_reported():
    r = dropped("""
        started = threading.Event()
        def sleeper():
            global early
            early = threading.get_native_id()
            started.set()
            time.sleep(5)
        threading.Thread(target=sleeper, daemon=True).start()
        started.wait()
    """)
    assert any("1 other thread(s) started before the drop keep their capabilities" in p for p in r["problems"])
    assert r["self"]["CapEff"] == KEPT
    assert r["early"]["CapEff"] & ~KEPT  # capabilities are per thread: why vtepd drops before starting any
