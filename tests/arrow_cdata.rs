//! Go → Rust in C-Data-offsets mode (LAYOUT.md §8.3) with the zero-copy
//! check: batches are written to an IPC stream file, `bin/alloy-go send
//! --mode cdata` puts them on a ring with `arrowshm.CDataWriter` (each
//! record copied into its slot once, buffers 64-aligned, descriptor at the
//! end), and this process rebuilds them with `IpcReader` (validation on),
//! checking every buffer — dictionary values included — lies in the mapping
//! and every value matches. Every kind of `testdata::column` goes through,
//! plus empty, sliced and zero-column batches. Needs `bin/alloy-go` (`make
//! build`; a missing binary fails the tests under CI /
//! `ALLOY_REQUIRE_CROSS`, see `tests/support`).

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use alloy_shm::arrow::{in_mapping_all, IpcReader};
use alloy_shm::ring::{Ring, RingConfig};
use alloy_testkit::testdata::{self, ALL_KINDS, KINDS};
use arrow_array::{RecordBatch, RecordBatchOptions};
use arrow_schema::Schema;
use proptest::prelude::*;

/// Sends `batches` through `alloy-go send --mode cdata` and checks what
/// `IpcReader` rebuilds.
fn cdata_send(go: &Path, batches: &[RecordBatch]) -> Result<(), String> {
    static N: AtomicU32 = AtomicU32::new(0);
    let id = format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let dir = std::env::temp_dir().join(format!("alloy-cdata-test-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.arrows");
    let mut w = arrow_ipc::writer::StreamWriter::try_new(
        std::fs::File::create(&input).unwrap(),
        &batches[0].schema(),
    )
    .unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    let name = format!("alloy-cdata-g2r-{id}");
    let cfg = RingConfig {
        slot_count: 8,
        slot_size: 1 << 20,
        ..Default::default()
    };
    let ring = Ring::builder(&name).config(cfg).create().unwrap();
    let mut reader = IpcReader::new(ring.subscribe().unwrap());
    let out = Command::new(go)
        .args(["send", "--mode", "cdata", "--ring", &name])
        .arg(&input)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut i = 0;
    let result = (|| {
        while let Some(got) = reader.next_batch().map_err(|e| e.to_string())? {
            if i >= batches.len() {
                return Err("more batches than sent".to_string());
            }
            if !in_mapping_all(&ring, &got) {
                return Err(format!("batch {i} was copied"));
            }
            if got != batches[i] {
                return Err(format!(
                    "batch {i} differs:\n got {got:?}\nwant {:?}",
                    batches[i]
                ));
            }
            i += 1;
        }
        if i != batches.len() {
            return Err(format!("{i} batches, sent {}", batches.len()));
        }
        Ok(())
    })();
    let output = out.wait_with_output().unwrap();
    let _ = Ring::remove(&name);
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    if !output.status.success() {
        return Err(format!(
            "alloy-go send failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn go_cdata_batches_decode_in_place(
        seed in any::<u64>(),
        kinds in proptest::collection::vec(0..KINDS, 1..8),
        sizes in proptest::collection::vec((0usize..400, 0usize..20), 1..4),
        nulls in any::<bool>(),
    ) {
        let Some(go) = support::go_cli("go_cdata_batches_decode_in_place") else {
            return Ok(());
        };
        let batches: Vec<RecordBatch> = sizes
            .iter()
            .enumerate()
            .map(|(i, &(rows, off))| testdata::batch(seed ^ (i as u64) << 32, &kinds, rows, off, nulls))
            .collect();
        cdata_send(&go, &batches).map_err(TestCaseError::fail)?;
    }
}

/// Every kind `testdata::column` knows (the whole type system both
/// libraries share), with nulls, a slice and an empty batch.
#[test]
fn every_type_goes_through_cdata() {
    let Some(go) = support::go_cli("every_type_goes_through_cdata") else {
        return;
    };
    let mut failures = Vec::new();
    for kind in 0..ALL_KINDS {
        let batches: Vec<RecordBatch> = [(40, 0, false), (60, 7, true), (0, 0, true)]
            .iter()
            .enumerate()
            .map(|(i, &(rows, off, nulls))| {
                testdata::batch(kind * 10 + i as u64, &[kind, 2], rows, off, nulls)
            })
            .collect();
        if let Err(e) = cdata_send(&go, &batches) {
            failures.push(format!(
                "kind {kind} ({}): {e}",
                batches[0].schema().field(0).data_type()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn zero_column_batches_keep_their_row_count() {
    let Some(go) = support::go_cli("zero_column_batches_keep_their_row_count") else {
        return;
    };
    let schema = Arc::new(Schema::empty());
    let batches: Vec<RecordBatch> = [5usize, 0, 3]
        .iter()
        .map(|&n| {
            RecordBatch::try_new_with_options(
                schema.clone(),
                vec![],
                &RecordBatchOptions::new().with_row_count(Some(n)),
            )
            .unwrap()
        })
        .collect();
    cdata_send(&go, &batches).unwrap();
}
