"""Run by every Python process of `make test-asan` (this directory is on
their PYTHONPATH), vtepd subprocesses included.

gcc builds UBSan as its own runtime beside ASan's, and in that pairing it
ignores UBSAN_OPTIONS' log_path and writes to stderr, which for a vtepd is
a log file nobody reads (or pytest's capture, lost when the process
aborts).  Point its report path at VTEP_UBSAN_LOG instead, as ASan's
log_path does for ASan."""
import ctypes
import os

_path = os.environ.get("VTEP_UBSAN_LOG")
if _path:
    ctypes.CDLL("libubsan.so.1").__sanitizer_set_report_path(_path.encode())
