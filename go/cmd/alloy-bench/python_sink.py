"""The Python side of alloy-bench's `shm-go-ipc-python` row (issue #16).

The same work as bench_peer's `arrow-sink` (the Rust side of `shm-go-ipc`):
join the ring, say "ready", read every record batch in place (pyarrow's
RecordBatchReader over the subscription's C stream, its
buffers checked to lie in the ring's mapping), sum its int64 column, drop
it (which releases the slot) and stamp CLOCK_MONOTONIC after the last one;
then print one JSON line {"messages", "rows", "sum", "last_ns"}.

    python3 python_sink.py --ring NAME
"""

import argparse
import json
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc

import alloy_shm


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ring", required=True)
    args = ap.parse_args()
    sub = alloy_shm.Ring.open(args.ring).subscribe(timeout=60)
    lo, hi = sub.mapping_range()
    print("ready", flush=True)
    n = rows = total = last = 0
    # pyarrow reads the subscription as an Arrow C stream (what engines
    # do; a little cheaper per batch than iterating the subscription).
    for batch in pa.RecordBatchReader.from_stream(sub):
        col = batch.column(0)
        for buf in col.buffers():
            if buf is not None and buf.size and not (lo <= buf.address and buf.address + buf.size <= hi):
                print(f"batch {n} was copied out of the ring", file=sys.stderr)
                return 1
        if col.null_count:
            print("unexpected nulls", file=sys.stderr)
            return 1
        total += pc.sum(col).as_py() or 0
        n += 1
        rows += batch.num_rows
        del batch, col  # releases the slot
        last = time.monotonic_ns()  # CLOCK_MONOTONIC, as the Go side's nanotime
    print(json.dumps({"messages": n, "rows": rows, "sum": total, "last_ns": last}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
