"""Both command-line tools as a careful user meets them (issue #18), run by
`make test-py` against bin/alloy and bin/alloy-go, files checked by pyarrow.

- Every ending of `recv` (end of stream, SIGINT/SIGTERM, a dead producer,
  --timeout, the ring removed or re-created, a full disk) leaves a complete
  Arrow IPC stream of exactly the batches received, or no file, and one line.
- No wait without an end: --timeout, a removed or re-created ring, a ring
  whose stream ended, a retried send (--resume / --new-stream), `ready` only
  after every check.
- Pipes: `send -` and a FIFO send each batch as it arrives; `recv --out -`.
- LZ4 and ZSTD files and streams made by pyarrow, each tool to the other;
  `recv --compression`.
- One grammar: help, version, flags after positionals, extra positionals,
  NAME or --ring, `create`'s defaults and line, names beginning with '-',
  summaries with batches and messages, watch without ANSI codes off a
  terminal, ls of Alloy rings only, "not an Alloy ring".

A refused message is in tests/cli_endings.rs (it needs a producer that
publishes a bad message).
"""

import json
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOY = ROOT / "bin" / "alloy"
ALLOY_GO = ROOT / "bin" / "alloy-go"
TOOLS = {"rust": ALLOY, "go": ALLOY_GO}
PAIRS = {"go-to-rust": (ALLOY_GO, ALLOY), "rust-to-go": (ALLOY, ALLOY_GO)}


def run(*args, **kw):
    kw.setdefault("timeout", 30)
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)


def new_ring(slots=8, slot_size=1 << 16) -> str:
    name = f"clit-{uuid.uuid4().hex[:10]}"
    p = run(ALLOY, "create", name, "--slots", slots, "--slot-size", slot_size)
    assert p.returncode == 0, p.stderr
    return name


@pytest.fixture
def ring():
    name = new_ring()
    yield name
    run(ALLOY, "rm", name)


def published(ring: str) -> int:
    p = run(ALLOY, "stat", ring, "--json", "--interval", "0")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["published"]


def cursor(ring: str) -> int:
    """The one consumer's cursor: the messages it has received."""
    p = run(ALLOY, "stat", ring, "--json", "--interval", "0")
    consumers = json.loads(p.stdout)["consumers"]
    return consumers[0]["cursor"] if consumers else 0


