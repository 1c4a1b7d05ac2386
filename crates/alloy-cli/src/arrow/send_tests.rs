//! `alloy send --mode cdata`: an Arrow IPC file through a named ring, and
//! its one-line errors.

use alloy_shm::arrow::{in_mapping_all, IpcReader, Summary};
use alloy_shm::arrow_array::RecordBatch;
use alloy_shm::ring::{Ring, RingConfig};
use alloy_testkit::testdata::{self, ALL_KINDS};

use super::send;

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "alloy-cdw-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn write_file(path: &std::path::Path, batches: &[RecordBatch]) {
    let f = std::fs::File::create(path).unwrap();
    // A stream: an IPC file cannot replace dictionaries between batches.
    let mut w =
        alloy_shm::arrow_ipc::writer::StreamWriter::try_new(f, &batches[0].schema()).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
}

/// Runs `send` on a fresh named ring while this thread reads; returns
/// `send`'s result and the batches read.
fn run(
    batches: &[RecordBatch],
    slot_size: u32,
    mode: &str,
) -> (Result<Summary, String>, Vec<RecordBatch>) {
    let name = unique("send");
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.arrow");
    write_file(&input, batches);
    // Enough slots for every message: the batches read are kept (and
    // hold their slots) until the end.
    let cfg = RingConfig {
        slot_count: 64,
        slot_size,
        ..Default::default()
    };
    let r = Ring::builder(&name).config(cfg).create().unwrap();
    let mut reader = IpcReader::new(r.subscribe().unwrap());
    let (n, i, m) = (name.clone(), input.clone(), mode.to_string());
    let sender = std::thread::spawn(move || send(&n, &i, &m));
    let mut got = Vec::new();
    let result = loop {
        if sender.is_finished() && !r.is_closed() {
            // Failed without closing: read what was published, then stop.
            while let Ok(Some(lease)) = reader.consumer_mut().try_recv() {
                if let Ok(Some(b)) = reader.decode(lease) {
                    got.push(b);
                }
            }
            break sender.join().unwrap();
        }
        match reader
            .consumer_mut()
            .recv_timeout(std::time::Duration::from_millis(20))
        {
            Ok(Some(lease)) => {
                if let Some(b) = reader.decode(lease).unwrap() {
                    assert!(in_mapping_all(&r, &b));
                    got.push(b);
                }
            }
            Ok(None) => break sender.join().unwrap(),
            Err(_) => {}
        }
    };
    drop(reader);
    drop(r);
    Ring::remove(&name).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (result, got)
}

#[test]
fn send_mode_cdata_sends_every_batch() {
    let kinds: Vec<u64> = (0..ALL_KINDS).collect();
    let batches: Vec<RecordBatch> = (0..5)
        .map(|i| testdata::batch(i, &kinds, 40 + i as usize * 10, i as usize, true))
        .collect();
    let (res, got) = run(&batches, 1 << 18, "cdata");
    let s = res.unwrap();
    assert_eq!(got, batches);
    assert_eq!(s.batches, 5);
    assert_eq!(
        s.rows,
        batches.iter().map(|b| b.num_rows() as u64).sum::<u64>()
    );
    assert!(s.bytes > 0);
    let line = s.to_string();
    assert!(line.starts_with("{\"batches\":5,\"rows\":"), "{line}");
}

#[test]
fn send_mode_cdata_refuses_a_batch_larger_than_a_slot() {
    let small = testdata::batch(1, &[3, 11], 10, 0, false);
    let big = testdata::batch(2, &[3, 11], 5000, 0, false);
    let (res, got) = run(&[small.clone(), big], 8192, "cdata");
    let e = res.unwrap_err();
    assert!(!e.contains('\n'), "{e}");
    assert!(e.contains("batch 1 (5000 rows)"), "{e}");
    assert!(e.contains("does not split batches"), "{e}");
    assert_eq!(got, vec![small.clone()]);
    // IPC mode splits the same file.
    let big = testdata::batch(2, &[3, 11], 5000, 0, false);
    let (res, got) = run(&[small, big], 8192, "ipc");
    assert_eq!(res.unwrap().rows, 5010);
    assert_eq!(got.iter().map(|b| b.num_rows()).sum::<usize>(), 5010);
}

#[cfg(feature = "flight")]
#[test]
fn flight_send_refuses_mode_cdata() {
    let e = crate::flight::send(
        "grpc://127.0.0.1:1",
        "r",
        std::path::Path::new("/nonexistent"),
        "cdata",
    )
    .unwrap_err();
    assert!(e.contains("--mode cdata") && !e.contains('\n'), "{e}");
}

#[test]
fn unknown_mode_is_refused() {
    let e = send(
        "no-such-ring-cdw",
        std::path::Path::new("/nonexistent"),
        "bogus",
    )
    .unwrap_err();
    assert!(e.contains("--mode") && e.contains("bogus"), "{e}");
    assert!(!e.contains('\n'));
}
