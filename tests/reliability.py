"""The reliability record: tests of attacks, faults and load say what they
expect and what they measured; the session writes every row, with the test's
outcome, to build/reliability.json, from which tests/reliability_report.py
writes docs/RELIABILITY.md.  A row is only as good as its test: "measured"
must come from the run, never be a constant.

    @pytest.mark.reliability("Hostile tenant", "Isolated host forges a promiscuous MAC",
                             expected="isolation holds; the owner keeps its traffic")
    def test_x(..., measured):
        ...
        measured(f"{n} of 200 forged frames delivered; owner received 200/200")
"""
import json
import os
import pathlib

import pytest

RECORD = pathlib.Path(__file__).resolve().parent.parent / "build" / "reliability.json"
_rows = {}


def _row(item):
    mark = item.get_closest_marker("reliability")
    if mark is None:
        return None
    area, case = mark.args
    return _rows.setdefault(item.nodeid, {"area": area, "case": case, "expected": mark.kwargs["expected"],
                                          "measured": [], "outcome": "not run", "test": item.nodeid})


@pytest.fixture
def measured(request):
    """measured(text): adds one measured result to this test's row."""
    row = _row(request.node)
    if row is None:
        raise RuntimeError("the measured fixture needs @pytest.mark.reliability(area, case, expected=...)")
    return row["measured"].append


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    row = _row(item)
    if row is None:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        row["outcome"] = report.outcome
        if report.failed:
            row["measured"].append(f"FAILED: {str(report.longrepr).strip().splitlines()[-1][:200]}")


def pytest_sessionfinish(session):
    if not _rows or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    RECORD.parent.mkdir(exist_ok=True)
    RECORD.write_text(json.dumps(_rows, indent=1, sort_keys=True))  # this run's rows only
