"""What a benchmark ran on, for its JSON: shared by perf/report.py and
perf/bench_system.py (both run with perf/ on sys.path)."""
import datetime
import os
import platform
import subprocess


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def describe(root):
    """CPU model, CPUs, kernel, Python, compiler, date, git commit of "root", load average."""
    def run(*cmd):
        try:
            return subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    cpu = None
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(),
        "python": platform.python_version(), "cc": (run("cc", "--version") or "").split("\n")[0],
        "date": now(), "git_commit": run("git", "rev-parse", "HEAD"),
        "git_dirty": bool(run("git", "status", "--porcelain", "--untracked-files=no")),
        "loadavg_start": os.getloadavg()[0],
    }
