//! Issue #19: producers that know their consumers and rings that carry a
//! new stream (LAYOUT.md §4.1, §4.2), across processes and through the
//! Arrow layer.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_shm::arrow::{ArrowShmError, IpcReader};
use alloy_shm::ring::{Backpressure, Ring, RingError, SendError};
use arrow_array::{Int64Array, RecordBatch, StringArray};

mod common;
use common::{new_ring, SPEC};

const CHILD: &str = "ALLOY_STREAMS_CHILD";

/// The consumer process of `a_consumer_killed_mid_stream_is_reported`: joins
/// the ring named in the environment, says "ready", holds the first two
/// messages, says "holding" and waits to be killed. A no-op in a normal run.
#[test]
fn streams_child() {
    let Ok(name) = std::env::var(CHILD) else {
        return;
    };
    let ring = Ring::open(&name).unwrap();
    let mut c = ring.subscribe().unwrap();
    println!("ready");
    let held: Vec<_> = (0..2)
        .map(|_| c.recv_timeout(Duration::from_secs(30)).unwrap().unwrap())
        .collect();
    println!("holding {}", held.len());
    std::thread::sleep(Duration::from_secs(60));
}

/// A consumer process SIGKILLed mid-stream (the ring not full) is reported
/// to a producer built with `require_consumers` and
/// `report_lost_consumers`: once as `ConsumerLost` naming its pid, then as
/// `NoConsumers` — the producer never goes on publishing into the void.
#[test]
fn a_consumer_killed_mid_stream_is_reported() {
    let (ring, _guard) = new_ring("streams-kill", 64);
    let name = ring.region().name().unwrap().to_string();
    let mut p = ring
        .producer_builder()
        .backpressure(Backpressure::Block {
            timeout: Some(Duration::from_secs(5)),
        })
        .reclaim_after(Duration::from_millis(50))
        .require_consumers(true)
        .report_lost_consumers(true)
        .create()
        .unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "streams_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, &name)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut expect = |prefix: &str| loop {
        let line = lines.next().expect("child output").unwrap();
        if line.contains(prefix) {
            return;
        }
    };
    expect("ready");
    let attached = p.wait_for_consumers(1, Duration::from_secs(5)).unwrap();
    assert_eq!(attached.broadcast, 1);
    let mut buf = vec![0u8; 4096];
    for j in 0..2 {
        let n = SPEC.write(j, &mut buf);
        p.send(&buf[..n], 0).unwrap();
    }
    assert_eq!(p.last_receivers().total(), 1);
    expect("holding");
    let pid = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    let mut sent = 2u64;
    let err = loop {
        let n = SPEC.write(sent, &mut buf);
        match p.send(&buf[..n], 0) {
            Ok(_) => {
                sent += 1;
                assert!(
                    killed.elapsed() < Duration::from_secs(3),
                    "still publishing after the consumer died"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => break e,
        }
    };
    match err {
        SendError::ConsumerLost {
            pid: got,
            lost: 1,
            remaining: 0,
        } => assert_eq!(got, pid),
        other => panic!("want ConsumerLost, got {other}"),
    }
    assert_eq!(p.consumers_lost(), 1);
    let n = SPEC.write(sent, &mut buf);
    assert!(matches!(
        p.send(&buf[..n], 0),
        Err(SendError::NoConsumers { .. })
    ));
    eprintln!(
        "consumer pid {pid} killed: reported after {:?}, {sent} messages sent in all",
        killed.elapsed()
    );
}

fn ints(v: &[i64]) -> RecordBatch {
    RecordBatch::try_from_iter([("n", Arc::new(Int64Array::from(v.to_vec())) as _)]).unwrap()
}

fn strings(v: &[&str]) -> RecordBatch {
    RecordBatch::try_from_iter([("s", Arc::new(StringArray::from(v.to_vec())) as _)]).unwrap()
}

/// A named ring reused for a second Arrow stream with another schema: a
/// reader of the ended stream gets `StreamEnded`, not a schema and zero
/// batches; a reader of the new stream gets its schema and batches.
#[test]
fn arrow_ring_reused_for_a_second_stream_with_another_schema() {
    let (ring, _guard) = new_ring("streams-arrow", 8);
    let first = ints(&[1, 2, 3]);
    let mut w = ring.producer_builder().ipc_writer(first.schema()).unwrap();
    w.write(&first).unwrap();
    w.close().unwrap();

    // A reader joining the ended stream is told so.
    let mut ended = IpcReader::new(ring.subscribe().unwrap());
    match ended.next_batch() {
        Err(ArrowShmError::Ring(RingError::StreamEnded { seq: 2, .. })) => {}
        other => panic!("reader of an ended stream: {other:?}"),
    }
    // The producer without new_stream is told what to do.
    let e = ring.producer_builder().create().unwrap_err();
    assert!(e.to_string().contains("new_stream"), "{e}");

    let second = strings(&["x", "y"]);
    let mut w = ring
        .producer_builder()
        .new_stream(true)
        .ipc_writer(second.schema())
        .unwrap();
    let mut reader = IpcReader::new(ring.subscribe().unwrap());
    w.write(&second).unwrap();
    w.write(&second).unwrap();
    w.close().unwrap();
    assert_eq!(ring.stream_gen(), 1);
    let got: Vec<RecordBatch> = std::iter::from_fn(|| reader.next_batch().unwrap()).collect();
    assert_eq!(got, vec![second.clone(), second.clone()]);
    assert_eq!(reader.schema().unwrap(), second.schema());
    // The reader of the ended stream now reads the new one.
    let got: Vec<RecordBatch> = std::iter::from_fn(|| ended.next_batch().unwrap()).collect();
    assert_eq!(got.len(), 2);
}

/// A producer that starts before its reader: with history, the late reader
/// still gets the schema message and every batch, as long as the producer
/// is less than a ring ahead.
#[test]
fn arrow_late_reader_with_history_gets_the_first_batches() {
    let (ring, _guard) = new_ring("streams-history", 8);
    let batch = ints(&[7, 8, 9]);
    let mut w = ring.producer_builder().ipc_writer(batch.schema()).unwrap();
    for _ in 0..3 {
        w.write(&batch).unwrap();
    }
    let reader = ring
        .consumer_builder()
        .history(7)
        .record_batch_reader()
        .unwrap();
    w.close().unwrap();
    let got: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    assert_eq!(got, vec![batch.clone(), batch.clone(), batch]);
}
