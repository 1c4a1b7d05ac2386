#!/usr/bin/env bash
# A perf profile of every goal of issue 14 that the committed full bench run
# misses (doc/TESTING.md, "Profiles of missed goals"; make profile-goals).
#
# Each goal's rows (the goal's row and its reference row) run alone through
# bin/alloy-bench's row flags (--only, --sections, --sizes or --shapes,
# --modes, --variants, --iters) under `perf record -e cpu-clock -g -a`
# (system-wide: the Go process and its Rust peer are both seen). Each goal
# gets doc/bench/profiles/<goal>.txt: the commit, date, machine and command,
# each row's p50 (or throughput) from that same run, and perf's top symbols
# per process of the benchmark. Nothing in those files is typed by hand.
#
# Usage: scripts/profile-goals.sh [GOAL ...]   (default: every goal; -l lists)
# Needs root (or kernel.perf_event_paranoid <= -1), perf, python3, and
# bin/alloy-bench, bench_peer and bench_iceoryx2 built (make profile-goals).
# PROFILE_OUT: output directory (default doc/bench/profiles).
# PROFILE_SCALE: multiplies every row's message count (default 1).
set -euo pipefail
# (No `| head` and no grep that may match nothing below: under pipefail
# either would end the script.)
trap 'echo "profile-goals: failed at line $LINENO" >&2' ERR
cd "$(dirname "$0")/.."

out=${PROFILE_OUT:-doc/bench/profiles}
scale=${PROFILE_SCALE:-1}
bench=bin/alloy-bench
# The benchmark's own processes and threads in the symbol lists (the
# driver's setup children, git and rustc --version, count in the share only).
comms=alloy-bench,bench_peer,bench_iceoryx2,alloy-heartbeat
# Symbols of the wait loops (perf's self symbols): a busy consumer's poll
# (Rust Consumer::recv_deadline/poll/claim, Go Consumer.pollRing/poll/recv,
# an iceoryx2 subscriber's receive),
# the Go scheduler entered from its runtime.Gosched between polls, the
# yields and the clock reads of the deadline checks. The second list of a
# row leaves them out: what is left is the work a message costs.
wait_re='recv_deadline|Consumer::(poll|claim)$|try_claim|\(\*Consumer\)\.(pollRing|poll|recv)$|runtime\.(unlock2|lock2|casgstatus|findRunnable|schedule|execute|wakep|goschedImpl|gosched_m|mcall|gogo|globrunqget|globrunqgetbatch|nanotime1|pidleget|pidlegetSpinning|runqget|runqgrab|stealWork|checkTimers|resetspinning|osyield|procyield|\(\*timers\)|\(\*m\))|clock_gettime|sched_yield|__schedule|finish_task_switch|schedule$|syscall_exit_to_user_mode|entry_SYSCALL|do_syscall_64|futex|iceoryx2::port::.*::receive$|bench_iceoryx2::Ends::recv$'

