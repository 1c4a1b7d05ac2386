//! The shared test vectors of LAYOUT.md §10: this writer must reproduce
//! `testdata/layout/*.bin` byte for byte, and this reader must interpret
//! them as their JSON says. `ALLOY_REGEN_VECTORS=1` rewrites them.
//!
//! The JSON "expected" values are written out by hand from the scripted
//! operations, not derived from the writer's output, so the reader check is
//! independent of the writer.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::*;
use crate::layout::{off, Layout, LayoutError};
use crate::region::Stamp;

const CREATOR: Stamp = Stamp {
    pid: 4242,
    realtime_ns: 1_700_000_000_000_000_000,
};
const PRODUCER: Ident = Ident {
    pid: 4242,
    start: 3000,
    fixed_ns: Some(1000),
};
const CONSUMER: Ident = Ident {
    pid: 4243,
    start: 4000,
    fixed_ns: Some(2000),
};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/layout")
}

fn small() -> RingConfig {
    RingConfig {
        slot_count: 4,
        slot_size: 64,
        max_subscribers: 2,
        max_members: 4,
        schema_capacity: 64,
    }
}

fn medium() -> RingConfig {
    RingConfig {
        slot_count: 8,
        slot_size: 256,
        max_subscribers: 4,
        max_members: 8,
        schema_capacity: 128,
    }
}

fn config_json(c: &RingConfig) -> Value {
    json!({
        "slot_count": c.slot_count, "slot_size": c.slot_size,
        "max_subscribers": c.max_subscribers, "max_members": c.max_members,
        "schema_capacity": c.schema_capacity,
    })
}

