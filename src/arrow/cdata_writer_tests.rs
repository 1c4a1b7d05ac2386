//! Tests of the C-Data-offsets writer: Rust → Rust through a ring (read by
//! `IpcReader`, which checks every offset and validates the arrays), every
//! type of `testdata`, nulls, slices (including NullBuffer offsets that
//! differ from the array's), empty and zero-column batches, refusals, the
//! exact byte layout, and `alloy send --mode cdata`.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, FixedSizeListBuilder, Int64Builder, ListBuilder, StringDictionaryBuilder,
};
use arrow_array::types::{Int16Type, Int8Type};
use arrow_array::*;
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer};
use arrow_data::{ArrayData, UnsafeFlag};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use proptest::prelude::*;

use super::*;
use crate::arrow::cdata_reader::{decode, parse_header};
use crate::arrow::{in_mapping_all, IpcReader, IpcWriter};
use crate::ring::{Backpressure, Ring, RingConfig, WaitStrategy};
use alloy_testkit::testdata::{self, ALL_KINDS, KINDS};

fn ring(slots: u32, slot_size: u32) -> Ring {
    Ring::anonymous_builder()
        .config(RingConfig {
            slot_count: slots,
            slot_size,
            schema_capacity: 1 << 16,
            ..Default::default()
        })
        .create()
        .expect("ring")
}

/// Sends `batches` through a fresh ring with a `CDataWriter` and reads them
/// back with `IpcReader`: each must equal what was sent (value by value,
/// schema included) and lie wholly in the mapping, dictionaries included;
/// then the stream ends. Returns the first problem as text.
fn round_trip_in(r: &Ring, batches: &[RecordBatch]) -> Result<(), String> {
    let mut reader = IpcReader::new(r.subscribe().map_err(|e| e.to_string())?);
    let schema = batches.first().map(|b| b.schema()).ok_or("no batches")?;
    let p = r
        .producer_builder()
        .backpressure(Backpressure::Fail)
        .wait(WaitStrategy::Spin)
        .create()
        .map_err(|e| e.to_string())?;
    let mut w = CDataWriter::new(p, schema).map_err(|e| e.to_string())?;
    for (i, want) in batches.iter().enumerate() {
        w.write(want).map_err(|e| format!("write batch {i}: {e}"))?;
        let got = reader
            .next_batch()
            .map_err(|e| format!("read batch {i}: {e}"))?
            .ok_or_else(|| format!("stream ended before batch {i}"))?;
        if &got != want {
            return Err(format!("batch {i} differs:\n got {got:?}\nwant {want:?}"));
        }
        if got.num_rows() != want.num_rows() {
            return Err(format!("batch {i}: {} rows", got.num_rows()));
        }
        if !in_mapping_all(r, &got) {
            return Err(format!("batch {i} was copied out of the mapping"));
        }
    }
    let sent = w.bytes_sent();
    w.close().map_err(|e| e.to_string())?;
    match reader.next_batch() {
        Ok(None) => {}
        other => return Err(format!("expected end of stream, got {other:?}")),
    }
    if reader.bytes_received() != sent {
        return Err(format!(
            "{} bytes received, {sent} sent",
            reader.bytes_received()
        ));
    }
    Ok(())
}

fn round_trip(batches: &[RecordBatch]) -> Result<(), String> {
    round_trip_in(&ring(4, 1 << 20), batches)
}

/// Decodes a message built by [`encode`] as the reader does (validation on).
fn dec(msg: &[u8], schema: &SchemaRef) -> Result<RecordBatch, ArrowShmError> {
    decode(&Buffer::from(msg), schema, 1, 0, &UnsafeFlag::new())
}

