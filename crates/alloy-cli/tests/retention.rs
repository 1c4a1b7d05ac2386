//! The retention rule (doc/README.md "Holding batches", issue #12 part 1):
//! the library keeps no slot beyond the batches the user holds, and a user
//! who holds too many gets `RingError::RetentionStall`, never a silent hang.
//!
//! Dictionary streams (none, the same dictionary every batch, replaced
//! dictionaries, deltas) of up to 10× the ring's slot count go through rings
//! of 2–16 slots, Rust → Rust and Go → Rust, in IPC and C-Data-offsets
//! mode, read in place (a window of batches kept) or copied (every batch
//! kept); every run must finish within a bound and give back what was sent.
//! The CLI reproduction of the issue (`alloy-go send` → `alloy recv`, both
//! modes) runs the real binaries (`make build`).

// The root package's test helpers: one copy for both test suites.
#[path = "../../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use alloy_shm::arrow::{in_mapping, ArrowShmError, CDataWriter, IpcReader, IpcWriter};
use alloy_shm::ring::{RecvError, Ring, RingConfig, RingError};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, DictionaryArray, Int64Array, RecordBatch, StringArray};
use proptest::prelude::*;

/// How dictionaries change from batch to batch.
#[derive(Debug, Clone, Copy)]
enum Dict {
    /// A plain string column, no dictionary.
    None,
    /// The same dictionary (one values array) in every batch.
    Same,
    /// A different dictionary in every batch.
    Replace,
    /// A dictionary that only grows: the old values are a prefix.
    Delta,
}

fn dict_strategy() -> impl Strategy<Value = Dict> {
    prop_oneof![
        Just(Dict::None),
        Just(Dict::Same),
        Just(Dict::Replace),
        Just(Dict::Delta)
    ]
}

/// `n` batches of `rows` rows: an int64 column and a string column of the
/// kind `dict` says, with nulls when asked.
fn batches(dict: Dict, n: usize, rows: usize, nulls: bool, seed: u64) -> Vec<RecordBatch> {
    let same: ArrayRef = Arc::new(StringArray::from(vec!["apac", "eu", "us", "latam"]));
    (0..n)
        .map(|b| {
            let x = Int64Array::from_iter((0..rows).map(|i| {
                let v = (seed as i64).wrapping_add((b * rows + i) as i64);
                (!nulls || i % 7 != 3).then_some(v)
            }));
            let key = |i: usize, m: usize| {
                (!nulls || i % 5 != 1).then_some(((seed as usize + b + i) % m) as i32)
            };
            let s: ArrayRef = match dict {
                Dict::None => Arc::new(StringArray::from_iter(
                    (0..rows).map(|i| key(i, 9).map(|k| format!("v{k}-{b}"))),
                )),
                Dict::Same => {
                    let keys = (0..rows).map(|i| key(i, 4)).collect();
                    Arc::new(DictionaryArray::<Int32Type>::try_new(keys, same.clone()).unwrap())
                }
                Dict::Replace => {
                    let values: ArrayRef = Arc::new(StringArray::from_iter_values(
                        (0..5).map(|v| format!("b{b}-{v}")),
                    ));
                    let keys = (0..rows).map(|i| key(i, 5)).collect();
                    Arc::new(DictionaryArray::<Int32Type>::try_new(keys, values).unwrap())
                }
                Dict::Delta => {
                    let m = 2 + b;
                    let values: ArrayRef = Arc::new(StringArray::from_iter_values(
                        (0..m).map(|v| format!("d{v}")),
                    ));
                    let keys = (0..rows).map(|i| key(i, m)).collect();
                    Arc::new(DictionaryArray::<Int32Type>::try_new(keys, values).unwrap())
                }
            };
            RecordBatch::try_from_iter([("x", Arc::new(x) as ArrayRef), ("s", s)]).unwrap()
        })
        .collect()
}

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "alloy-ret-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `f` on a thread and fails if it has not finished after `limit`: a
/// hang is a test failure, not a stuck test run.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("did not finish within {limit:?}: the ring hung")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the test thread failed (above)"),
    }
}

