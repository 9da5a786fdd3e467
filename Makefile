# vtep: `make test` and `make demo` work on a fresh Debian 12 machine; they
# install what they need (Debian packages, then a virtualenv in .venv).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := build-essential python3-dev python3-venv tshark tcpdump tcpreplay openvswitch-switch valgrind iperf3 iputils-ping netsniff-ng
CC ?= cc
CFLAGS ?= -O3 -std=gnu11 -Wall -Wextra -Werror -fno-strict-aliasing
CORE_SRC := $(wildcard csrc/*.c)
CORE_DEP := $(CORE_SRC) $(wildcard csrc/*.h csrc/*.def)
STAMP := $(VENV)/.vtep-installed

.PHONY: build test test-c test-asan asan-build fuzz fuzz-smoke bench bench-scaling bench-system demo demo-memory lint clean system-deps soak

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

# C-level tests: header sizes, RFC checksum vectors, golden bytes; the
# AF_PACKET rings (TX heads, underlay super-packets) on a private loopback (root).
TEST_DEP := tests/c/check.h
build/test_c: tests/c/test_core.c $(CORE_DEP) $(TEST_DEP)
	@mkdir -p build
	$(CC) $(CFLAGS) -Icsrc -o $@ tests/c/test_core.c $(CORE_SRC)

# Threads: the FDB under concurrent readers, learners and deletes; two workers
# on one engine.  Built twice: plain, and with ThreadSanitizer (which cannot
# model fences, hence -Wno-tsan; it reports no race in these paths).
THREAD_TESTS := test_fdb_stress test_workers
build/test_%: tests/c/test_%.c $(CORE_DEP) $(TEST_DEP)
	@mkdir -p build
	$(CC) $(CFLAGS) -Icsrc -pthread -o $@ $< $(CORE_SRC)

build/tsan_%: tests/c/test_%.c $(CORE_DEP)
	@mkdir -p build
	$(CC) $(CFLAGS) -O1 -g -fsanitize=thread -Wno-tsan -Icsrc -pthread -o $@ $< $(CORE_SRC)

# The whole test suite against a sanitized build (ASan + UBSan, gcc): the C
# core and both extensions are built in a copy of the tree, build/asan/src,
# so the normal build stays as it is.  Python itself is not instrumented, so
# libasan is preloaded (and inherited by the vtepd subprocesses the tests
# start, which import the same copy through PYTHONPATH); CPython's own
# allocations are not ours to chase (detect_leaks=0).  Reports go to files
# under build/asan/logs, since a vtepd's stderr is a log nobody reads: any
# report fails the target.  Cython builds in place need the build backend's
# pinned packages: they go to build/asan/tools, not into the venv.
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g
ASAN := build/asan
ASAN_LOGS := $(CURDIR)/$(ASAN)/logs
ASAN_RUN = LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) \
	ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:quarantine_size_mb=64:log_path=$(ASAN_LOGS)/asan \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 VTEP_UBSAN_LOG=$(ASAN_LOGS)/ubsan \
	PYTHONPATH=$(CURDIR)/$(ASAN)/src:$(CURDIR)/$(ASAN)/src/tests/c/asan_site
BUILD_BACKEND := setuptools==80.9.0 wheel==0.45.1 Cython==3.1.6 cffi==2.0.0
ASAN_C_TESTS := test_core test_afpacket test_fdb_stress test_workers

$(ASAN)/tools/.installed: pyproject.toml | $(STAMP)
	$(PY) -m pip install -q --target $(ASAN)/tools $(BUILD_BACKEND)
	@touch $@

$(ASAN)/%: tests/c/%.c $(CORE_DEP) $(TEST_DEP)
	@mkdir -p $(ASAN)
	$(CC) $(CFLAGS) -O1 $(SAN_FLAGS) -Icsrc -pthread -o $@ $< $(CORE_SRC)

asan-build: $(ASAN)/tools/.installed
	@$(MAKE) --no-print-directory system-deps APT_PACKAGES=rsync
	@mkdir -p $(ASAN)/src
	rsync -a --delete --exclude=/build/ --exclude=/.venv/ --exclude=/.git/ --exclude='*.so' \
		--exclude=__pycache__/ --exclude='*.egg-info/' --exclude=/.hypothesis/ --exclude=/.pytest_cache/ \
		--exclude=/bindings/engine.c --exclude=/dataplane/_packet.c ./ $(ASAN)/src/
	cd $(ASAN)/src && PYTHONPATH=$(CURDIR)/$(ASAN)/tools CC=$(CC) CFLAGS="$(SAN_FLAGS)" LDFLAGS="$(SAN_FLAGS)" \
		$(abspath $(PY)) setup.py -q build_ext --inplace >build.log 2>&1 || { cat build.log; exit 1; }
	@for so in $(ASAN)/src/dataplane/_engine*.so $(ASAN)/src/dataplane/_packet*.so; do \
		nm -D $$so | grep -q __asan_report || { echo "$$so: not instrumented"; exit 1; }; done

# The suite runs again from $(ASAN)/src, where the tests that drive perf/micro.c
# find it built with the sanitizers too.
$(ASAN)/src/build/micro: perf/micro.c $(CORE_DEP) | asan-build
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -O1 $(SAN_FLAGS) -Icsrc -pthread -o $@ perf/micro.c $(CORE_SRC)

ASAN_PYTEST ?=
test-asan: asan-build $(ASAN_C_TESTS:%=$(ASAN)/%) $(ASAN)/src/build/micro
	for t in $(ASAN_C_TESTS); do ./$(ASAN)/$$t || exit 1; done
	rm -rf $(ASAN_LOGS) && mkdir -p $(ASAN_LOGS)
	cd $(ASAN)/src && $(ASAN_RUN) $(abspath $(PY)) -m pytest -q -p no:cacheprovider $(ASAN_PYTEST); status=$$?; \
	if ls $(ASAN_LOGS) | grep -q .; then echo "test-asan: sanitizer reports:"; cat $(ASAN_LOGS)/*; exit 1; fi; \
	exit $$status
	@echo "test-asan: no sanitizer report"

# Fuzzing: one libFuzzer target per C entry point that parses packet bytes
# (tests/fuzz/fuzz_<target>.c, sharing fuzz_common.c), each seeded by its
# own corpus, tests/fuzz/corpus/<target>.  test-c replays every corpus with
# gcc's sanitizers (no clang needed).
FUZZ_TARGETS := access underlay pipeline offload
FUZZ_COMMON := tests/fuzz/fuzz_common.c tests/fuzz/fuzz_common.h
build/fuzz_replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(FUZZ_COMMON) $(CORE_DEP)
	@mkdir -p build
	$(CC) $(CFLAGS) $(SAN_FLAGS) -Icsrc -o $@ $< tests/fuzz/fuzz_common.c tests/fuzz/replay.c $(CORE_SRC)

test-c: build/test_c build/test_afpacket $(FUZZ_TARGETS:%=build/fuzz_replay_%) $(THREAD_TESTS:%=build/%) $(THREAD_TESTS:test_%=build/tsan_%)
	./build/test_c
	./build/test_afpacket
	@for t in $(FUZZ_TARGETS); do echo "./build/fuzz_replay_$$t tests/fuzz/corpus/$$t"; \
		./build/fuzz_replay_$$t tests/fuzz/corpus/$$t || exit 1; done
	./build/test_fdb_stress && TSAN_OPTIONS=halt_on_error=1 ./build/tsan_fdb_stress 500
	./build/test_workers && TSAN_OPTIONS=halt_on_error=1 ./build/tsan_workers

# Coverage-guided fuzzing with libFuzzer (clang): each target for
# FUZZ_SECONDS, new inputs to build/fuzz/corpus/<target>, crashes to
# build/fuzz/crashes/<target>; then a table of executions, coverage, corpus
# and crashes (tests/fuzz/report.py, also build/fuzz.json).  fuzz-smoke is
# the short run `make test` does.
FUZZ_SECONDS ?= 60
CLANG ?= clang-14
build/fuzz/%: tests/fuzz/fuzz_%.c $(FUZZ_COMMON) $(CORE_DEP)
	@mkdir -p $(@D)
	$(CLANG) -O1 -g -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Icsrc \
		-o $@ $< tests/fuzz/fuzz_common.c $(CORE_SRC)

fuzz:
	@$(MAKE) --no-print-directory system-deps APT_PACKAGES="clang-14 libclang-rt-14-dev"
	@$(MAKE) --no-print-directory $(FUZZ_TARGETS:%=build/fuzz/%)
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p build/fuzz/corpus/$$t build/fuzz/crashes/$$t; \
		echo "fuzz $$t: $(FUZZ_SECONDS) s"; \
		./build/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=25 -print_final_stats=1 \
			-artifact_prefix=build/fuzz/crashes/$$t/ build/fuzz/corpus/$$t tests/fuzz/corpus/$$t \
			>build/fuzz/$$t.log 2>&1; \
	done
	$(PYTHON) tests/fuzz/report.py --json build/fuzz.json $(FUZZ_TARGETS:%=build/fuzz/%)

fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10

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
# pytest records the attack, fault and load rows (tests/reliability.py) from
# which docs/RELIABILITY.md is written.
test: build test-c fuzz-smoke build/micro $(PERF_TOOLS)
	$(PY) -m pytest
	$(PY) -m tests.reliability_report
	@$(MAKE) --no-print-directory test-asan

build/micro: perf/micro.c $(CORE_DEP)
	@mkdir -p build
	$(CC) $(CFLAGS) -Icsrc -pthread -o $@ perf/micro.c $(CORE_SRC)

bench: build build/micro
	$(PY) perf/report.py --c-driver build/micro --json build/bench.json

# Workers scaling where nothing else limits them: the tx and rx pipelines on
# 1, then 2 threads (one per CPU) over one engine, in memory.
bench-scaling: build/micro
	./build/micro --scenarios tx-scaling,rx-scaling --fdb 100,1000000 --batch 256 --min-time 0.5 \
		--json build/bench-scaling.json

# The system benchmark (perf/README.md): vtepd beside a null forwarder, the
# kernel's bridge+VXLAN and OVS's userspace datapath, in namespaces (root).
# build/bench-system.json, perf/RESULTS.md, perf/plots/; ~30 min.
BENCH_SYSTEM_ARGS ?=
$(VENV)/.vtep-perf-installed: $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[test,perf]'
	@touch $@

bench-system: $(VENV)/.vtep-perf-installed $(PERF_TOOLS)
	$(SUDO) $(PY) perf/bench_system.py $(BENCH_SYSTEM_ARGS)

# The soak test (tests/soak.py; root; not in `make test`): SOAK_SECONDS of
# mixed traffic and changes through one vtepd, then RSS flat and every frame
# received either forwarded or dropped with a reason.  build/soak.json.
SOAK_SECONDS ?= 3600
soak: build
	$(SUDO) env SOAK_SECONDS=$(SOAK_SECONDS) $(PY) -m tests.soak

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