def wait_until(cond, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def batches(n, rows=1000, start=0):
    return [pa.record_batch({"x": pa.array(range(start + i * rows, start + (i + 1) * rows), pa.int64()),
                             "s": pa.array([f"v{j % 7}" for j in range(rows)])}) for i in range(n)]


def write_stream(path: Path, bs, **opts):
    with pa.ipc.new_stream(path, bs[0].schema, options=pa.ipc.IpcWriteOptions(**opts)) as w:
        for b in bs:
            w.write_batch(b)


class Receiver:
    """`recv` in the background, `ready` read from its stdout."""

    def __init__(self, tool, ring, out, *extra, expect_ready=True):
        self.p = subprocess.Popen([str(tool), "recv", "--ring", ring, "--out", str(out), *map(str, extra)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if expect_ready:
            line = self.p.stdout.readline().strip()
            assert line == "ready", (line, self.p.stderr.read() if self.p.poll() is not None else "")

    def finish(self, timeout=20):
        out, err = self.p.communicate(timeout=timeout)
        return self.p.returncode, out, err

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


class SlowSender:
    """`send -` fed by a pyarrow stream writer through a pipe, one batch at
    a time, the pipe left open until close()."""

    def __init__(self, tool, ring, schema, *extra):
        self.p = subprocess.Popen([str(tool), "send", "--ring", ring, *map(str, extra), "-"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.w = pa.ipc.new_stream(self.p.stdin, schema)

    def send(self, b):
        self.w.write_batch(b)
        self.p.stdin.flush()

    def close(self):
        self.w.close()
        self.p.stdin.close()
        out, err = self.p.stdout.read(), self.p.stderr.read()
        self.p.wait(timeout=20)
        return self.p.returncode, out.decode(), err.decode()

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def read_stream(path: Path) -> pa.Table:
    return pa.ipc.open_stream(path).read_all()


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------- endings


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("tool", list(TOOLS))
def test_signal_leaves_a_complete_stream(tmp_path, ring, tool, sig):
    out = tmp_path / "out.arrows"
    bs = batches(3)
    rx = Receiver(TOOLS[tool], ring, out)
    tx = SlowSender(ALLOY, ring, bs[0].schema)
    try:
        for b in bs:
            tx.send(b)
        # Received: a batch claimed is written before the loop looks at
        # the signal.
        wait_until(lambda: cursor(ring) >= 4, "schema + 3 batches received")
        rx.p.send_signal(sig)
        code, _, err = rx.finish()
    finally:
        rx.kill()
        tx.kill()
    assert code == 128 + sig, err
    line = one_line(err)
    assert f"interrupted by {signal.Signals(sig).name}" in line and "wrote 3 batches" in line, line
    assert read_stream(out).equals(pa.Table.from_batches(bs))
    assert not Path(str(out) + ".partial").exists()


@pytest.mark.parametrize("tool", list(TOOLS))
def test_dead_producer_leaves_a_complete_stream(tmp_path, ring, tool):
    out = tmp_path / "out.arrows"
    bs = batches(2)
    rx = Receiver(TOOLS[tool], ring, out)
    tx = SlowSender(ALLOY_GO, ring, bs[0].schema)
    try:
        for b in bs:
            tx.send(b)
        wait_until(lambda: published(ring) >= 3, "schema + 2 batches published")
        tx.p.send_signal(signal.SIGKILL)
        code, _, err = rx.finish()
    finally:
        rx.kill()
        tx.kill()
    assert code == 1, err
    line = one_line(err)
    assert f"the producer (pid {tx.p.pid}) of ring" in line and "died without closing the stream" in line, line
    assert "wrote 2 batches" in line, line
    assert read_stream(out).equals(pa.Table.from_batches(bs))


@pytest.mark.parametrize("tool", list(TOOLS))
def test_full_disk_leaves_no_file(tmp_path, ring, tool):
    """A file limit (RLIMIT_FSIZE, SIGXFSZ ignored) fails the write as a full
    disk does: no output file at all, not a cut-off one; and `--out -` onto
    /dev/full (ENOSPC) fails with one line."""
    out = tmp_path / "out.arrows"
    src = tmp_path / "in.arrows"
    bs = batches(40, rows=4000)  # ~2 MB, limit 256 KiB
    write_stream(src, bs)

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10))

    rx = subprocess.Popen([str(TOOLS[tool]), "recv", "--ring", ring, "--out", str(out)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, preexec_fn=limit)
    try:
        assert rx.stdout.readline().strip() == "ready"
        tx = run(ALLOY, "send", "--ring", ring, src)
        _, err = rx.communicate(timeout=20)
    finally:
        rx.kill()
    assert rx.returncode == 1, err
    assert "no file written" in one_line(err), err
    assert tx.returncode == 0, tx.stderr  # the receiver left; the sender went on
    assert not out.exists() and not Path(str(out) + ".partial").exists()

    ring2 = new_ring()
    try:
        with open("/dev/full", "wb") as full:
            rx = subprocess.Popen([str(TOOLS[tool]), "recv", "--ring", ring2, "--out", "-"], stdout=full,
                                  stderr=subprocess.PIPE, text=True)
        wait_until(lambda: json.loads(run(ALLOY, "stat", ring2, "--json", "--interval", "0").stdout)["consumers"],
                   "the receiver joined")
        run(ALLOY, "send", "--ring", ring2, src)
        _, err = rx.communicate(timeout=20)
        assert rx.returncode == 1
        lines = err.strip().splitlines()
        assert lines[0] == "ready" and len(lines) == 2 and "standard output" in lines[1], err
    finally:
        run(ALLOY, "rm", ring2)


# ---------------------------------------------------------- no endless wait


@pytest.mark.parametrize("tool", list(TOOLS))
def test_timeout(tmp_path, ring, tool):
    out = tmp_path / "out.arrows"
    t0 = time.monotonic()
    rx = Receiver(TOOLS[tool], ring, out, "--timeout", "300ms")
    code, _, err = rx.finish()
    assert code == 124 and 0.25 < time.monotonic() - t0 < 5, (code, err)
    assert "--timeout" in one_line(err) and "no file" in err
    assert not out.exists() and not Path(str(out) + ".partial").exists()
    # Batches, then silence: the batches are kept.
    bs = batches(2)
    rx = Receiver(TOOLS[tool], ring, out, "--timeout", "1.5")
    tx = SlowSender(ALLOY, ring, bs[0].schema)
    try:
        for b in bs:
            tx.send(b)
        code, _, err = rx.finish()
    finally:
        rx.kill()
        tx.kill()
    assert code == 124 and "wrote 2 batches" in one_line(err), err
    assert read_stream(out).equals(pa.Table.from_batches(bs))
    bad = run(TOOLS[tool], "recv", "--ring", ring, "--out", out, "--timeout", "soon")
    assert bad.returncode != 0 and "soon" in bad.stderr


@pytest.mark.parametrize("how", ["removed", "re-created"])
@pytest.mark.parametrize("tool", list(TOOLS))
def test_ring_removed_under_the_receiver(tmp_path, ring, tool, how):
    out = tmp_path / "out.arrows"
    rx = Receiver(TOOLS[tool], ring, out)
    try:
        if how == "re-created":
            # Atomically, so the receiver never sees the name missing.
            other = new_ring()
            os.rename(f"/dev/shm/{other}", f"/dev/shm/{ring}")
        else:
            run(ALLOY, "rm", ring)
        t0 = time.monotonic()
        code, _, err = rx.finish(timeout=5)
    finally:
        rx.kill()
    assert time.monotonic() - t0 < 1.0, "noticed within a second"
    assert code == 1
    line = one_line(err)
    assert ("created under its name" in line) == (how == "re-created") and "was removed" in line, line


@pytest.mark.parametrize("tool", list(TOOLS))
def test_stream_already_ended(tmp_path, ring, tool):
    src = tmp_path / "in.arrows"
    write_stream(src, batches(2))
    assert run(ALLOY, "send", "--ring", ring, src).returncode == 0
    out = tmp_path / "out.arrows"
    p = run(TOOLS[tool], "recv", "--ring", ring, "--out", out)
    assert p.returncode == 1 and p.stdout == "", p  # no `ready`
    assert f'the stream on ring "{ring}" ended at sequence 3' in one_line(p.stderr)
    assert not out.exists() and not Path(str(out) + ".partial").exists()
    # A sender is refused too, unless it starts a new stream, which a
    # receiver that joins then gets alone.
    p = run(TOOLS[tool], "send", "--ring", ring, src)
    assert p.returncode == 1 and "--new-stream" in one_line(p.stderr)
    bs = batches(3, start=10_000)
    tx = SlowSender(TOOLS[tool], ring, bs[0].schema, "--new-stream")
    try:
        tx.send(bs[0])
        wait_until(lambda: published(ring) >= 3 + 2, "the new stream's schema and first batch")
        rx = Receiver(ALLOY if tool == "go" else ALLOY_GO, ring, out)
        tx.send(bs[1])
        tx.send(bs[2])
        code, _, err = tx.close()
        assert code == 0, err
        code, _, err = rx.finish()
    finally:
        tx.kill()
    assert code == 0, err
    assert read_stream(out).equals(pa.Table.from_batches(bs[1:]))


@pytest.mark.parametrize("tool", list(TOOLS))
def test_retried_send_is_refused_or_resumed(tmp_path, ring, tool):
    """A send that fails half-way leaves its stream open; sending again is
    refused (naming --resume) instead of appending duplicates; --resume
    appends, --new-stream ends it and starts another."""
    bs = batches(4)
    good = tmp_path / "good.arrows"
    write_stream(good, bs)
    three = tmp_path / "three.arrows"
    write_stream(three, bs[:3])
    cut = tmp_path / "cut.arrows"  # 3 batches, then the 4th cut off
    cut.write_bytes(good.read_bytes()[: three.stat().st_size - 8 + 100])
    out = tmp_path / "out.arrows"
    rx = Receiver(ALLOY if tool == "go" else ALLOY_GO, ring, out)
    try:
        p = run(TOOLS[tool], "send", "--ring", ring, cut)
        assert p.returncode == 1, p
        p = run(TOOLS[tool], "send", "--ring", ring, good)
        assert p.returncode == 1 and "--resume" in one_line(p.stderr), p.stderr
        p = run(TOOLS[tool], "send", "--ring", ring, "--resume", good)
        assert p.returncode == 0, p.stderr
        code, _, err = rx.finish()
    finally:
        rx.kill()
    assert code == 0, err
    # The part sent, then the whole file.
    assert read_stream(out).equals(pa.Table.from_batches(bs[:3] + bs))


@pytest.mark.parametrize("tool", list(TOOLS))
def test_ready_only_after_every_check(tmp_path, ring, tool):
    p = run(TOOLS[tool], "recv", "--ring", ring, "--out", tmp_path / "no" / "such" / "dir" / "o.arrows")
    assert p.returncode == 1 and p.stdout == "" and "o.arrows" in one_line(p.stderr), p
    p = run(TOOLS[tool], "recv", "--ring", ring, "--out", tmp_path)
    assert p.returncode == 1 and p.stdout == "" and "directory" in one_line(p.stderr), p
    p = run(TOOLS[tool], "recv", "--ring", "no-such-ring-clit", "--out", tmp_path / "o")
    assert p.returncode == 1 and p.stdout == "" and not (tmp_path / "o").exists()


# ------------------------------------------------------------------ pipes


@pytest.mark.parametrize("direction", list(PAIRS))
def test_send_from_a_pipe_batch_by_batch_and_recv_to_stdout(tmp_path, ring, direction):
    sender, receiver = PAIRS[direction]
    bs = batches(3)
    rx = subprocess.Popen([str(receiver), "recv", "--ring", ring, "--out", "-"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    assert rx.stderr.readline().decode().strip() == "ready"  # stdout carries the data
    got = {}
    reader = threading.Thread(target=lambda: got.update(t=pa.ipc.open_stream(rx.stdout).read_all()))
    reader.start()
    tx = SlowSender(sender, ring, bs[0].schema)
    try:
        for i, b in enumerate(bs):
            tx.send(b)
            # Sent as it arrives, while the pipe is still open.
            wait_until(lambda: published(ring) >= 2 + i, f"batch {i} published")
        code, out, err = tx.close()
        assert code == 0, err
        assert json.loads(out)["batches"] == 3
        rx.wait(timeout=20)
        reader.join(timeout=20)
    finally:
        tx.kill()
        rx.kill()
    assert rx.returncode == 0
    assert got["t"].equals(pa.Table.from_batches(bs))
    assert json.loads(rx.stderr.read().decode().strip())["batches"] == 3


@pytest.mark.parametrize("tool", list(TOOLS))
def test_send_from_a_fifo_and_an_ipc_file_through_a_pipe(tmp_path, ring, tool):
    bs = batches(3)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    out = tmp_path / "out.arrows"
    rx = Receiver(ALLOY if tool == "go" else ALLOY_GO, ring, out)
    tx = subprocess.Popen([str(TOOLS[tool]), "send", "--ring", ring, str(fifo)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        with open(fifo, "wb") as f:  # an IPC *file* (ARROW1 magic) through the FIFO
            with pa.ipc.new_file(f, bs[0].schema) as w:
                for b in bs:
                    w.write_batch(b)
        _, err = tx.communicate(timeout=20)
        assert tx.returncode == 0, err
        code, _, err = rx.finish()
    finally:
        tx.kill()
        rx.kill()
    assert code == 0, err
    assert read_stream(out).equals(pa.Table.from_batches(bs))


# ------------------------------------------------------------ compression


@pytest.mark.parametrize("kind", ["stream", "file"])
@pytest.mark.parametrize("codec", ["lz4", "zstd"])
@pytest.mark.parametrize("direction", list(PAIRS))
def test_compressed_input_and_output(tmp_path, ring, direction, codec, kind):
    sender, receiver = PAIRS[direction]
    bs = batches(4, rows=5000)
    src = tmp_path / f"in.{codec}.{kind}"
    opts = pa.ipc.IpcWriteOptions(compression=codec)
    with (pa.ipc.new_stream if kind == "stream" else pa.ipc.new_file)(src, bs[0].schema, options=opts) as w:
        for b in bs:
            w.write_batch(b)
    out = tmp_path / "out.arrows"
    rx = Receiver(receiver, ring, out, "--compression", codec)
    p = run(sender, "send", "--ring", ring, src)
    code, summary, err = rx.finish()
    assert p.returncode == 0 and code == 0, (p.stderr, err)
    assert json.loads(summary)["rows"] == 20000
    assert read_stream(out).equals(pa.Table.from_batches(bs))
    # The file written is compressed: smaller than the same stream
    # uncompressed (the columns are very regular).
    plain = tmp_path / "plain.arrows"
    write_stream(plain, bs)
    assert out.stat().st_size < plain.stat().st_size * 0.7, (out.stat().st_size, plain.stat().st_size)


# ---------------------------------------------------------------- grammar


@pytest.mark.parametrize("tool", list(TOOLS))
def test_help_and_version(tool):
    t = TOOLS[tool]
    for args in (["-h"], ["--help"], ["help"], ["send", "-h"], ["recv", "--help"], ["create", "-h"]):
        p = run(t, *args)
        assert p.returncode == 0, (args, p.stderr)
        assert "usage" in (p.stdout + p.stderr).lower(), args
    for args in (["--version"], ["version"]):
        p = run(t, *args)
        assert p.returncode == 0 and "layout version 3" in p.stdout, (args, p)
    for cmd in ("create", "rm", "stat", "watch", "ls", "send", "recv", "version"):
        assert cmd in run(t, "--help").stdout + run(t, "--help").stderr


def test_both_tools_take_the_same_arguments(tmp_path):
    lines = {}
    for tool, t in TOOLS.items():
        name = f"clit-{uuid.uuid4().hex[:10]}"
        p = run(t, "create", name)  # defaults
        assert p.returncode == 0, p.stderr
        lines[tool] = p.stdout.replace(name, "NAME")
        for form in ([name], ["--ring", name]):
            assert run(t, "stat", *form, "--interval", "0").returncode == 0
        assert run(t, "stat", name, "--json", "--interval", "0").returncode == 0  # flags after NAME
        p = run(t, "rm", name, "extra")
        assert p.returncode != 0 and "extra" in p.stderr
        assert run(t, "rm", name).returncode == 0
        assert run(t, "create", "--ring", name).returncode == 0
        assert run(t, "rm", "--ring", name).returncode == 0
        p = run(t, "create", "--ring=-dash")
        assert p.returncode == 1 and "begins with '-'" in one_line(p.stderr)
        assert not Path("/dev/shm/-dash").exists()
        p = run(t, "recv", "--ring", name, "--out", tmp_path / "o", "extra")
        assert p.returncode != 0 and "extra" in p.stderr
    assert lines["rust"] == lines["go"] == 'created ring "NAME": 64 slots x 1048576 bytes, 67194880 bytes total\n'
    for args in (["stat", "nx-clit"], ["rm", "nx-clit"], ["recv", "--ring", "nx-clit", "--out", tmp_path / "o"]):
        said = {tool: one_line(run(t, *args).stderr).split(": ", 1)[1] for tool, t in TOOLS.items()}
        assert said["rust"] == said["go"] == 'ring "nx-clit" does not exist', said


def test_summaries_count_batches_and_messages_alike(tmp_path):
    """One batch larger than a slot goes as several messages; a schema-only
    file is one message: both tools report the same numbers."""
    big = tmp_path / "big.arrows"
    write_stream(big, [pa.record_batch({"x": pa.array(range(40_000), pa.int64())})])  # 320 KB, 64 KiB slots
    empty = tmp_path / "empty.arrows"
    with pa.ipc.new_stream(empty, pa.schema([("x", pa.int64())])):
        pass
    got = {}
    for tool, t in TOOLS.items():
        for src in (big, empty):
            ring = new_ring(slots=16)
            try:
                rx = Receiver(ALLOY, ring, tmp_path / "o.arrows")
                p = run(t, "send", src, "--ring", ring)  # flags after the FILE
                assert p.returncode == 0, p.stderr
                rc, _, err = rx.finish()
                assert rc == 0, err
                got[tool, src.name] = json.loads(p.stdout)
            finally:
                run(ALLOY, "rm", ring)
    assert got["rust", "big.arrows"] == got["go", "big.arrows"], got
    assert got["rust", "big.arrows"]["batches"] == 1 and got["rust", "big.arrows"]["messages"] > 2
    assert got["rust", "empty.arrows"] == got["go", "empty.arrows"], got
    e = got["rust", "empty.arrows"]
    assert (e["batches"], e["messages"]) == (0, 1) and e["bytes"] > 0, e


@pytest.mark.parametrize("tool", list(TOOLS))
def test_watch_writes_no_escape_codes_into_a_pipe(ring, tool):
    p = subprocess.Popen([str(TOOLS[tool]), "watch", ring, "--interval", "100"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    time.sleep(0.5)
    run(ALLOY, "rm", ring)
    out, err = p.communicate(timeout=5)
    assert p.returncode == 0, err
    assert b"\x1b" not in out and b"published" in out and b"was removed" in out, out


@pytest.mark.parametrize("tool", list(TOOLS))
def test_ls_lists_only_alloy_rings_and_says_not_an_alloy_ring(tool):
    # Under /tmp itself (pytest's tmp_path is 0700): the listing runs as
    # nobody when the test runs as root, so that a 0000 file is unreadable.
    d = Path(tempfile.mkdtemp(prefix="clit-ls-", dir="/tmp"))
    try:
        d.chmod(0o755)
        ring = new_ring()
        try:
            (d / ring).write_bytes(Path(f"/dev/shm/{ring}").read_bytes())
        finally:
            run(ALLOY, "rm", ring)
        (d / ring).chmod(0o644)
        (d / "zeros").write_bytes(bytes(8192))
        (d / "text").write_text("hello, not a ring\n" * 100)
        secret = d / "secret"
        secret.write_bytes(b"ALLOYSHM" + bytes(8184))
        secret.chmod(0)

        def as_nobody():
            if os.getuid() == 0:
                os.setgid(65534)
                os.setuid(65534)

        p = subprocess.run([str(TOOLS[tool]), "ls", "--json", "--dir", str(d)], capture_output=True, text=True,
                           preexec_fn=as_nobody, timeout=30)
        assert p.returncode == 0, p.stderr
        assert [r["name"] for r in json.loads(p.stdout)] == [ring], p.stdout
    finally:
        shutil.rmtree(d)

    # `stat` of a file that is not an Alloy ring says so.
    name = f"clit-{uuid.uuid4().hex[:10]}"
    try:
        for content in (bytes(8192), b"ALLOYSHM" + bytes(8184), os.urandom(8192)):
            Path(f"/dev/shm/{name}").write_bytes(content)
            p = run(TOOLS[tool], "stat", name, "--interval", "0")
            assert p.returncode == 1 and "not an Alloy ring" in one_line(p.stderr), p.stderr
    finally:
        Path(f"/dev/shm/{name}").unlink()
