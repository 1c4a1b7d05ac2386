#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test Alloy. Idempotent and
# quiet when everything is already there. Called by `make` targets and CI.
set -euo pipefail
cd "$(dirname "$0")/.."

need_rust=0
command -v cargo >/dev/null 2>&1 || need_rust=1
if [ "$need_rust" = 1 ] && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"; need_rust=0
fi
if [ "$need_rust" = 1 ]; then
  echo "deps: Rust toolchain missing; installing rustup from Debian" >&2
  apt-get update -qq && apt-get install -y -qq rustup >/dev/null
  rustup default stable
fi
# make test-rust checks the library compiles for macOS (check-rust-cross):
# only the target's standard library is needed.
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed 2>/dev/null | grep -qx aarch64-apple-darwin; then
  rustup target add aarch64-apple-darwin >/dev/null 2>&1 || echo "deps: could not add the aarch64-apple-darwin target; the macOS compile check will say NOT CHECKED" >&2
fi
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
  echo "deps: Go missing; installing golang from Debian" >&2
  apt-get update -qq && apt-get install -y -qq golang >/dev/null
fi
if [ "${ALLOY_NEED_NIGHTLY:-0}" = 1 ]; then
  rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
  rustup component list --toolchain nightly --installed | grep -q miri || rustup component add --toolchain nightly miri rust-src
fi
if [ "${ALLOY_NEED_CARGO_FUZZ:-0}" = 1 ] && ! cargo fuzz --version >/dev/null 2>&1; then
  # make fuzz: libFuzzer targets under fuzz/ (doc/TESTING.md).
  echo "deps: cargo-fuzz missing; installing it with cargo install" >&2
  cargo install cargo-fuzz --locked
fi
if [ "${ALLOY_NEED_STRACE:-0}" = 1 ] && ! command -v strace >/dev/null 2>&1; then
  # make bench counts syscalls per message with strace -c; without it the
  # report says "not measured".
  echo "deps: strace missing; installing from Debian" >&2
  apt-get update -qq && apt-get install -y -qq strace >/dev/null || echo "deps: no strace; syscalls not measured" >&2
fi
# pyarrow checks the Arrow CLI round trip (tests/pyarrow_roundtrip.py).
if ! python3 -c 'import pyarrow' >/dev/null 2>&1; then
  echo "deps: pyarrow missing; installing pyarrow==26.0.1" >&2
  python3 -m pip install --quiet pyarrow==26.0.1
fi
# The Python package (make test-python): maturin builds it; pytest runs
# tests/python over Polars, DuckDB and DataFusion.
py_need() { python3 -c "import $1" >/dev/null 2>&1 || { echo "deps: $2 missing; installing" >&2; python3 -m pip install --quiet "$2"; }; }
command -v maturin >/dev/null 2>&1 || { echo "deps: maturin missing; installing maturin==1.16.0" >&2; python3 -m pip install --quiet maturin==1.16.0; }
py_need pytest pytest==9.2.0
# tests/deploy_yaml.py parses the Kubernetes and Compose examples of doc/README.md.
py_need yaml PyYAML==6.0.3
py_need polars polars==2.1.0
py_need duckdb duckdb==2.0.0
py_need datafusion datafusion==55.0.0
# Fetch crates and Go modules up front so later steps fail clearly if the
# registries are unreachable.
cargo fetch --locked -q 2>/dev/null || cargo fetch -q
(cd go && go mod download)
