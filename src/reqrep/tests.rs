//! Tests of the channel: codec against LAYOUT.md §12.2 (zero-copy, damaged
//! messages, the shared envelope vectors) and Worker + Client in-process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, DictionaryArray, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

use super::codec::{read_envelope, Body, Decoder, Encoder};
use super::*;
use crate::arrow::{in_mapping, ArrowShmError, IpcReader};
use crate::ring::{Ring, RingConfig};

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "alloy-test-rr-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A batch with an int64 column "x" and a nullable string column "tag".
fn request(x: Vec<i64>) -> RecordBatch {
    let tags: StringArray = (0..x.len())
        .map(|i| (i % 2 == 0).then(|| format!("t{i}")))
        .collect();
    RecordBatch::try_from_iter([
        ("x", Arc::new(Int64Array::from(x)) as _),
        ("tag", Arc::new(tags) as _),
    ])
    .unwrap()
}

fn env(kind: Kind) -> Envelope {
    Envelope {
        kind,
        session: 7,
        id: 9,
        deadline_ns: 0,
        status: 0,
        schema_len: 0,
        batch_len: 0,
        text_len: 0,
    }
}

fn ring() -> Ring {
    Ring::anonymous_builder()
        .config(RingConfig {
            slot_count: 4,
            slot_size: 1 << 16,
            schema_capacity: 0,
            ..Default::default()
        })
        .create()
        .unwrap()
}

#[test]
fn codec_round_trip_is_zero_copy_and_aligned() {
    let ring = ring();
    let mut rx = ring.subscribe().unwrap();
    let mut tx = ring.producer().unwrap();
    let mut enc = Encoder::new();
    let batch = request(vec![1, 2, 3]);
    for _ in 0..2 {
        // twice: the second uses the cached schema on both sides
        let e = enc.encode(&batch).unwrap();
        enc.publish(&mut tx, env(Kind::Request), e).unwrap();
    }
    let mut dec = Decoder::new();
    for _ in 0..2 {
        let lease = rx.recv().unwrap().unwrap();
        assert_eq!(lease.flags(), FLAG);
        let e = read_envelope(&lease, &[Kind::Request]).unwrap();
        assert_eq!((e.session, e.id), (7, 9));
        assert_eq!(e.schema_len % 64, 0);
        let Body::Batch(got) = dec.decode(&e, lease).unwrap() else {
            panic!("not a batch")
        };
        assert_eq!(got, batch);
        assert!(in_mapping(&ring, &got), "request decoded by copying");
        let ptr = got.column(0).to_data().buffers()[0].as_ptr() as usize;
        assert_eq!(ptr % 64, 0);
    }
}

/// Replies the worker writes through the direct plan (`Encoder::plan` +
/// `publish_planned`) are byte for byte what `encode` + `publish` write,
/// for every testdata kind the plan carries, with and without nulls, at a
/// slice offset, and into slots dirtied by earlier messages.
#[test]
fn planned_replies_are_the_bytes_encode_and_publish_write() {
    use alloy_testkit::testdata::{self, KINDS};
    let ring = ring();
    let mut rx = ring.subscribe().unwrap();
    let mut tx = ring.producer().unwrap();
    let mut planned_kinds = 0;
    for kind in 0..KINDS {
        let batches: Vec<RecordBatch> = (0..4u64)
            .map(|i| testdata::batch(i, &[kind], 1 + 37 * i as usize, i as usize, i % 2 == 0))
            .collect();
        let (mut with_plan, mut without) = (Encoder::new(), Encoder::new());
        let mut planned = 0;
        for b in batches.iter().chain([&batches[3].slice(5, 20)]) {
            let e = without.encode(b).unwrap();
            without.publish(&mut tx, env(Kind::Reply), e).unwrap();
            let want = rx.recv().unwrap().unwrap().to_vec();
            match with_plan.plan(b).unwrap() {
                Some((schema, len)) => {
                    with_plan
                        .publish_planned(&mut tx, env(Kind::Reply), &schema, len, b)
                        .unwrap();
                    planned += 1;
                }
                None => {
                    let e = with_plan.encode(b).unwrap();
                    with_plan.publish(&mut tx, env(Kind::Reply), e).unwrap();
                }
            }
            let got = rx.recv().unwrap().unwrap().to_vec();
            assert!(got == want, "kind {kind}: planned reply bytes differ");
        }
        if planned > 0 {
            planned_kinds += 1;
        }
    }
    // Every flat kind without dictionaries (the others have none planned).
    assert!(planned_kinds >= 12, "only {planned_kinds} kinds planned");
}