/// Checks every buffer entry and the padding of a message: entries
/// 64-aligned in the data area, in pre-order without overlap, and every
/// byte of the data area outside them zero. Returns the nodes.
fn check_layout(msg: &[u8]) -> Vec<Node> {
    let h = parse_header(msg).expect("header");
    assert_eq!(h.desc_off as usize + h.desc_len as usize, msg.len());
    let mut covered = vec![false; h.desc_off as usize];
    let (mut at, mut nodes, mut last_end) = (h.desc_off as usize, Vec::new(), 64);
    let u64_at = |i: usize| u64::from_le_bytes(msg[i..i + 8].try_into().unwrap());
    let u32_at = |i: usize| u32::from_le_bytes(msg[i..i + 4].try_into().unwrap());
    while at < msg.len() {
        let n = Node {
            length: u64_at(at) as i64,
            null_count: u64_at(at + 8) as i64,
            offset: u64_at(at + 16) as i64,
            n_buffers: u32_at(at + 24),
            n_children: u32_at(at + 28),
            flags: u32_at(at + 32),
        };
        assert_eq!(u32_at(at + 36), 0);
        at += NODE_SIZE;
        for _ in 0..n.n_buffers {
            let (off, len) = (u64_at(at) as usize, u64_at(at + 8) as usize);
            at += BUFFER_SIZE;
            if len == 0 {
                assert_eq!(off, 0, "absent buffer at an offset");
                continue;
            }
            assert_eq!(off % 64, 0, "buffer at {off}");
            assert!(off >= last_end, "buffers out of order or overlapping");
            last_end = off + len;
            covered[off..off + len].iter_mut().for_each(|c| *c = true);
        }
        nodes.push(n);
    }
    assert_eq!(nodes.len(), h.n_nodes as usize);
    assert!(last_end <= h.desc_off as usize);
    for (i, c) in covered.iter().enumerate().skip(64) {
        if !c {
            assert_eq!(msg[i], 0, "padding byte {i} is not zero");
        }
    }
    nodes
}

