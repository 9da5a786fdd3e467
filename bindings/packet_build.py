"""cffi build of dataplane._packet: the stateless packet functions.

The declarations are csrc/vtep_packet.h itself, run through the C
preprocessor (which expands the drop-reason X-macro list), so the binding
cannot drift from the header."""
import os
import subprocess

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(HERE, "..", "csrc")


def _declarations():
    cc = os.environ.get("CC", "cc").split()
    return subprocess.run(
        [*cc, "-E", "-P", "-DVTEP_CFFI", "-I", CSRC, os.path.join(CSRC, "vtep_packet.h")],
        check=True, capture_output=True, text=True,
    ).stdout


ffibuilder = FFI()
ffibuilder.cdef(_declarations())
ffibuilder.set_source(
    "dataplane._packet",
    '#include "vtep_packet.h"',
    sources=[os.path.relpath(os.path.join(CSRC, f)) for f in ("tunnel.c", "offload.c")],
    include_dirs=[CSRC],
    extra_compile_args=["-O3", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