#[test]
fn plain_ipc_reader_refuses_channel_messages() {
    let ring = ring();
    let mut reader = IpcReader::new(ring.subscribe().unwrap());
    let mut tx = ring.producer().unwrap();
    let mut enc = Encoder::new();
    let e = enc.encode(&request(vec![1, 2, 3])).unwrap();
    enc.publish(&mut tx, env(Kind::Request), e).unwrap();
    match reader.next_batch() {
        Err(ArrowShmError::UnknownFlags { flags: FLAG, .. }) => {}
        other => panic!("expected UnknownFlags, got {other:?}"),
    }
}

/// Two dictionary columns (one nested in a list) and a plain one; the
/// dictionaries differ with `k`.
fn dictionary_batch(k: usize) -> RecordBatch {
    use arrow_array::builder::{ListBuilder, StringDictionaryBuilder};
    use arrow_array::types::Int32Type;
    let words = [["apac", "eu", "us"], ["north", "south", "east"]][k % 2];
    let d: DictionaryArray<Int32Type> = (0..10).map(|i| words[i % 3]).collect();
    let mut lb = ListBuilder::new(StringDictionaryBuilder::<Int32Type>::new());
    for i in 0..10 {
        for j in 0..i % 3 {
            lb.values().append_value(words[(i + j) % 3]);
        }
        lb.append(i != 4);
    }
    RecordBatch::try_from_iter([
        ("d", Arc::new(d) as _),
        ("l", Arc::new(lb.finish()) as _),
        ("x", Arc::new(Int64Array::from_iter_values(0..10)) as _),
    ])
    .unwrap()
}

#[test]
fn dictionary_columns_travel_in_every_message() {
    let ring = ring();
    let mut rx = ring.subscribe().unwrap();
    let mut tx = ring.producer().unwrap();
    let mut enc = Encoder::new();
    let sent = [
        dictionary_batch(0),
        dictionary_batch(1),
        dictionary_batch(0).slice(3, 5),
    ];
    for b in &sent {
        let e = enc.encode(b).unwrap();
        enc.publish(&mut tx, env(Kind::Request), e).unwrap();
    }
    // Each message decodes on its own (a queue group spreads them over
    // worker threads): a fresh decoder per message.
    for b in &sent {
        let lease = rx.recv().unwrap().unwrap();
        let e = read_envelope(&lease, &[Kind::Request]).unwrap();
        assert_eq!(e.batch_len % 64, 0);
        let Body::Batch(got) = Decoder::new().decode(&e, lease).unwrap() else {
            panic!("not a batch")
        };
        assert_eq!(&got, b);
        assert!(in_mapping(&ring, &got), "request decoded by copying");
    }
}

