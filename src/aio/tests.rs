//! The async endpoints on a multi-threaded tokio runtime.

use std::time::Duration;

use arrow_array::RecordBatch;
use futures::StreamExt;

use super::*;
use crate::arrow::IpcWriter;
use crate::ring::{Ring, WaitStrategy};
use alloy_testkit::testdata;

fn ring(slots: u32, slot_size: u32) -> Ring {
    Ring::anonymous_builder()
        .slot_count(slots)
        .slot_size(slot_size)
        .create()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_of_leases_delivers_everything_in_order_then_ends() {
    let ring = ring(8, 64);
    let mut rx = AsyncConsumer::new(ring.subscribe().unwrap()).unwrap();
    let producer = ring
        .producer_builder()
        .wait(WaitStrategy::Blocking)
        .create()
        .unwrap();
    const N: u64 = 20_000;
    let sender = std::thread::spawn(move || {
        let mut p = producer;
        for i in 0..N {
            p.send(&i.to_le_bytes(), 0).unwrap();
            if i % 1000 == 0 {
                // Let the consumer park now and then: the eventfd path.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        p.close();
    });
    let mut expect = 0u64;
    while let Some(lease) = rx.next().await {
        let lease = lease.unwrap();
        assert_eq!(u64::from_le_bytes(lease[..8].try_into().unwrap()), expect);
        expect += 1;
    }
    assert_eq!(expect, N);
    // After the end the stream stays ended.
    assert!(rx.recv().await.unwrap().is_none());
    sender.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_consumers_in_tasks_and_an_async_producer_awaiting_space() {
    // Two slots: the producer waits for space almost every message.
    let ring = ring(2, 64);
    let consumers: Vec<_> = (0..2)
        .map(|_| AsyncConsumer::new(ring.subscribe().unwrap()).unwrap())
        .collect();
    let tasks: Vec<_> = consumers
        .into_iter()
        .enumerate()
        .map(|(k, mut rx)| {
            tokio::spawn(async move {
                let mut n = 0u64;
                while let Some(lease) = rx.recv().await.unwrap() {
                    assert_eq!(u64::from_le_bytes(lease[..8].try_into().unwrap()), n);
                    n += 1;
                    if k == 1 && n % 500 == 0 {
                        // A slow consumer holds the producer back.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                n
            })
        })
        .collect();
    let mut tx = AsyncProducer::new(ring.producer().unwrap());
    for i in 0..5_000u64 {
        tx.send(&i.to_le_bytes(), 0).await.unwrap();
    }
    tx.close();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 5_000);
    }
}

/// The ring's `space_waiters` word (LAYOUT.md §6.2): producers parked for
/// space.
fn space_waiters(ring: &Ring) -> u32 {
    let snap = ring.region().snapshot();
    let at = crate::layout::off::SPACE_WAITERS;
    u32::from_le_bytes(snap[at..at + 4].try_into().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_producer_honours_backpressure_timeout_and_fail() {
    let ring = ring(2, 64);
    let mut rx = ring.subscribe().unwrap();
    let p = ring
        .producer_builder()
        .backpressure(Backpressure::Block {
            timeout: Some(Duration::from_millis(150)),
        })
        .create()
        .unwrap();
    let mut tx = AsyncProducer::new(p);
    tx.send(b"1", 0).await.unwrap();
    tx.send(b"2", 0).await.unwrap();
    let t0 = std::time::Instant::now();
    let err = tx.send(b"3", 0).await.unwrap_err();
    assert!(matches!(err, RingError::Timeout(_)), "{err}");
    assert!(t0.elapsed() >= Duration::from_millis(150));
    // Space freed while awaiting: the send completes.
    let waiting = tokio::spawn(async move {
        tx.send(b"3", 0).await.unwrap();
        tx
    });
    // Free the space once the producer is parked waiting for it.
    let t0 = std::time::Instant::now();
    while space_waiters(&ring) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the producer never parked"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    drop(rx.recv().unwrap());
    let mut tx = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken by the release")
        .unwrap();
    tx.get_mut().set_backpressure(Backpressure::Fail);
    assert!(matches!(
        tx.send(b"4", 0).await,
        Err(RingError::Full { slots: 2 })
    ));
    let too_big = [0u8; 65];
    assert!(matches!(
        tx.reserve(too_big.len()).await,
        Err(RingError::MessageTooLarge { len: 65, max: 64 })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_reserve_counts_as_a_backpressure_wait() {
    // LAYOUT.md §2.1: a wait for space counts whether it ends in space, a
    // timeout or the caller giving up (Go counts cancelled waits too).
    let ring = ring(2, 64);
    let _rx = ring.subscribe().unwrap();
    let p = ring
        .producer_builder()
        .backpressure(Backpressure::Block { timeout: None })
        .create()
        .unwrap();
    let mut tx = AsyncProducer::new(p);
    tx.send(b"1", 0).await.unwrap();
    tx.send(b"2", 0).await.unwrap();
    assert_eq!(ring.stat().backpressure_waits, 0);
    let cancelled = tokio::time::timeout(Duration::from_millis(50), tx.send(b"3", 0)).await;
    assert!(cancelled.is_err(), "the ring is full: the send must wait");
    assert_eq!(ring.stat().backpressure_waits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_recv_loses_nothing() {
    let ring = ring(4, 64);
    let mut rx = AsyncConsumer::new(ring.subscribe().unwrap()).unwrap();
    let mut tx = ring.producer().unwrap();
    // Nothing there: the timeout drops the pending recv future.
    assert!(tokio::time::timeout(Duration::from_millis(50), rx.recv())
        .await
        .is_err());
    tx.send(b"after", 0).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("woken")
        .unwrap()
        .unwrap();
    assert_eq!(&*got, b"after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_ipc_reader_streams_zero_copy_batches() {
    // Every received batch holds its slot until dropped, and the test keeps
    // them all: the ring must hold the whole stream.
    let ring = ring(64, 1 << 16);
    let mut reader = AsyncIpcReader::new(IpcReader::new(ring.subscribe().unwrap())).unwrap();
    let batches: Vec<RecordBatch> = (0..40)
        .map(|i| testdata::batch(i, &[3, 9, 10, 11, 12], 50 + i as usize, 0, true))
        .collect();
    let producer = ring.producer().unwrap();
    let sent = batches.clone();
    let writer = std::thread::spawn(move || {
        let mut w = IpcWriter::new(producer, sent[0].schema()).unwrap();
        for b in &sent {
            w.write(b).unwrap();
        }
        w.close().unwrap();
    });
    let mut got = Vec::new();
    while let Some(b) = reader.next().await {
        let b = b.unwrap();
        assert!(crate::arrow::in_mapping(&ring, &b), "batch was copied");
        got.push(b);
    }
    writer.join().unwrap();
    assert_eq!(got, batches);
    assert_eq!(reader.schema(), Some(batches[0].schema()));
}

#[test]
fn outside_a_runtime_is_a_clear_error() {
    let ring = ring(2, 64);
    let err = AsyncConsumer::new(ring.subscribe().unwrap()).unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}

#[test]
fn current_thread_runtime_works_too() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ring = ring(2, 64);
    rt.block_on(async {
        let mut rx = AsyncConsumer::new(ring.subscribe().unwrap()).unwrap();
        let mut tx = AsyncProducer::new(ring.producer().unwrap());
        let reader = async {
            let mut n = 0;
            while let Some(l) = rx.recv().await.unwrap() {
                assert_eq!(l[0], n as u8);
                n += 1;
            }
            n
        };
        let writer = async {
            for i in 0..100u8 {
                tx.send(&[i], 0).await.unwrap();
            }
            tx.close();
        };
        let (n, ()) = tokio::join!(reader, writer);
        assert_eq!(n, 100);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_ipc_writer_awaits_space_splits_and_keeps_the_runtime_free() {
    // 4 slots of 8 KiB: 30 batches (some larger than a slot, so split)
    // wait for the reader again and again; the reader copies each batch so
    // it holds no slot.
    let ring = ring(4, 8 << 10);
    let mut reader = AsyncIpcReader::new(ring.consumer_builder().ipc_reader().unwrap()).unwrap();
    let batches: Vec<RecordBatch> = (0..30)
        .map(|i| testdata::batch(i, &[3, 9, 10], [20, 4000][i as usize % 2], 0, true))
        .collect();
    let mut w = AsyncIpcWriter::new(
        ring.producer_builder()
            .ipc_writer(batches[0].schema())
            .unwrap(),
    );
    let sent = batches.clone();
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t = ticks.clone();
    // A task on the same runtime keeps running while the writer waits.
    let ticker = tokio::spawn(async move {
        loop {
            t.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let writer = tokio::spawn(async move {
        for b in &sent {
            w.write(b).await?;
        }
        w.close().await
    });
    let mut got = Vec::new();
    while let Some(b) = reader.next().await {
        got.push(crate::arrow::copy_batch(&b.unwrap()));
        tokio::time::sleep(Duration::from_millis(1)).await; // a slow reader
    }
    writer.await.unwrap().unwrap();
    ticker.abort();
    assert!(got.len() > batches.len(), "no batch was split");
    let schema = batches[0].schema();
    assert_eq!(
        arrow_select::concat::concat_batches(&schema, &got).unwrap(),
        arrow_select::concat::concat_batches(&schema, &batches).unwrap()
    );
    assert!(ticks.load(std::sync::atomic::Ordering::Relaxed) > 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_ipc_writer_reports_backpressure_like_the_sync_one() {
    let ring = ring(2, 4096);
    let _idle = ring.subscribe().unwrap(); // never reads
    let batch = testdata::batch(1, &[3], 10, 0, false);
    let p = ring
        .producer_builder()
        .backpressure(Backpressure::Block {
            timeout: Some(Duration::from_millis(100)),
        })
        .create()
        .unwrap();
    let mut w = AsyncIpcWriter::new(IpcWriter::new(p, batch.schema()).unwrap());
    w.write(&batch).await.unwrap(); // schema + batch: both slots
    let t0 = std::time::Instant::now();
    let err = w.write(&batch).await.unwrap_err();
    assert!(
        matches!(err, ArrowShmError::Ring(RingError::Timeout(_))),
        "{err}"
    );
    assert!(t0.elapsed() >= Duration::from_millis(100));
    // The writer is still there after an error, as the sync one.
    assert!(w.get_mut().is_some());
    // A write whose future is dropped mid-way loses the writer: later
    // calls say so instead of hanging.
    assert!(
        tokio::time::timeout(Duration::from_millis(20), w.write(&batch))
            .await
            .is_err()
    );
    assert!(matches!(
        w.write(&batch).await,
        Err(ArrowShmError::Ring(RingError::Closed))
    ));
}

/// An async consumer attached across a new stream on its ring (LAYOUT.md
/// §4.1): the end of the first stream, then the second stream's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_consumer_follows_a_new_stream() {
    let ring = ring(8, 64);
    let mut rx = AsyncConsumer::new(ring.subscribe().unwrap()).unwrap();
    let mut p = ring.producer().unwrap();
    p.send(b"a", 0).unwrap();
    p.close();
    assert_eq!(&*rx.recv().await.unwrap().unwrap(), b"a");
    assert!(rx.recv().await.unwrap().is_none());
    let r2 = ring.clone();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let mut p = r2.producer_builder().new_stream(true).create().unwrap();
        p.send(b"x", 0).unwrap();
        p.close();
    });
    // While the ring stays closed its end is reported again; once the new
    // stream starts, its messages come.
    let x = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match rx.recv().await.unwrap() {
                Some(l) => return l,
                None => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await
    .expect("the new stream's message");
    assert_eq!((&*x, x.stream_gen()), (&b"x"[..], 1));
    drop(x);
    assert!(rx.recv().await.unwrap().is_none());
    sender.join().unwrap();
}
