"""CLI round trip of Arrow IPC mode checked by pyarrow (run by `make test-py`).

A file with many types, written by pyarrow, goes `alloy-go send` -> ring ->
`alloy recv` (Go -> Rust) and `alloy send` -> ring -> `alloy-go recv`
(Rust -> Go), each in IPC mode and in C-Data-offsets mode (`--mode cdata`);
pyarrow confirms each output equals the input. Also checks the CLIs' errors
(unknown ring, unknown mode, a batch too large for a slot in cdata mode,
unreadable input).
"""

import datetime
import decimal
import os
import subprocess
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOY = ROOT / "bin" / "alloy"
ALLOY_GO = ROOT / "bin" / "alloy-go"


def many_types_table(n: int) -> pa.Table:
    def nulls(values, every=7):
        return [None if i % every == 3 else v for i, v in enumerate(values)]

    utc = datetime.timezone.utc
    cols = {
        "i8": pa.array(nulls([(i * 37) % 256 - 128 for i in range(n)]), pa.int8()),
        "i16": pa.array(nulls([(i * 311) % 65536 - 32768 for i in range(n)]), pa.int16()),
        "i32": pa.array(nulls([(i * 7919) % 2**31 - 2**30 for i in range(n)]), pa.int32()),
        "i64": pa.array(nulls([i * 2**40 - 2**62 for i in range(n)]), pa.int64()),
        "u8": pa.array(nulls([i % 256 for i in range(n)]), pa.uint8()),
        "u16": pa.array([i * 13 % 65536 for i in range(n)], pa.uint16()),
        "u32": pa.array(nulls([i * 2**20 % 2**32 for i in range(n)]), pa.uint32()),
        "u64": pa.array(nulls([2**64 - 1 - i for i in range(n)]), pa.uint64()),
        "f32": pa.array(nulls([i / 8 for i in range(n)]), pa.float32()),
        "f64": pa.array(nulls([i / 3 - 100 for i in range(n)]), pa.float64()),
        "bool": pa.array(nulls([i % 3 == 0 for i in range(n)]), pa.bool_()),
        "utf8": pa.array(nulls([f"välue-{i}" * (i % 4) for i in range(n)])),
        "large_utf8": pa.array(nulls([f"L{i}" for i in range(n)]), pa.large_string()),
        "binary": pa.array(nulls([bytes([i % 256]) * (i % 5) for i in range(n)]), pa.binary()),
        "large_binary": pa.array([b"xy" * (i % 3) for i in range(n)], pa.large_binary()),
        "fixed_binary": pa.array(nulls([i.to_bytes(4, "little") for i in range(n)]), pa.binary(4)),
        "date32": pa.array(nulls([datetime.date(2000, 1, 1) + datetime.timedelta(days=i) for i in range(n)])),
        "date64": pa.array(nulls([i * 86_400_000 for i in range(n)]), pa.date64()),
        "time32": pa.array(nulls([i * 1000 % 86_400_000 for i in range(n)]), pa.time32("ms")),
        "time64": pa.array(nulls([i * 10**6 for i in range(n)]), pa.time64("us")),
        "ts_utc": pa.array(
            nulls([datetime.datetime(2024, 1, 1, tzinfo=utc) + datetime.timedelta(seconds=i) for i in range(n)]),
            pa.timestamp("us", tz="UTC"),
        ),
        "ts_tz": pa.array(nulls([i * 10**9 for i in range(n)]), pa.timestamp("ns", tz="Europe/Stockholm")),
        "ts_naive": pa.array(nulls([i for i in range(n)]), pa.timestamp("s")),
        "duration": pa.array(nulls([i * 1000 for i in range(n)]), pa.duration("ms")),
        "dec128": pa.array(nulls([decimal.Decimal(i * 1001) / 1000 - 5 for i in range(n)]), pa.decimal128(20, 3)),
        "list": pa.array(nulls([[j for j in range(i % 4)] for i in range(n)]), pa.list_(pa.int32())),
        "large_list": pa.array([["a"] * (i % 3) for i in range(n)], pa.large_list(pa.string())),
        "fixed_list": pa.array(nulls([[i, i + 1] for i in range(n)]), pa.list_(pa.int16(), 2)),
        "struct": pa.array(
            nulls([{"a": i, "b": f"s{i}" if i % 2 else None} for i in range(n)]),
            pa.struct([("a", pa.int64()), ("b", pa.string())]),
        ),
        "dict": pa.array(nulls([["red", "green", "blue"][i % 3] for i in range(n)])).dictionary_encode(),
        "map": pa.array([[("k", i)] * (i % 2) for i in range(n)], pa.map_(pa.string(), pa.int32())),
        "list_view": pa.array(nulls([[i, -i][: i % 3] for i in range(n)]), pa.list_view(pa.int32())),
        "large_list_view": pa.array([["v"] * (i % 2) for i in range(n)], pa.large_list_view(pa.string())),
        "string_view": pa.array(nulls([f"view-{i}" * (i % 5) for i in range(n)]), pa.string_view()),
    }
    return pa.table(cols)