#[test]
fn damaged_messages_are_typed_errors() {
    let ring = ring();
    let mut rx = ring.subscribe().unwrap();
    let mut tx = ring.producer().unwrap();
    let mut enc = Encoder::new();
    let e = enc.encode(&request(vec![4, 5, 6])).unwrap();
    enc.publish(&mut tx, env(Kind::Request), e).unwrap();
    let good = rx.recv().unwrap().unwrap().to_vec();
    let parsed = Envelope::parse(&good).unwrap();
    let s_end = 64 + parsed.schema_len as usize;

    let mut cases: Vec<(&str, Vec<u8>, u32)> = Vec::new();
    cases.push(("wrong flags", good.clone(), 1));
    let mut b = good.clone();
    b[0] ^= 1;
    cases.push(("bad magic", b, FLAG));
    let mut b = good.clone();
    b.truncate(good.len() - 8);
    cases.push(("short slot", b, FLAG));
    let mut b = good.clone();
    b[64] = 0; // schema continuation marker
    cases.push(("schema framing", b, FLAG));
    let mut b = good.clone();
    b[s_end..s_end + 4].fill(0); // batch continuation marker
    cases.push(("batch framing", b, FLAG));
    // The schema where the batch should be.
    let mut b = good[..s_end].to_vec();
    b.extend_from_slice(&good[64..s_end]);
    let mut e2 = parsed;
    e2.batch_len = parsed.schema_len;
    e2.write_to(&mut b);
    cases.push(("schema as batch", b, FLAG));
    for (what, bytes, flags) in cases {
        tx.send(&bytes, flags).unwrap();
        let lease = rx.recv().unwrap().unwrap();
        let r = read_envelope(&lease, &[Kind::Request])
            .and_then(|e| Decoder::new().decode(&e, lease).map(|_| ()));
        match r {
            Err(ReqRepError::BadMessage(_)) | Err(ReqRepError::Envelope(_)) => {}
            other => panic!("{what}: expected a bad-message error, got {other:?}"),
        }
    }
    // A request on a reply ring is refused too.
    let e = enc.encode(&request(vec![1])).unwrap();
    enc.publish(&mut tx, env(Kind::Request), e).unwrap();
    let lease = rx.recv().unwrap().unwrap();
    assert!(matches!(
        read_envelope(&lease, &[Kind::Reply, Kind::Error]),
        Err(ReqRepError::BadMessage(_))
    ));
}

// ---- the shared vectors (testdata/reqrep/, LAYOUT.md §12.6) ----

fn vector_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/reqrep")
}

/// The valid vectors: file name, envelope, trailing text.
fn valid_vectors() -> Vec<(&'static str, Envelope, &'static [u8])> {
    let req = Envelope {
        kind: Kind::Request,
        session: 0x0123_4567_89AB_CDEF,
        id: 42,
        deadline_ns: 1_700_000_000_123_456_789,
        status: 0,
        schema_len: 128,
        batch_len: 320,
        text_len: 0,
    };
    let rep = Envelope {
        kind: Kind::Reply,
        schema_len: 192,
        batch_len: 448,
        ..req
    };
    let err = Envelope {
        kind: Kind::Error,
        status: status::HANDLER,
        schema_len: 0,
        batch_len: 0,
        text_len: 11,
        ..req
    };
    vec![
        ("request.bin", req, b""),
        ("reply.bin", rep, b""),
        ("error.bin", err, b"no column x"),
    ]
}

/// The invalid vectors: file name, bytes, expected error kind.
fn bad_vectors() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let req = valid_vectors()[0].1.to_bytes().to_vec();
    let with = |at: usize, bytes: &[u8]| {
        let mut b = req.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        b
    };
    vec![
        ("short.bin", req[..40].to_vec(), "Short"),
        ("bad_magic.bin", with(0, b"ALRX"), "BadMagic"),
        (
            "bad_version.bin",
            with(4, &2u16.to_le_bytes()),
            "VersionMismatch",
        ),
        ("bad_kind.bin", with(6, &9u16.to_le_bytes()), "BadKind"),
        (
            "bad_lengths.bin",
            with(44, &5u32.to_le_bytes()),
            "BadLengths",
        ),
        (
            "bad_schema_len.bin",
            with(36, &100u32.to_le_bytes()),
            "BadLengths",
        ),
    ]
}

