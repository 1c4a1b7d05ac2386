# Alloy — build, test, demo and benchmark both languages.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:/usr/local/go/bin:$(PATH)
GO ?= go
CARGO ?= cargo
# Every build and test uses the same packages and feature set, so nothing
# rebuilds between targets. The workspace (doc/README.md, "Crates and
# packages"): alloy-shm (the library, root), alloy-cli (bin/alloy),
# alloy-ffi (liballoy_ffi.a for go/bridge), alloy-testkit, alloy-examples.
FEATURES ?= --features tokio,flight
# The packages by name (not --workspace): a member another step adds (python/,
# built by maturin) joins these targets only when it is listed here.
PACKAGES ?= -p alloy-shm -p alloy-cli -p alloy-ffi -p alloy-testkit -p alloy-examples $(FEATURES)

.PHONY: check-rust-cross test-reliability all deps build doc test test-rust test-go test-py test-python demo bench bench-quick bench-iceoryx2 bench-ring bench-smoke bench-tools bench-doc loom miri fuzz soak clean lint

all: build

deps:
	@bash scripts/deps.sh

# One cargo command: the library, bin/alloy, target/release/liballoy_ffi.a
# (which go/bridge links, so it comes before any Go build) and the
# request/reply worker (an example of alloy-examples: no dev-dependencies).
build: deps
	$(CARGO) build --release $(PACKAGES) --lib --bins --example reqrep_worker
	@mkdir -p bin
	cp target/release/alloy bin/alloy
	cd go && $(GO) build -o ../bin/alloy-go ./cmd/alloy-go
	cd go && $(GO) build -tags alloy_ffi -o ../bin/alloy-oneshot ./examples/oneshot
	cd go && $(GO) build -o ../bin/alloy-reqrep ./examples/reqrep

# All tests of both languages: Rust unit/integration/doc tests (including the
# cross-process ring tests), Go tests under the race detector, and the
# cross-language tests (which use bin/alloy and bin/alloy-go).
test: build doc test-rust test-go test-py test-python bench-smoke

# The API docs with every feature, warnings (unresolved intra-doc links
# included) as errors.
doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps $(PACKAGES)

# A test whose binary (bin/alloy, bin/alloy-go, an example) is missing, or
# that needs root for a second uid and does not have it, fails instead of
# skipping (tests/support/mod.rs, go/internal/testbin). `make test
# REQUIRE_CROSS=0` lets them skip (e.g. as an ordinary user).
REQUIRE_CROSS ?= 1

test-rust: build
	ALLOY_REQUIRE_CROSS=$(REQUIRE_CROSS) $(CARGO) test --release $(PACKAGES) --all-targets
	ALLOY_REQUIRE_CROSS=$(REQUIRE_CROSS) $(CARGO) test --release $(PACKAGES) --doc
	@$(MAKE) --no-print-directory check-rust-cross

# The library must compile for a developer's macOS laptop too (every ring
# entry point there fails with RegionError::UnsupportedPlatform). `cargo
# check` needs only the target's standard library (scripts/deps.sh adds it),
# no macOS linker; nothing here can run the result.
RUST_CROSS ?= aarch64-apple-darwin
check-rust-cross:
	@for t in $(RUST_CROSS); do \
	  if rustup target list --installed 2>/dev/null | grep -qx "$$t"; then \
	    $(CARGO) check --release -q -p alloy-shm --features tokio --target $$t || exit 1; \
	    echo "check-rust-cross: alloy-shm compiles for $$t"; \
	  else echo "check-rust-cross: NOT CHECKED for $$t (rustup target add $$t failed in scripts/deps.sh)"; fi; \
	done

# GO_CROSS: every Go package that needs no cgo (all but go/bridge, which is
# behind the tag) must build and vet on developers' machines too; ring and
# what uses it return ring.ErrUnsupportedPlatform outside Linux.
GO_CROSS ?= darwin/arm64 darwin/amd64 linux/arm64

