//! Tests of the C-Data-offsets decoder against the Go writer's vectors
//! (`testdata/cdata/`, LAYOUT.md §8.3), damaged messages, and a ring.

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringDictionaryBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, Int8Type};
use arrow_array::*;
use arrow_buffer::Buffer;
use arrow_data::UnsafeFlag;
use arrow_schema::SchemaRef;
use proptest::prelude::*;

use super::*;
use crate::arrow::{flags, frame, ArrowShmError, IpcReader};
use crate::ring::{Ring, RingConfig};

fn vector(name: &str) -> Vec<u8> {
    let p = format!("{}/testdata/cdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn vector_schema() -> SchemaRef {
    let bytes = vector("schema.bin");
    let f = frame::parse(&bytes).unwrap();
    let fb = f.message.header_as_schema().unwrap();
    Arc::new(arrow_ipc::convert::try_fb_to_schema(fb).unwrap())
}

/// The batch `small.json` describes, built independently in Rust.
fn expected(schema: SchemaRef) -> RecordBatch {
    let mut l = ListBuilder::new(arrow_array::builder::Int64Builder::new());
    l.append_value([Some(1), Some(2)]);
    l.append_value([]);
    l.append_null();
    l.append_value([Some(3)]);
    let st = StructArray::from(vec![
        (
            Arc::new(arrow_schema::Field::new(
                "x",
                arrow_schema::DataType::Int16,
                false,
            )),
            Arc::new(Int16Array::from(vec![1, 2, 3, 4])) as ArrayRef,
        ),
        (
            Arc::new(arrow_schema::Field::new(
                "y",
                arrow_schema::DataType::Boolean,
                true,
            )),
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
            ])) as ArrayRef,
        ),
    ]);
    let mut d = StringDictionaryBuilder::<Int8Type>::new();
    d.append_value("x");
    d.append_value("y");
    d.append_value("x");
    d.append_null();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int32Array::from(vec![Some(1), None, Some(3), Some(4)])),
            Arc::new(StringArray::from(vec![
                Some("a"),
                Some("bc"),
                None,
                Some(""),
            ])),
            Arc::new(l.finish()),
            Arc::new(st),
            Arc::new(d.finish()),
        ],
    )
    .unwrap()
}

fn json() -> serde_json::Value {
    serde_json::from_slice(&vector("small.json")).unwrap()
}

fn dec(bytes: &[u8], schema: &SchemaRef) -> Result<RecordBatch, ArrowShmError> {
    decode(&Buffer::from(bytes), schema, 7, 3, &UnsafeFlag::new())
}

#[test]
fn go_vector_decodes_to_the_described_batch() {
    let schema = vector_schema();
    let bytes = vector("small.bin");
    let j = json();
    assert_eq!(bytes.len() as u64, j["len"].as_u64().unwrap());
    let h = parse_header(&bytes).unwrap();
    let jh = &j["header"];
    assert_eq!(h.row_count, jh["row_count"].as_u64().unwrap());
    assert_eq!(u64::from(h.n_columns), jh["n_columns"].as_u64().unwrap());
    assert_eq!(u64::from(h.n_nodes), jh["n_nodes"].as_u64().unwrap());
    assert_eq!(u64::from(h.n_buffers), jh["n_buffers"].as_u64().unwrap());
    assert_eq!(h.desc_off, jh["desc_off"].as_u64().unwrap());
    assert_eq!(h.desc_len, jh["desc_len"].as_u64().unwrap());
    // Every node and buffer entry as the JSON lists them.
    let whole = Buffer::from(bytes.as_slice());
    let mut w = Walk {
        whole: &whole,
        header: h,
        pos: h.desc_off as usize,
        nodes: 0,
        buffers: 0,
        validate: true,
    };
    for jn in j["nodes"].as_array().unwrap() {
        let n = w.node().unwrap();
        assert_eq!(n.length, jn["length"].as_i64().unwrap());
        assert_eq!(n.null_count, jn["null_count"].as_i64().unwrap());
        assert_eq!(n.offset, jn["offset"].as_i64().unwrap());
        assert_eq!(u64::from(n.n_children), jn["n_children"].as_u64().unwrap());
        assert_eq!(u64::from(n.flags), jn["flags"].as_u64().unwrap());
        let jb = jn["buffers"].as_array().unwrap();
        assert_eq!(n.n_buffers as usize, jb.len());
        for b in jb {
            let got = w.buffer().unwrap();
            let len = b[1].as_u64().unwrap() as usize;
            assert_eq!(got.len(), len);
            if len > 0 {
                let off = got.as_ptr() as usize - whole.as_ptr() as usize;
                assert_eq!(off as u64, b[0].as_u64().unwrap());
            }
        }
    }
    let got = dec(&bytes, &schema).unwrap();
    assert_eq!(got, expected(schema.clone()));
    // The same with validation skipped (trusted peer).
    let mut skip = UnsafeFlag::new();
    // SAFETY: the vector is valid (checked just above).
    unsafe { skip.set(true) };
    let got = decode(&Buffer::from(bytes.as_slice()), &schema, 0, 0, &skip).unwrap();
    assert_eq!(got, expected(schema));
}