fn vectors_json() -> String {
    let mut s = String::from("{\n  \"valid\": [\n");
    let valid = valid_vectors();
    for (i, (file, e, text)) in valid.iter().enumerate() {
        s += &format!(
            "    {{\"file\": \"{file}\", \"kind\": {}, \"session\": \"{:#018x}\", \"id\": {}, \"deadline_ns\": {}, \"status\": {}, \"schema_len\": {}, \"batch_len\": {}, \"text_len\": {}, \"text\": \"{}\"}}{}\n",
            e.kind.code(), e.session, e.id, e.deadline_ns, e.status, e.schema_len, e.batch_len, e.text_len,
            String::from_utf8_lossy(text),
            if i + 1 < valid.len() { "," } else { "" }
        );
    }
    s += "  ],\n  \"bad\": [\n";
    let bad = bad_vectors();
    for (i, (file, _, kind)) in bad.iter().enumerate() {
        s += &format!(
            "    {{\"file\": \"{file}\", \"error\": \"{kind}\"}}{}\n",
            if i + 1 < bad.len() { "," } else { "" }
        );
    }
    s + "  ]\n}\n"
}

#[test]
fn envelope_vectors() {
    let dir = vector_dir();
    let mut files: Vec<(String, Vec<u8>)> = valid_vectors()
        .into_iter()
        .map(|(f, e, text)| {
            let mut b = e.to_bytes().to_vec();
            b.extend_from_slice(text);
            (f.to_string(), b)
        })
        .collect();
    files.extend(
        bad_vectors()
            .into_iter()
            .map(|(f, b, _)| (f.to_string(), b)),
    );
    files.push(("envelopes.json".into(), vectors_json().into_bytes()));
    if std::env::var_os("ALLOY_REGEN_VECTORS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (f, b) in &files {
            std::fs::write(dir.join(f), b).unwrap();
        }
    }
    for (f, b) in &files {
        let on_disk = std::fs::read(dir.join(f))
            .unwrap_or_else(|e| panic!("{f}: {e} (regenerate with ALLOY_REGEN_VECTORS=1)"));
        assert_eq!(&on_disk, b, "{f} differs from what this build writes");
    }
    for (f, want, text) in valid_vectors() {
        let b = std::fs::read(dir.join(f)).unwrap();
        let got = Envelope::parse(&b).unwrap();
        assert_eq!(got, want, "{f}");
        if got.kind == Kind::Error {
            got.check_len(b.len()).unwrap();
            assert_eq!(&b[64..], text);
        }
    }
    for (f, _, kind) in bad_vectors() {
        let b = std::fs::read(dir.join(f)).unwrap();
        match Envelope::parse(&b) {
            Err(e) => assert_eq!(e.kind_name(), kind, "{f}: {e}"),
            Ok(e) => panic!("{f}: parsed as {e:?}, want {kind}"),
        }
    }
}

// ---- Worker + Client in one process ----

/// x → (x, x*x) with the sum in the schema metadata; metadata "sleep_ms"
/// delays, a batch without "x" is an error, "panic" panics.
fn square(batch: RecordBatch) -> Result<RecordBatch, String> {
    let meta = batch.schema().metadata().clone();
    if let Some(ms) = meta.get("sleep_ms") {
        std::thread::sleep(Duration::from_millis(ms.parse().unwrap()));
    }
    if meta.contains_key("panic") {
        panic!("asked to panic");
    }
    if meta.get("op").map(String::as_str) == Some("echo") {
        return Ok(batch);
    }
    let x = batch
        .column_by_name("x")
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .ok_or("request has no int64 column \"x\"")?;
    let sq: Int64Array = x.iter().map(|v| v.map(|v| v * v)).collect();
    let sum: i64 = x.iter().flatten().sum();
    let schema = Schema::new(vec![
        Field::new("x", DataType::Int64, true),
        Field::new("x2", DataType::Int64, true),
    ])
    .with_metadata(HashMap::from([("sum".to_string(), sum.to_string())]));
    RecordBatch::try_new(Arc::new(schema), vec![Arc::new(x.clone()), Arc::new(sq)])
        .map_err(|e| e.to_string())
}