/// Message `j` of the script: 11·j bytes, byte i = (31·j + i) mod 256.
fn message(j: u64) -> Vec<u8> {
    (0..11 * j).map(|i| ((31 * j + i) % 256) as u8).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn fresh(cfg: &RingConfig) -> Vec<u8> {
    Ring::create_anonymous_fixed(cfg, CREATOR, PRODUCER)
        .unwrap()
        .region()
        .snapshot()
}

/// LAYOUT.md §10 `ring_after_ops`, run through the real API.
fn after_ops() -> Vec<u8> {
    let ring = Ring::create_anonymous_fixed(&small(), CREATOR, PRODUCER).unwrap();
    let mut p = ring.producer().unwrap();
    p.set_schema(b"schema-v1").unwrap();
    let reader = ring.with_ident(CONSUMER);
    let mut c = reader.subscribe().unwrap();
    for j in 0..3 {
        p.send(&message(j), j as u32).unwrap();
    }
    let l0 = c.try_recv().unwrap().unwrap();
    let l1 = c.try_recv().unwrap().unwrap();
    let l2 = c.try_recv().unwrap().unwrap();
    drop(l1);
    drop(l0);
    drop(l2);
    for j in 3..6 {
        p.send(&message(j), j as u32).unwrap();
    }
    let held = c.try_recv().unwrap().unwrap();
    assert_eq!(held.seq(), 3);
    p.close();
    let snap = ring.region().snapshot();
    drop(held);
    snap
}

/// LAYOUT.md §10 `ring_new_stream`: a second stream on a closed ring.
fn new_stream() -> Vec<u8> {
    let ring = Ring::create_anonymous_fixed(&small(), CREATOR, PRODUCER).unwrap();
    let mut p = ring.producer().unwrap();
    p.set_schema(b"schema-v1").unwrap();
    let reader = ring.with_ident(CONSUMER);
    let mut c = reader.subscribe().unwrap();
    for j in 0..2 {
        p.send(&message(j), j as u32).unwrap();
    }
    drop(c.try_recv().unwrap().unwrap());
    drop(c.try_recv().unwrap().unwrap());
    p.close();
    let mut p = ring.producer_builder().new_stream(true).create().unwrap();
    p.set_schema(b"schema-v2").unwrap();
    for j in 2..4 {
        p.send(&message(j), j as u32).unwrap();
    }
    drop(p);
    let snap = ring.region().snapshot();
    drop(c);
    snap
}

#[allow(clippy::too_many_arguments)] // one argument per offset of LAYOUT.md §3
fn header_expect(
    cfg: &RingConfig,
    subs: usize,
    members: usize,
    done: usize,
    schema: usize,
    slots: usize,
    stride: usize,
    total: usize,
) -> Value {
    json!({
        "config": config_json(cfg), "creator_pid": 4242, "created_ns": 1_700_000_000_000_000_000u64,
        "subs_off": subs, "members_off": members, "done_off": done, "schema_off": schema,
        "slots_off": slots, "slot_stride": stride, "total_size": total,
    })
}

/// Slot `i` holding message `j` of stream generation `gen`.
fn slot_json(i: u64, j: u64, gen: u64) -> Value {
    json!({"index": i, "stamp": j + 1, "len": 11 * j, "flags": j, "gen": gen, "payload": hex(&message(j))})
}

fn new_stream_expect() -> Value {
    json!({
        "config": config_json(&small()),
        "script": "create; attach producer; set_schema(\"schema-v1\"); subscribe broadcast; publish 0,1; claim and release 0,1; close; attach producer with new_stream; set_schema(\"schema-v2\"); publish 2,3; detach (no close)",
        "published": 4, "closed": 0, "error": 0, "producer_pid": 0, "producer_start": 0, "producer_heartbeat": 1000,
        "stream_start": 2, "stream_gen": 1,
        "data_waiters": 0, "data_futex": 2, "space_waiters": 0, "space_futex": 0,
        "table_epoch": 1, "table_lock": 0, "table_lock_start": 0, "lost_count": 0, "lost_pid": 0,
        "schema_seq": 6, "schema": hex(b"schema-v2"),
        "subscribers": [
            {"index": 0, "state": 2, "kind": 1, "group": 0, "members": 1, "owner_pid": 4243, "owner_start": 4000, "heartbeat": 2000, "claim": 2, "release": 2},
            {"index": 1, "state": 0, "kind": 0, "group": 0, "members": 0, "owner_pid": 0, "owner_start": 0, "heartbeat": 0, "claim": 0, "release": 0},
        ],
        "members": [
            {"index": 0, "state": 2, "subscriber": 0, "pid": 4243, "start": 4000, "heartbeat": 2000},
            {"index": 1, "state": 0, "subscriber": 0, "pid": 0, "start": 0, "heartbeat": 0},
            {"index": 2, "state": 0, "subscriber": 0, "pid": 0, "start": 0, "heartbeat": 0},
            {"index": 3, "state": 0, "subscriber": 0, "pid": 0, "start": 0, "heartbeat": 0},
        ],
        "done": [[1, 2, 0, 0], [0, 0, 0, 0]],
        "slots": [slot_json(0, 0, 0), slot_json(1, 1, 0), slot_json(2, 2, 1), slot_json(3, 3, 1)],
    })
}

fn after_ops_expect() -> Value {
    let slot = |i: u64, j: u64| slot_json(i, j, 0);
    json!({
        "config": config_json(&small()),
        "script": "create; attach producer; set_schema(\"schema-v1\"); subscribe broadcast; publish 0,1,2; claim 0,1,2; release 1,0,2; publish 3,4,5; claim 3 (held); close",
        "published": 6, "closed": 1, "error": 0, "producer_pid": 0, "producer_start": 0, "producer_heartbeat": 1000,
        "stream_start": 0, "stream_gen": 0,
        "data_waiters": 0, "data_futex": 1, "space_waiters": 0, "space_futex": 0,
        "table_epoch": 1, "table_lock": 0, "table_lock_start": 0, "lost_count": 0, "lost_pid": 0,
        "schema_seq": 2, "schema": hex(b"schema-v1"),
        "subscribers": [
            {"index": 0, "state": 2, "kind": 1, "group": 0, "members": 1, "owner_pid": 4243, "owner_start": 4000, "heartbeat": 2000, "claim": 4, "release": 3},
            {"index": 1, "state": 0, "kind": 0, "group": 0, "members": 0, "owner_pid": 0, "owner_start": 0, "heartbeat": 0, "claim": 0, "release": 0},
        ],
        "members": [
            {"index": 0, "state": 2, "subscriber": 0, "pid": 4243, "start": 4000, "heartbeat": 2000},
            {"index": 1, "state": 0, "subscriber": 0, "pid": 0, "start": 0, "heartbeat": 0},
            {"index": 2, "state": 0, "subscriber": 0, "pid": 0, "start": 0, "heartbeat": 0},
            {"index": 3, "state": 0, "subscriber": 0, "pid": 0, "start": 0, "heartbeat": 0},
        ],
        "done": [[1, 2, 3, 0], [0, 0, 0, 0]],
        "slots": [slot(0, 4), slot(1, 5), slot(2, 2), slot(3, 3)],
    })
}

fn bad_files(small: &[u8]) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = small.to_vec();
        f(&mut b);
        b
    };
    vec![
        (
            "bad_magic.bin",
            with(&|b| b[0..8].copy_from_slice(b"NOTALLOY")),
            "BadMagic",
        ),
        ("bad_version.bin", with(&|b| b[8] = 1), "VersionMismatch"),
        ("bad_truncated.bin", small[..4000].to_vec(), "Truncated"),
        ("bad_slot_count.bin", with(&|b| b[16] = 3), "InvalidLayout"),
        (
            "bad_total_size.bin",
            with(&|b| b[40] = b[40].wrapping_add(64)),
            "InvalidLayout",
        ),
        (
            "bad_uninitialized.bin",
            with(&|b| b[0..8].fill(0)),
            "NotInitialized",
        ),
    ]
}