# bench_peer: cmd/alloy-bench's TestSmoke runs it. -tags alloy_ffi: go/bridge and
# what uses it link target/release/liballoy_ffi.a (without the tag they are left out).
test-go: build
	$(CARGO) build --release $(PACKAGES) --example bench_peer
	cd go && $(GO) vet -tags alloy_ffi ./... && ALLOY_REQUIRE_CROSS=$(REQUIRE_CROSS) $(GO) test -tags alloy_ffi -race -count=1 ./...
	cd go && for t in $(GO_CROSS); do GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) build ./... && \
	  GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) vet ./... || { echo "go build/vet for $$t failed"; exit 1; }; done

# Arrow IPC CLI round trip (alloy-go send -> alloy recv and back), checked by pyarrow;
# tests/cli_tools.py: both CLIs as a user meets them (issue #18: endings, pipes, compression, grammar).
test-py: build
	python3 -m pytest -q -p no:cacheprovider tests/pyarrow_roundtrip.py tests/cli_tools.py tests/deploy_yaml.py tests/record_replay.py

# The Python package alloy_shm (python/, issue #16): built by maturin into
# target/wheels, installed, then tests/python (pyarrow, Polars, DuckDB,
# DataFusion over live Go/Rust streams; zero copy, leases, Ctrl-C).
test-python: build
	maturin build --release -q -m python/Cargo.toml -o target/wheels
	python3 -m pip install --quiet --force-reinstall --no-deps target/wheels/alloy_shm-*.whl
	ALLOY_REQUIRE_CROSS=$(REQUIRE_CROSS) python3 -m pytest -q -p no:cacheprovider tests/python
	@touch target/wheels/.installed

# DataFusion SQL over a live Go stream in Rust (crates/alloy-datafusion,
# issue #16): its own cargo workspace, Cargo.lock and target dir, so neither
# `make build` nor `make test` resolves or builds DataFusion. Not part of
# `make test` / .ci/run: its clean build is far longer than the rest of the
# suite (doc/README.md, "DataFusion (Rust)"). Needs bin/alloy-go (build).
# lint-datafusion: its fmt and clippy (clippy checks every dependency again).
.PHONY: test-datafusion lint-datafusion
test-datafusion: build
	cd crates/alloy-datafusion && ALLOY_REQUIRE_CROSS=$(REQUIRE_CROSS) $(CARGO) test --release --locked
lint-datafusion:
	cd crates/alloy-datafusion && $(CARGO) fmt --check
	cd crates/alloy-datafusion && $(CARGO) clippy --release --locked --all-targets -- -D warnings

# The demo's last step needs the alloy_shm package: built and installed only
# when python/ or the library changed since the last install (the stamp).
PY_PKG_SOURCES := $(shell find src python/src -name '*.rs') Cargo.toml python/Cargo.toml python/pyproject.toml
target/wheels/.installed: $(PY_PKG_SOURCES)
	maturin build --release -q -m python/Cargo.toml -o target/wheels
	python3 -m pip install --quiet --force-reinstall --no-deps target/wheels/alloy_shm-*.whl
	@touch $@

demo: build target/wheels/.installed
	@bash scripts/demo.sh

# The microbenchmark suite (doc/BENCHMARKS.md): all transports in one run,
# written to target/bench/report.{json,md} and latency/throughput/fanout.svg.
bench: bench-tools
	bin/alloy-bench --grid full --out target/bench

bench-quick: bench-tools
	bin/alloy-bench --grid quick --out target/bench

bench-tools: build
	ALLOY_NEED_STRACE=1 bash scripts/deps.sh
	$(CARGO) build --release $(PACKAGES) --example bench_peer
	cd go && $(GO) build -tags alloy_ffi -o ../bin/alloy-bench ./cmd/alloy-bench

# The iceoryx2 comparison (doc/BENCHMARKS.md, "Alloy against iceoryx2"): builds
# the iceoryx2 side with the cargo feature bench-iceoryx2 (never part of build,
# test or CI) and runs the floors and one-way latency of the full grid for
# iceoryx2, iceoryx2-event, shm-rust and shm-go, into target/bench/iceoryx2/.
ICEORYX2_GRID ?= full
bench-iceoryx2: bench-tools
	$(CARGO) build --release $(PACKAGES) --features alloy-examples/bench-iceoryx2 --example bench_iceoryx2
	bin/alloy-bench --grid $(ICEORYX2_GRID) --sections floors,latency \
		--only iceoryx2,iceoryx2-event,shm-rust,shm-go,atomic-pingpong,futex-pingpong,memcpy --out target/bench/iceoryx2

