"""`make demo`'s last step (issue #16): DuckDB runs SQL over a live Go stream.

A Go producer (`bin/alloy-go send`) streams a generated Arrow file into a
ring; Python subscribes with `alloy_shm` and DuckDB aggregates the
subscription as it arrives (the batches are read in place: their buffers are
the ring's slots). The same aggregate computed by pyarrow from the source
file is printed next to it; the script fails if they differ.
"""

import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

import alloy_shm

ROOT = Path(__file__).resolve().parents[1]
ROWS, BATCH_ROWS = 1_000_000, 50_000  # 20 batches of about 1 MiB


def source() -> pa.Table:
    i = pa.array(range(ROWS), pa.int64())
    groups = pa.array([f"sensor-{k}" for k in range(8)])
    return pa.table(
        {
            "g": pc.take(groups, pc.bit_wise_and(i, 7)),
            "x": pc.multiply(pc.bit_wise_and(i, 1023), 3),
            "v": pc.divide(pc.cast(i, pa.float64()), 1000.0),
        }
    )


def main() -> int:
    table = source()
    name = f"alloy-demo-sql-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "source.arrow"
        with pa.ipc.new_file(path, table.schema) as w:
            for b in table.to_batches(max_chunksize=BATCH_ROWS):
                w.write_batch(b)
        # In place, a DuckDB GROUP BY on strings keeps its input until the
        # end (its keys point into it), so the ring holds the whole stream:
        # 32 slots for 20 batches. Over a longer stream: subscribe(copy=True).
        ring = alloy_shm.Ring.create(name, slot_count=32, slot_size=2 << 20)
        try:
            sub = ring.subscribe(timeout=30)  # joined before the producer starts
            start = time.monotonic()
            go = subprocess.Popen(
                [str(ROOT / "bin/alloy-go"), "send", "--ring", name, str(path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            live = pa.RecordBatchReader.from_stream(sub)
            query = (
                "SELECT g, sum(x) AS sum_x, count(*) AS n, round(avg(v), 6) AS avg_v "
                "FROM live GROUP BY g ORDER BY g"
            )
            got = duckdb.connect().execute(query).fetchall()
            elapsed = time.monotonic() - start
            _, err = go.communicate(timeout=60)
            if go.returncode != 0:
                print(f"alloy-go send failed: {err}", file=sys.stderr)
                return 1
        finally:
            alloy_shm.remove(name)
    agg = table.group_by("g").aggregate([("x", "sum"), ("x", "count"), ("v", "mean")]).sort_by("g")
    want = [
        (g, s, n, round(m, 6))
        for g, s, n, m in zip(*(agg[c].to_pylist() for c in ["g", "x_sum", "x_count", "v_mean"]))
    ]
    print(f"SQL: {query}")
    print(f"{'group':<10} {'DuckDB over the ring (sum, count, avg)':<42} pyarrow from the source file")
    for a, b in zip(got, want):
        print(f"{a[0]:<10} {str(a[1:]):<42} {b[1:]}")
    ok = got == want
    print(
        f"{ROWS} rows in {ROWS // BATCH_ROWS} batches, Go -> ring -> DuckDB in {elapsed * 1000:.0f} ms: "
        + ("results match" if ok else "RESULTS DIFFER")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