def write_input(path: Path) -> pa.Table:
    table = many_types_table(1000)
    whole = table.combine_chunks().to_batches()[0]
    with pa.ipc.new_file(path, table.schema) as w:
        w.write_batch(whole.slice(0, 0))  # empty batch
        for b in table.to_batches(max_chunksize=300):
            w.write_batch(b)
        w.write_batch(whole.slice(517, 101))  # sliced buffers (non-zero offsets)
    return pa.ipc.open_file(path).read_all()


@pytest.fixture
def ring():
    name = f"pyrt-{uuid.uuid4().hex[:12]}"
    subprocess.run([ALLOY, "create", "--ring", name, "--slots", "8", "--slot-size", str(1 << 20)], check=True,
                   capture_output=True)
    yield name
    subprocess.run([ALLOY, "rm", "--ring", name], capture_output=True)


def transfer(receiver, sender, ring: str, src: Path, out: Path) -> str:
    rx = subprocess.Popen([*receiver, "--ring", ring, "--out", str(out)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        assert rx.stdout.readline().strip() == "ready"
        tx = subprocess.run([*sender, "--ring", ring, str(src)], capture_output=True, text=True, timeout=60)
        assert tx.returncode == 0, tx.stderr
        summary, err = rx.communicate(timeout=60)
    finally:
        rx.kill()
    assert rx.returncode == 0, err
    return summary.strip()


@pytest.mark.parametrize("direction", ["go-to-rust", "go-to-rust-cdata", "rust-to-go", "rust-to-go-cdata"])
def test_round_trip(tmp_path, ring, direction):
    src = tmp_path / "in.arrow"
    expected = write_input(src)
    out = tmp_path / "out.arrows"
    if direction == "go-to-rust":
        summary = transfer([ALLOY, "recv"], [ALLOY_GO, "send"], ring, src, out)
    elif direction == "go-to-rust-cdata":
        summary = transfer([ALLOY, "recv"], [ALLOY_GO, "send", "--mode", "cdata"], ring, src, out)
    elif direction == "rust-to-go":
        summary = transfer([ALLOY_GO, "recv"], [ALLOY, "send"], ring, src, out)
    else:
        summary = transfer([ALLOY_GO, "recv"], [ALLOY, "send", "--mode", "cdata"], ring, src, out)
    got = pa.ipc.open_stream(out).read_all()
    assert got.schema.equals(expected.schema, check_metadata=True)
    assert got.num_rows == expected.num_rows == 1101
    for name in expected.column_names:
        assert got.column(name).equals(expected.column(name)), name
    assert got.equals(expected)
    assert '"rows":1101' in summary, summary


def run(*args):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60)


DIRECTIONS = {
    "go-to-rust": ([ALLOY, "recv"], [ALLOY_GO, "send"]),
    "go-to-rust-cdata": ([ALLOY, "recv"], [ALLOY_GO, "send", "--mode", "cdata"]),
    "rust-to-go": ([ALLOY_GO, "recv"], [ALLOY, "send"]),
    "rust-to-go-cdata": ([ALLOY_GO, "recv"], [ALLOY, "send", "--mode", "cdata"]),
}


def dictionary_stream(path: Path, pattern: str, batches: int) -> pa.Table:
    """A pyarrow stream of `batches` dictionary batches of 100 rows (plus an
    empty one): the same dictionary throughout (issue #12's reproduction,
    `dictionary_encode` then `to_batches`), a new dictionary every batch
    (replacement), or one that grows (pyarrow writes deltas)."""
    regions = ["apac", "eu", "us", "latam", None]
    n = batches * 100
    ints = pa.array([i if i % 11 else None for i in range(n)], pa.int64())
    if pattern == "same":
        words = pa.array([regions[i % 5] for i in range(n)]).dictionary_encode()
        nested = pa.array([[regions[i % 4], regions[(i + 1) % 4]] for i in range(n)],
                          pa.list_(pa.dictionary(pa.int32(), pa.string())))
        table = pa.table({"region": words, "x": ints, "tags": nested})
        chunks = table.to_batches(max_chunksize=100)
    else:
        chunks = []
        for b in range(batches):
            if pattern == "replace":
                values = pa.array([f"b{b}-{v}" for v in range(6)])
            else:  # grow: the old values are a prefix of the new ones
                values = pa.array([f"d{v}" for v in range(2 + b)])
            keys = pa.array([None if i % 9 == 4 else (i + b) % len(values) for i in range(100)], pa.int32())
            words = pa.DictionaryArray.from_arrays(keys, values)
            chunks.append(pa.record_batch({"region": words, "x": ints.slice(b * 100, 100)}))
    options = pa.ipc.IpcWriteOptions(emit_dictionary_deltas=(pattern == "grow"))
    with pa.ipc.new_stream(path, chunks[0].schema, options=options) as w:
        w.write_batch(chunks[0].slice(0, 0))  # an empty batch first
        for c in chunks:
            w.write_batch(c)
    return pa.ipc.open_stream(path).read_all()


@pytest.mark.parametrize("direction", list(DIRECTIONS))
@pytest.mark.parametrize("pattern", ["same", "replace", "grow"])
def test_dictionary_stream_longer_than_the_ring(tmp_path, ring, direction, pattern):
    """Issue #12: a dictionary stream 12x as long as the 8-slot ring went
    through in every direction and mode, where it used to hang at 8."""
    src = tmp_path / "in.arrows"
    expected = dictionary_stream(src, pattern, 96)
    out = tmp_path / "out.arrows"
    receiver, sender = DIRECTIONS[direction]
    summary = transfer(receiver, sender, ring, src, out)
    got = pa.ipc.open_stream(out).read_all()
    assert got.num_rows == expected.num_rows == 9600, summary
    assert got.equals(expected)


@pytest.mark.parametrize("tool", [ALLOY, ALLOY_GO])
def test_errors_are_one_line_and_non_zero(tmp_path, ring, tool):
    src = tmp_path / "in.arrow"
    write_input(src)
    cases = [
        (["send", "--ring", "no-such-ring-xyz", src], ""),
        (["recv", "--ring", "no-such-ring-xyz", "--out", tmp_path / "o"], ""),
        (["send", "--ring", ring, "--mode", "bogus", src], "mode"),
        (["send", "--ring", ring, tmp_path / "missing.arrow"], "missing.arrow"),
    ]
    # cdata mode does not split batches: 2.4 MB does not fit a 1 MiB slot.
    big = tmp_path / "big.arrow"
    t = pa.table({"x": pa.array(range(300_000), pa.int64())})
    with pa.ipc.new_file(big, t.schema) as w:
        w.write_table(t)
    cases.append((["send", "--ring", ring, "--mode", "cdata", big], "split"))
    garbage = tmp_path / "garbage.arrow"
    garbage.write_bytes(os.urandom(100))
    cases.append((["send", "--ring", ring, garbage], "garbage.arrow"))
    for args, needle in cases:
        p = run(tool, *args)
        assert p.returncode != 0, (args, p.stdout)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1, (args, p.stderr)
        assert needle in lines[0], (args, lines[0])