/// How a consumer keeps what it reads.
#[derive(Debug, Clone, Copy)]
enum Keep {
    /// In place, the last `k` batches kept (`k < slot_count`).
    Window(usize),
    /// Copied out (`IpcReader::with_copy`), every batch kept.
    CopyAll,
}

/// Reads everything from `reader`, keeping batches as `keep` says, and
/// returns them all (copies of the in-place ones that were let go).
fn drain(ring: &Ring, mut reader: IpcReader, keep: Keep) -> Result<Vec<RecordBatch>, String> {
    let mut kept = std::collections::VecDeque::new();
    let mut all = Vec::new();
    while let Some(b) = reader.next_batch().map_err(|e| e.to_string())? {
        match keep {
            Keep::CopyAll => {
                if in_mapping(ring, &b) && b.num_rows() > 0 {
                    return Err("with_copy returned a batch in the mapping".into());
                }
                all.push(b);
            }
            Keep::Window(k) => {
                all.push(alloy_shm::arrow::copy_batch(&b));
                kept.push_back(b);
                while kept.len() > k {
                    kept.pop_front();
                }
            }
        }
    }
    Ok(all)
}

/// Rust → Rust: a producer thread writes `sent`, this side reads.
fn rust_to_rust(slots: u32, cdata: bool, deltas: bool, keep: Keep, sent: Vec<RecordBatch>) {
    let ring = Ring::anonymous_builder()
        .config(RingConfig {
            slot_count: slots,
            slot_size: 1 << 16,
            ..Default::default()
        })
        .create()
        .unwrap();
    let mut reader = IpcReader::new(ring.subscribe().unwrap());
    if matches!(keep, Keep::CopyAll) {
        reader = reader.with_copy(true);
    }
    let schema = sent[0].schema();
    let producer = ring.producer().unwrap();
    let to_send = sent.clone();
    let writer = std::thread::spawn(move || -> Result<(), ArrowShmError> {
        if cdata {
            let mut w = CDataWriter::new(producer, schema)?;
            for b in &to_send {
                w.write(b)?;
            }
            w.close()
        } else {
            let mut w = IpcWriter::new(producer, schema)?.with_dictionary_deltas(deltas);
            for b in &to_send {
                w.write(b)?;
            }
            w.close()
        }
    });
    let got = drain(&ring, reader, keep).unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(got.len(), sent.len());
    for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(g, s, "batch {i}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Rust → Rust, both modes, every dictionary pattern, streams up to 10×
    /// the ring, in place with a kept window or copied with everything kept.
    #[test]
    fn dictionary_streams_longer_than_the_ring_finish(
        slots_log in 1u32..5,
        times in 1usize..=10,
        dict in dict_strategy(),
        nulls in any::<bool>(),
        cdata in any::<bool>(),
        copy in any::<bool>(),
        window in 0usize..16,
        rows in 0usize..200,
        seed in any::<u64>(),
    ) {
        let slots = 1u32 << slots_log;
        let n = times * slots as usize;
        // In IPC mode a batch may follow a dictionary message: `k` batches
        // kept span up to `2k` messages, which must stay below the ring.
        let keep = if copy { Keep::CopyAll } else { Keep::Window(window % (slots as usize / 2)) };
        let sent = batches(dict, n, rows, nulls, seed);
        within(Duration::from_secs(30), move || {
            rust_to_rust(slots, cdata, matches!(dict, Dict::Delta), keep, sent)
        });
    }
}

/// Writes `batches` as an Arrow IPC stream file.
fn write_stream(path: &Path, batches: &[RecordBatch]) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(file, &batches[0].schema()).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
}

