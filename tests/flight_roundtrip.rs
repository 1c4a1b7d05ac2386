//! Arrow Flight on loopback: an in-process `Gateway` on 127.0.0.1:0 puts
//! what a `FlightWriter` sends into a local ring, where an `IpcReader`
//! receives it; refusals come back as gRPC status codes; `DoGet` streams a
//! ring out.
#![cfg(feature = "flight")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_shm::arrow::{in_mapping, IpcReader, IpcWriter};
use alloy_shm::flight::{FlightShmError, FlightWriter, Gateway, GatewayConfig};
use alloy_shm::region::RegionError;
use alloy_shm::ring::{Ring, RingConfig, RingError};
use alloy_testkit::testdata::{self, KINDS};
use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::{FlightClient, FlightDescriptor, Ticket};
use arrow_schema::SchemaRef;
use futures::TryStreamExt;
use tonic::Code;

/// Removes a named ring when dropped, whatever the test's outcome.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Ring::remove(&self.0);
    }
}

fn ring_name(tag: &str) -> (String, Cleanup) {
    let name = format!("alloy-flight-{tag}-{}", std::process::id());
    let _ = Ring::remove(&name);
    (name.clone(), Cleanup(name))
}

/// Starts a gateway on an ephemeral loopback port; returns its URL.
async fn gateway(config: GatewayConfig) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("grpc://{}", listener.local_addr().unwrap());
    tokio::spawn(Gateway::new(config).unwrap().serve(listener));
    url
}

/// Reads batches until end of stream on a blocking thread.
fn drain(ring: &Ring, mut reader: IpcReader) -> tokio::task::JoinHandle<Vec<RecordBatch>> {
    let ring = ring.clone();
    tokio::task::spawn_blocking(move || {
        let mut got = Vec::new();
        while let Some(b) = reader.next_batch().expect("read") {
            assert!(in_mapping(&ring, &b), "batch not read in place");
            // Keep a copy: holding the batch would hold its slot.
            let rows = arrow_array::UInt32Array::from_iter_values(0..b.num_rows() as u32);
            got.push(arrow_select::take::take_record_batch(&b, &rows).expect("copy"));
        }
        got
    })
}

fn concat(schema: &SchemaRef, batches: &[RecordBatch]) -> RecordBatch {
    arrow_select::concat::concat_batches(schema, batches).expect("concat")
}

fn small(schema_tag: &str, rows: i64) -> RecordBatch {
    RecordBatch::try_from_iter([(
        schema_tag,
        Arc::new(Int64Array::from_iter_values(0..rows)) as _,
    )])
    .unwrap()
}