# Profiles of the goals of issue 14 the committed full run misses
# (doc/TESTING.md, "Profiles of missed goals"): each goal's rows alone under
# perf record -a, into doc/bench/profiles/<goal>.txt. Needs root and perf;
# PROFILE_GOALS="a b" runs only those (scripts/profile-goals.sh -l lists them).
.PHONY: profile-goals
PROFILE_GOALS ?=
profile-goals: bench-tools
	$(CARGO) build --release $(PACKAGES) --features alloy-examples/bench-iceoryx2 --example bench_iceoryx2
	bash scripts/profile-goals.sh $(PROFILE_GOALS)

# The suite on a tiny grid: checks the outputs are well formed, never timings.
bench-smoke: build
	$(CARGO) build --release $(PACKAGES) --example bench_peer
	cd go && ALLOY_BENCH_REQUIRE=1 $(GO) test -tags alloy_ffi -count=1 -run 'TestSmoke|TestDocGenerated' ./cmd/alloy-bench

# Re-render doc/BENCHMARKS.md's generated regions from the committed run
# reports under doc/bench/ (after copying a new run there); make test checks them.
bench-doc: bench-tools
	bin/alloy-bench doc

# The Rust-only ring benchmark (threads of one process).
bench-ring: build
	$(CARGO) bench $(FEATURES) -p alloy-shm --bench ring

# Model checking of the ring protocol (slow: explores interleavings).
loom:
	RUSTFLAGS="--cfg loom" $(CARGO) test --release -p alloy-shm --lib --target-dir target/loom loom -- --nocapture

# cargo-fuzz targets (fuzz/: its own workspace and target dir; nightly and
# cargo-fuzz are installed on demand): each target runs FUZZ_SECONDS.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= damaged_ring arrow_frame
fuzz:
	ALLOY_NEED_NIGHTLY=1 ALLOY_NEED_CARGO_FUZZ=1 bash scripts/deps.sh
	@set -o pipefail; mkdir -p fuzz/target; for t in $(FUZZ_TARGETS); do \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  $(CARGO) +nightly fuzz run -O $$t -- -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	    -rss_limit_mb=4096 -print_final_stats=1 2>&1 | tee fuzz/target/$$t.log \
	    | grep -E '^(stat::(number_of_executed_units|average_exec_per_sec|new_units_added)|==[0-9]+==|SUMMARY|.*panicked)' \
	    || { echo "fuzz: $$t FAILED (log fuzz/target/$$t.log, input under fuzz/artifacts/$$t/)"; exit 1; }; \
	done

# Soak (doc/TESTING.md): 10,000,000 checked messages Go -> Rust with consumers
# killed and restarted at random; SOAK_COUNT and SOAK_RESTARTS to vary.
SOAK_COUNT ?= 10000000
SOAK_RESTARTS ?= 40
soak: build
	cd go && ALLOY_SOAK=1 ALLOY_SOAK_COUNT=$(SOAK_COUNT) ALLOY_SOAK_RESTARTS=$(SOAK_RESTARTS) \
	  $(GO) test -count=1 -timeout 120m -run 'TestSoak$$' -v ./internal/soak

# The full reliability set of issue #7 (kills, hostile memory, fuzzing, soak,
# loom), with a summary table in target/reliability/summary.md
# (doc/RELIABILITY.md records a run). About 15 minutes on 2 cores.
test-reliability: build
	bash scripts/reliability.sh

# Miri on the pure layout/protocol logic (needs nightly + miri; installed on demand).
miri:
	ALLOY_NEED_NIGHTLY=1 bash scripts/deps.sh
	MIRIFLAGS=-Zmiri-disable-isolation $(CARGO) +nightly miri test -p alloy-shm --lib miri_

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(PACKAGES) --all-targets -- -D warnings
	cd go && test -z "$$(gofmt -l .)" && $(GO) vet -tags alloy_ffi ./...

clean:
	$(CARGO) clean
	rm -rf bin
