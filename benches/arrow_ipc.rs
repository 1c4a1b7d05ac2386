//! Go → Rust throughput of Arrow IPC mode and C-Data-offsets mode, against
//! memcpy measured in the same run.
//!
//! `bin/alloy-go arrow-gen` (Go) writes one record batch (an int64 column
//! and a utf8 column, every 10th string null) of about 1 MiB or 16 MiB many
//! times through `arrowshm.Writer`; this process decodes each message with
//! [`IpcReader`] (zero-copy, validation on) and, for every batch, sums the
//! int64 column and counts the nulls of the string column. Throughput is
//! IPC payload bytes (and rows) over the consumer's wall time from the first
//! batch to end of stream.
//!
//! Each size runs with validation on (the default) and skipped (the unsafe
//! opt-in for trusted peers), in three producer modes: `ipc`
//! (`arrowshm.Writer`, one copy of the built record into the slot),
//! `cdata` (`CDataWriter.Build`: the builders write the batch into the slot,
//! values appended from the source record's columns, no copy after
//! building) and `cdata-write` (`CDataWriter.Write`: one copy of the built
//! record into the slot, the cdata analogue of `ipc`). `ipc-build` builds
//! each batch on the Go heap with the same builder code as `cdata`, then
//! sends it as `ipc` does: the fair comparison for `cdata`. The consumer side is
//! the same `IpcReader` loop for all three. Run with `cargo bench --bench arrow_ipc`
//! after `make build` (it needs
//! `bin/alloy-go`; it skips without it). Under `cargo test` it runs one
//! short transfer as a smoke test.
//!
//! The reverse direction, Rust → Go, sends the same batch shape built in
//! Rust with `IpcWriter` or `CDataWriter` (one copy into the slot each; the
//! IPC writer encodes first) to `bin/alloy-go arrow-sink`, which reads it
//! with `arrowshm.Reader` (copied, or in place with `--zero-copy`) and does
//! the same sums; throughput is taken over the Go consumer's wall time.
//!
//! `-- codec` (or a narrower filter such as `codec/decode`) runs only the
//! in-process criterion cases of `arrow_ipc/codec.rs` instead: the
//! per-batch encode and decode cost, no Go peer needed. Without a filter
//! `--bench` runs them first, then the Go transfers.

#[path = "arrow_ipc/codec.rs"]
mod codec;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use std::sync::Arc;

use alloy_shm::arrow::{in_mapping, in_mapping_all, CDataWriter, IpcReader, IpcWriter};
use alloy_shm::ring::{Ring, RingConfig};
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, Int64Array, RecordBatch, StringArray};

struct Run {
    gbps: f64,
    rows_per_s: f64,
    batches: u64,
    /// The producer's own rate (payload bytes over its sending time).
    producer_gbps: f64,
}

/// A named ring of 8 slots with room for a batch of about `size` bytes and
/// its IPC metadata (a leftover of that name is removed first).
fn bench_ring(name: &str, size: usize) -> Ring {
    let _ = Ring::remove(name);
    let cfg = RingConfig {
        slot_count: 8,
        slot_size: (size + size / 8 + (64 << 10)).next_multiple_of(64) as u32,
        ..Default::default()
    };
    Ring::builder(name)
        .config(cfg)
        .create()
        .expect("create ring")
}

/// One Go → Rust transfer of `count` batches of about `size` bytes.
fn go_to_rust(go: &str, size: usize, count: usize, validate: bool, mode: &str) -> Run {
    let name = format!("alloy-bench-arrow-{}-{size}-{mode}", std::process::id());
    let ring = bench_ring(&name, size);
    let mut reader = IpcReader::new(ring.subscribe().expect("subscribe"));
    if !validate {
        // SAFETY: the producer is our own arrow-go writer (trusted), and the
        // sums below only read values and null bitmaps.
        reader = unsafe { reader.with_skip_validation(true) };
    }
    let mut child = Command::new(go)
        .args(["arrow-gen", "--ring", &name, "--bytes", &size.to_string()])
        .args(["--count", &count.to_string(), "--mode", mode])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn alloy-go");
    let (mut sum, mut nulls, mut rows, mut batches) = (0i64, 0usize, 0u64, 0u64);
    let mut start = None;
    while let Some(batch) = reader.next_batch().expect("decode") {
        start.get_or_insert_with(Instant::now);
        if batches == 0 {
            assert!(in_mapping(&ring, &batch), "the batch was copied");
            assert!(in_mapping_all(&ring, &batch), "the batch was copied");
        }
        let ids = batch.column(0).as_primitive::<Int64Type>();
        sum = sum.wrapping_add(ids.values().iter().fold(0i64, |a, &v| a.wrapping_add(v)));
        nulls += batch.column(1).null_count();
        rows += batch.num_rows() as u64;
        batches += 1;
    }
    let secs = start.expect("no batch received").elapsed().as_secs_f64();
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read summary");
    assert!(
        child.wait().expect("wait").success(),
        "alloy-go arrow-gen failed"
    );
    drop(reader);
    let _ = Ring::remove(&name);
    // Check the consumer really read the data: ids are 0..rows per batch.
    let per = rows / batches;
    assert_eq!(sum, (per * (per - 1) / 2) as i64 * batches as i64);
    assert_eq!(nulls as u64, per.div_ceil(10) * batches);
    let go_secs: f64 = field(&line, "seconds");
    let bytes = ring_bytes(&line);
    Run {
        gbps: bytes / secs / 1e9,
        rows_per_s: rows as f64 / secs,
        batches,
        producer_gbps: bytes / go_secs / 1e9,
    }
}

