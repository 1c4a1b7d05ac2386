#!/usr/bin/env bash
# Demo of both modes; `make demo` runs it after `make build`.
set -euo pipefail
cd "$(dirname "$0")/.."

# One-shot mode (cgo + Arrow C Data Interface): the original Alloy's example.
# Go and Rust both log to stderr; shown here on stdout so it can be piped.
./bin/alloy-oneshot 2>&1
