"""The summary of a `make fuzz` run: for each target, what libFuzzer printed
at the end of build/fuzz/<target>.log (-print_final_stats=1) and the crash
inputs it left in build/fuzz/crashes/<target>.  Prints a table, writes JSON,
and exits 1 if any target crashed or did not finish its run.

    python3 tests/fuzz/report.py --json build/fuzz.json build/fuzz/access build/fuzz/underlay ..."""
import argparse
import json
import re
import sys
from pathlib import Path

# "#1234  DONE   cov: 567 ft: 890 corp: 120/18Kb lim: 4096 exec/s: 41 rss: 45Mb"
DONE = re.compile(r"^#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)/")
INITED = re.compile(r"^#\d+\s+INITED\s+cov: (\d+) ft: (\d+) corp: (\d+)/")
STAT = re.compile(r"^stat::(\w+):\s+(\d+)")
DURATION = re.compile(r"^Done \d+ runs in (\d+) second")


def summarize(prefix):
    """The figures of one target, from "<prefix>.log" and its crash directory."""
    prefix = Path(prefix)
    name = prefix.name
    log = prefix.with_name(f"{name}.log")
    crashes = prefix.parent / "crashes" / name
    row = {"target": name, "finished": False, "crashes": sorted(p.name for p in crashes.glob("*"))
           if crashes.is_dir() else []}
    text = log.read_text(errors="replace") if log.exists() else ""
    for line in text.splitlines():
        if m := INITED.match(line):
            row["seed_cov"], row["seed_ft"], row["seed_inputs"] = map(int, m.groups())
        elif m := DONE.match(line):
            row["finished"] = True
            row["executions"], row["cov"], row["ft"], row["corpus"] = map(int, m.groups())
        elif m := STAT.match(line):
            row[m.group(1)] = int(m.group(2))
        elif m := DURATION.match(line):
            row["seconds"] = int(m.group(1))
    if "number_of_executed_units" in row:
        row["executions"] = row["number_of_executed_units"]
    return row


COLUMNS = [("target", "target"), ("seconds", "s"), ("executions", "execs"), ("average_exec_per_sec", "exec/s"),
           ("seed_cov", "cov seeds"), ("cov", "cov"), ("ft", "ft"), ("seed_inputs", "seeds"),
           ("corpus", "corpus"), ("new_units_added", "new"), ("peak_rss_mb", "rss MB")]


def table(rows):
    cells = [[label for _, label in COLUMNS + [(None, "crashes")]]]
    for row in rows:
        crashes = str(len(row["crashes"])) if row["finished"] or row["crashes"] else "did not finish"
        cells.append([str(row.get(key, "-")) for key, _ in COLUMNS] + [crashes])
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in cells)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the figures here too")
    ap.add_argument("targets", nargs="+", help="build/fuzz/<target>: its .log and crashes/<target> are read")
    args = ap.parse_args(argv)
    rows = [summarize(t) for t in args.targets]
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    failed = [r["target"] for r in rows if r["crashes"] or not r["finished"]]
    for name in failed:
        print(f"fuzz {name}: crashed or did not finish; see build/fuzz/{name}.log and build/fuzz/crashes/{name}",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
