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

/// A small deterministic generator for the property test's values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Kinds of flat columns the plan covers (and, last, two it does not).
const FLAT_KINDS: usize = 14;

/// A column of kind `kind`, `rows` long, with nulls when `nullable`.
fn flat_column(kind: usize, rows: usize, nullable: bool, rng: &mut Rng) -> ArrayRef {
    let valid = |rng: &mut Rng| !nullable || rng.below(4) != 0;
    let words = ["", "a", "ß", "héllo", "tail😀", "x"];
    match kind {
        0 => Arc::new(Int8Array::from_iter(
            (0..rows).map(|_| valid(rng).then(|| rng.next() as i8)),
        )),
        1 => Arc::new(UInt16Array::from_iter(
            (0..rows).map(|_| valid(rng).then(|| rng.next() as u16)),
        )),
        2 => Arc::new(Int32Array::from_iter(
            (0..rows).map(|_| valid(rng).then(|| rng.next() as i32)),
        )),
        3 => Arc::new(Int64Array::from_iter(
            (0..rows).map(|_| valid(rng).then(|| rng.next() as i64)),
        )),
        4 => Arc::new(Float64Array::from_iter(
            (0..rows).map(|_| valid(rng).then(|| rng.below(1000) as f64 / 8.0)),
        )),
        5 => Arc::new(
            TimestampMillisecondArray::from_iter(
                (0..rows).map(|_| valid(rng).then(|| rng.next() as i64 >> 20)),
            )
            .with_timezone("+02:00"),
        ),
        6 => Arc::new(BooleanArray::from_iter(
            (0..rows).map(|_| valid(rng).then(|| rng.below(2) == 0)),
        )),
        7 => Arc::new(StringArray::from_iter(
            (0..rows).map(|_| valid(rng).then(|| words[rng.below(6) as usize])),
        )),
        8 => Arc::new(LargeStringArray::from_iter(
            (0..rows).map(|_| valid(rng).then(|| words[rng.below(6) as usize])),
        )),
        9 => {
            Arc::new(BinaryArray::from_iter((0..rows).map(|_| {
                valid(rng).then(|| words[rng.below(6) as usize].as_bytes())
            })))
        }
        10 => Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                (0..rows).map(|_| valid(rng).then(|| (rng.next() as u32).to_le_bytes())),
                4,
            )
            .unwrap(),
        ),
        11 => {
            let keys =
                Int8Array::from_iter((0..rows).map(|_| valid(rng).then(|| rng.below(3) as i8)));
            let values = StringArray::from(vec![Some("red"), None, Some("blue")]);
            Arc::new(DictionaryArray::new(keys, Arc::new(values)))
        }
        12 => {
            let keys =
                UInt32Array::from_iter((0..rows).map(|_| valid(rng).then(|| rng.below(4) as u32)));
            let values = Int64Array::from(vec![10, 20, 30, 40]);
            Arc::new(DictionaryArray::new(keys, Arc::new(values)))
        }
        // Not flat: the general walk only.
        _ => {
            let mut l = ListBuilder::new(arrow_array::builder::Int64Builder::new());
            for _ in 0..rows {
                if valid(rng) {
                    l.append_value([Some(rng.next() as i64)]);
                } else {
                    l.append_null();
                }
            }
            Arc::new(l.finish())
        }
    }
}

/// The message of the flat `columns` (each `full` rows long) rewritten to describe
/// rows `skip..full` only: the top nodes get `offset = skip` (the Rust
/// writer writes offset 0; the Go writer's slices do not), the header the
/// shorter row count. Returns the message and the expected batch.
fn windowed(
    schema: &SchemaRef,
    columns: &[ArrayRef],
    full: usize,
    skip: usize,
) -> (Vec<u8>, RecordBatch) {
    let data: Vec<_> = columns.iter().map(|c| c.to_data()).collect();
    let mut msg = crate::arrow::cdata_writer::encode(&data, full).unwrap();
    let rows = full - skip;
    let put = |m: &mut Vec<u8>, at: usize, v: u64| m[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put(&mut msg, 8, rows as u64);
    let mut pos = u64::from_le_bytes(msg[32..40].try_into().unwrap()) as usize;
    let u32_at = |m: &[u8], at: usize| u32::from_le_bytes(m[at..at + 4].try_into().unwrap());
    let sliced: Vec<ArrayRef> = columns.iter().map(|c| c.slice(skip, rows)).collect();
    for c in &sliced {
        let (nb, dict) = (u32_at(&msg, pos + 24), u32_at(&msg, pos + 32) & 1 == 1);
        put(&mut msg, pos, rows as u64);
        put(&mut msg, pos + 8, c.null_count() as u64);
        put(&mut msg, pos + 16, skip as u64);
        pos += NODE_SIZE + BUFFER_SIZE * nb as usize;
        if dict {
            pos += NODE_SIZE + BUFFER_SIZE * u32_at(&msg, pos + 24) as usize;
        }
    }
    let batch = RecordBatch::try_new(schema.clone(), sliced).unwrap();
    (msg, batch)
}

/// Damage to a message: flip a byte anywhere, flip a byte of the
/// descriptor, or set one of its 8-byte words to a small number.
#[derive(Debug, Clone)]
enum Damage {
    Flip(proptest::sample::Index, u8),
    FlipDesc(proptest::sample::Index, u8),
    SetDesc(proptest::sample::Index, u64),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<proptest::sample::Index>(), 1u8..=255).prop_map(|(i, x)| Damage::Flip(i, x)),
        (any::<proptest::sample::Index>(), 1u8..=255).prop_map(|(i, x)| Damage::FlipDesc(i, x)),
        (any::<proptest::sample::Index>(), 0u64..80).prop_map(|(i, v)| Damage::SetDesc(i, v)),
    ]
}

