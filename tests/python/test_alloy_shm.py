"""The Python package `alloy_shm` (issue #16), run by `make test-python`.

Go (`alloy-go send`) and Rust (`alloy send`) producers stream a pyarrow-
written file into a ring while Python reads it: pyarrow through the Arrow C
stream, Polars, DuckDB (an aggregate query) and iteration; each result is
compared with the same computation on the source data in pyarrow. Zero copy
is checked (buffer addresses inside the ring's mapping) and so is the lease
release (a 4-slot ring carries a longer stream only if dropped batches give
their slots back). Python publishes and `alloy recv` reads; Ctrl-C ends a
blocking receive.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc
import pytest

import alloy_shm

ROOT = Path(__file__).resolve().parents[2]
ALLOY = ROOT / "bin" / "alloy"
ALLOY_GO = ROOT / "bin" / "alloy-go"


def need(tool: Path):
    if not tool.exists():
        if os.environ.get("ALLOY_REQUIRE_CROSS") == "1":
            pytest.fail(f"{tool} missing (make build)")
        pytest.skip(f"{tool} missing (make build)")


@pytest.fixture
def new_ring():
    names = []

    def make(slot_count=4, slot_size=1 << 16):
        names.append(f"pyt-{uuid.uuid4().hex[:10]}")
        return alloy_shm.Ring.create(names[-1], slot_count=slot_count, slot_size=slot_size)

    yield make
    for n in names:
        alloy_shm.remove(n)


@pytest.fixture
def ring(new_ring):
    return new_ring()


def source(batches=24, rows=500) -> pa.Table:
    n = batches * rows
    t = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "g": pa.array([f"g{i % 5}" for i in range(n)]),
            "x": pa.array([None if i % 7 == 3 else i * 0.25 for i in range(n)], pa.float64()),
        }
    )
    return pa.Table.from_batches(t.to_batches(max_chunksize=rows))


def ipc_file(tmp_path: Path, t: pa.Table) -> Path:
    path = tmp_path / "src.arrow"
    with pa.ipc.new_file(path, t.schema) as w:
        for b in t.to_batches():
            w.write_batch(b)
    return path


def send(tool: Path, ring, path: Path, *extra) -> subprocess.Popen:
    need(tool)
    return subprocess.Popen(
        [str(tool), "send", "--ring", ring.name, *extra, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(p: subprocess.Popen):
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err


def in_mapping(batch: pa.RecordBatch, lo: int, hi: int) -> bool:
    return all(
        buf is None or buf.size == 0 or lo <= buf.address and buf.address + buf.size <= hi
        for col in batch.columns
        for buf in col.buffers()
    )


def expected_groups(t: pa.Table) -> dict:
    agg = t.group_by("g").aggregate([("x", "sum"), ("id", "count")])
    return {r["g"]: (r["x_sum"], r["id_count"]) for r in agg.to_pylist()}


def check_groups(got: dict, t: pa.Table):
    """`got` is {g: (sum of x, count of id)}: counts exact, float sums to
    rounding (engines add in other orders)."""
    want = expected_groups(t)
    assert got.keys() == want.keys()
    for g, (s, n) in want.items():
        assert got[g][1] == n, g
        assert got[g][0] == pytest.approx(s, rel=1e-12), g


@pytest.mark.parametrize("tool,mode", [(ALLOY_GO, "ipc"), (ALLOY_GO, "cdata"), (ALLOY, "ipc")])
def test_iteration_in_place_and_leases_released(tmp_path, ring, tool, mode):
    t = source()
    sub = ring.subscribe(timeout=30)
    p = send(tool, ring, ipc_file(tmp_path, t), "--mode", mode)
    lo, hi = sub.mapping_range()
    assert (lo, hi) == ring.mapping_range()
    got = []
    for b in sub:
        assert isinstance(b, pa.RecordBatch)
        assert in_mapping(b, lo, hi), "a batch was copied"
        assert sub.leases_held() >= 1
        got.append(b.to_pylist())
        del b  # releases the slot: 24 batches go through 4 slots
    finish(p)
    assert sub.leases_held() == 0
    assert [r for rows in got for r in rows] == t.to_pylist()


def test_held_batch_holds_its_slot(ring):
    t = source(batches=3, rows=10)
    sub = ring.subscribe(timeout=10)
    with ring.publisher() as pub:
        pub.write(t)
    first = sub.recv()
    assert sub.leases_held() == 1
    rel = ring.subscribers()[0]["release"]
    view = first.column(0)  # an array taken from the batch keeps it too
    del first
    assert sub.leases_held() == 1 and ring.subscribers()[0]["release"] == rel
    del view
    assert sub.leases_held() == 0
    assert ring.subscribers()[0]["release"] > rel
    assert [b.num_rows for b in sub] == [10, 10]


def test_pyarrow_stream_and_duckdb_and_polars(tmp_path, new_ring):
    t = source()
    path = ipc_file(tmp_path, t)

    # pyarrow: RecordBatchReader.from_stream over the C stream, in place.
    ring = new_ring()
    sub = ring.subscribe(timeout=30)
    p = send(ALLOY_GO, ring, path)
    reader = pa.RecordBatchReader.from_stream(sub)
    lo, hi = sub.mapping_range()
    rows = 0
    for b in reader:
        assert in_mapping(b, lo, hi)
        rows += b.num_rows
        del b
    finish(p)
    assert rows == t.num_rows
    with pytest.raises(RuntimeError):
        sub.recv()  # the stream took the subscription over

    # DuckDB: an aggregate query straight over the live stream. A GROUP BY
    # on strings keeps its input (the keys point into it): in place, the ring
    # holds the stream; with copy=True a 4-slot ring carries it.
    duckdb = pytest.importorskip("duckdb")
    for slots, copy in [(32, False), (4, True)]:
        ring = new_ring(slot_count=slots)
        sub = ring.subscribe(timeout=30, copy=copy)
        p = send(ALLOY_GO, ring, path)
        con = duckdb.connect()
        live = pa.RecordBatchReader.from_stream(sub)
        res = con.execute("SELECT g, sum(x) AS s, count(id) AS n FROM live GROUP BY g").fetchall()
        finish(p)
        check_groups({g: (s, n) for g, s, n in res}, t)

    # Polars: a DataFrame from the C stream keeps every batch in place (its
    # chunks are the slots), so the ring holds the whole stream here ...
    pl = pytest.importorskip("polars")
    ring = new_ring(slot_count=32)
    sub = ring.subscribe(timeout=30)
    p = send(ALLOY_GO, ring, path)
    df = pl.DataFrame(sub)
    finish(p)
    assert df.height == t.num_rows
    agg = df.lazy().group_by("g").agg(pl.col("x").sum(), pl.col("id").count()).collect()
    check_groups({r["g"]: (r["x"], r["id"]) for r in agg.to_dicts()}, t)
    del df, agg

    # ... while batch by batch (a lazy query per batch, partial results
    # combined) a 4-slot ring carries any length.
    ring = new_ring()
    sub = ring.subscribe(timeout=30)
    p = send(ALLOY_GO, ring, path)
    parts = [
        pl.from_arrow(b).lazy().group_by("g").agg(pl.col("x").sum(), pl.col("id").count()).collect()
        for b in sub
    ]
    finish(p)
    agg = pl.concat(parts).group_by("g").agg(pl.col("x").sum(), pl.col("id").sum())
    check_groups({r["g"]: (r["x"], r["id"]) for r in agg.to_dicts()}, t)


def test_datafusion(tmp_path, new_ring):
    datafusion = pytest.importorskip("datafusion")
    ring = new_ring(slot_count=32)  # from_arrow keeps the batches (a table in memory)
    t = source()
    sub = ring.subscribe(timeout=30)
    p = send(ALLOY_GO, ring, ipc_file(tmp_path, t))
    ctx = datafusion.SessionContext()
    ctx.from_arrow(sub, name="live")
    res = ctx.sql("SELECT g, sum(x) AS s, count(id) AS n FROM live GROUP BY g").to_arrow_table()
    finish(p)
    check_groups({r["g"]: (r["s"], r["n"]) for r in res.to_pylist()}, t)


def test_publish_from_python_read_by_alloy_recv(tmp_path, ring):
    need(ALLOY)
    t = source(batches=12, rows=300)
    out = tmp_path / "out.arrows"
    r = subprocess.Popen(
        [str(ALLOY), "recv", "--ring", ring.name, "--out", str(out), "--timeout", "30s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 10
    while not ring.subscribers() and time.time() < deadline:
        time.sleep(0.01)
    assert ring.subscribers(), "alloy recv did not join"
    with ring.publisher(timeout=30) as pub:
        assert pub.write(t.to_batches()[0]) == 1  # __arrow_c_array__: one batch
        assert pub.write(pa.Table.from_batches(t.to_batches()[1:])) == 11  # a stream
    _, err = r.communicate(timeout=60)
    assert r.returncode == 0, err
    with pa.ipc.open_stream(out) as f:
        assert f.read_all() == t


def test_recv_timeout_end_and_errors(ring):
    sub = ring.subscribe(timeout=0.05)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        sub.recv()  # no schema yet: the schema wait has the deadline
    assert time.monotonic() - t0 < 5
    pub = ring.publisher()
    b = source(batches=1, rows=5).to_batches()[0]
    pub.write(b)
    assert sub.recv(timeout=5) == b
    with pytest.raises(TimeoutError):
        sub.recv(timeout=0.05)
    pub.close()
    assert sub.recv() is None
    with pytest.raises(TypeError):
        ring.publisher(new_stream=True).write(42)
    with pytest.raises(alloy_shm.AlloyError):
        alloy_shm.Ring.open(f"no-such-{uuid.uuid4().hex}")


def test_ctrl_c_ends_a_blocking_receive(ring):
    code = textwrap.dedent(
        f"""
        import sys, alloy_shm
        sub = alloy_shm.Ring.open({ring.name!r}).subscribe()
        print("ready", flush=True)
        try:
            sub.recv()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(0)
        sys.exit(3)
        """
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(0.2)  # inside the blocking receive
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=10)
    assert p.returncode == 0, err
    assert "interrupted" in out
    assert time.monotonic() - t0 < 2


def test_ctrl_c_ends_a_write_blocked_on_a_full_ring(ring):
    # A subscriber that never reads: the 4-slot ring fills within the ten
    # writes and the next one blocks (no timeout) until SIGINT.
    code = textwrap.dedent(
        f"""
        import sys, pyarrow as pa, alloy_shm
        ring = alloy_shm.Ring.open({ring.name!r})
        sub = ring.subscribe()
        pub = ring.publisher()
        b = pa.record_batch({{"x": pa.array(range(10), pa.int64())}})
        print("ready", flush=True)
        try:
            for _ in range(10):
                pub.write(b)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(0)
        sys.exit(3)
        """
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(0.3)  # inside the blocked write
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=10)
    assert p.returncode == 0, err
    assert "interrupted" in out
    assert time.monotonic() - t0 < 2


def test_gil_released_while_waiting(ring):
    sub = ring.subscribe(timeout=10)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.005)

    th = threading.Thread(target=ticker)
    th.start()
    pub = ring.publisher()

    def later():
        time.sleep(0.3)
        pub.write(source(batches=1, rows=3))
        pub.close()

    threading.Thread(target=later).start()
    assert sub.recv() is not None
    stop.set()
    th.join()
    assert len(ticks) > 10, "the waiting receive held the GIL"


def test_another_thread_touching_a_waiting_subscription_does_not_deadlock(ring):
    # The main thread waits in recv() (its signal check needs the GIL every
    # 50 ms); another thread, holding the GIL, asks the same subscription
    # for leases_held() and then closes a publisher. The subscription's lock
    # is taken only without the GIL, so both finish once a batch arrives.
    code = textwrap.dedent(
        f"""
        import threading, time, alloy_shm, pyarrow as pa
        ring = alloy_shm.Ring.open({ring.name!r})
        sub = ring.subscribe()
        pub = ring.publisher()
        seen = []

        def other():
            time.sleep(0.2)                  # main is inside recv() by now
            seen.append(sub.leases_held())   # waits for the receive, GIL released
        def feed():
            time.sleep(0.5)
            pub.write(pa.record_batch({{"x": pa.array([1, 2, 3])}}))
            pub.close()

        ts = [threading.Thread(target=other), threading.Thread(target=feed)]
        for t in ts:
            t.start()
        b = sub.recv()
        for t in ts:
            t.join()
        print("done", b.num_rows, seen, flush=True)
        """
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("done 3 ["), p.stdout


def _free_huge_pages() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("HugePages_Free:"):
            return int(line.split()[1])
    return 0


def test_huge_pages_and_prefault_options(tmp_path, monkeypatch):
    # Rings go to tmp_path (an ordinary filesystem, never hugetlbfs).
    monkeypatch.setenv("ALLOY_SHM_DIR", str(tmp_path))
    name = f"pyt-huge-{uuid.uuid4().hex[:8]}"
    with pytest.raises(alloy_shm.AlloyError, match="hugetlbfs"):
        alloy_shm.Ring.create(name, slot_count=4, slot_size=4096, huge_pages="require")
    assert not (tmp_path / name).exists(), "a refused create leaves no ring"
    with pytest.raises(ValueError, match="huge_pages"):
        alloy_shm.Ring.create(name, huge_pages="always")
    r = alloy_shm.Ring.create(name, slot_count=4, slot_size=4096, huge_pages="prefer", prefault=True)
    sub = r.subscribe()
    pub = r.publisher()
    pub.write(pa.record_batch({"x": pa.array([1, 2, 3])}))
    assert sub.recv(timeout=5).column(0).to_pylist() == [1, 2, 3]
    del sub, pub, r
    alloy_shm.Ring.remove(name)
    hugefs = os.environ.get("ALLOY_TEST_HUGETLBFS")
    if not hugefs or _free_huge_pages() < 3:
        return  # named huge rings need a hugetlbfs mount and free pages (doc/TESTING.md)
    monkeypatch.setenv("ALLOY_SHM_DIR", hugefs)
    r = alloy_shm.Ring.create(name, slot_count=4, slot_size=4096, huge_pages="require", prefault=True)
    try:
        size = (Path(hugefs) / name).stat().st_size
        assert size > 0 and size % (2 << 20) == 0, size
    finally:
        del r
        alloy_shm.Ring.remove(name)