# goal ID TITLE: every row of a goal, one `row` line each (LABEL ITERS ARGS…).
goals() {
	cat <<'EOF'
rust-go-ipc-1row|1-row batch one-way p50, busy, IPC, Rust → Go (Go reader in place) ≤ 1.0 µs
row|shm-rust-ipc 1 row busy in place|100000|--sections arrow --only shm-rust-ipc --shapes 1-row --modes busy --variants in-place
row|reference: shm-go 64 B busy (the raw ring; the report's paired ratio floor)|100000|--sections latency --only shm-go --sizes 64 --modes busy
rust-go-cdata-1row|1-row batch one-way p50, busy, C-Data-offsets, Rust → Go (Go reader in place) ≤ 0.5 µs
row|shm-rust-cdata 1 row busy in place|100000|--sections arrow --only shm-rust-cdata --shapes 1-row --modes busy --variants in-place
row|reference: shm-go 64 B busy (the raw ring; the report's paired ratio floor)|100000|--sections latency --only shm-go --sizes 64 --modes busy
go-rust-cdata-write-1row|1-row batch one-way p50, busy, C-Data-offsets, Go → Rust (CDataWriter.Write) ≤ 0.5 µs
row|shm-go-cdata-write 1 row busy validated|100000|--sections arrow --only shm-go-cdata-write --shapes 1-row --modes busy --variants validated
row|reference: shm-go 64 B busy (the raw ring; the report's paired ratio floor)|100000|--sections latency --only shm-go --sizes 64 --modes busy
rr-1mib-vs-cgo|request/reply round trip, 1 MiB batch, busy ≤ 2× the cgo call p50
row|shm-rr 1 MiB busy round trip|8000|--sections arrow --only shm-rr --shapes 1-mib --modes busy
row|reference: cgo-oneshot 1 MiB round trip|200000|--sections arrow --only cgo-oneshot --shapes 1-mib
oneway-4mib-vs-iceoryx2|one-way latency ≤ 1.0× iceoryx2 at 4 MiB (shm-rust / iceoryx2 p50, busy)
row|shm-rust 4 MiB busy|16000|--sections latency --only shm-rust --sizes 4MiB --modes busy
row|reference: iceoryx2 4 MiB busy|16000|--sections latency --only iceoryx2 --sizes 4MiB --modes busy
oneway-1mib-vs-iceoryx2|one-way latency ≤ 1.0× iceoryx2 at 1 MiB (shm-rust / iceoryx2 p50, busy)
row|shm-rust 1 MiB busy|60000|--sections latency --only shm-rust --sizes 1MiB --modes busy
row|reference: iceoryx2 1 MiB busy|60000|--sections latency --only iceoryx2 --sizes 1MiB --modes busy
slotcopy-64kib-rust-vs-go|Rust slot-copy bandwidth ≥ 0.9× Go's at 64 KiB (shm-rust / shm-go throughput, busy, 1 consumer)
row|shm-rust 64 KiB throughput busy|400000|--sections throughput --only shm-rust --sizes 64KiB --modes busy --reps 1
row|reference: shm-go 64 KiB throughput busy|400000|--sections throughput --only shm-go --sizes 64KiB --modes busy --reps 1
oneway-512b-vs-iceoryx2|one-way latency ≤ 1.0× iceoryx2 at 512 B (shm-rust / iceoryx2 p50, busy)
row|shm-rust 512 B busy|200000|--sections latency --only shm-rust --sizes 512 --modes busy
row|reference: iceoryx2 512 B busy|200000|--sections latency --only iceoryx2 --sizes 512 --modes busy
slotcopy-16mib-rust-vs-go|Rust slot-copy bandwidth ≥ 0.9× Go's at 16 MiB (shm-rust / shm-go throughput, busy, 1 consumer)
row|shm-rust 16 MiB throughput busy|1600|--sections throughput --only shm-rust --sizes 16MiB --modes busy --reps 1
row|reference: shm-go 16 MiB throughput busy|1600|--sections throughput --only shm-go --sizes 16MiB --modes busy --reps 1
oneway-64b-vs-pingpong|64 B one-way busy ≤ 1.5× the atomic ping-pong (Go and Rust producers)
row|shm-go 64 B busy|200000|--sections latency --only shm-go --sizes 64 --modes busy
row|shm-rust 64 B busy|200000|--sections latency --only shm-rust --sizes 64 --modes busy
row|reference: atomic-pingpong 64 B|200000|--sections floors --only atomic-pingpong --sizes 64
EOF
}

if [ "${1:-}" = -l ]; then
	goals | grep -v '^row|' | cut -d'|' -f1
	exit 0
fi
for t in perf python3 "$bench"; do
	command -v "$t" >/dev/null 2>&1 || { echo "profile-goals: $t missing (make profile-goals builds the binaries)" >&2; exit 1; }
done
if [ "$(id -u)" != 0 ] && [ "$(cat /proc/sys/kernel/perf_event_paranoid)" -gt -1 ]; then
	echo "profile-goals: perf record -a needs root or kernel.perf_event_paranoid <= -1" >&2
	exit 1
fi
wanted=" $* "
for g in "$@"; do
	goals | awk -F'|' -v g="$g" '$1 == g { f = 1 } END { exit !f }' || { echo "profile-goals: unknown goal $g (scripts/profile-goals.sh -l)" >&2; exit 2; }
done

tmp=$(mktemp -d /tmp/profile-goals.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- || commit="$commit-dirty"
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')

# results DIR: one line per row of DIR/report.json, its p50/p99 or throughput.
results() {
	python3 - "$1/report.json" <<'EOF'
import json, sys
rep = json.load(open(sys.argv[1]))
for r in rep.get("results", []):
    what = " ".join(x for x in (r.get("transport"), r.get("mode"), r.get("kind"),
                                r.get("shape") or f"{r.get('payload_bytes')} B", r.get("variant")) if x)
    if r.get("p50_ns") is not None:
        v = f"p50 {r['p50_ns']:.0f} ns, p99 {r['p99_ns']:.0f} ns over {r.get('messages', '?')} messages"
    elif r.get("throughput_bytes_per_s") is not None:
        v = f"{r['throughput_bytes_per_s'] / 1e9:.2f} GB/s over {r.get('messages', '?')} messages"
    else:
        v = "no figure"
    print(f"{what}: {v}")
for u in rep.get("unavailable") or []:
    print(f"{u['transport']}: NOT MEASURED: {u['reason']}")
if not rep.get("results"):
    print("NO ROW MEASURED: check the flags and binaries")
EOF
}

# row LABEL ITERS ARGS TOP: records one row, prints its section of the
# profile with at most TOP symbols in each list.
row() {
	local label=$1 iters=$(($2 * scale)) args=$3 top=$4
	local cmd="$bench --grid full $args --iters $iters --out $tmp/run"
	rm -rf "$tmp/run"
	# The wrapper notes the driver's pid: the report keeps that process and
	# the peers it starts, whatever else runs on the machine.
	# shellcheck disable=SC2016,SC2086 # $$ is the wrapper's; args is a word list of flags
	if ! perf record -e cpu-clock -g -a -q -o "$tmp/perf.data" -- \
		sh -c 'echo $$ >"$0"; exec "$@"' "$tmp/pid" $cmd 2>"$tmp/bench.log"; then
		cat "$tmp/bench.log" >&2
		echo "profile-goals: $label failed" >&2
		return 1
	fi
	echo "## $label"
	echo "# command: perf record -e cpu-clock -g -a -- $cmd"
	results "$tmp/run" | sed 's/^/# result: /'
	# The driver and every process forked from it (FORK(child pid:tid):(parent pid:tid)).
	local pids
	pids=$(perf script -i "$tmp/perf.data" --show-task-events -F pid,tid 2>/dev/null |
		sed -n 's/.*PERF_RECORD_FORK(\([0-9]*\):[0-9]*):(\([0-9]*\):.*/\1 \2/p' |
		awk -v root="$(cat "$tmp/pid")" 'BEGIN { want[root] = 1; out = root }
			($2 in want) && !($1 in want) { want[$1] = 1; out = out "," $1 }
			END { print out }')
	# The benchmark's share of all samples on all CPUs (the rest: other
	# processes and idle); the lists below are relative to that share.
	# (--sort pid, summed per comm: perf 6.1's --sort comm drops the peers
	# under --pid.)
	perf report -i "$tmp/perf.data" --no-children --pid "$pids" --sort pid --stdio -g none 2>/dev/null |
		awk '/^#/ || NF < 2 { next } { p = $1; sub("%", "", p); c = $2; sub(/^[0-9]+:/, "", c); by[c] += p; share += p }
			END { for (c in by) if (by[c] >= 0.1) printf "%.1f %s\n", by[c], c
				printf "= %.1f\n", share }' |
		sort -k1,1nr | awk '/^=/ { total = $2; next } { who = who sprintf(" %s %s%%", $2, $1) }
			END { printf "# samples: the benchmark processes%s (from 0.1%%) = %s%% of all cpu-clock samples on all CPUs (the rest: other processes and idle)\n", who, total }'
	perf report -i "$tmp/perf.data" --no-children --pid "$pids" --comms "$comms" --percentage relative \
		--sort comm,dso,symbol --percent-limit 0.2 --stdio -g none 2>/dev/null |
		sed -e '/^#/d' -e '/^$/d' -e 's/ *- *- *$//' -e 's/ *$//' >"$tmp/top"
	echo "# top symbols, % of the benchmark's samples (perf report --no-children --sort comm,dso,symbol --percentage relative):"
	awk -v n="$top" 'NR <= n' "$tmp/top"
	local wait
	wait=$(WAIT_RE=$wait_re awk '{ p = $1; sub("%", "", p); if ($0 ~ ENVIRON["WAIT_RE"]) w += p } END { printf "%.1f", w }' "$tmp/top")
	if awk -v w="$wait" 'BEGIN { exit !(w < 5) }'; then
		echo "# wait loops (wait_re in scripts/profile-goals.sh): $wait% of the samples; the list above is the work"
	else
		echo "# outside the wait loops (at least $wait% of the samples were in them; wait_re in scripts/profile-goals.sh):"
		WAIT_RE=$wait_re awk -v n="$top" '$0 !~ ENVIRON["WAIT_RE"] && ++k <= n' "$tmp/top"
	fi
	echo
}

started=$(date +%s)
current=""
while IFS='|' read -r a b c d; do
	if [ "$a" != row ]; then
		current=$a
		[ -n "${*}" ] && [[ "$wanted" != *" $a "* ]] && current=""
		[ -z "$current" ] && continue
		{
			echo "# Profile of a missed goal of issue 14: $b"
			echo "# generated by scripts/profile-goals.sh $a (make profile-goals); do not edit by hand"
			echo "# commit $commit, $(date -u +%Y-%m-%dT%H:%M:%SZ), $cpu, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
			echo "# The p50s are this profiling run's (perf running), not the committed bench run's."
			echo
		} >"$tmp/$a.txt"
		echo "profile-goals: $a" >&2
		continue
	fi
	[ -z "$current" ] && continue
	echo "  $b" >&2
	t0=$(date +%s)
	# About 60 lines a file: fewer symbols a row when a goal has more rows.
	rows=$(goals | awk -F'|' -v g="$current" '$1 != "row" { on = ($1 == g) } $1 == "row" && on { n++ } END { print n }')
	row "$b" "$c" "$d" $((20 / rows)) >>"$tmp/$current.txt"
	cp "$tmp/$current.txt" "$out/$current.txt"
	echo "    $(($(date +%s) - t0)) s" >&2
done < <(goals)
echo "profile-goals: wrote $out/ in $(($(date +%s) - started)) s" >&2
