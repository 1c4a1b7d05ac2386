"""`alloy record`, `alloy replay` and `alloy hz` end to end (issue #17),
checked with pyarrow: a pyarrow-made stream goes through a ring with
`alloy-go send`, is recorded by `alloy record`, compared with its source,
replayed into another ring at a given rate (rate and content checked), and
`alloy hz` measures a stream of known rate. Part of `make test-py`
(bin/alloy and bin/alloy-go from `make build`)."""

import json
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pytest

from cli_tools import ALLOY, ALLOY_GO, batches, new_ring, run, wait_until, write_stream


@pytest.fixture
def rings():
    made = []

    def make(**kw):
        made.append(new_ring(**kw))
        return made[-1]

    yield make
    for r in made:
        run(ALLOY, "rm", r)


def start(*args):
    p = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    assert line == "ready", (line, p.stderr.read() if p.poll() is not None else "")
    return p


def finish(p, timeout=30):
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return out


def consumers(ring):
    p = run(ALLOY, "stat", ring, "--json", "--interval", "0")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["consumers"]


def test_record_replay_hz(tmp_path: Path, rings):
    src = tmp_path / "src.arrows"
    sent = batches(40, rows=500)
    write_stream(src, sent)
    source = pa.ipc.open_stream(src).read_all()

    # Record a Go producer's stream, beside a second consumer it must not
    # disturb (alloy recv gets the same batches).
    a = rings()
    rec = tmp_path / "rec.arrows"
    other = tmp_path / "other.arrows"
    recorder = start(ALLOY, "record", "--ring", a, "--out", rec)
    receiver = start(ALLOY, "recv", "--ring", a, "--out", other)
    tx = run(ALLOY_GO, "send", "--ring", a, src)
    assert tx.returncode == 0, tx.stderr
    finish(recorder)
    finish(receiver)
    recorded = pa.ipc.open_stream(rec).read_all()
    assert recorded.equals(source)
    assert pa.ipc.open_stream(other).read_all().equals(source)
    # One receive time per batch, first at 0, non-decreasing.
    times = [int(l) for l in (tmp_path / "rec.arrows.times").read_text().splitlines() if not l.startswith("#")]
    assert len(times) == len(sent) and times[0] == 0 and times == sorted(times)

    # Replay the recording into another ring at 20 batches/s: about 2 s
    # for 40 batches, the content unchanged; `alloy hz` on that ring sees
    # about 20 messages/s.
    b = rings()
    out = tmp_path / "replayed.arrows"
    receiver = start(ALLOY, "recv", "--ring", b, "--out", out)
    hz = start(ALLOY, "hz", b, "--window", "500ms", "--json")
    t0 = time.monotonic()
    tx = run(ALLOY, "replay", rec, "--ring", b, "--rate", "20/s")
    took = time.monotonic() - t0
    assert tx.returncode == 0, tx.stderr
    finish(receiver)
    lines = [json.loads(l) for l in finish(hz).splitlines()]
    assert pa.ipc.open_stream(out).read_all().equals(source)
    # Batch i goes out at i/20 s: the last at 39/20 s.
    assert 1.9 <= took < 4.0, took
    # Windows fully inside the replay (not the first or the last, shorter
    # one) see 20 ± 25% messages per second.
    full = [w for w in lines[1:-1] if w["seconds"] >= 0.45]
    assert full, lines
    for w in full:
        assert 15 <= w["messages_per_s"] <= 25, lines
    assert sum(w["messages"] for w in lines) == len(sent) + 1  # + the schema message
    assert all(w["bytes_per_s"] > 0 for w in full)

    # --pace keeps the recorded pacing: a recording of a slow stream takes
    # as long to replay.
    c = rings()
    slow = tmp_path / "slow.arrows"
    recorder = start(ALLOY, "record", "--ring", c, "--out", slow)
    sender = subprocess.Popen([str(ALLOY_GO), "send", "--ring", c, "-"], stdin=subprocess.PIPE)
    w = pa.ipc.new_stream(sender.stdin, sent[0].schema)
    for bt in sent[:5]:
        w.write_batch(bt)
        sender.stdin.flush()
        time.sleep(0.2)
    w.close()
    sender.stdin.close()
    assert sender.wait(timeout=20) == 0
    finish(recorder)
    times = [int(l) for l in (tmp_path / "slow.arrows.times").read_text().splitlines() if not l.startswith("#")]
    assert times[-1] >= 0.7e9, times
    d = rings()
    receiver = start(ALLOY, "recv", "--ring", d, "--out", tmp_path / "paced.arrows")
    t0 = time.monotonic()
    tx = run(ALLOY, "replay", slow, "--ring", d, "--pace")
    took = time.monotonic() - t0
    assert tx.returncode == 0, tx.stderr
    finish(receiver)
    assert took >= times[-1] / 1e9 * 0.95, (took, times)
    assert pa.ipc.open_stream(tmp_path / "paced.arrows").read_all().equals(pa.Table.from_batches(sent[:5]))


def test_hz_counts_a_known_rate(tmp_path: Path, rings):
    """`alloy hz --count` ends by itself; a stream of 25 batches/s from
    `alloy replay` reads as 25 msg/s."""
    src = tmp_path / "src.arrows"
    write_stream(src, batches(50, rows=100))
    r = rings()
    hz = start(ALLOY, "hz", "--ring", r, "--window", "1s", "--count", "1", "--json")
    tx = subprocess.Popen([str(ALLOY), "replay", str(src), "--ring", r, "--rate", "25"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    (w,) = [json.loads(l) for l in finish(hz).splitlines()]
    tx.communicate(timeout=30)
    assert tx.returncode == 0
    assert 0.95 <= w["seconds"] <= 1.2, w
    assert 20 <= w["messages_per_s"] <= 30, w


def test_replay_refuses_pace_without_times(tmp_path: Path, rings):
    src = tmp_path / "src.arrows"
    write_stream(src, batches(2))
    p = run(ALLOY, "replay", src, "--ring", rings(), "--pace")
    assert p.returncode != 0 and "src.arrows.times" in p.stderr, p.stderr
