//! The C stream functions of `crates/alloy-ffi/src/stream.rs`: called from Rust the way
//! a C engine would (arrow-rs plays the engine), and from a real C program
//! (`tests/c/stream.c`, built with gcc against `target/release/liballoy_ffi.a`).

mod common;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::ptr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use alloy_ffi::ffi::{ALLOY_ERR_NULL_POINTER, ALLOY_OK};
use alloy_ffi::stream::*;
use alloy_shm::arrow_array::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
use alloy_shm::arrow_array::{
    Array, ArrayRef, Int64Array, RecordBatch, RecordBatchIterator, StringArray,
};
use alloy_shm::arrow_schema::ArrowError;
use alloy_shm::ring::Ring;
use common::take_err;

fn unique(tag: &str) -> String {
    format!("alloy-ffi-stream-{tag}-{}", std::process::id())
}

/// Removes the named ring when dropped.
struct Named(String);
impl Drop for Named {
    fn drop(&mut self) {
        let _ = Ring::remove(&self.0);
    }
}

/// A new named ring of `slots` slots of 64 KiB, with its name and the
/// guard that removes it.
fn named_ring(tag: &str, slots: u32) -> (String, Named, Ring) {
    let name = unique(tag);
    let ring = Ring::builder(&name)
        .slot_count(slots)
        .slot_size(1 << 16)
        .create()
        .unwrap();
    (name.clone(), Named(name), ring)
}

/// Batch `b` of `rows` rows: x = b*rows + i, s = "v<x>" (what stream.c checks).
fn batch(b: i64, rows: i64) -> RecordBatch {
    let x: Vec<i64> = (0..rows).map(|i| b * rows + i).collect();
    let s: Vec<String> = x.iter().map(|v| format!("v{v}")).collect();
    RecordBatch::try_from_iter([
        ("x", Arc::new(Int64Array::from(x)) as ArrayRef),
        ("s", Arc::new(StringArray::from(s)) as ArrayRef),
    ])
    .unwrap()
}

/// The address ranges of the ring's mappings in this process.
fn ring_mappings(name: &str) -> Vec<(usize, usize)> {
    let suffix = format!("/{name}");
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.ends_with(&suffix))
        .map(|l| {
            let range = l.split(' ').next().unwrap();
            let (lo, hi) = range.split_once('-').unwrap();
            (
                usize::from_str_radix(lo, 16).unwrap(),
                usize::from_str_radix(hi, 16).unwrap(),
            )
        })
        .collect()
}

fn in_mappings(maps: &[(usize, usize)], b: &RecordBatch) -> bool {
    b.columns().iter().all(|c| {
        c.to_data().buffers().iter().all(|buf| {
            let p = buf.as_ptr() as usize;
            maps.iter().any(|&(lo, hi)| p >= lo && p + buf.len() <= hi)
        })
    })
}

/// Writes `n` batches into `ring` once a subscriber has joined, then ends
/// the stream; blocks (up to 20 s) on a full ring.
fn produce_after_join(ring: Ring, n: i64, rows: i64) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let start = Instant::now();
        while ring.stat().consumers.is_empty() {
            assert!(start.elapsed() < Duration::from_secs(20), "nobody joined");
            thread::sleep(Duration::from_millis(5));
        }
        let mut w = ring
            .producer_builder()
            .backpressure(alloy_shm::ring::Backpressure::Block {
                timeout: Some(Duration::from_secs(20)),
            })
            .ipc_writer(batch(0, rows).schema())
            .unwrap();
        for b in 0..n {
            w.write(&batch(b, rows)).unwrap();
        }
        w.close().unwrap();
    })
}

fn open(
    name: &str,
    options: Option<&AlloyStreamOptions>,
) -> (i64, FFI_ArrowArrayStream, Option<String>) {
    let name = CString::new(name).unwrap();
    let mut out = FFI_ArrowArrayStream::empty();
    let mut err = ptr::null_mut();
    let opts = options.map_or(ptr::null(), |o| o as *const _);
    // SAFETY: every pointer is valid or NULL as the contract allows.
    let code = unsafe { alloy_ring_open_stream(name.as_ptr(), opts, &mut out, &mut err) };
    // SAFETY: `err` is NULL or the library's unfreed error string.
    (code, out, unsafe { take_err(err) })
}