/// Waits until `f` holds (the gateway works concurrently with the test).
async fn until(what: &str, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends `sent` through a gateway into a ring of 8 × `slot_size` and
/// returns what an `IpcReader` on the ring received (copied out).
async fn through_gateway(tag: &str, slot_size: u32, sent: &[RecordBatch]) -> Vec<RecordBatch> {
    let url = gateway(GatewayConfig::default()).await;
    let (name, _c) = ring_name(tag);
    let cfg = RingConfig {
        slot_count: 8,
        slot_size,
        ..Default::default()
    };
    let ring = Ring::builder(&name).config(cfg).create().unwrap();
    let rx = drain(&ring, IpcReader::new(ring.subscribe().unwrap()));
    let schema = sent[0].schema();
    let mut w = FlightWriter::connect(&url, &name, schema.clone())
        .await
        .unwrap();
    for b in sent {
        w.write(b).await.unwrap();
    }
    let summary = w.close().await.unwrap();
    // Empty batches carry no data in Flight (arrow-flight's encoder skips
    // them), so the gateway counts the others.
    let nonempty = sent.iter().filter(|b| b.num_rows() > 0).count();
    assert_eq!(summary.batches, nonempty as u64);
    let rows: usize = sent.iter().map(|b| b.num_rows()).sum();
    assert_eq!(summary.rows, rows as u64);
    assert!(summary.bytes > 0);
    let got = rx.await.unwrap();
    assert!(ring.is_closed());
    for b in &got {
        assert_eq!(b.schema().fields(), schema.fields());
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_batches_arrive_equal() {
    // Every kind (dictionaries included), batches that fit a 1 MiB slot:
    // received batch for batch.
    let kinds: Vec<u64> = (0..KINDS).collect();
    let sent: Vec<RecordBatch> = (0..12u64)
        .map(|i| {
            let rows = [1, 17, 300, 0][i as usize % 4];
            testdata::batch(100 + i, &kinds, rows, (i % 3) as usize, i % 2 == 0)
        })
        .collect();
    let got = through_gateway("rt", 1 << 20, &sent).await;
    let want: Vec<RecordBatch> = sent.into_iter().filter(|b| b.num_rows() > 0).collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_larger_than_a_slot_are_split() {
    // 64 KiB slots: the 3000-row batches are split by the gateway. (No
    // dictionary column: IpcWriter's split path loses a changed dictionary,
    // see the report of this change.)
    let kinds: Vec<u64> = (0..KINDS - 1).collect();
    let sent: Vec<RecordBatch> = (0..8u64)
        .map(|i| {
            let rows = [17, 3000][i as usize % 2];
            testdata::batch(200 + i, &kinds, rows, (i % 3) as usize, i % 2 == 0)
        })
        .collect();
    let got = through_gateway("split", 64 << 10, &sent).await;
    assert!(
        got.len() > sent.len(),
        "the 3000-row batches should be split"
    );
    let schema = sent[0].schema();
    assert_eq!(concat(&schema, &got), concat(&schema, &sent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_creates_missing_ring() {
    let url = gateway(GatewayConfig {
        ring: RingConfig {
            slot_count: 4,
            slot_size: 4096,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let (name, _c) = ring_name("create");
    let b = small("v", 100);
    let mut w = FlightWriter::connect(&url, &name, b.schema())
        .await
        .unwrap();
    w.write(&b).await.unwrap();
    w.close().await.unwrap();
    let ring = Ring::open(&name).expect("created by the gateway");
    assert_eq!(ring.config().slot_size, 4096);
    assert!(ring.is_closed());
    // The schema stays in the schema area, and a late joiner of the ended
    // stream is told so (LAYOUT §4.1), not handed an empty stream.
    assert!(ring.schema().unwrap().is_some());
    let mut r = IpcReader::new(ring.subscribe().unwrap());
    match r.next_batch() {
        Err(alloy_shm::arrow::ArrowShmError::Ring(RingError::StreamEnded { .. })) => {}
        other => panic!("expected StreamEnded, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_grpc_statuses() {
    let url = gateway(GatewayConfig::default()).await;
    let b = small("v", 10);

    // The writer checks the name itself …
    let e = FlightWriter::connect(&url, "../etc", b.schema())
        .await
        .unwrap_err();
    assert!(
        matches!(e, FlightShmError::Region(RegionError::InvalidName(_))),
        "{e}"
    );
    // … and the gateway refuses bad descriptors from any client.
    let endpoint = url.replace("grpc://", "http://");
    for (desc, want) in [
        (
            Some(FlightDescriptor::new_path(vec!["bad/name".into()])),
            "invalid ring name",
        ),
        (Some(FlightDescriptor::new_cmd(b"SELECT 1".to_vec())), "CMD"),
        (
            Some(FlightDescriptor::new_path(vec!["a".into(), "b".into()])),
            "exactly one",
        ),
        (None, "no FlightDescriptor"),
    ] {
        let ch = tonic::transport::Endpoint::from_shared(endpoint.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let data = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(desc)
            .build(futures::stream::iter([Ok(b.clone())]));
        let e = match FlightClient::new(ch).do_put(data).await {
            Ok(s) => s.try_collect::<Vec<_>>().await.unwrap_err(),
            Err(e) => e,
        };
        let FlightShmError::Status(s) = FlightShmError::from(e) else {
            panic!("not a status");
        };
        assert_eq!(s.code(), Code::InvalidArgument, "{s}");
        assert!(s.message().contains(want), "{s}");
    }

    // One DoPut per ring at a time.
    let (name, _c) = ring_name("busy");
    let ring = Ring::builder(&name)
        .config(RingConfig::default())
        .create()
        .unwrap();
    let mut first = FlightWriter::connect(&url, &name, b.schema())
        .await
        .unwrap();
    first.write(&b).await.unwrap();
    until("the gateway attached", || ring.producer_pid() != 0).await;
    let mut second = FlightWriter::connect(&url, &name, b.schema())
        .await
        .unwrap();
    let e = match second.write(&b).await {
        Ok(()) => second.close().await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(e.code(), Some(Code::AlreadyExists), "{e}");
    first.close().await.unwrap();

    // A closed stream takes no more data.
    let w = FlightWriter::connect(&url, &name, b.schema())
        .await
        .unwrap();
    let e = w.close().await.unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition), "{e}");
    assert!(e.to_string().contains("closed"), "{e}");

    // A ring keeps one schema.
    let (name2, _c2) = ring_name("schema");
    let ring2 = Ring::builder(&name2)
        .config(RingConfig::default())
        .create()
        .unwrap();
    let mut local = IpcWriter::new(ring2.producer().unwrap(), b.schema()).unwrap();
    local.write(&b).unwrap();
    drop(local); // detaches without closing
    let other =
        RecordBatch::try_from_iter([("s", Arc::new(StringArray::from(vec!["x"])) as _)]).unwrap();
    let mut w = FlightWriter::connect(&url, &name2, other.schema())
        .await
        .unwrap();
    let e = match w.write(&other).await {
        Ok(()) => w.close().await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(e.code(), Some(Code::FailedPrecondition), "{e}");
    assert!(e.to_string().contains("another schema"), "{e}");

    // A batch with another schema than the writer's is refused locally.
    let mut w = FlightWriter::connect(&url, &name2, b.schema())
        .await
        .unwrap();
    assert!(matches!(
        w.write(&other).await,
        Err(FlightShmError::SchemaMismatch)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_put_leaves_the_stream_open_for_a_retry() {
    let url = gateway(GatewayConfig::default()).await;
    let (name, _c) = ring_name("resume");
    let ring = Ring::builder(&name)
        .config(RingConfig::default())
        .create()
        .unwrap();
    let rx = drain(&ring, IpcReader::new(ring.subscribe().unwrap()));
    let (a, b, c) = (small("v", 5), small("v", 7), small("v", 9));

    let mut w = FlightWriter::connect(&url, &name, a.schema())
        .await
        .unwrap();
    w.write(&a).await.unwrap();
    w.write(&b).await.unwrap();
    until("two batches in the ring", || ring.published() >= 3).await;
    drop(w); // cancels the DoPut
    until("the gateway detached", || ring.producer_pid() == 0).await;
    assert!(
        !ring.is_closed(),
        "a cancelled DoPut must not end the stream"
    );

    let mut w = FlightWriter::connect(&url, &name, a.schema())
        .await
        .unwrap();
    w.write(&c).await.unwrap();
    w.close().await.unwrap();
    let got = rx.await.unwrap();
    assert_eq!(got, vec![a, b, c]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_get_streams_a_ring_out() {
    let url = gateway(GatewayConfig::default()).await;
    let (name, _c) = ring_name("get");
    let ring = Ring::builder(&name)
        .config(RingConfig::default())
        .create()
        .unwrap();
    let kinds: Vec<u64> = (0..KINDS).collect();
    let sent: Vec<RecordBatch> = (0..4u64)
        .map(|i| testdata::batch(7 + i, &kinds, 50, 0, true))
        .collect();
    let mut w = IpcWriter::new(ring.producer().unwrap(), sent[0].schema()).unwrap();
    w.write(&sent[0]).unwrap(); // publishes the schema for the late joiner

    let ch = tonic::transport::Endpoint::from_shared(url.replace("grpc://", "http://"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightClient::new(ch);
    let stream = client
        .do_get(Ticket::new(name.clone().into_bytes()))
        .await
        .unwrap();
    // The DoGet consumer joined when the call returned: it sees what follows.
    tokio::task::spawn_blocking(move || {
        for b in &sent[1..] {
            w.write(b).unwrap();
        }
        w.close().unwrap();
    });
    let got: Vec<RecordBatch> = stream.try_collect().await.unwrap();
    let want: Vec<RecordBatch> = (1..4u64)
        .map(|i| testdata::batch(7 + i, &kinds, 50, 0, true))
        .collect();
    assert_eq!(got, want);

    let e = client
        .do_get(Ticket::new(b"no-such-ring-here".to_vec()))
        .await
        .unwrap_err();
    let FlightShmError::Status(s) = FlightShmError::from(e) else {
        panic!("not a status");
    };
    assert_eq!(s.code(), Code::NotFound, "{s}");
}
