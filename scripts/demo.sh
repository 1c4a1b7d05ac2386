#!/usr/bin/env bash
# Demo of both modes; `make demo` runs it after `make build`.
set -euo pipefail
cd "$(dirname "$0")/.."

# One-shot mode (cgo + Arrow C Data Interface): the original Alloy's example.
# Go and Rust both log to stderr; shown here on stdout so it can be piped.
./bin/alloy-oneshot 2>&1

# Streaming mode (shared-memory ring): a Go producer process streams checked
# messages to a Rust consumer process and a Go consumer process at once; each
# verifies every message (checksum, length, order) and prints a summary.
echo
echo "== Streaming: Go producer -> Rust and Go consumers over a shared-memory ring =="
ring="alloy-demo-$$"
./bin/alloy create --ring "$ring" --slots 256 --slot-size 4096
trap './bin/alloy rm --ring "$ring" 2>/dev/null || true' EXIT
rust_out=$(mktemp); go_out=$(mktemp)
./bin/alloy test-consume --ring "$ring" --broadcast >"$rust_out" &
rust_pid=$!
./bin/alloy-go test-consume --ring "$ring" --broadcast >"$go_out" &
go_pid=$!
# Wait until both consumers have joined ("ready"), so they see every message.
for _ in $(seq 100); do
  if grep -q ready "$rust_out" && grep -q ready "$go_out"; then break; fi
  sleep 0.05
done
start=$(date +%s%N)
echo "Go producer:   $(./bin/alloy-go test-produce --ring "$ring" --count 100000)"
wait "$rust_pid"; wait "$go_pid"
end=$(date +%s%N)
echo "Rust consumer: $(tail -n1 "$rust_out")"
echo "Go consumer:   $(tail -n1 "$go_out")"
echo "100000 messages (16..4096 B, checksummed) in $(( (end - start) / 1000000 )) ms"
rm -f "$rust_out" "$go_out"

# Request/reply (doc/LAYOUT.md §12): a Go service calls a Rust worker with
# record batches over a pair of rings; several calls are in flight at once,
# each answered by the worker's threads and routed back by correlation id.
echo
echo "== Request/reply: Go service -> Rust worker (x -> x*x, sum) over two rings =="
channel="alloy-demo-rr-$$"
worker_out=$(mktemp)
./target/release/examples/reqrep_worker --name "$channel" --threads 2 >"$worker_out" &
worker_pid=$!
trap './bin/alloy rm --ring "$ring" 2>/dev/null || true; kill "$worker_pid" 2>/dev/null || true; rm -f "/dev/shm/$channel.req" "/dev/shm/$channel.rep" "$worker_out"' EXIT
for _ in $(seq 100); do grep -q ready "$worker_out" && break; sleep 0.05; done
./bin/alloy-reqrep --name "$channel" --calls 8

# Any Arrow engine (issue #16): a Go producer streams a generated Arrow file
# into a ring while DuckDB (Python, the alloy_shm package) aggregates the
# live subscription in place; printed next to the same aggregate computed by
# pyarrow from the source file (scripts/demo_duckdb.py fails if they differ).
echo
echo "== SQL over a live Go stream: Go producer -> ring -> DuckDB (Python alloy_shm) =="
python3 scripts/demo_duckdb.py