fn options(timeout_ms: i64) -> AlloyStreamOptions {
    let mut o = AlloyStreamOptions {
        queue_group: 9,
        history: 9,
        timeout_ms: 0,
        held_lease_timeout_ms: 0,
        copy: true,
    };
    // SAFETY: `o` is valid for writes.
    assert_eq!(unsafe { alloy_stream_options_init(&mut o) }, ALLOY_OK);
    assert_eq!(o, AlloyStreamOptions::default());
    o.timeout_ms = timeout_ms;
    o
}

#[test]
fn open_stream_reads_in_place_and_release_frees_slots() {
    let (name, _g, ring) = named_ring("read", 4);
    // 12 batches through 4 slots: the producer finishes only because
    // releasing the arrays gives the slots back.
    let producer = produce_after_join(ring.clone(), 12, 100);
    let (code, ffi, err) = open(&name, Some(&options(20_000)));
    assert_eq!(code, ALLOY_OK, "{err:?}");
    let maps = ring_mappings(&name);
    assert!(!maps.is_empty());
    let reader = RecordBatchStreamReader::try_new(ffi).unwrap();
    let mut held: Option<RecordBatch> = None;
    let mut n = 0;
    for got in reader {
        let got = got.unwrap();
        assert_eq!(got, batch(n, 100));
        assert!(in_mappings(&maps, &got), "batch {n} is not in place");
        if n == 0 {
            // While the first batch is held, the subscriber's release
            // cursor cannot pass it.
            held = Some(got);
        } else if n == 2 {
            let s = &ring.stat().consumers[0];
            assert!(
                s.leases_held >= 1 && s.released < s.cursor,
                "held batch released early: {s:?}"
            );
            drop(held.take());
        }
        n += 1;
    }
    assert_eq!(n, 12);
    producer.join().unwrap();
    // The stream's release (the reader's drop) leaves the ring.
    assert!(ring.stat().consumers.is_empty());
}

#[test]
fn open_stream_copy_and_queue_group() {
    let (name, _g, ring) = named_ring("copy", 4);
    let producer = produce_after_join(ring.clone(), 6, 10);
    let mut o = options(20_000);
    o.copy = true;
    o.queue_group = 3;
    let (code, ffi, err) = open(&name, Some(&o));
    assert_eq!(code, ALLOY_OK, "{err:?}");
    assert_eq!(ring.stat().consumers[0].group, 3);
    let maps = ring_mappings(&name);
    // Copies: every batch kept, none in the mapping, and the producer
    // never waits on them.
    let got: Vec<RecordBatch> = RecordBatchStreamReader::try_new(ffi)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, (0..6).map(|b| batch(b, 10)).collect::<Vec<_>>());
    assert!(got.iter().all(|b| !in_mappings(&maps, b)));
    producer.join().unwrap();
}

#[test]
fn open_stream_errors() {
    // No such ring.
    let (code, out, err) = open(&unique("missing"), None);
    assert_eq!(code, ALLOY_ERR_RING);
    assert!(out.release().is_none());
    assert!(err.unwrap().contains("missing"));
    // A ring with no producer: the schema wait times out.
    let (name, _g, ring) = named_ring("timeout", 4);
    let (code, out, err) = open(&name, Some(&options(100)));
    assert_eq!(code, ALLOY_ERR_TIMEOUT, "{err:?}");
    assert!(out.release().is_none());
    assert!(err.is_some());
    assert!(
        ring.stat().consumers.is_empty(),
        "a failed open left a subscriber"
    );
    // NULL arguments.
    let mut err = ptr::null_mut();
    // SAFETY: NULL `out` is what is tested; `err` is valid.
    let code =
        unsafe { alloy_ring_open_stream(c"x".as_ptr(), ptr::null(), ptr::null_mut(), &mut err) };
    assert_eq!(code, ALLOY_ERR_NULL_POINTER);
    // SAFETY: `err` is NULL or the library's unfreed error string.
    assert!(unsafe { take_err(err) }.unwrap().contains("out"));
    let mut out = FFI_ArrowArrayStream::empty();
    // SAFETY: NULL ring name is what is tested; `out` is valid.
    let code =
        unsafe { alloy_ring_open_stream(ptr::null(), ptr::null(), &mut out, ptr::null_mut()) };
    assert_eq!(code, ALLOY_ERR_NULL_POINTER);
}

