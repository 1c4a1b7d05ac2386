//! Go → Rust in IPC mode with the zero-copy check: random batches over many
//! types are written to an IPC stream file, `bin/alloy-go send` puts them on
//! a ring with the Go writer, and this process decodes them with
//! `IpcReader`, checking every buffer lies in the mapping and every value
//! matches. Needs `bin/alloy-go` (`make build`; a missing binary fails the
//! tests under CI / `ALLOY_REQUIRE_CROSS`, see `tests/support`).

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use alloy_shm::arrow::{in_mapping, IpcReader};
use alloy_shm::ring::{Ring, RingConfig};
use alloy_testkit::testdata::{self, KINDS};
use arrow_array::RecordBatch;
use proptest::prelude::*;

/// Writes `batches` as an Arrow IPC stream file.
fn write_stream(path: &Path, batches: &[RecordBatch]) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(file, &batches[0].schema()).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
}

fn go_send(go: &Path, batches: &[RecordBatch]) -> Result<(), TestCaseError> {
    static N: AtomicU32 = AtomicU32::new(0);
    let id = format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let dir = std::env::temp_dir().join(format!("alloy-arrow-test-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.arrows");
    write_stream(&input, batches);

    let name = format!("alloy-arrow-g2r-{id}");
    let cfg = RingConfig {
        slot_count: 8,
        slot_size: 1 << 20,
        ..Default::default()
    };
    let ring = Ring::builder(&name).config(cfg).create().unwrap();
    let mut reader = IpcReader::new(ring.subscribe().unwrap());
    let mut child = Command::new(go)
        .args(["send", "--ring", &name])
        .arg(&input)
        .spawn()
        .unwrap();
    let mut i = 0;
    let result = (|| {
        while let Some(got) = reader
            .next_batch()
            .map_err(|e| TestCaseError::fail(e.to_string()))?
        {
            prop_assert!(i < batches.len(), "more batches than sent");
            prop_assert!(in_mapping(&ring, &got), "batch {} was copied", i);
            prop_assert_eq!(&got, &batches[i]);
            i += 1;
        }
        prop_assert_eq!(i, batches.len());
        Ok(())
    })();
    let status = child.wait().unwrap();
    let _ = Ring::remove(&name);
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    prop_assert!(status.success(), "alloy-go send failed");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn go_batches_decode_in_place(
        seed in any::<u64>(),
        kinds in proptest::collection::vec(0..KINDS, 1..8),
        sizes in proptest::collection::vec((0usize..400, 0usize..20), 1..4),
        nulls in any::<bool>(),
    ) {
        let Some(go) = support::go_cli("go_batches_decode_in_place") else {
            return Ok(());
        };
        let batches: Vec<RecordBatch> = sizes
            .iter()
            .enumerate()
            .map(|(i, &(rows, off))| testdata::batch(seed ^ (i as u64) << 32, &kinds, rows, off, nulls))
            .collect();
        go_send(&go, &batches)?;
    }
}

/// The rest of the Arrow type system, kind by kind, Rust → IPC file →
/// arrow-go reader → Go ring writer → Rust `IpcReader`: every type arrow-go
/// reads and writes in IPC arrives equal and zero-copy.
#[test]
fn every_extended_type_goes_through_go() {
    use alloy_testkit::testdata::ALL_KINDS;
    let Some(go) = support::go_cli("every_extended_type_goes_through_go") else {
        return;
    };
    let mut failures = Vec::new();
    for kind in KINDS..ALL_KINDS {
        let batches: Vec<RecordBatch> = [(40, 0, false), (60, 7, true)]
            .iter()
            .enumerate()
            .map(|(i, &(rows, off, nulls))| {
                testdata::batch(kind * 10 + i as u64, &[kind, 2], rows, off, nulls)
            })
            .collect();
        if let Err(e) = go_send(&go, &batches) {
            failures.push(format!(
                "kind {kind} ({}): {e}",
                batches[0].schema().field(0).data_type()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The reverse direction for the same types, in both modes: the Rust
/// `IpcWriter` (or `CDataWriter`) puts the batches on a ring, `bin/alloy-go
/// recv` decodes them with arrow-go and writes an IPC stream file, which
/// must hold the same batches.
#[test]
fn every_type_comes_back_from_go() {
    every_type_comes_back(false);
}

/// [`every_type_comes_back_from_go`] in C-Data-offsets mode.
#[test]
fn every_type_comes_back_from_go_in_cdata_mode() {
    every_type_comes_back(true);
}

fn every_type_comes_back(cdata: bool) {
    use std::io::BufRead;
    use std::process::Stdio;

    use alloy_shm::arrow::{CDataWriter, IpcWriter};
    use alloy_testkit::testdata::ALL_KINDS;
    let Some(go) = support::go_cli(&format!("every_type_comes_back (cdata {cdata})")) else {
        return;
    };
    let mut failures = Vec::new();
    let mut sent = 0u64;
    for kind in 0..ALL_KINDS {
        let batches: Vec<RecordBatch> = [(40, 0, false), (60, 7, true), (0, 0, true)]
            .iter()
            .enumerate()
            .map(|(i, &(rows, off, nulls))| {
                testdata::batch(kind * 10 + i as u64, &[kind, 2], rows, off, nulls)
            })
            .collect();
        if cdata && CDataWriter::check_schema(&batches[0].schema()).is_err() {
            continue;
        }
        sent += 1;
        let name = format!("alloy-arrow-r2g-{}-{kind}-{cdata}", std::process::id());
        let out = std::env::temp_dir().join(format!("{name}.arrows"));
        let ring = Ring::builder(&name)
            .config(RingConfig {
                slot_count: 8,
                slot_size: 1 << 20,
                ..Default::default()
            })
            .create()
            .unwrap();
        let mut child = Command::new(&go)
            .args(["recv", "--ring", &name, "--out"])
            .arg(&out)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        if cdata {
            let mut w = CDataWriter::new(ring.producer().unwrap(), batches[0].schema()).unwrap();
            for b in &batches {
                w.write(b).unwrap();
            }
            w.close().unwrap();
        } else {
            let mut w = IpcWriter::new(ring.producer().unwrap(), batches[0].schema()).unwrap();
            for b in &batches {
                w.write(b).unwrap();
            }
            w.close().unwrap();
        }
        let status = child.wait().unwrap();
        let _ = Ring::remove(&name);
        let result = (|| -> Result<(), String> {
            if !status.success() {
                return Err(format!("alloy-go recv failed: {status}"));
            }
            let file = std::fs::File::open(&out).map_err(|e| e.to_string())?;
            let got: Vec<RecordBatch> = arrow_ipc::reader::StreamReader::try_new(file, None)
                .map_err(|e| e.to_string())?
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            if got != batches {
                return Err(format!("batches differ:\n got {got:?}\nwant {batches:?}"));
            }
            Ok(())
        })();
        let _ = std::fs::remove_file(&out);
        if let Err(e) = result {
            failures.push(format!(
                "kind {kind} ({}): {e}",
                batches[0].schema().field(0).data_type()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(sent, ALL_KINDS, "cdata mode refused a kind");
}

/// `alloy-go send --dictionary-deltas`: a dictionary that grows goes as
/// delta batches, and the Rust reader rebuilds every batch.
#[test]
fn go_delta_dictionaries_are_applied() {
    use alloy_shm::arrow::flags;
    let Some(go) = support::go_cli("go_delta_dictionaries_are_applied") else {
        return;
    };
    let batches = testdata::growing_dictionary_batches(8);
    let dir = std::env::temp_dir().join(format!("alloy-delta-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.arrows");
    write_stream(&input, &batches);
    let name = format!("alloy-arrow-delta-{}", std::process::id());
    let ring = Ring::builder(&name)
        .config(RingConfig {
            slot_count: 64,
            slot_size: 1 << 16,
            ..Default::default()
        })
        .create()
        .unwrap();
    let mut reader = IpcReader::new(ring.subscribe().unwrap());
    let mut raw = ring.subscribe().unwrap();
    let status = Command::new(&go)
        .args(["send", "--dictionary-deltas", "--ring", &name])
        .arg(&input)
        .status()
        .unwrap();
    let _ = Ring::remove(&name);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success());
    for (i, want) in batches.iter().enumerate() {
        assert_eq!(&reader.next_batch().unwrap().unwrap(), want, "batch {i}");
    }
    assert!(reader.next_batch().unwrap().is_none());
    let mut deltas = 0;
    while let Some(l) = raw.recv().unwrap() {
        if l.flags() == flags::IPC_DICTIONARY_BATCH {
            // Prefix: continuation marker, metadata length, then the
            // flatbuffer Message (LAYOUT.md §8.1).
            let len = u32::from_le_bytes(l[4..8].try_into().unwrap()) as usize;
            let msg = arrow_ipc::root_as_message(&l[8..8 + len]).unwrap();
            deltas += usize::from(msg.header_as_dictionary_batch().unwrap().isDelta());
        }
    }
    assert_eq!(deltas, 7, "every dictionary after the first is a delta");
}
