#!/usr/bin/env bash
# `make test-reliability`: the full reliability set of issue #7 (process
# death, hostile memory, long runs, model checking), one step per scenario,
# then a summary table (also written to target/reliability/summary.md).
# Every step runs to the end even if an earlier one failed; the script
# fails if any step failed. Logs: target/reliability/<step>.log.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
# A missing binary is a failure here, never a skipped test (tests/support).
export ALLOY_REQUIRE_CROSS=1
OUT=target/reliability
mkdir -p "$OUT"
FEATURES="--features tokio,flight"
FUZZTIME=${RELIABILITY_FUZZTIME:-45s}
SOAK_COUNT=${SOAK_COUNT:-10000000}
SOAK_RESTARTS=${SOAK_RESTARTS:-40}

rows=()
failed=0

# step NAME ITERATIONS DETAIL_REGEX COMMAND...: runs COMMAND, logs it, and
# adds a row: scenario, iterations, result, the last log line matching
# DETAIL_REGEX (the step's own measurement), seconds.
step() {
	local name=$1 iters=$2 detail=$3
	shift 3
	local log="$OUT/$(echo "$name" | tr -c 'a-zA-Z0-9' '_').log"
	echo "== $name"
	local t0=$SECONDS
	"$@" >"$log" 2>&1
	local rc=$?
	local dt=$((SECONDS - t0))
	local result="pass"
	if [ $rc -ne 0 ]; then
		result="FAIL (exit $rc, see $log)"
		failed=$((failed + 1))
		tail -20 "$log"
	fi
	local d
	d=$(grep -E "$detail" "$log" | tail -1 | sed -E 's/^[[:space:]]*//; s/\|/\//g' | cut -c1-160)
	rows+=("| $name | $iters | $result | ${d:--} | $dt |")
	echo "   $result in ${dt}s ${d:+— $d}"
}

cargo build --release --workspace $FEATURES --lib --bins >/dev/null 2>&1 || { echo "build failed"; exit 1; }
mkdir -p bin && cp target/release/alloy bin/alloy
(cd go && go build -o ../bin/alloy-go ./cmd/alloy-go) || exit 1

step "producer SIGKILL mid-stream, Rust consumer" 100 "producer kills" \
	cargo test --release -p alloy-cli $FEATURES --test ring_failure killed_producers -- --nocapture
step "consumer SIGKILL holding leases, reclaim" 1 "test result" \
	cargo test --release -p alloy-cli $FEATURES --test ring_failure a_consumer_killed -- --nocapture
step "work-queue member SIGKILL, redelivery" "3 scenarios" "first redelivered message" \
	cargo test --release -p alloy-cli $FEATURES --test queue_member_death -- --nocapture
step "live consumer SIGSTOPped holding leases: not reclaimed, bytes intact" "2 Rust + 2 Go scenarios" "stopped .* s" \
	bash -c "cargo test --release $FEATURES --test ring_stopped -- --nocapture && cd go && go test -race -count=1 -v -run 'TestStopped|TestIsDead|TestParseStat' ./ring ./internal/proc"
step "held batches: dictionary streams up to 10x the ring, retention stall (Rust, Go, Rust<->Go)" "48+12 proptest + rapid cases" "test result|^ok" \
	bash -c "cargo test --release -p alloy-cli $FEATURES --test retention -- --nocapture && cd go && go test -race -count=1 -run 'Retention|HeldLease|KeepsNoSlot|Relay|DictionaryCopier' ./ring ./arrowshm ./cmd/alloy-go"
step "ring truncated under a running sender/receiver (both CLIs, Go library)" 1 "test result|^ok" \
	bash -c "cargo test --release -p alloy-cli $FEATURES --test truncate -- --nocapture && cd go && go test -race -count=1 -run 'Trunc|Fault' ./ring"
step "damaged messages, Go IPC reader validating by default" 1 "^ok|FAIL" \
	bash -c "cd go && go test -race -count=1 -run 'Damage|Validat|Corrupt|Flip|RandomBytes' ./arrowshm ./internal/crosstest"
step "foreign owner, seals, version/magic mismatch" 1 "test result" \
	bash -c "cargo test --release $FEATURES --test region_owner -- --nocapture && cargo test --release $FEATURES --lib -- region vectors seal"
step "hostile ring memory (proptest)" "512 + 512 cases" "test result" \
	cargo test --release $FEATURES --lib ring::fuzzing
step "corrupt Arrow IPC / C-Data-offsets messages (proptest)" "512 IPC + 2000 cdata cases" "test result" \
	cargo test --release $FEATURES --lib -- damaged_messages_never_panic random_damage_never_panics corrupt_messages
step "Go: deaths, takeover, reclaim (-race)" 1 "^ok|FAIL" \
	bash -c "cd go && go test -race -count=1 -run 'Dead|Takeover|ProducerGone|Reclaim|Owner|Seal' ./ring ./internal/proc"
step "Go fuzz: layout reader" "$FUZZTIME" "elapsed.*execs" \
	bash -c "cd go && go test -run '^$' -fuzz '^FuzzReadLayout$' -fuzztime $FUZZTIME ./ring"
step "Go fuzz: consuming a damaged ring" "$FUZZTIME" "elapsed.*execs" \
	bash -c "cd go && go test -run '^$' -fuzz '^FuzzConsumeDamagedRing$' -fuzztime $FUZZTIME ./ring"
step "Go <-> Rust process kills" 1 "^ok|FAIL" \
	bash -c "cd go && go test -count=1 -run 'Killed' ./internal/crosstest"
step "soak: Go -> 2 broadcast + 2-member queue, restarts" "$SOAK_COUNT msgs, $SOAK_RESTARTS restarts" "soak: .*messages/s|longest producer stall" \
	bash -c "cd go && ALLOY_SOAK=1 ALLOY_SOAK_COUNT=$SOAK_COUNT ALLOY_SOAK_RESTARTS=$SOAK_RESTARTS go test -count=1 -timeout 60m -run 'TestSoak$' -v ./internal/soak"
step "loom models of the ring protocol" "all models" "test result" \
	env RUSTFLAGS="--cfg loom" cargo test --release --lib --target-dir target/loom loom

{
	echo "| scenario | iterations | result | measured | seconds |"
	echo "|---|---|---|---|---:|"
	printf '%s\n' "${rows[@]}"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $(git rev-parse --short HEAD) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/summary.md"
[ $failed -eq 0 ] || { echo "$failed step(s) failed"; exit 1; }
