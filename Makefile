# Fast IPsec — top-level entry points.
#
#   make demo   the main job (today: crypto self-test + crypto benchmark)
#   make test   every test: fmt, clippy, unit/property/integration tests, RFC
#               vectors, interop with scapy/tshark/zlib, short fuzz runs, and
#               the x86_64-unknown-none kernel staticlib build
#   make bench  all benchmarks (baselines measured in the same run)
#   make fuzz   long fuzz runs (FUZZ_SECONDS per target, default 600)
#
# Every target installs what it needs first (ci/install-deps.sh, idempotent).

SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
FUZZ_SECONDS ?= 600
FUZZ_SHORT_SECONDS ?= 8

# Kernel flags for the staticlib (FreeBSD amd64 kmod rules, see
# shared/notes/freebsd-kpi.md § 9): kernel code model, static relocations, no
# GOT, frame pointers; soft backends so no SIMD register is touched without
# fpu_kern_enter(9).
KMOD_TARGET := x86_64-unknown-none
KMOD_RUSTFLAGS := -C code-model=kernel -C relocation-model=static -C relro-level=off \
	-C force-frame-pointers=yes \
	--cfg aes_backend="soft" --cfg polyval_backend="soft" \
	--cfg chacha20_backend="soft" --cfg poly1305_backend="soft" \
	--cfg sha1_backend="soft" --cfg sha2_backend="soft"
KMOD_LIB := target/$(KMOD_TARGET)/kmod/libfipsec_ffi.a

.PHONY: all deps build test test-vectors test-rust test-interop test-interop-batch lint fmt kmod-lib kmod-check bench demo fuzz fuzz-short clean

all: build

deps:
	@ci/install-deps.sh

build: deps
	$(CARGO) build --workspace --release

fmt:
	$(CARGO) fmt --all

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features fipsec-ffi/ipsec-mb -- -D warnings
	$(CARGO) fmt --manifest-path tests/fuzz/Cargo.toml -- --check
	$(CARGO) clippy --manifest-path tests/fuzz/Cargo.toml --all-targets -- -D warnings

test: deps lint test-vectors test-rust kmod-check test-interop test-interop-batch fuzz-short
	@echo "== make test: all green =="

test-vectors:
	$(PYTHON) tests/vectors/verify_with_openssl.py

test-rust:
	$(CARGO) test --workspace --features fipsec-ffi/ipsec-mb,fipsec-crypto/dev

# The core as the kernel sees it: no_std, no SSE, kernel code model, panic=abort.
kmod-lib: deps
	RUSTC_BOOTSTRAP=1 RUSTFLAGS='$(KMOD_RUSTFLAGS)' $(CARGO) rustc -p fipsec-ffi \
		--profile kmod --target $(KMOD_TARGET) --no-default-features --features kmod \
		--crate-type staticlib \
		-Z build-std=core,alloc,compiler_builtins -Z build-std-features=compiler-builtins-mem

kmod-check: kmod-lib
	ci/check-kmod-lib.sh $(KMOD_LIB)

# fipsec-pkt with the IPsec-MB driver too: the interop tests run every
# crypto driver the binary lists (`fipsec-pkt drivers`).
test-interop: deps
	$(CARGO) build --release -p fipsec-pkt --features ipsec-mb
	FIPSEC_PKT=$(CURDIR)/target/release/fipsec-pkt $(PYTHON) -m unittest discover -s tests/interop -p 'test_*.py' -v

# The same suite through Worker::output_batch / input_batch (fipsec-pkt --batch).
test-interop-batch: deps
	$(CARGO) build --release -p fipsec-pkt --features ipsec-mb
	FIPSEC_PKT_BATCH=1 FIPSEC_PKT=$(CURDIR)/target/release/fipsec-pkt $(PYTHON) -m unittest discover -s tests/interop -p 'test_*.py'

# Benchmarks run with the kernel-like page size: glibc (2.35+) asks for
# transparent huge pages for the heap, as a FreeBSD kernel's allocations sit
# in the superpage-mapped direct map (the bench prints which it got;
# `make bench BENCH_TUNABLES=` measures with 4 KiB pages).
BENCH_TUNABLES ?= glibc.malloc.hugetlb=1

bench: deps
	GLIBC_TUNABLES=$(BENCH_TUNABLES) $(CARGO) run --release -p fipsec-bench --features fipsec-ffi/ipsec-mb -- all --svg target/bench/crypto.svg --pipeline-svg target/bench/pipeline.svg

# The demo's benchmark runs short loops (`--quick`, a few minutes, progress
# per row); `make demo DEMO_ARGS=` runs the full-length crypto benchmark.
DEMO_ARGS ?= --quick

demo: deps
	$(CARGO) run --release -p fipsec-bench --features fipsec-ffi/ipsec-mb -- demo --svg target/demo/crypto.svg $(DEMO_ARGS)

# The harness's own tests first (seeds replay clean, every oracle fires),
# then a short libFuzzer run of every target.
fuzz-short: deps
	$(CARGO) test --manifest-path tests/fuzz/Cargo.toml --test harness
	ci/fuzz.sh $(FUZZ_SHORT_SECONDS)

fuzz: deps
	ci/fuzz.sh $(FUZZ_SECONDS)

clean:
	$(CARGO) clean
