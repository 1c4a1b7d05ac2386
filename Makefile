# Alloy — build, test, demo and benchmark both languages.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:/usr/local/go/bin:$(PATH)
GO ?= go
CARGO ?= cargo

.PHONY: all deps build test test-rust test-go demo bench loom miri clean lint

all: build

deps:
	@bash scripts/deps.sh

build: deps
	$(CARGO) build --release --lib --bins
	@mkdir -p bin
	cp target/release/alloy bin/alloy
	cd go && $(GO) build -o ../bin/alloy-go ./cmd/alloy-go
	cd go && $(GO) build -o ../bin/alloy-oneshot ./examples/oneshot

# All tests of both languages: Rust unit/integration/doc tests (including the
# cross-process ring tests), Go tests under the race detector, and the
# cross-language tests (which use bin/alloy and bin/alloy-go).
test: build test-rust test-go

test-rust:
	$(CARGO) test --release --all-targets
	$(CARGO) test --release --doc

test-go:
	cd go && $(GO) vet ./... && $(GO) test -race -count=1 ./...

demo: build
	@bash scripts/demo.sh

bench: build
	$(CARGO) bench --bench ring

# Model checking of the ring protocol (slow: explores interleavings).
loom:
	RUSTFLAGS="--cfg loom" $(CARGO) test --release --lib --target-dir target/loom loom -- --nocapture

# Miri on the pure layout/protocol logic (needs nightly + miri; installed on demand).
miri:
	ALLOY_NEED_NIGHTLY=1 bash scripts/deps.sh
	MIRIFLAGS=-Zmiri-disable-isolation $(CARGO) +nightly miri test --lib miri_

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	cd go && test -z "$$(gofmt -l .)" && $(GO) vet ./...

clean:
	$(CARGO) clean
	rm -rf bin