#[test]
fn every_kind_round_trips_with_nulls_and_slices() {
    let mut failures = Vec::new();
    for kind in 0..ALL_KINDS {
        // Kind 10 (boolean) rides along: after slicing, its values bitmap
        // and its NullBuffer have different bit offsets.
        for (i, (nulls, offset, rows)) in [
            (false, 0, 40),
            (true, 0, 57),
            (true, 7, 33),
            (true, 61, 100),
            (true, 3, 0),
            (true, 0, 1),
        ]
        .into_iter()
        .enumerate()
        {
            let batches: Vec<_> = (0..3)
                .map(|j| {
                    testdata::batch(
                        kind * 1000 + i as u64 * 10 + j,
                        &[kind, 10, 3],
                        rows + j as usize * 5,
                        offset,
                        nulls,
                    )
                })
                .collect();
            if let Err(e) = round_trip(&batches) {
                failures.push(format!("kind {kind} nulls {nulls} offset {offset}: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn all_kinds_in_one_batch_and_its_slices() {
    let kinds: Vec<u64> = (0..ALL_KINDS).collect();
    let b = testdata::batch(42, &kinds, 300, 5, true);
    let batches = [
        b.clone(),
        b.slice(37, 101),
        b.slice(0, 0),
        b.slice(299, 1),
        b.slice(8, 64),
        b.slice(1, 298).slice(3, 50),
    ];
    round_trip(&batches).unwrap();
}

#[test]
fn empty_and_zero_column_batches() {
    let kinds: Vec<u64> = (0..ALL_KINDS).collect();
    round_trip(&[
        testdata::batch(1, &kinds, 0, 0, true),
        testdata::batch(2, &kinds, 0, 9, false),
    ])
    .unwrap();
    let zero = testdata::batch(3, &[], 5, 2, false);
    assert_eq!((zero.num_columns(), zero.num_rows()), (0, 5));
    round_trip(&[zero, testdata::batch(4, &[], 0, 0, false)]).unwrap();
    // The row count of a zero-column batch is all its message says.
    let r = ring(4, 1 << 16);
    let mut reader = IpcReader::new(r.subscribe().unwrap());
    let mut w = CDataWriter::new(r.producer().unwrap(), Arc::new(Schema::empty())).unwrap();
    let opts = RecordBatchOptions::new().with_row_count(Some(123));
    let b = RecordBatch::try_new_with_options(Arc::new(Schema::empty()), vec![], &opts).unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
    assert_eq!(reader.next_batch().unwrap().unwrap().num_rows(), 123);
    assert!(reader.next_batch().unwrap().is_none());
}

/// Arrays whose NullBuffer starts at another bit offset than the array's
/// data: the writer must move the validity bits to the node's offset.
#[test]
fn null_buffer_offset_differs_from_data_offset() {
    let n = 256;
    let values = BooleanBuffer::from_iter((0..n).map(|i| i % 3 == 0));
    let valid = BooleanBuffer::from_iter((0..n).map(|i| i % 5 != 1 && i % 7 != 2));
    let mut cases: Vec<ArrayRef> = Vec::new();
    for (vo, no) in [(3, 5), (0, 13), (9, 0), (64, 1), (17, 17)] {
        let len = 150;
        cases.push(Arc::new(BooleanArray::new(
            values.slice(vo, len),
            Some(NullBuffer::new(valid.slice(no, len))),
        )));
        let ints = Int32Array::new(
            (0..n).collect::<Vec<i32>>().into(),
            Some(NullBuffer::new(valid.clone())),
        );
        cases.push(Arc::new(ints.slice(no, len)));
    }
    // The test exercises what it claims: offsets differ in most cases.
    let differ = cases
        .iter()
        .filter(|a| {
            let d = a.to_data();
            d.nulls().is_some_and(|nb| nb.offset() != d.offset())
        })
        .count();
    assert!(differ >= 7, "only {differ} cases with differing offsets");
    let fields: Vec<Field> = cases
        .iter()
        .enumerate()
        .map(|(i, a)| Field::new(format!("c{i}"), a.data_type().clone(), true))
        .collect();
    let b = RecordBatch::try_new(Arc::new(Schema::new(fields)), cases).unwrap();
    round_trip(&[b.clone(), b.slice(1, 100), b.slice(77, 3)]).unwrap();
}

/// Struct, list, fixed-size list, map and dictionary columns (nested in
/// each other) sliced at offsets that are not multiples of 8.
#[test]
fn sliced_nested_columns() {
    let n = 120;
    let mut r = testdata::Rng::new(9);
    // list<dictionary<int16, utf8>>
    let mut ld = ListBuilder::new(StringDictionaryBuilder::<Int16Type>::new());
    for i in 0..n {
        if i % 9 == 4 {
            ld.append_null();
            continue;
        }
        for j in 0..r.below(4) as usize {
            if (i + j) % 5 == 0 {
                ld.values().append_null();
            } else {
                ld.values().append_value(["a", "bb", "ccc"][(i + j) % 3]);
            }
        }
        ld.append(true);
    }
    let ld: ArrayRef = Arc::new(ld.finish());
    // fixed-size list<boolean>
    let mut fl = FixedSizeListBuilder::new(BooleanBuilder::new(), 3);
    for i in 0..n {
        for j in 0..3 {
            fl.values()
                .append_option(((i + j) % 4 != 0).then_some(i % 2 == 0));
        }
        fl.append(i % 6 != 1);
    }
    let fl: ArrayRef = Arc::new(fl.finish());
    // dictionary<int8, utf8>
    let mut d = StringDictionaryBuilder::<Int8Type>::new();
    for i in 0..n {
        if i % 4 == 3 {
            d.append_null();
        } else {
            d.append_value(format!("w{}", i % 11));
        }
    }
    let d: ArrayRef = Arc::new(d.finish());
    // struct{list<int64>, dictionary, boolean} with its own nulls
    let mut l = ListBuilder::new(Int64Builder::new());
    for i in 0..n {
        l.append_value((0..i % 3).map(|k| Some(k as i64 * i as i64)));
    }
    let st_fields = Fields::from(vec![
        Field::new("l", DataType::new_list(DataType::Int64, true), true),
        Field::new("d", d.data_type().clone(), true),
        Field::new("b", DataType::Boolean, true),
    ]);
    let b: ArrayRef = Arc::new(BooleanArray::from_iter(
        (0..n).map(|i| (i % 3 != 0).then_some(i % 2 == 0)),
    ));
    let st: ArrayRef = Arc::new(
        StructArray::try_new(
            st_fields,
            vec![Arc::new(l.finish()), d.clone(), b],
            Some(NullBuffer::from_iter((0..n).map(|i| i % 8 != 5))),
        )
        .unwrap(),
    );
    // list<struct> from a sliced struct
    let offsets = arrow_buffer::OffsetBuffer::<i32>::from_lengths((0..15).map(|i| i % 4 + 1));
    let total = offsets.last() as usize;
    let ls: ArrayRef = Arc::new(
        ListArray::try_new(
            Arc::new(Field::new("item", st.data_type().clone(), true)),
            offsets,
            st.slice(10, total),
            Some(NullBuffer::from_iter((0..15).map(|i| i != 6))),
        )
        .unwrap(),
    );
    let m = testdata::column(34, n, true, &mut r).1;
    let cols = [("ld", ld), ("fl", fl), ("d", d), ("st", st), ("m", m)];
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let mut batches: Vec<RecordBatch> = [(0, n), (1, 90), (13, 50), (63, 57), (119, 1), (5, 0)]
        .iter()
        .map(|&(o, l)| batch.slice(o, l))
        .collect();
    batches.push(batch.slice(3, 100).slice(7, 33));
    round_trip(&batches).unwrap();
    let lsb = RecordBatch::try_from_iter([("ls", ls)]).unwrap();
    round_trip(&[lsb.clone(), lsb.slice(3, 9)]).unwrap();
}

/// `ArrayData` with non-zero offsets on every type (a `RecordBatch` column
/// would normalize most of them): struct, fixed-size list and sparse union
/// children indexed through the parent's offset, list and string offsets,
/// dense unions, run-end encoded, views, dictionaries; and NullBuffers at
/// their own offsets.
#[test]
fn array_data_with_offsets_on_every_type() {
    let mut failures = Vec::new();
    for kind in 0..ALL_KINDS {
        let mut r = testdata::Rng::new(kind + 7);
        let (f, a) = testdata::column(kind, 70, true, &mut r);
        let schema = Arc::new(Schema::new(vec![f]));
        let data = a.to_data();
        for (o, l) in [(0, 70), (5, 40), (13, 0), (9, 61), (69, 1)] {
            let sliced = data.slice(o, l);
            let want = make_array(sliced.clone());
            assert_eq!(&want, &a.slice(o, l));
            let result = encode(&[sliced], l)
                .map_err(|e| e.to_string())
                .and_then(|msg| {
                    let nodes = check_layout(&msg);
                    // Normalized: only run-end encoded nodes keep an offset.
                    if let Some(n) = nodes.iter().find(|n| n.offset != 0) {
                        if !matches!(a.data_type(), DataType::RunEndEncoded(..)) {
                            return Err(format!("node {n:?} has an offset"));
                        }
                    }
                    dec(&msg, &schema).map_err(|e| e.to_string())
                });
            match result {
                Ok(got) if got.column(0) == &want => {}
                Ok(got) => failures.push(format!(
                    "kind {kind} slice {o}+{l}: got {:?}, want {want:?}",
                    got.column(0)
                )),
                Err(e) => failures.push(format!("kind {kind} slice {o}+{l}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A struct whose offset applies to unsliced children, with a NullBuffer at
/// yet another offset, built directly as `ArrayData`.
#[test]
fn struct_offset_applies_to_its_children() {
    let x = Int32Array::from_iter((0..50).map(|i| (i % 4 != 0).then_some(i)));
    let y = StringArray::from_iter((0..50).map(|i| (i % 3 != 0).then(|| format!("s{i}"))));
    let fields = Fields::from(vec![
        Field::new("x", DataType::Int32, true),
        Field::new("y", DataType::Utf8, true),
    ]);
    let valid = BooleanBuffer::from_iter((0..64).map(|i| i % 5 != 0));
    let data = ArrayData::builder(DataType::Struct(fields.clone()))
        .len(20)
        .offset(11)
        .nulls(Some(NullBuffer::new(valid.slice(3, 20))))
        .child_data(vec![x.to_data(), y.to_data()])
        .build()
        .unwrap();
    let want = make_array(data.clone());
    let s = want.as_any().downcast_ref::<StructArray>().unwrap();
    assert_eq!(
        s.column(0)
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap()
            .value(2),
        13
    );
    let schema = Arc::new(Schema::new(vec![Field::new(
        "s",
        DataType::Struct(fields),
        true,
    )]));
    let msg = encode(&[data], 20).unwrap();
    check_layout(&msg);
    let got = dec(&msg, &schema).unwrap();
    assert_eq!(got.column(0), &want);
    assert_eq!(got.column(0).null_count(), want.null_count());
}

/// A small slice of a large batch costs the slice's bytes: buffers are cut
/// to the slice (strings, lists and dictionaries included), so it fits in a
/// slot far smaller than the parent.
#[test]
fn small_slice_of_a_large_batch_fits() {
    let kinds = [3, 10, 11, 12, 13, 21, 22, 23, 31, 32, 33, 34, 35, 36];
    let big = testdata::batch(5, &kinds, 100_000, 3, true);
    let whole: usize = big
        .columns()
        .iter()
        .map(|c| c.get_array_memory_size())
        .sum();
    assert!(whole > 1 << 20, "parent of {whole} bytes");
    let r = ring(4, 1 << 16);
    round_trip_in(&r, &[big.slice(51_234, 40), big.slice(99_990, 10)]).unwrap();
    let data: Vec<ArrayData> = big
        .slice(70_001, 25)
        .columns()
        .iter()
        .map(|c| c.to_data())
        .collect();
    let msg = encode(&data, 25).unwrap();
    assert!(
        msg.len() < 16 << 10,
        "a 25-row slice needs {} bytes",
        msg.len()
    );
}

/// The message's length is exact: a slot of that size (rounded up to the
/// 64-byte slot granularity) takes it, one 64 bytes smaller refuses it, and
/// the slot's message is the bytes `encode` produces.
#[test]
fn message_length_is_exact_and_bytes_match() {
    let b = testdata::batch(11, &[3, 11, 22, 23, 10], 37, 4, true);
    let data: Vec<ArrayData> = b.columns().iter().map(|c| c.to_data()).collect();
    let msg = encode(&data, b.num_rows()).unwrap();
    check_layout(&msg);
    let fits = msg.len().div_ceil(64) * 64;
    for (slot, ok) in [(fits, true), (fits - 64, false)] {
        let r = ring(4, slot as u32);
        let mut c = r.subscribe().unwrap();
        let mut w = CDataWriter::new(r.producer().unwrap(), b.schema()).unwrap();
        let res = w.write(&b);
        match (ok, res) {
            (true, Ok(())) => {
                let schema_msg = c.try_recv().unwrap().unwrap();
                assert_eq!(schema_msg.flags(), flags::IPC_SCHEMA);
                let m = c.try_recv().unwrap().unwrap();
                assert_eq!(m.flags(), flags::CDATA_OFFSETS);
                assert_eq!(m.bytes(), &msg[..]);
                assert_eq!(
                    w.bytes_sent(),
                    (schema_msg.bytes().len() + msg.len()) as u64
                );
            }
            (false, Err(ArrowShmError::Ring(RingError::MessageTooLarge { len, max }))) => {
                assert_eq!((len, max), (msg.len(), slot));
                assert!(
                    matches!(c.try_recv(), Err(crate::ring::RecvError::Empty)),
                    "something was published"
                );
            }
            (ok, res) => panic!("slot {slot}: expected ok={ok}, got {res:?}"),
        }
    }
}

#[test]
fn too_large_batch_is_refused_and_nothing_is_published() {
    let r = ring(4, 4096);
    let mut reader = IpcReader::new(r.subscribe().unwrap());
    let big = testdata::batch(1, &[3, 11], 2000, 0, true);
    let mut w = CDataWriter::new(r.producer().unwrap(), big.schema()).unwrap();
    match w.write(&big) {
        Err(ArrowShmError::Ring(RingError::MessageTooLarge { len, max: 4096 })) => {
            assert!(len > 16_000, "{len}")
        }
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    assert_eq!(r.published(), 0, "nothing, not even the schema");
    assert_eq!(w.bytes_sent(), 0);
    w.close().unwrap();
    // The reader sees the schema, then the end of the stream.
    assert!(reader.next_batch().unwrap().is_none());
    assert_eq!(reader.schema().unwrap().fields(), big.schema().fields());
    assert_eq!(r.published(), 1);

    // A refused batch does not spoil the writer: smaller ones go through.
    let r = ring(4, 4096);
    let small = big.slice(100, 20);
    let mut w = CDataWriter::new(r.producer().unwrap(), big.schema()).unwrap();
    assert!(w.write(&big).is_err());
    let mut reader = IpcReader::new(r.subscribe().unwrap());
    w.write(&small).unwrap();
    w.close().unwrap();
    assert_eq!(reader.next_batch().unwrap().unwrap(), small);
    assert!(reader.next_batch().unwrap().is_none());
}

#[test]
fn unsupported_types_are_refused_before_anything_is_published() {
    // Nesting deeper than the readers accept is the one refusal: as a
    // column, inside a struct, and as dictionary values.
    let mut deep = DataType::Int8;
    for _ in 0..64 {
        deep = DataType::new_list(deep, true);
    }
    let lv = |dt: DataType| DataType::ListView(Arc::new(Field::new("item", dt, true)));
    let cases = [
        (deep.clone(), "nested deeper"),
        (
            DataType::Struct(Fields::from(vec![
                Field::new("ok", DataType::Int64, true),
                Field::new("bad", deep.clone(), true),
            ])),
            "nested deeper",
        ),
        (lv(deep.clone()), "nested deeper"),
        (
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(deep.clone())),
            "nested deeper",
        ),
    ];
    for (dt, needle) in cases {
        let schema = Arc::new(Schema::new(vec![
            Field::new("fine", DataType::Utf8, true),
            Field::new("col_x", dt.clone(), true),
        ]));
        let r = ring(4, 1 << 16);
        let mut c = r.subscribe().unwrap();
        let err = CDataWriter::new(r.producer().unwrap(), schema.clone()).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(&err, ArrowShmError::UnsupportedType { column, .. } if column == "col_x"),
            "{dt}: {err:?}"
        );
        assert!(text.contains("col_x") && text.contains(needle), "{text}");
        assert!(CDataWriter::check_schema(&schema).is_err());
        assert_eq!(r.published(), 0);
        assert!(r.schema().unwrap().is_none());
        assert!(matches!(c.try_recv(), Err(crate::ring::RecvError::Empty)));
    }
    // 63 levels of lists plus the leaf: 64 nodes deep, the reader's limit.
    let mut ok = DataType::Int8;
    for _ in 0..63 {
        ok = DataType::new_list(ok, true);
    }
    CDataWriter::check_schema(&Schema::new(vec![Field::new("ok", ok, true)])).unwrap();
}

/// `ProducerBuilder::cdata_writer`: the builder's settings apply, and a
/// refused schema leaves no producer attached.
#[test]
fn producer_builder_makes_a_cdata_writer() {
    let r = ring(2, 1 << 16);
    let mut deep = DataType::Int8;
    for _ in 0..64 {
        deep = DataType::new_list(deep, true);
    }
    let bad = Arc::new(Schema::new(vec![Field::new("deep", deep, true)]));
    assert!(matches!(
        r.producer_builder().cdata_writer(bad),
        Err(ArrowShmError::UnsupportedType { .. })
    ));
    assert_eq!(r.producer_pid(), 0, "a producer attached");
    let mut reader = IpcReader::new(r.subscribe().unwrap());
    let b = testdata::batch(8, &[11, 23], 20, 3, true);
    let mut w = r
        .producer_builder()
        .backpressure(Backpressure::Fail)
        .cdata_writer(b.schema())
        .unwrap();
    assert_ne!(r.producer_pid(), 0);
    w.write(&b).unwrap(); // schema + batch: both slots
    assert!(matches!(
        w.write(&b),
        Err(ArrowShmError::Ring(RingError::Full { .. }))
    ));
    w.close().unwrap();
    assert_eq!(reader.next_batch().unwrap().unwrap(), b);
    assert!(reader.next_batch().unwrap().is_none());
}

/// A relay: batches read in place from one ring and written to another.
/// Once written (and dropped by the relay) their source slot is free: the
/// writer keeps no reference to a batch's buffers.
#[test]
fn writer_keeps_no_reference_to_written_batches() {
    let b = ring(8, 1 << 16);
    let mut from_b = IpcReader::new(b.subscribe().unwrap());
    // No dictionary column: in IPC mode it would need a third slot.
    let batch = testdata::batch(4, &[3, 11, 21, 22], 30, 2, true);
    let mut wb = CDataWriter::new(b.producer().unwrap(), batch.schema()).unwrap();
    for ipc in [false, true] {
        let a = ring(2, 1 << 16);
        let mut from_a = IpcReader::new(a.subscribe().unwrap());
        let pa = a
            .producer_builder()
            .backpressure(Backpressure::Fail)
            .wait(WaitStrategy::Spin)
            .create()
            .unwrap();
        // Schema, then the batch: both of a's slots.
        type Write = Box<dyn FnMut(&RecordBatch) -> Result<(), ArrowShmError>>;
        let mut write_a: Write = if ipc {
            let mut w = IpcWriter::new(pa, batch.schema()).unwrap();
            Box::new(move |b| w.write(b))
        } else {
            let mut w = CDataWriter::new(pa, batch.schema()).unwrap();
            Box::new(move |b| w.write(b))
        };
        write_a(&batch).unwrap();
        let got = from_a.next_batch().unwrap().unwrap();
        assert!(crate::arrow::in_mapping(&a, &got));
        wb.write(&got).unwrap();
        drop(got);
        write_a(&batch).unwrap(); // the schema's slot
        write_a(&batch).unwrap(); // the relayed batch's slot: released
        assert_eq!(from_b.next_batch().unwrap().unwrap(), batch);
    }
    wb.close().unwrap();
    assert!(from_b.next_batch().unwrap().is_none());
}

#[test]
fn batch_with_another_schema_is_refused() {
    let r = ring(4, 1 << 16);
    let mut reader = IpcReader::new(r.subscribe().unwrap());
    let a = testdata::batch(1, &[3, 11], 10, 0, true);
    let mut w = CDataWriter::new(r.producer().unwrap(), a.schema()).unwrap();
    for other in [
        testdata::batch(1, &[3, 12], 10, 0, true),
        testdata::batch(1, &[3], 10, 0, true),
        testdata::batch(1, &[], 10, 0, true),
    ] {
        assert!(matches!(
            w.write(&other),
            Err(ArrowShmError::SchemaMismatch)
        ));
    }
    assert_eq!(r.published(), 0);
    w.write(&a).unwrap();
    w.close().unwrap();
    assert_eq!(reader.next_batch().unwrap().unwrap(), a);
    assert!(reader.next_batch().unwrap().is_none());
}

#[test]
fn close_without_batches_publishes_the_schema() {
    let r = ring(4, 1 << 16);
    let mut reader = IpcReader::new(r.subscribe().unwrap());
    let schema = testdata::batch(1, &[23, 22], 1, 0, true).schema();
    let w = CDataWriter::new(r.producer().unwrap(), schema.clone()).unwrap();
    w.close().unwrap();
    assert!(reader.next_batch().unwrap().is_none());
    assert_eq!(reader.schema().unwrap(), schema);
    assert!(r.schema().unwrap().is_some(), "schema area");
}

#[test]
fn late_joiner_reads_the_schema_area() {
    let r = ring(8, 1 << 16);
    let b = testdata::batch(2, &[23, 11, 10], 30, 1, true);
    let mut w = CDataWriter::new(r.producer().unwrap(), b.schema()).unwrap();
    w.write(&b).unwrap();
    let mut late = IpcReader::new(r.subscribe().unwrap());
    w.write(&b.slice(3, 9)).unwrap();
    w.close().unwrap();
    let got = late.next_batch().unwrap().unwrap();
    assert_eq!(got, b.slice(3, 9));
    assert!(in_mapping_all(&r, &got));
}

/// A field with extension metadata goes as its storage type; the metadata
/// travels in the schema message.
#[test]
fn extension_fields_go_as_their_storage_type() {
    let md = [("ARROW:extension:name".to_string(), "arrow.uuid".to_string())];
    let f = Field::new("id", DataType::FixedSizeBinary(16), true)
        .with_metadata(md.into_iter().collect::<std::collections::HashMap<_, _>>());
    let a = FixedSizeBinaryArray::try_from_sparse_iter_with_size(
        (0..10u8).map(|i| (i % 3 != 0).then_some([i; 16])),
        16,
    )
    .unwrap();
    let b = RecordBatch::try_new(Arc::new(Schema::new(vec![f])), vec![Arc::new(a)]).unwrap();
    round_trip(&[b.clone(), b.slice(3, 4)]).unwrap();
}

/// Readers hold slots while they keep batches; the writer waits for (or,
/// with `Backpressure::Fail`, reports) a full ring like any producer.
#[test]
fn held_batches_hold_their_slots() {
    let r = ring(2, 1 << 16);
    let mut reader = IpcReader::new(r.subscribe().unwrap());
    let p = r
        .producer_builder()
        .backpressure(Backpressure::Fail)
        .wait(WaitStrategy::Spin)
        .create()
        .unwrap();
    let b = testdata::batch(3, &[3, 23], 50, 0, true);
    let mut w = CDataWriter::new(p, b.schema()).unwrap();
    w.write(&b).unwrap(); // schema + batch: both slots
    let got = reader.next_batch().unwrap().unwrap();
    let dict = got.column(1).clone();
    drop(got);
    w.write(&b).unwrap(); // the schema's slot
    assert!(matches!(
        w.write(&b),
        Err(ArrowShmError::Ring(RingError::Full { .. }))
    ));
    drop(dict);
    let second = reader.next_batch().unwrap().unwrap();
    assert_eq!(second, b);
    drop(second);
    w.write(&b).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random columns of every kind, random sizes and slices, through a ring.
    #[test]
    fn random_batches_round_trip(
        seed in any::<u64>(),
        kinds in proptest::collection::vec(0..ALL_KINDS, 0..6),
        rows in 0usize..200,
        offset in 0usize..70,
        nulls in any::<bool>(),
        cut in (0usize..200, 0usize..200),
    ) {
        let b = testdata::batch(seed, &kinds, rows, offset, nulls);
        let at = cut.0.min(rows);
        let len = cut.1.min(rows - at);
        round_trip(&[b.clone(), b.slice(at, len)]).map_err(TestCaseError::fail)?;
    }

    /// Random `ArrayData` slices (offsets kept on the data, as FFI imports
    /// and `ArrayData::slice` leave them) encode to messages that pass the
    /// reader's checks and decode to the same values.
    #[test]
    fn random_array_data_slices_decode(
        seed in any::<u64>(),
        kind in 0..ALL_KINDS + KINDS,
        rows in 0usize..150,
        cut in (0usize..150, 0usize..150),
        nulls in any::<bool>(),
    ) {
        let mut r = testdata::Rng::new(seed);
        let (f, a) = testdata::column(kind, rows, nulls, &mut r);
        let at = cut.0.min(rows);
        let len = cut.1.min(rows - at);
        let data = a.to_data().slice(at, len);
        let msg = encode(std::slice::from_ref(&data), len).map_err(TestCaseError::fail)?;
        check_layout(&msg);
        let got = dec(&msg, &Arc::new(Schema::new(vec![f])))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got.column(0), &make_array(data));
    }
}

/// The plan of one column made from the typed array (`flat_node`) and from
/// its `ArrayData` (`node`), written out.
fn column_messages(a: &ArrayRef) -> Option<(Vec<u8>, Vec<u8>)> {
    let write = |p: &Plan| {
        let mut out = vec![0xAA; p.message_len()];
        p.write(&mut out, a.len(), 1, 1);
        out
    };
    let mut flat = Plan::default();
    flat.clear();
    flat.flat_node(a.as_ref())?.expect("flat node");
    let mut general = Plan::default();
    general.clear();
    general.node(&a.to_data(), 1).expect("node");
    Some((write(&flat), write(&general)))
}

#[test]
fn flat_columns_skip_array_data_with_the_same_bytes() {
    let mut flat_kinds = 0;
    for kind in 0..ALL_KINDS {
        for nulls in [false, true] {
            let b = testdata::batch(kind + 11, &[kind], 90, 0, nulls);
            for (at, n) in [(0, 90), (8, 40), (3, 29), (13, 0), (89, 1)] {
                let a = b.column(0).slice(at, n);
                if let Some((flat, general)) = column_messages(&a) {
                    flat_kinds += 1;
                    assert!(
                        flat == general,
                        "kind {kind} ({}), nulls {nulls}, slice {at}+{n}",
                        a.data_type()
                    );
                }
            }
        }
    }
    // Every primitive, boolean, fixed-size binary and byte kind of testdata.
    assert!(flat_kinds >= 25 * 10, "{flat_kinds} flat columns");
}

#[test]
fn buffer_copies_stream_only_where_the_ring_rotation_leaves_the_cache() {
    use crate::ring::slot_copy::{self, tests::streamed, Routine, NON_TEMPORAL_FROM};
    // One 1 MiB values buffer (no validity): copy_to_slot streamed it into
    // any ring; copy_to_ring_slot only where slots × 1 MiB is at least a
    // quarter of the last-level cache (4 slots keep it cached here, 16 do
    // not with a 32 MiB cache).
    let rows = NON_TEMPORAL_FROM / 8;
    let a = Int64Array::from_iter_values((0..rows as i64).map(|i| i * 3));
    let batch = RecordBatch::try_from_iter([("v", Arc::new(a) as ArrayRef)]).expect("batch");
    for slots in [4, 16] {
        let r = ring(slots, (NON_TEMPORAL_FROM + (64 << 10)) as u32);
        let before = streamed();
        round_trip_in(&r, std::slice::from_ref(&batch)).expect("round trip");
        let want = slot_copy::ring_slot_routine(NON_TEMPORAL_FROM, slots);
        assert_eq!(
            streamed() - before,
            u64::from(want == Routine::Avx2NonTemporal),
            "{slots} slots: {want:?}"
        );
    }
}
