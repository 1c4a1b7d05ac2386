//! Per-batch cost of the Arrow codecs in one process (criterion): encode
//! with `IpcWriter` (`ipc`: its direct plan into the slot;
//! `ipc-arrow-ipc`: the plan switched off, arrow-ipc's encoder and a copy,
//! measured right after it) / `CDataWriter` and decode with `IpcReader`, validation
//! on and skipped, for 1-row, 1024-row and 1 MiB int64 batches and a mixed
//! int64 + utf8 + dictionary batch. Every case moves one message through an
//! anonymous ring on one thread (send, then receive), so `ring/…` — the
//! same message sent and received raw — is the transport part to compare
//! each codec case with in the same run.
//!
//! Run: `cargo bench -p alloy-shm --features tokio,flight --bench arrow_ipc -- codec`
//! (a filter such as `codec/decode/ipc` narrows it).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use alloy_shm::arrow::{CDataWriter, IpcReader, IpcWriter};
use alloy_shm::ring::{Consumer, Producer, Ring, RingConfig};
use arrow_array::types::Int32Type;
use arrow_array::{DictionaryArray, Int64Array, RecordBatch, StringArray};
use criterion::Criterion;

/// The shapes measured: name and batch.
fn shapes() -> Vec<(&'static str, RecordBatch)> {
    let int64 = |rows: i64| {
        RecordBatch::try_from_iter([("id", Arc::new(Int64Array::from_iter_values(0..rows)) as _)])
            .expect("batch")
    };
    let mixed = |rows: i64| {
        let ids = Int64Array::from_iter_values(0..rows);
        let names = StringArray::from_iter(
            (0..rows).map(|i| (i % 10 != 0).then(|| format!("name-{i:07}"))),
        );
        let tags: DictionaryArray<Int32Type> = (0..rows)
            .map(|i| ["red", "green", "blue"][i as usize % 3])
            .collect();
        RecordBatch::try_from_iter([
            ("id", Arc::new(ids) as _),
            ("name", Arc::new(names) as _),
            ("tag", Arc::new(tags) as _),
        ])
        .expect("batch")
    };
    vec![
        ("int64-1", int64(1)),
        ("int64-1024", int64(1024)),
        ("int64-1MiB", int64(1 << 17)),
        ("mixed-1", mixed(1)),
        ("mixed-1024", mixed(1024)),
    ]
}

fn ring() -> Ring {
    Ring::anonymous_builder()
        .config(RingConfig {
            slot_count: 8,
            slot_size: 2 << 20,
            ..Default::default()
        })
        .create()
        .expect("ring")
}

/// Every message (payload, flags) `write` produces for `batch` once: the
/// schema, any dictionaries, the batch.
fn capture(batch: &RecordBatch, cdata: bool) -> Vec<(Vec<u8>, u32)> {
    let ring = ring();
    let mut raw = ring.subscribe().expect("subscribe");
    let producer = ring.producer().expect("producer");
    if cdata {
        let mut w = CDataWriter::new(producer, batch.schema()).expect("writer");
        w.write(batch).expect("write");
        w.close().expect("close");
    } else {
        let mut w = IpcWriter::new(producer, batch.schema()).expect("writer");
        w.write(batch).expect("write");
        w.close().expect("close");
    }
    let mut out = Vec::new();
    while let Some(lease) = raw.recv().expect("recv") {
        out.push((lease.bytes().to_vec(), lease.flags()));
    }
    out
}

/// A reader that has seen the schema and dictionaries of `msgs`, the
/// producer feeding it, and the batch message to send again and again.
fn primed_reader(msgs: &[(Vec<u8>, u32)], validate: bool) -> (IpcReader, Producer) {
    let ring = ring();
    let mut reader = IpcReader::new(ring.subscribe().expect("subscribe"));
    if !validate {
        // SAFETY: the messages were written by this crate's own writers.
        reader = unsafe { reader.with_skip_validation(true) };
    }
    let mut producer = ring.producer().expect("producer");
    for (bytes, flags) in msgs {
        producer.send(bytes, *flags).expect("send");
    }
    let first = reader.next_batch().expect("decode").expect("a batch");
    drop(first);
    (reader, producer)
}

fn drain(consumer: &mut Consumer) {
    drop(black_box(
        consumer.try_recv().expect("recv").expect("a message"),
    ));
}

/// Registers every case on `c`.
pub fn cases(c: &mut Criterion) {
    for (shape, batch) in shapes() {
        for (mode, cdata) in [("ipc", false), ("cdata", true)] {
            let msgs = capture(&batch, cdata);
            let (last, flag) = msgs.last().expect("the batch message").clone();

            // Transport only: the batch message sent and received raw.
            let r = ring();
            let mut consumer = r.subscribe().expect("subscribe");
            let mut producer = r.producer().expect("producer");
            c.bench_function(&format!("codec/ring/{mode}/{shape}"), |b| {
                b.iter(|| {
                    producer.send(black_box(&last), flag).expect("send");
                    drain(&mut consumer);
                })
            });

            // Encode: the writer into the slot, received raw.
            let r = ring();
            let mut consumer = r.subscribe().expect("subscribe");
            let producer = r.producer().expect("producer");
            if cdata {
                let mut w = CDataWriter::new(producer, batch.schema()).expect("writer");
                w.write(&batch).expect("write");
                while let Ok(Some(_)) = consumer.try_recv() {}
                c.bench_function(&format!("codec/encode/{mode}/{shape}"), |b| {
                    b.iter(|| {
                        w.write(black_box(&batch)).expect("write");
                        drain(&mut consumer);
                    })
                });
            } else {
                // `ipc`: the direct plan into the slot (the default);
                // `ipc-arrow-ipc`: arrow-ipc's encoder, then a copy into the
                // slot (the plan switched off), right after it in the same
                // run: the same bytes, the ratio is the plan's gain.
                let mut first = Some((consumer, producer));
                for (name, direct) in [(mode, true), ("ipc-arrow-ipc", false)] {
                    let r = ring();
                    let (mut consumer, producer) = first.take().unwrap_or_else(|| {
                        (
                            r.subscribe().expect("subscribe"),
                            r.producer().expect("producer"),
                        )
                    });
                    let mut w = IpcWriter::new(producer, batch.schema())
                        .expect("writer")
                        .with_direct_encode(direct);
                    w.write(&batch).expect("write");
                    while let Ok(Some(_)) = consumer.try_recv() {}
                    c.bench_function(&format!("codec/encode/{name}/{shape}"), |b| {
                        b.iter(|| {
                            w.write(black_box(&batch)).expect("write");
                            drain(&mut consumer);
                        })
                    });
                }
            }

            // Decode: the batch message sent raw, read by IpcReader.
            for (v, validate) in [("validated", true), ("trusted", false)] {
                let (mut reader, mut producer) = primed_reader(&msgs, validate);
                c.bench_function(&format!("codec/decode/{mode}/{v}/{shape}"), |b| {
                    b.iter(|| {
                        producer.send(black_box(&last), flag).expect("send");
                        let got = reader.next_batch().expect("decode").expect("a batch");
                        assert_eq!(got.num_rows(), batch.num_rows());
                        drop(black_box(got));
                    })
                });
            }
        }
    }
}

/// Criterion configured for many short cases.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
        .configure_from_args()
}

/// One pass of every case, without timing: the smoke test under `cargo test`.
pub fn smoke() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_millis(5))
        .sample_size(10)
        .without_plots();
    cases(&mut c);
}
