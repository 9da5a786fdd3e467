"""Writes docs/RELIABILITY.md from build/reliability.json (the rows that the
tests marked "reliability" recorded: tests/reliability.py).

    python -m tests.reliability_report [build/reliability.json] [docs/RELIABILITY.md]"""
import json
import pathlib
import platform
import sys
import time

from tests.reliability import RECORD

HEADER = """# Reliability: attacks, faults and load

Written by `tests/reliability_report.py` from the last test run (`make test`); never edited by
hand. Each row is one test: what it does to vtepd, the behaviour it expects, what it measured, and
whether it passed.

Machine: {machine}. Generated {when}.
"""


def cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(rows, machine, when):
    out = [HEADER.format(machine=machine, when=when)]
    counts = {}
    for row in rows:
        counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    out.append("Outcomes: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + ".\n")
    for area in sorted({r["area"] for r in rows}):
        out += [f"\n## {area}\n", "| Attack or fault | Expected | Measured | Result | Test |",
                "|---|---|---|---|---|"]
        for r in sorted((r for r in rows if r["area"] == area), key=lambda r: r["test"]):
            measured = "; ".join(r["measured"]) or "(nothing recorded)"
            test = r["test"].split("::", 1)
            out.append(f"| {cell(r['case'])} | {cell(r['expected'])} | {cell(measured)} | {r['outcome']} "
                       f"| `{cell(pathlib.Path(test[0]).name)}::{cell(test[-1])}` |")
    return "\n".join(out) + "\n"


def main(argv):
    source = pathlib.Path(argv[0]) if argv else RECORD
    target = pathlib.Path(argv[1]) if len(argv) > 1 else RECORD.parent.parent / "docs" / "RELIABILITY.md"
    rows = list(json.loads(source.read_text()).values())
    machine = f"{platform.system()} {platform.release()}, {platform.machine()}"
    target.write_text(render(rows, machine, time.strftime("%Y-%m-%d %H:%M %Z")))
    print(f"{target}: {len(rows)} rows")


if __name__ == "__main__":
    main(sys.argv[1:])
