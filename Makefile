# vtep: `make test` and `make demo` work on a fresh Debian 12 machine; they
# install what they need (Debian packages, then a virtualenv in .venv).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := build-essential python3-dev python3-venv tshark tcpdump tcpreplay openvswitch-switch valgrind iperf3 iputils-ping
CC ?= cc
CFLAGS ?= -O3 -std=gnu11 -Wall -Wextra -Werror -fno-strict-aliasing
CORE_SRC := $(wildcard csrc/*.c)
CORE_DEP := $(CORE_SRC) $(wildcard csrc/*.h csrc/*.def)
STAMP := $(VENV)/.vtep-installed

.PHONY: build test test-c fuzz bench bench-system demo demo-memory lint clean system-deps

build: $(STAMP)

# One editable install builds both extensions in place and the console scripts.
$(STAMP): pyproject.toml setup.py $(CORE_DEP) $(wildcard bindings/*)
	@$(MAKE) --no-print-directory system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==25.2
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

# C-level tests: header sizes, RFC checksum vectors, golden bytes.
build/test_c: tests/c/test_core.c $(CORE_DEP)
	@mkdir -p build
	$(CC) $(CFLAGS) -Icsrc -o $@ tests/c/test_core.c $(CORE_SRC)

# Threads: the FDB under concurrent readers, learners and deletes; two workers
# on one engine.  Built twice: plain, and with ThreadSanitizer (which cannot
# model fences, hence -Wno-tsan; it reports no race in these paths).
THREAD_TESTS := test_fdb_stress test_workers
build/test_%: tests/c/test_%.c $(CORE_DEP)
	@mkdir -p build
	$(CC) $(CFLAGS) -Icsrc -pthread -o $@ $< $(CORE_SRC)

build/tsan_%: tests/c/test_%.c $(CORE_DEP)
	@mkdir -p build
	$(CC) $(CFLAGS) -O1 -g -fsanitize=thread -Wno-tsan -Icsrc -pthread -o $@ $< $(CORE_SRC)

# The fuzz target, replayed over its corpus with gcc's sanitizers (no clang needed).
build/fuzz_replay: tests/fuzz/fuzz_frame.c tests/fuzz/replay.c $(CORE_DEP)
	@mkdir -p build
	$(CC) $(CFLAGS) -g -fsanitize=address,undefined -fno-sanitize-recover=all -Icsrc -o $@ \
		tests/fuzz/fuzz_frame.c tests/fuzz/replay.c $(CORE_SRC)

test-c: build/test_c build/fuzz_replay $(THREAD_TESTS:%=build/%) $(THREAD_TESTS:test_%=build/tsan_%)
	./build/test_c
	./build/fuzz_replay tests/fuzz/corpus
	./build/test_fdb_stress && TSAN_OPTIONS=halt_on_error=1 ./build/tsan_fdb_stress 500
	./build/test_workers && TSAN_OPTIONS=halt_on_error=1 ./build/tsan_workers

# Coverage-guided fuzzing with libFuzzer (clang); new inputs go to build/fuzz-corpus.
FUZZ_SECONDS ?= 60
CLANG ?= clang-14
build/fuzz_frame: tests/fuzz/fuzz_frame.c $(CORE_DEP)
	@mkdir -p build/fuzz-corpus
	$(CLANG) -O1 -g -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Icsrc \
		-o $@ tests/fuzz/fuzz_frame.c $(CORE_SRC)

fuzz:
	@$(MAKE) --no-print-directory system-deps APT_PACKAGES="clang-14 libclang-rt-14-dev"
	@$(MAKE) --no-print-directory build/fuzz_frame
	./build/fuzz_frame -max_total_time=$(FUZZ_SECONDS) -max_len=2048 build/fuzz-corpus tests/fuzz/corpus

# The system benchmark's tools: the null forwarder (vtepd's rings and loop,
# no pipeline), the pcap replaying generator and the latency sink.
PERF_TOOLS := build/nullfwd build/vtep-gen build/vtep-sink
build/nullfwd: perf/nullfwd.c $(CORE_DEP)
	@mkdir -p build
	$(CC) $(CFLAGS) -Icsrc -pthread -o $@ perf/nullfwd.c $(CORE_SRC)

build/vtep-gen: perf/gen.c
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ perf/gen.c

build/vtep-sink: perf/sink.c
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ perf/sink.c

# build/micro and the system benchmark's tools too: benchmarks must keep
# compiling even when nobody runs them.
test: build test-c build/micro $(PERF_TOOLS)
	$(PY) -m pytest

build/micro: perf/micro.c $(CORE_DEP)
	@mkdir -p build
	$(CC) $(CFLAGS) -Icsrc -o $@ perf/micro.c $(CORE_SRC)

bench: build build/micro
	$(PY) perf/report.py --c-driver build/micro --json build/bench.json

# The system benchmark (perf/README.md): vtepd beside a null forwarder, the
# kernel's bridge+VXLAN and OVS's userspace datapath, in namespaces (root).
# build/bench-system.json, perf/RESULTS.md, perf/plots/; ~30 min.
BENCH_SYSTEM_ARGS ?=
$(VENV)/.vtep-perf-installed: $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[test,perf]'
	@touch $@

bench-system: $(VENV)/.vtep-perf-installed $(PERF_TOOLS)
	$(SUDO) $(PY) perf/bench_system.py $(BENCH_SYSTEM_ARGS)

# The namespace lab: two vtepd, hosts in every PVLAN role and a kernel VXLAN
# peer; the ping matrix, iperf3 through the overlay, then everything removed.
demo: build
	$(SUDO) $(PY) -m dataplane.lab demo

# The same PVLAN story without root: two engines in memory, a pcap for tshark.
demo-memory: build
	$(PY) -m dataplane.demo

lint: build
	$(PY) -m ruff check dataplane tests perf bindings/packet_build.py setup.py

clean:
	rm -rf build $(STAMP) dataplane/_engine*.so dataplane/_packet*.so dataplane/_packet.c bindings/engine.c \
		*.egg-info .pytest_cache .hypothesis