#[test]
fn bad_vectors_are_typed_errors() {
    let schema = vector_schema();
    let good = vector("small.bin");
    let j = json();
    let bad = j["bad"].as_array().unwrap();
    assert!(bad.len() >= 20);
    for c in bad {
        let name = c["name"].as_str().unwrap();
        let at = c["at"].as_u64().unwrap() as usize;
        let width = c["width"].as_u64().unwrap() as usize;
        let value = c["value"].as_u64().unwrap().to_le_bytes();
        let mut b = good.clone();
        b[at..at + width].copy_from_slice(&value[..width]);
        let err = dec(&b, &schema).expect_err(name);
        match (c["error"].as_str().unwrap(), &err) {
            (
                "Corrupt",
                ArrowShmError::Corrupt {
                    seq: 7,
                    slot: 3,
                    reason,
                },
            ) => {
                assert!(!reason.contains("panicked"), "{name}: {reason}")
            }
            (
                "Decode",
                ArrowShmError::Decode {
                    seq: 7, slot: 3, ..
                },
            ) => {}
            (want, _) => panic!("{name}: expected {want}, got {err:?}"),
        }
    }
    // Truncation anywhere is refused.
    for n in [0, 10, 63, 64, good.len() / 2, good.len() - 1] {
        assert!(matches!(
            dec(&good[..n], &schema),
            Err(ArrowShmError::Corrupt { .. })
        ));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Random damage is an error or a batch, never a panic — and never one
    /// caught only by the last-resort `catch_unwind`.
    #[test]
    fn random_damage_never_panics(
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), 1u8..=255), 1..8)
    ) {
        let schema = vector_schema();
        let mut b = vector("small.bin");
        for (i, x) in flips {
            let i = i.index(b.len());
            b[i] ^= x;
        }
        let whole = Buffer::from(b.as_slice());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_inner(&whole, &schema, true)));
        prop_assert!(r.is_ok(), "the checks let a panic through");
    }
}

/// The vector sent through a ring: the batch points into the mapping
/// (dictionary values too), and the slot is held until the batch drops.
#[test]
fn ring_batch_is_zero_copy_and_holds_its_slot() {
    let ring = Ring::anonymous_builder()
        .config(RingConfig {
            slot_count: 2,
            slot_size: 1 << 14,
            schema_capacity: 4096,
            ..Default::default()
        })
        .create()
        .unwrap();
    let mut reader = IpcReader::new(ring.subscribe().unwrap());
    let mut p = ring.producer().unwrap();
    p.set_backpressure(crate::ring::Backpressure::Fail);
    let schema_msg = vector("schema.bin");
    p.set_schema(&schema_msg).unwrap();
    p.send(&schema_msg, flags::IPC_SCHEMA).unwrap();
    let msg = vector("small.bin");
    p.send(&msg, flags::CDATA_OFFSETS).unwrap();
    let batch = reader.next_batch().unwrap().unwrap();
    assert_eq!(batch, expected(vector_schema()));
    assert!(in_mapping_all(&ring, &batch));
    let col = batch.column(2).clone();
    drop(batch);
    // Two slots: the schema's is free, the batch's is still held by `col`.
    p.send(&msg, flags::CDATA_OFFSETS).unwrap();
    assert!(
        p.send(&msg, flags::CDATA_OFFSETS).is_err(),
        "slot released early"
    );
    drop(col);
    let second = reader.next_batch().unwrap().unwrap();
    assert!(in_mapping_all(&ring, &second));
    drop(second);
    // A late joiner (schema from the schema area) reads the next one.
    let mut late = IpcReader::new(ring.subscribe().unwrap());
    p.send(&msg, flags::CDATA_OFFSETS).unwrap();
    p.close();
    let got = late.next_batch().unwrap().unwrap();
    let l = got.column(2).as_list::<i32>();
    assert_eq!(l.value(0).as_primitive::<Int64Type>().values(), &[1, 2]);
    assert_eq!(got, expected(vector_schema()));
    assert!(reader.next_batch().unwrap().is_some());
    assert!(reader.next_batch().unwrap().is_none());
}

/// View types take any number of buffers, so a node's `n_buffers` is
/// bounded only by what the descriptor has left: a hostile count is
/// `Corrupt` before it sizes anything (it used to reserve room for all of
/// them, which aborts the process for a count near 2^32).
#[test]
fn a_hostile_buffer_count_is_refused_before_allocating() {
    let col = StringViewArray::from(vec![Some("a string longer than twelve bytes"), None]);
    let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
        "v",
        col.data_type().clone(),
        true,
    )]));
    let mut msg = crate::arrow::cdata_writer::encode(&[col.to_data()], 2).unwrap();
    dec(&msg, &schema).expect("the undamaged message decodes");
    let desc_off = u64::from_le_bytes(msg[32..40].try_into().unwrap()) as usize;
    for count in [u32::MAX, 1 << 20, 4] {
        msg[desc_off + 24..desc_off + 28].copy_from_slice(&count.to_le_bytes());
        match dec(&msg, &schema) {
            Err(ArrowShmError::Corrupt { reason, .. }) => {
                assert!(reason.contains("buffers"), "{count}: {reason}")
            }
            other => panic!("{count} buffers: {other:?}"),
        }
    }
}
