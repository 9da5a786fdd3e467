"""Builds the C core twice over, once into each binding:
dataplane._engine (Cython: tables, bursts, counters) and
dataplane._packet (cffi: stateless packet functions).
Metadata lives in pyproject.toml."""
import os
import shlex

from Cython.Build import cythonize
from setuptools import Extension, setup

CORE = ["csrc/tunnel.c", "csrc/map.c", "csrc/fdb.c", "csrc/engine.c", "csrc/pipeline.c",
        "csrc/io_afpacket.c", "csrc/io_tap.c", "csrc/loop.c", "csrc/offload.c", "csrc/gro.c",
        "csrc/tunnel_bpf.c"]
CFLAGS = ["-O3", "-std=gnu11", "-fno-strict-aliasing", *shlex.split(os.environ.get("VTEP_CFLAGS", ""))]

engine = Extension(
    "dataplane._engine",
    ["bindings/engine.pyx", *CORE],
    include_dirs=["csrc", "bindings"],
    extra_compile_args=CFLAGS,
    depends=[os.path.join("csrc", f) for f in os.listdir("csrc") if f.endswith((".h", ".def"))],
)

setup(
    ext_modules=cythonize([engine], include_path=["bindings"], compiler_directives={"language_level": 3}),
    cffi_modules=["bindings/packet_build.py:ffibuilder"],
)