fn with_meta(batch: RecordBatch, k: &str, v: &str) -> RecordBatch {
    let schema = batch
        .schema()
        .as_ref()
        .clone()
        .with_metadata(HashMap::from([(k.to_string(), v.to_string())]));
    batch.with_schema(Arc::new(schema)).unwrap()
}

fn start_worker(
    name: &str,
    threads: usize,
) -> (
    StopHandle,
    std::thread::JoinHandle<Result<ServeStats, ReqRepError>>,
) {
    let worker = Worker::create(
        name,
        &WorkerConfig {
            slot_count: 16,
            slot_size: 1 << 16,
            threads,
            ..Default::default()
        },
    )
    .unwrap();
    let stop = worker.stop_handle();
    (stop, std::thread::spawn(move || worker.serve(square)))
}

#[test]
fn many_concurrent_calls_are_matched() {
    let name = unique("many");
    let (stop, serving) = start_worker(&name, 2);
    let client = Arc::new(Client::connect(&name, Duration::from_secs(5)).unwrap());
    std::thread::scope(|s| {
        for t in 0..8i64 {
            let client = client.clone();
            s.spawn(move || {
                for i in 0..150i64 {
                    let x: Vec<i64> = (0..(i % 7 + 1)).map(|k| t * 1000 + i + k).collect();
                    let reply = client
                        .call(&request_x(&x), Some(Duration::from_secs(10)))
                        .unwrap();
                    let x2 = reply.column(1).as_primitive::<Int64Type>();
                    let want: Vec<i64> = x.iter().map(|v| v * v).collect();
                    assert_eq!(x2.values(), &want[..]);
                    let sum: i64 = x.iter().sum();
                    assert_eq!(reply.schema().metadata()["sum"], sum.to_string());
                }
            });
        }
    });
    assert_eq!(client.pending(), 0);
    drop(client);
    stop.stop();
    let stats = serving.join().unwrap().unwrap();
    assert_eq!(stats.replies, 8 * 150);
    assert_eq!(stats.errors, 0);
}

fn request_x(x: &[i64]) -> RecordBatch {
    RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(x.to_vec())) as _)]).unwrap()
}