/// Applies `d` to `msg`, whose descriptor starts at `desc` (read before
/// any damage: a flip may hit the header's `desc_off`).
fn apply(msg: &mut [u8], desc: usize, d: &Damage) {
    match d {
        Damage::Flip(i, x) => {
            let i = i.index(msg.len());
            msg[i] ^= x;
        }
        Damage::FlipDesc(i, x) => {
            let n = msg.len() - desc;
            if n > 0 {
                msg[desc + i.index(n)] ^= x;
            }
        }
        Damage::SetDesc(i, v) => {
            let words = (msg.len() - desc) / 8;
            if words > 0 {
                let at = desc + 8 * i.index(words);
                msg[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
        }
    }
}

/// Whether the plan and the general walk agree on `msg`: a batch the plan
/// builds is the batch the walk builds (validated, and trusted where the
/// message is valid); the reader's result (`decode_with`) is the walk's
/// error where the plan declines. Returns (validated, trusted) plan results
/// as "the plan built a batch".
fn plan_agrees(
    msg: &[u8],
    schema: &SchemaRef,
    plan: &crate::arrow::cdata_plan::CDataPlan,
) -> Result<(bool, bool), TestCaseError> {
    let whole = Buffer::from(msg);
    let general = decode_inner(&whole, schema, true);
    let planned = plan.decode(&whole, true);
    let with = decode_with(&whole, schema, Some(plan), 7, 3, &UnsafeFlag::new());
    let alone = decode(&whole, schema, 7, 3, &UnsafeFlag::new());
    match (&planned, &general) {
        (Some(p), Ok(g)) => prop_assert_eq!(p, g),
        (Some(p), Err(_)) => {
            return Err(TestCaseError::fail(format!(
                "the plan accepted a message the general walk refuses: {:?}; plan built {p:?}",
                alone.unwrap_err()
            )))
        }
        (None, _) => {}
    }
    prop_assert_eq!(format!("{with:?}"), format!("{alone:?}"));
    if general.is_err() {
        return Ok((planned.is_some(), false));
    }
    // Valid, so the trusted paths build arrays that are safe to compare.
    let mut skip = UnsafeFlag::new();
    // SAFETY: the message passed full validation just above.
    unsafe { skip.set(true) };
    let trusted_general = decode(&whole, schema, 7, 3, &skip);
    let trusted = plan.decode(&whole, false);
    if let Some(t) = &trusted {
        prop_assert_eq!(Some(t), trusted_general.as_ref().ok());
    }
    Ok((planned.is_some(), trusted.is_some()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    /// The planned decode and the general walk agree on random flat
    /// messages, valid (the plan must then build the batch) or damaged
    /// (the plan never accepts what the walk refuses, and builds the same
    /// arrays where both accept).
    #[test]
    fn plan_and_general_walk_agree(
        kinds in proptest::collection::vec((0..FLAT_KINDS, any::<bool>()), 1..5),
        full in 0usize..40,
        skip in 0usize..20,
        seed in 1u64..,
        damages in proptest::collection::vec(damage(), 0..4),
    ) {
        let skip = skip.min(full);
        let mut rng = Rng(seed);
        let columns: Vec<ArrayRef> =
            kinds.iter().map(|&(k, n)| flat_column(k, full, n, &mut rng)).collect();
        let fields: Vec<_> = columns
            .iter()
            .zip(&kinds)
            .enumerate()
            .map(|(i, (c, &(_, n)))| arrow_schema::Field::new(format!("c{i}"), c.data_type().clone(), n))
            .collect();
        let schema: SchemaRef = Arc::new(arrow_schema::Schema::new(fields));
        let plan = crate::arrow::cdata_plan::CDataPlan::new(&schema);
        let flat = kinds.iter().all(|&(k, _)| k < FLAT_KINDS - 1);
        prop_assert_eq!(plan.is_some(), flat, "plan for {:?}", schema);
        let Some(plan) = plan else {
            let data: Vec<_> = columns.iter().map(|c| c.to_data()).collect();
            let msg = crate::arrow::cdata_writer::encode(&data, full).unwrap();
            let want = RecordBatch::try_new(schema.clone(), columns).unwrap();
            prop_assert_eq!(dec(&msg, &schema).unwrap(), want);
            return Ok(());
        };
        let (mut msg, want) = windowed(&schema, &columns, full, skip);
        let whole = Buffer::from(msg.as_slice());
        // Undamaged: the plan builds the batch, validated and trusted.
        prop_assert_eq!(plan.decode(&whole, true), Some(want));
        prop_assert_eq!(plan_agrees(&msg, &schema, &plan)?, (true, true));
        if damages.is_empty() {
            return Ok(());
        }
        let desc = u64::from_le_bytes(msg[32..40].try_into().unwrap()) as usize;
        for d in &damages {
            apply(&mut msg, desc, d);
        }
        plan_agrees(&msg, &schema, &plan)?;
    }
}