fn all_vectors() -> Vec<(String, Vec<u8>, Option<Value>)> {
    let s = fresh(&small());
    let mut v = vec![
        (
            "small.bin".to_string(),
            s.clone(),
            Some(header_expect(&small(), 256, 512, 768, 832, 4096, 128, 4608)),
        ),
        (
            "medium.bin".to_string(),
            fresh(&medium()),
            Some(header_expect(
                &medium(),
                256,
                768,
                1280,
                1536,
                4096,
                320,
                4096 + 8 * 320,
            )),
        ),
        (
            "ring_after_ops.bin".to_string(),
            after_ops(),
            Some(after_ops_expect()),
        ),
        (
            "ring_new_stream.bin".to_string(),
            new_stream(),
            Some(new_stream_expect()),
        ),
    ];
    let mut bad = serde_json::Map::new();
    for (name, bytes, kind) in bad_files(&s) {
        bad.insert(name.into(), json!(kind));
        v.push((name.into(), bytes, None));
    }
    v.push(("bad.json".into(), Vec::new(), Some(Value::Object(bad))));
    v
}

/// Writer check (and regeneration).
#[test]
fn layout_vectors_writer_reproduces_files() {
    let regen = std::env::var("ALLOY_REGEN_VECTORS").as_deref() == Ok("1");
    if regen {
        std::fs::create_dir_all(dir()).unwrap();
    }
    for (name, bytes, expect) in all_vectors() {
        let json_name = if name.ends_with(".json") {
            name.clone()
        } else {
            name.replace(".bin", ".json")
        };
        if regen {
            if !name.ends_with(".json") {
                std::fs::write(dir().join(&name), &bytes).unwrap();
            }
            if let Some(e) = &expect {
                std::fs::write(
                    dir().join(&json_name),
                    serde_json::to_string_pretty(e).unwrap() + "\n",
                )
                .unwrap();
            }
            continue;
        }
        if !name.ends_with(".json") {
            let on_disk =
                std::fs::read(dir().join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                on_disk == bytes,
                "{name}: the writer no longer reproduces the vector"
            );
        }
        if let Some(e) = expect {
            let on_disk: Value =
                serde_json::from_slice(&std::fs::read(dir().join(&json_name)).unwrap()).unwrap();
            assert_eq!(
                on_disk, e,
                "{json_name} differs from the scripted expectation"
            );
        }
    }
}