#[test]
fn timeout_then_later_calls_work() {
    let name = unique("timeout");
    let (stop, serving) = start_worker(&name, 2);
    let client = Client::connect(&name, Duration::from_secs(5)).unwrap();
    let slow = with_meta(request_x(&[1, 2]), "sleep_ms", "400");
    let t0 = Instant::now();
    match client.call(&slow, Some(Duration::from_millis(100))) {
        Err(ReqRepError::Timeout(_)) => {}
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(
        t0.elapsed() < Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(client.pending(), 0);
    for i in 0..20 {
        let reply = client
            .call(&request_x(&[i]), Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(reply.column(1).as_primitive::<Int64Type>().value(0), i * i);
    }
    std::thread::sleep(Duration::from_millis(500)); // the late reply arrives and is dropped
    let reply = client.call(&request_x(&[3]), None).unwrap();
    assert_eq!(reply.column(1).as_primitive::<Int64Type>().value(0), 9);
    drop(reply);
    client.close();
    stop.stop();
    serving.join().unwrap().unwrap();
}

#[test]
fn error_and_panic_replies_carry_their_text() {
    let name = unique("errors");
    let (stop, serving) = start_worker(&name, 1);
    let client = Client::connect(&name, Duration::from_secs(5)).unwrap();
    let no_x =
        RecordBatch::try_from_iter([("y", Arc::new(Int64Array::from(vec![1])) as _)]).unwrap();
    match client.call(&no_x, Some(Duration::from_secs(5))) {
        Err(ReqRepError::Remote { status, text }) => {
            assert_eq!(status, status::HANDLER);
            assert_eq!(text, "request has no int64 column \"x\"");
        }
        other => panic!("expected a Remote error, got {other:?}"),
    }
    let boom = with_meta(request_x(&[1]), "panic", "1");
    match client.call(&boom, Some(Duration::from_secs(5))) {
        Err(ReqRepError::Remote { status, text }) => {
            assert_eq!(status, status::PANIC);
            assert!(text.contains("asked to panic"), "{text}");
        }
        other => panic!("expected a Remote error, got {other:?}"),
    }
    // The worker is still fine.
    client
        .call(&request_x(&[2]), Some(Duration::from_secs(5)))
        .unwrap();
    client.close();
    stop.stop();
    let stats = serving.join().unwrap().unwrap();
    assert_eq!((stats.replies, stats.errors), (1, 2));
}

#[test]
fn second_client_and_second_worker_are_refused() {
    let name = unique("busy");
    let (stop, serving) = start_worker(&name, 1);
    match Worker::create(&name, &WorkerConfig::default()) {
        Err(ReqRepError::WorkerExists { pid, .. }) => assert_eq!(pid, std::process::id()),
        other => panic!("expected WorkerExists, got {other:?}"),
    }
    let client = Client::connect(&name, Duration::from_secs(5)).unwrap();
    match Client::connect(&name, Duration::from_secs(1)) {
        Err(ReqRepError::Busy { .. }) => {}
        other => panic!("expected Busy, got {other:?}"),
    }
    // After the first client leaves, another one may connect.
    client.close();
    let again = Client::connect(&name, Duration::from_secs(1)).unwrap();
    again
        .call(&request_x(&[5]), Some(Duration::from_secs(5)))
        .unwrap();
    again.close();
    stop.stop();
    serving.join().unwrap().unwrap();
}

#[test]
fn worker_stop_fails_pending_and_new_calls() {
    let name = unique("gone");
    let (stop, serving) = start_worker(&name, 1);
    let client = Arc::new(Client::connect(&name, Duration::from_secs(5)).unwrap());
    let c = client.clone();
    let pending =
        std::thread::spawn(move || c.call(&with_meta(request_x(&[1]), "sleep_ms", "300"), None));
    // Stop while the worker has the request in hand (claimed, unreleased).
    let view = crate::ring::RingView::open(&request_ring(&name)).unwrap();
    let t0 = Instant::now();
    while !view.stat().consumers.iter().any(|c| c.leases_held > 0) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the worker never took the request"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.stop();
    serving.join().unwrap().unwrap();
    // The request in hand is answered before the worker closes the channel,
    // then everything fails with PeerGone.
    let first = pending.join().unwrap();
    assert!(
        first.is_ok() || matches!(first, Err(ReqRepError::PeerGone(_))),
        "{first:?}"
    );
    let t0 = Instant::now();
    loop {
        match client.call(&request_x(&[1]), Some(Duration::from_secs(2))) {
            Err(ReqRepError::PeerGone(_)) => break,
            other if t0.elapsed() > Duration::from_secs(1) => {
                panic!("expected PeerGone, got {other:?}")
            }
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    assert!(!std::path::Path::new(&format!("/dev/shm/{}", request_ring(&name))).exists());
}

#[test]
fn dictionary_columns_round_trip_through_a_worker() {
    let name = unique("dict");
    let (stop, serving) = start_worker(&name, 2);
    let client = Client::connect(&name, Duration::from_secs(5)).unwrap();
    for k in 0..6 {
        let b = with_meta(dictionary_batch(k), "op", "echo");
        let got = client.call(&b, Some(Duration::from_secs(10))).unwrap();
        assert_eq!(got, b);
    }
    client.close();
    stop.stop();
    let stats = serving.join().unwrap().unwrap();
    assert_eq!((stats.replies, stats.errors), (6, 0));
}

#[test]
fn connect_without_worker_times_out() {
    let name = unique("none");
    let t0 = Instant::now();
    match Client::connect(&name, Duration::from_millis(100)) {
        Err(ReqRepError::NotServed { .. }) => {}
        other => panic!("expected NotServed, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(1));
}