/// The batch arrow-gen sends, built in Rust: about `size` bytes, ids
/// 0..rows and names with every 10th null.
fn gen_batch(size: usize) -> RecordBatch {
    let rows = (size / 24).max(1) as i64;
    let ids = Int64Array::from_iter_values(0..rows);
    let names = StringArray::from_iter(
        (0..rows).map(|i| (i % 10 != 0).then(|| format!("name-{:07}", i % 10_000_000))),
    );
    RecordBatch::try_from_iter([("id", Arc::new(ids) as _), ("name", Arc::new(names) as _)])
        .expect("batch")
}

/// How `alloy-go arrow-sink` reads: one copy per message, in place, or in
/// place with cdata validation skipped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum GoReader {
    Copy,
    InPlace,
    Trusted,
}

/// One Rust → Go transfer: `count` copies of [`gen_batch`] through the
/// writer of `mode` (`ipc` or `cdata`) to `alloy-go arrow-sink`.
fn rust_to_go(go: &str, size: usize, count: usize, mode: &str, reader: GoReader) -> Run {
    let name = format!("alloy-bench-arrow-r2g-{}-{size}-{mode}", std::process::id());
    let ring = bench_ring(&name, size);
    let mut sink = Command::new(go)
        .args(["arrow-sink", "--ring", &name])
        .args((reader != GoReader::Copy).then_some("--zero-copy"))
        .args((reader == GoReader::Trusted).then_some("--trusted"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn alloy-go");
    let mut out = BufReader::new(sink.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read ready");
    assert_eq!(line.trim(), "ready", "alloy-go arrow-sink did not start");
    let batch = gen_batch(size);
    let producer = ring.producer().expect("producer");
    let start = Instant::now();
    let sent = match mode {
        "ipc" => {
            let mut w = IpcWriter::new(producer, batch.schema()).expect("writer");
            (0..count).for_each(|_| w.write(&batch).expect("write"));
            let n = w.bytes_sent();
            w.close().expect("close");
            n
        }
        "cdata" => {
            let mut w = CDataWriter::new(producer, batch.schema()).expect("writer");
            (0..count).for_each(|_| w.write(&batch).expect("write"));
            let n = w.bytes_sent();
            w.close().expect("close");
            n
        }
        _ => panic!("unknown mode {mode}"),
    };
    let producer_secs = start.elapsed().as_secs_f64();
    line.clear();
    out.read_line(&mut line).expect("read summary");
    assert!(
        sink.wait().expect("wait").success(),
        "alloy-go arrow-sink failed"
    );
    let _ = Ring::remove(&name);
    let per = batch.num_rows() as u64;
    let batches = field(&line, "batches") as u64;
    assert_eq!(batches, count as u64);
    assert_eq!(
        field(&line, "sum") as i64,
        (per * (per - 1) / 2) as i64 * count as i64
    );
    assert_eq!(
        field(&line, "nulls") as u64,
        per.div_ceil(10) * count as u64
    );
    let secs = field(&line, "seconds");
    let bytes = ring_bytes(&line);
    assert_eq!(bytes as u64, sent, "bytes received differ from bytes sent");
    Run {
        gbps: bytes / secs / 1e9,
        rows_per_s: (per * batches) as f64 / secs,
        batches,
        producer_gbps: bytes / producer_secs / 1e9,
    }
}

fn field(json: &str, key: &str) -> f64 {
    let at = json.find(&format!("\"{key}\":")).expect(key) + key.len() + 3;
    let end = json[at..].find([',', '}']).expect("end") + at;
    json[at..end].trim().parse().expect("number")
}

fn ring_bytes(json: &str) -> f64 {
    field(json, "bytes")
}

/// Single-threaded memcpy of `size`-byte blocks (best of 5 passes).
fn memcpy_gbps(size: usize, total: usize) -> f64 {
    let src = vec![7u8; size];
    let mut dst = vec![0u8; size];
    let n = (total / size).max(1);
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                dst.copy_from_slice(std::hint::black_box(&src));
                std::hint::black_box(&mut dst);
            }
            (n * size) as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let codec_only = std::env::args().skip(1).any(|a| a.starts_with("codec"));
    if bench {
        let mut c = codec::criterion();
        codec::cases(&mut c);
        c.final_summary();
        if codec_only {
            return;
        }
    } else {
        codec::smoke();
        println!("arrow_ipc smoke test: every codec case ran once");
    }
    let go = concat!(env!("CARGO_MANIFEST_DIR"), "/bin/alloy-go");
    if !std::path::Path::new(go).exists() {
        eprintln!("arrow_ipc: {go} missing (run make build); skipped");
        return;
    }
    if !bench {
        for mode in ["ipc", "cdata", "cdata-write"] {
            let r = go_to_rust(go, 64 << 10, 20, true, mode);
            assert_eq!(r.batches, 20);
            println!("arrow_ipc smoke test ({mode}): 20 batches of 64 KiB Go -> Rust ok");
        }
        for (mode, reader) in [("ipc", GoReader::Copy), ("cdata", GoReader::InPlace)] {
            let r = rust_to_go(go, 64 << 10, 20, mode, reader);
            assert_eq!(r.batches, 20);
            println!("arrow_ipc smoke test ({mode}): 20 batches of 64 KiB Rust -> Go ok");
        }
        return;
    }
    let total: usize = 4 << 30;
    println!(
        "\n## Arrow over the ring, Go → Rust (two processes, {} cores)\n",
        cores()
    );
    println!("| batch | mode | validation | batches | GB/s (consumer) | Mrows/s | GB/s (Go producer) | / memcpy |");
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    for (label, size) in [("1 MiB", 1usize << 20), ("16 MiB", 16 << 20)] {
        let mc = memcpy_gbps(size, total / 4);
        for (mode, validate) in [
            ("ipc", true),
            ("ipc", false),
            ("ipc-build", true),
            ("cdata", true),
            ("cdata", false),
            ("cdata-write", true),
        ] {
            let r = go_to_rust(go, size, total / size, validate, mode);
            println!(
                "| {label} int64 + utf8 | {mode} | {} | {} | {:.2} | {:.1} | {:.2} | {:.2} |",
                if validate { "on" } else { "skipped" },
                r.batches,
                r.gbps,
                r.rows_per_s / 1e6,
                r.producer_gbps,
                r.gbps / mc
            );
        }
        println!("| memcpy {label} blocks (floor) | | | | {mc:.2} | | | 1.00 |");
    }
    println!(
        "\n## Arrow over the ring, Rust → Go (two processes, {} cores)\n",
        cores()
    );
    println!("| batch | mode | Go reader | batches | GB/s (Go consumer) | Mrows/s | GB/s (Rust producer) | / memcpy |");
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    for (label, size) in [("1 MiB", 1usize << 20), ("16 MiB", 16 << 20)] {
        let mc = memcpy_gbps(size, total / 4);
        for (mode, reader) in [
            ("ipc", GoReader::Copy),
            ("ipc", GoReader::InPlace),
            ("cdata", GoReader::Copy),
            ("cdata", GoReader::InPlace),
            ("cdata", GoReader::Trusted),
        ] {
            let r = rust_to_go(go, size, total / size / 4, mode, reader);
            println!(
                "| {label} int64 + utf8 | {mode} | {} | {} | {:.2} | {:.1} | {:.2} | {:.2} |",
                match reader {
                    GoReader::Copy => "copy",
                    GoReader::InPlace => "in place",
                    GoReader::Trusted => "in place, trusted",
                },
                r.batches,
                r.gbps,
                r.rows_per_s / 1e6,
                r.producer_gbps,
                r.gbps / mc
            );
        }
        println!("| memcpy {label} blocks (floor) | | | | {mc:.2} | | | 1.00 |");
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