fn load(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn expect(name: &str) -> Value {
    serde_json::from_slice(&load(name)).unwrap()
}

/// Opens vector bytes through the real open path (a file under /dev/shm).
fn open_bytes(bytes: &[u8]) -> Result<Ring, OpenError> {
    let name = format!("alloy-vec-{}-{}", std::process::id(), monotonic_ns());
    std::fs::write(crate::region::named_path(&name), bytes).unwrap();
    let r = Ring::open(&name);
    Ring::remove(&name).unwrap();
    r
}

fn u(v: &Value) -> u64 {
    v.as_u64().expect("number")
}

/// Reader check: headers.
#[test]
fn layout_vectors_reader_interprets_headers() {
    for base in ["small", "medium"] {
        let e = expect(&format!("{base}.json"));
        let bytes = load(&format!("{base}.bin"));
        let l: Layout = *open_bytes(&bytes).unwrap().region().layout();
        let c = &e["config"];
        assert_eq!(l.config.slot_count as u64, u(&c["slot_count"]));
        assert_eq!(l.config.slot_size as u64, u(&c["slot_size"]));
        assert_eq!(l.config.max_subscribers as u64, u(&c["max_subscribers"]));
        assert_eq!(l.config.max_members as u64, u(&c["max_members"]));
        assert_eq!(l.config.schema_capacity as u64, u(&c["schema_capacity"]));
        for (k, got) in [
            ("subs_off", l.subs_off),
            ("members_off", l.members_off),
            ("done_off", l.done_off),
            ("schema_off", l.schema_off),
            ("slots_off", l.slots_off),
            ("slot_stride", l.slot_stride),
            ("total_size", l.total_size),
        ] {
            assert_eq!(got as u64, u(&e[k]), "{base}: {k}");
        }
        assert_eq!(
            crate::layout::get_u32(&bytes, off::CREATOR_PID) as u64,
            u(&e["creator_pid"])
        );
        assert_eq!(
            crate::layout::get_u64(&bytes, off::CREATED_NS),
            u(&e["created_ns"])
        );
    }
}

/// Reader check: the ring after the scripted operations, read through the
/// protocol accessors; a consumer that joins it now is told the stream
/// ended.
#[test]
fn layout_vectors_reader_interprets_ring_after_ops() {
    let ring = check_ring_vector("ring_after_ops");
    let e = ring.subscribe().unwrap().recv().unwrap_err();
    assert!(matches!(e, RecvError::StreamEnded { seq: 6, .. }), "{e}");
}

/// Reader check: the second stream of `ring_new_stream`; a consumer joining
/// now waits in the new stream.
#[test]
fn layout_vectors_reader_interprets_ring_new_stream() {
    let ring = check_ring_vector("ring_new_stream");
    let mut c = ring.subscribe().unwrap();
    assert!(matches!(c.try_recv(), Err(RecvError::Empty)));
    assert_eq!(c.stream_gen(), 1);
}

/// Checks a scripted ring vector against its JSON and returns it opened.
fn check_ring_vector(base: &str) -> Ring {
    use proto::Words;
    let e = expect(&format!("{base}.json"));
    let ring = open_bytes(&load(&format!("{base}.bin"))).unwrap();
    let sh = &*ring.shared;
    let h32 = |at| sh.hdr32(at).load(Ordering::SeqCst) as u64;
    let h64 = |at| sh.hdr64(at).load(Ordering::SeqCst);
    assert_eq!(h64(off::PUBLISHED), u(&e["published"]));
    assert_eq!(h32(off::CLOSED), u(&e["closed"]));
    assert_eq!(h32(off::ERROR), u(&e["error"]));
    assert_eq!(h32(off::PRODUCER_PID), u(&e["producer_pid"]));
    assert_eq!(h32(off::PRODUCER_START), u(&e["producer_start"]));
    assert_eq!(h64(off::PRODUCER_HEARTBEAT), u(&e["producer_heartbeat"]));
    assert_eq!(h64(off::STREAM_START), u(&e["stream_start"]));
    assert_eq!(h32(off::STREAM_GEN), u(&e["stream_gen"]));
    assert_eq!(h64(off::LOST_COUNT), u(&e["lost_count"]));
    assert_eq!(h32(off::LOST_PID), u(&e["lost_pid"]));
    assert_eq!(h32(off::DATA_WAITERS), u(&e["data_waiters"]));
    assert_eq!(h32(off::DATA_FUTEX), u(&e["data_futex"]));
    assert_eq!(h32(off::SPACE_WAITERS), u(&e["space_waiters"]));
    assert_eq!(h32(off::SPACE_FUTEX), u(&e["space_futex"]));
    assert_eq!(h64(off::TABLE_EPOCH), u(&e["table_epoch"]));
    assert_eq!(h32(off::TABLE_LOCK), u(&e["table_lock"]));
    assert_eq!(h32(off::TABLE_LOCK_START), u(&e["table_lock_start"]));
    assert_eq!(h32(off::SCHEMA_SEQ), u(&e["schema_seq"]));
    assert_eq!(
        hex(&ring.schema().unwrap().unwrap()),
        e["schema"].as_str().unwrap()
    );
    for s in e["subscribers"].as_array().unwrap() {
        let b = sh.layout.sub(u(&s["index"]) as usize);
        assert_eq!(h32(b + off::SUB_STATE), u(&s["state"]));
        assert_eq!(h32(b + off::SUB_KIND), u(&s["kind"]));
        assert_eq!(h32(b + off::SUB_GROUP), u(&s["group"]));
        assert_eq!(h32(b + off::SUB_MEMBERS), u(&s["members"]));
        assert_eq!(h32(b + off::SUB_OWNER_PID), u(&s["owner_pid"]));
        assert_eq!(h32(b + off::SUB_OWNER_START), u(&s["owner_start"]));
        assert_eq!(h64(b + off::SUB_HEARTBEAT), u(&s["heartbeat"]));
        assert_eq!(h64(b + off::SUB_CLAIM), u(&s["claim"]));
        assert_eq!(h64(b + off::SUB_RELEASE), u(&s["release"]));
    }
    for m in e["members"].as_array().unwrap() {
        let b = sh.layout.member(u(&m["index"]) as usize);
        assert_eq!(h32(b + off::MEM_STATE), u(&m["state"]));
        assert_eq!(h32(b + off::MEM_SUBSCRIBER), u(&m["subscriber"]));
        assert_eq!(h32(b + off::MEM_PID), u(&m["pid"]));
        assert_eq!(h32(b + off::MEM_START), u(&m["start"]));
        assert_eq!(h64(b + off::MEM_HEARTBEAT), u(&m["heartbeat"]));
    }
    for (k, row) in e["done"].as_array().unwrap().iter().enumerate() {
        for (i, v) in row.as_array().unwrap().iter().enumerate() {
            assert_eq!(sh.done(k, i).load(Ordering::SeqCst), u(v), "done[{k}][{i}]");
        }
    }
    for s in e["slots"].as_array().unwrap() {
        let i = u(&s["index"]) as usize;
        let seq = u(&s["stamp"]) - 1;
        let (slot, len, flags) = proto::check_slot(sh, seq, sh.layout.config.slot_size).unwrap();
        assert_eq!(
            (slot, len as u64, flags as u64),
            (i, u(&s["len"]), u(&s["flags"]))
        );
        assert_eq!(
            h32(sh.layout.slot(i) + off::SLOT_GEN),
            u(&s["gen"]),
            "slot {i} gen"
        );
        let payload = &ring.region().snapshot()[sh.layout.payload(i)..][..len as usize];
        assert_eq!(hex(payload), s["payload"].as_str().unwrap());
    }
    ring
}

/// Reader check: files an opener must refuse.
#[test]
fn layout_vectors_reader_refuses_bad_files() {
    let e = expect("bad.json");
    let map = e.as_object().unwrap();
    assert!(map.len() >= 5);
    for (name, kind) in map {
        let err = match open_bytes(&load(name)) {
            Err(OpenError::Region(RegionError::Layout { source, .. })) => source,
            other => panic!("{name}: expected a layout error, got {other:?}"),
        };
        let got = match err {
            LayoutError::Truncated { .. } => "Truncated",
            LayoutError::BadMagic { .. } => "BadMagic",
            LayoutError::VersionMismatch { .. } => "VersionMismatch",
            LayoutError::NotInitialized => "NotInitialized",
            LayoutError::InvalidLayout(_) => "InvalidLayout",
        };
        assert_eq!(got, kind.as_str().unwrap(), "{name}");
    }
}