fn publish(
    name: &str,
    batches: Vec<Result<RecordBatch, ArrowError>>,
    schema: alloy_shm::arrow_schema::SchemaRef,
    options: &AlloyPublishOptions,
) -> (i64, AlloyPublishCounts, Option<String>, bool) {
    let mut input = FFI_ArrowArrayStream::new(Box::new(RecordBatchIterator::new(batches, schema)));
    let name = CString::new(name).unwrap();
    let mut counts = AlloyPublishCounts::default();
    let mut err = ptr::null_mut();
    // SAFETY: every pointer is valid; `input` is an initialized stream.
    let code = unsafe {
        alloy_ring_publish_stream(name.as_ptr(), &mut input, options, &mut counts, &mut err)
    };
    // SAFETY: `err` is NULL or the library's unfreed error string.
    let err = unsafe { take_err(err) };
    (code, counts, err, input.release().is_none())
}

fn publish_options(mode: u32) -> AlloyPublishOptions {
    let mut o = AlloyPublishOptions {
        mode: 7,
        slot_count: 7,
        slot_size: 7,
        timeout_ms: 7,
        new_stream: true,
    };
    // SAFETY: `o` is valid for writes.
    assert_eq!(unsafe { alloy_publish_options_init(&mut o) }, ALLOY_OK);
    assert_eq!(o, AlloyPublishOptions::default());
    o.mode = mode;
    o.timeout_ms = 20_000;
    o
}

/// Reads the ring with the library until the end of its stream (copies:
/// the batches are kept).
fn read_back(ring: &Ring) -> thread::JoinHandle<Vec<RecordBatch>> {
    let reader = ring
        .consumer_builder()
        .ipc_reader()
        .unwrap()
        .with_copy(true);
    let reader = alloy_shm::arrow::RingStream::new(reader);
    thread::spawn(move || reader.map(|b| b.unwrap()).collect())
}

#[test]
fn publish_stream_into_an_existing_ring_both_modes() {
    for (mode, tag) in [(ALLOY_MODE_IPC, "ipc"), (ALLOY_MODE_CDATA, "cdata")] {
        let (name, _g, ring) = named_ring(&format!("pub-{tag}"), 4);
        let reader = read_back(&ring);
        let sent: Vec<RecordBatch> = (0..10).map(|b| batch(b, 50)).collect();
        let (code, counts, err, released) = publish(
            &name,
            sent.iter().cloned().map(Ok).collect(),
            sent[0].schema(),
            &publish_options(mode),
        );
        assert_eq!(code, ALLOY_OK, "{tag}: {err:?}");
        assert!(released, "{tag}: the input stream was not taken over");
        assert_eq!((counts.batches, counts.rows), (10, 500), "{tag}");
        assert!(
            counts.messages >= 10 && counts.bytes > 10 * 50 * 8,
            "{tag}: {counts:?}"
        );
        assert_eq!(reader.join().unwrap(), sent, "{tag}");
        assert!(ring.is_closed());
    }
}

#[test]
fn publish_stream_creates_the_ring() {
    let name = unique("pub-create");
    let _g = Named(name.clone());
    let mut o = publish_options(ALLOY_MODE_IPC);
    o.slot_count = 8;
    o.slot_size = 1 << 16;
    let sent = [batch(0, 5)];
    let (code, counts, err, released) = publish(
        &name,
        sent.iter().cloned().map(Ok).collect(),
        sent[0].schema(),
        &o,
    );
    assert_eq!(code, ALLOY_OK, "{err:?}");
    assert!(released);
    assert_eq!(counts.batches, 1);
    let ring = Ring::open(&name).unwrap();
    assert_eq!(
        (ring.config().slot_count, ring.config().slot_size),
        (8, 1 << 16)
    );
    assert!(ring.is_closed());
    // The ring exists now: other geometry is refused, the ended stream
    // needs new_stream.
    o.slot_count = 16;
    let (code, _, err, released) = publish(
        &name,
        sent.iter().cloned().map(Ok).collect(),
        sent[0].schema(),
        &o,
    );
    assert_eq!(code, ALLOY_ERR_RING, "{err:?}");
    assert!(released, "the input is consumed on failure too");
    o.slot_count = 0;
    o.new_stream = true;
    let (code, counts, err, _) = publish(
        &name,
        sent.iter().cloned().map(Ok).collect(),
        sent[0].schema(),
        &o,
    );
    assert_eq!((code, counts.batches), (ALLOY_OK, 1), "{err:?}");
}

