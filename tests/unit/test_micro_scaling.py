"""perf/micro.c's scaling scenarios: one thread, then two, over one engine.
The driver checks every output and the engine's counters itself (exit 1 on a
mismatch); this checks what it reports."""
import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MICRO = os.path.join(ROOT, "build", "micro")


def micro(*args):
    return subprocess.run([MICRO, *args], capture_output=True, text=True, timeout=120)


def test_scaling_reports_one_thread_and_two_over_one_engine(tmp_path):
    out = tmp_path / "scaling.json"
    run = micro("--scenarios", "tx-scaling,rx-scaling", "--fdb", "100", "--batch", "256", "--reps", "1",
                "--min-time", "0.05", "--threads", "2", "--json", str(out))
    assert run.returncode == 0, run.stderr
    results = json.loads(out.read_text())["results"]
    assert [(r["scenario"], r["threads"]) for r in results] == [("tx-scaling", 2), ("rx-scaling", 2)]
    for r in results:
        assert r["one_thread_mpps"] > 0.1 and r["threads_mpps"] > 0.1
        [(one, two)] = r["reps"]
        assert r["ratio"] == pytest.approx(two / one, abs=0.002)
    assert "2 threads" in run.stderr


def test_scaling_refuses_more_threads_than_cpus_and_fewer_than_two():
    run = micro("--scenarios", "tx-scaling", "--threads", str(os.cpu_count() + 1))
    assert run.returncode == 1 and f"--threads {os.cpu_count() + 1}: this machine has" in run.stderr
    assert micro("--threads", "1").returncode == 2