fn read_stream(path: &Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(path).unwrap();
    arrow_ipc::reader::StreamReader::try_new(f, None)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(unique(tag));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Go → Rust: `alloy-go send` (IPC or cdata) into a ring of `slots`, read
/// here as `keep` says.
fn go_to_rust(go: &Path, slots: u32, cdata: bool, keep: Keep, sent: &[RecordBatch]) {
    let dir = tmpdir("g2r");
    let input = dir.join("in.arrows");
    write_stream(&input, sent);
    let name = unique("g2r");
    let ring = Ring::builder(&name)
        .config(RingConfig {
            slot_count: slots,
            slot_size: 1 << 16,
            ..Default::default()
        })
        .create()
        .unwrap();
    let mut reader = IpcReader::new(ring.subscribe().unwrap());
    if matches!(keep, Keep::CopyAll) {
        reader = reader.with_copy(true);
    }
    let mut child = Command::new(go)
        .args([
            "send",
            "--mode",
            if cdata { "cdata" } else { "ipc" },
            "--ring",
            &name,
        ])
        .arg(&input)
        .spawn()
        .unwrap();
    let got = drain(&ring, reader, keep);
    let status = child.wait().unwrap();
    let _ = Ring::remove(&name);
    let _ = std::fs::remove_dir_all(&dir);
    let got = got.unwrap();
    assert!(status.success(), "alloy-go send failed");
    assert_eq!(got.len(), sent.len());
    for (i, (g, s)) in got.iter().zip(sent).enumerate() {
        assert_eq!(g, s, "batch {i}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Go → Rust, both modes: the same patterns through `alloy-go send`.
    #[test]
    fn go_dictionary_streams_longer_than_the_ring_finish(
        slots_log in 1u32..5,
        times in 1usize..=10,
        dict in prop_oneof![Just(Dict::None), Just(Dict::Same), Just(Dict::Replace)],
        nulls in any::<bool>(),
        cdata in any::<bool>(),
        copy in any::<bool>(),
        window in 0usize..16,
        seed in any::<u64>(),
    ) {
        let Some(go) = support::go_cli("go_dictionary_streams_longer_than_the_ring_finish") else {
            return Ok(());
        };
        let slots = 1u32 << slots_log;
        // In IPC mode a batch may follow a dictionary message: `k` batches
        // kept span up to `2k` messages, which must stay below the ring.
        let keep = if copy { Keep::CopyAll } else { Keep::Window(window % (slots as usize / 2)) };
        let sent = batches(dict, times * slots as usize, 100, nulls, seed);
        within(Duration::from_secs(60), move || go_to_rust(&go, slots, cdata, keep, &sent));
    }
}

/// A reader that keeps every batch in place gets `RetentionStall` naming
/// the oldest held sequence once the ring has been full behind it for the
/// held-lease timeout; after dropping the batches it reads on to the end.
#[test]
fn keeping_every_batch_in_place_is_a_clear_error_not_a_hang() {
    for cdata in [false, true] {
        within(Duration::from_secs(30), move || {
            let slots = 4;
            let ring = Ring::anonymous_builder()
                .config(RingConfig {
                    slot_count: slots,
                    slot_size: 1 << 16,
                    ..Default::default()
                })
                .create()
                .unwrap();
            let consumer = ring
                .consumer_builder()
                .held_lease_timeout(Some(Duration::from_millis(200)))
                .create()
                .unwrap();
            let mut reader = IpcReader::new(consumer);
            let sent = batches(Dict::Same, 3 * slots as usize, 50, true, 7);
            let schema = sent[0].schema();
            let producer = ring.producer().unwrap();
            let to_send = sent.clone();
            let writer = std::thread::spawn(move || {
                if cdata {
                    let mut w = CDataWriter::new(producer, schema).unwrap();
                    to_send.iter().for_each(|b| w.write(b).unwrap());
                    w.close().unwrap();
                } else {
                    let mut w = IpcWriter::new(producer, schema).unwrap();
                    to_send.iter().for_each(|b| w.write(b).unwrap());
                    w.close().unwrap();
                }
            });
            let mut held = Vec::new();
            let err = loop {
                match reader.next_batch() {
                    Ok(Some(b)) => held.push(b),
                    Ok(None) => panic!("the stream ended although every batch was held"),
                    Err(e) => break e,
                }
            };
            let ArrowShmError::Ring(RingError::RetentionStall { seq, held: n }) = &err else {
                panic!("expected RetentionStall, got {err}");
            };
            assert!(n >= &held.len(), "{n} leases for {} batches", held.len());
            assert!(
                err.to_string()
                    .contains("drop the batches you are done with"),
                "{err}"
            );
            // IPC: schema and dictionary messages precede the first batch
            // (released at once); cdata: the schema message only.
            assert!(
                *seq <= 2,
                "the oldest held message is the first batch, got {seq}"
            );
            // Copies kept, the in-place batches dropped: the ring moves on.
            let mut got: Vec<RecordBatch> = held.iter().map(alloy_shm::arrow::copy_batch).collect();
            drop(held);
            while let Some(b) = reader.next_batch().unwrap() {
                got.push(alloy_shm::arrow::copy_batch(&b));
            }
            writer.join().unwrap();
            assert_eq!(got, sent);
        });
    }
}

/// A queue member holding the oldest sequence gets the error; another
/// member's holding does not make this one fail.
#[test]
fn a_queue_member_holding_the_ring_is_told() {
    within(Duration::from_secs(30), || {
        let ring = Ring::anonymous_builder()
            .config(RingConfig {
                slot_count: 4,
                slot_size: 64,
                ..Default::default()
            })
            .create()
            .unwrap();
        let builder = || {
            ring.consumer_builder()
                .queue(1)
                .held_lease_timeout(Some(Duration::from_millis(150)))
                .create()
                .unwrap()
        };
        let mut a = builder();
        let mut b = builder();
        let mut p = ring.producer().unwrap();
        p.send(b"m0", 0).unwrap();
        let held = a.recv().unwrap().unwrap(); // `a` holds sequence 0
        for i in 1..4u8 {
            p.send(&[i], 0).unwrap();
            drop(b.recv().unwrap().unwrap());
        }
        // The ring is full behind sequence 0, held by `a`: `b` (holding
        // nothing) waits and times out, `a` is told.
        assert!(matches!(
            b.recv_timeout(Duration::from_millis(400)),
            Err(RecvError::Timeout(_))
        ));
        match a.recv() {
            Err(RecvError::RetentionStall { seq: 0, held: 1 }) => {}
            other => panic!("expected RetentionStall for sequence 0, got {other:?}"),
        }
        drop(held);
        p.send(b"m4", 0).unwrap();
        let next = a.recv().unwrap().unwrap();
        assert_eq!(&next[..], b"m4");
    });
}

/// The reproduction with the real CLIs: a dictionary stream 4× as
/// long as an 8-slot ring, `alloy-go send` → `alloy recv` in both modes and
/// `alloy send` → `alloy recv` in cdata mode, with the same dictionary in
/// every batch (the case that hung). The file written must equal the input.
#[test]
fn cli_recv_of_a_dictionary_stream_longer_than_the_ring() {
    let Some(go) = support::go_cli("cli_recv_of_a_dictionary_stream_longer_than_the_ring") else {
        return;
    };
    let alloy = PathBuf::from(env!("CARGO_BIN_EXE_alloy"));
    for (sender, mode) in [
        (&go, "ipc"),
        (&go, "cdata"),
        (&alloy, "cdata"),
        (&alloy, "ipc"),
    ] {
        let sender = sender.clone();
        let alloy = alloy.clone();
        within(Duration::from_secs(60), move || {
            let dir = tmpdir("cli");
            let input = dir.join("in.arrows");
            let out = dir.join("out.arrows");
            let sent = batches(Dict::Same, 32, 100, true, 3);
            write_stream(&input, &sent);
            let name = unique("cli");
            let ok = Command::new(&alloy)
                .args([
                    "create",
                    "--slots",
                    "8",
                    "--slot-size",
                    "1048576",
                    "--ring",
                    &name,
                ])
                .status()
                .unwrap();
            assert!(ok.success());
            let mut recv = Command::new(&alloy)
                .args(["recv", "--ring", &name, "--out"])
                .arg(&out)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            // The receiver must have joined before the sender starts.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let ring = Ring::open(&name).unwrap();
            while ring.stat().consumers.is_empty() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "alloy recv did not join"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(ring);
            let send = Command::new(&sender)
                .args(["send", "--mode", mode, "--ring", &name])
                .arg(&input)
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            let received = recv.wait().unwrap();
            let _ = Ring::remove(&name);
            assert!(
                send.success(),
                "{} send --mode {mode} failed",
                sender.display()
            );
            assert!(received.success(), "alloy recv failed ({mode})");
            assert_eq!(
                read_stream(&out),
                sent,
                "{} --mode {mode}",
                sender.display()
            );
            let _ = std::fs::remove_dir_all(&dir);
        });
    }
}