#[test]
fn publish_stream_input_failure_ends_the_ring_stream() {
    let (name, _g, ring) = named_ring("pub-fail", 4);
    let reader = read_back(&ring);
    let input = vec![
        Ok(batch(0, 5)),
        Ok(batch(1, 5)),
        Err(ArrowError::ComputeError("engine broke".into())),
        Ok(batch(3, 5)),
    ];
    let (code, counts, err, released) = publish(
        &name,
        input,
        batch(0, 5).schema(),
        &publish_options(ALLOY_MODE_IPC),
    );
    assert_eq!(code, ALLOY_ERR_STREAM);
    assert!(err.unwrap().contains("engine broke"));
    assert!(released);
    assert_eq!(counts.batches, 2);
    // Consumers get what came before the failure, then the end.
    assert_eq!(reader.join().unwrap(), vec![batch(0, 5), batch(1, 5)]);
    // An unknown mode is refused.
    let (code, _, err, released) = publish(
        &name,
        vec![],
        batch(0, 5).schema(),
        &publish_options(ALLOY_MODE_CDATA + 1),
    );
    assert_eq!(code, alloy_ffi::ffi::ALLOY_ERR_INVALID_INPUT, "{err:?}");
    assert!(released);
}

// ---- the C program ----

/// target/release (or debug): two levels above this test binary.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// Compiles tests/c/stream.c against liballoy_ffi.a and cshim/alloy.h.
fn build_c_program() -> PathBuf {
    let krate = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = target_dir().join("liballoy_ffi.a");
    assert!(
        lib.exists(),
        "{} is missing: cargo test builds it with the crate (staticlib)",
        lib.display()
    );
    let out = std::env::temp_dir().join(format!("alloy-ffi-stream-c-{}", std::process::id()));
    let status = Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-o"])
        .arg(&out)
        .arg(krate.join("tests/c/stream.c"))
        .arg("-I")
        .arg(krate.join("../../cshim"))
        .arg(&lib)
        // What a Rust staticlib needs from the system on Linux
        // (`cargo rustc -- --print native-static-libs`).
        .args([
            "-lgcc_s",
            "-lutil",
            "-lrt",
            "-lpthread",
            "-lm",
            "-ldl",
            "-lc",
        ])
        .status()
        .expect("gcc runs");
    assert!(status.success(), "gcc failed to build tests/c/stream.c");
    out
}

fn run_c(prog: &Path, args: &[&str]) -> String {
    let out = Command::new(prog).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stream.c {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn c_program_reads_and_publishes() {
    let prog = build_c_program();
    // Read: the library writes 16 batches through 8 slots while the C
    // program holds two at a time, checks values and that they lie in its
    // mapping of the ring.
    let (name, _g, ring) = named_ring("c-read", 8);
    let producer = produce_after_join(ring.clone(), 16, 64);
    let out = run_c(&prog, &["read", &name, "16", "64"]);
    producer.join().unwrap();
    let rows = 16 * 64;
    assert_eq!(
        out.trim(),
        format!(
            "ok read batches=16 rows={rows} sum={}",
            rows * (rows - 1) / 2
        )
    );
    // Publish: the C program's own stream, read back with the library.
    let (name, _g2, ring) = named_ring("c-pub", 4);
    let reader = read_back(&ring);
    let out = run_c(&prog, &["publish", &name, "10", "100"]);
    assert!(out.starts_with("ok publish batches=10 rows=1000"), "{out}");
    let got = reader.join().unwrap();
    assert_eq!(got.len(), 10);
    for (b, got) in got.iter().enumerate() {
        let x = got.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let want: Vec<i64> = (0..100).map(|i| b as i64 * 100 + i).collect();
        assert_eq!(x.values().as_ref(), want.as_slice());
    }
    let _ = std::fs::remove_file(prog);
}
