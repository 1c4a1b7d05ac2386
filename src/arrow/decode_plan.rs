//! The per-schema decode plan of [`IpcReader`](super::IpcReader): for a
//! schema whose columns are all flat (fixed-width primitives, booleans,
//! utf8/binary and their large forms, dictionaries of those with integer
//! keys), a record batch message is turned into arrays here, without
//! arrow-ipc's general decoder and without a per-batch allocation beyond the
//! arrays and the `RecordBatch` themselves. Any other schema (nested types,
//! views, unions, run-end encoding, …) and an empty batch go through
//! arrow-ipc's `RecordBatchDecoder` as before.
//!
//! What is checked (validation on, the default), after `frame::parse` has
//! checked every buffer to lie in the body, 64-byte aligned:
//!
//! - the message has exactly one field node per column and exactly the
//!   buffers the columns' types have, and every node's length is the
//!   batch's row count;
//! - every buffer is long enough for the node's length (values, validity
//!   bitmap, offsets), and lies aligned for its native type;
//! - the null count matches the validity bitmap (bits counted), and a
//!   non-nullable field has no nulls;
//! - offsets start at or after 0, never decrease and end inside the values
//!   buffer; utf8 values are valid UTF-8 and every offset falls on a
//!   character boundary;
//! - dictionary keys of non-null slots are within the dictionary.
//!
//! What is not checked, because no bit pattern is invalid: the values of
//! fixed-width columns (integers, floats, temporals, decimals) and of
//! booleans, the bytes of binary values, and the bitmap bits past the
//! node's length. With validation skipped (the unsafe opt-in for trusted
//! producers) the counts, buffer lengths and alignment are still checked;
//! the null count is taken from the node, and offsets, UTF-8 and dictionary
//! keys are trusted.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::types::{
    ArrowDictionaryKeyType, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{
    downcast_primitive, new_empty_array, ArrayRef, BinaryArray, BooleanArray, DictionaryArray,
    FixedSizeBinaryArray, LargeBinaryArray, LargeStringArray, PrimitiveArray, RecordBatch,
    StringArray,
};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, SchemaRef};

/// How one column is laid out in the message.
#[derive(Debug, Clone)]
pub(super) enum Column {
    /// Validity bitmap and values of `width` bytes each.
    Fixed { width: usize, align: usize },
    /// Validity bitmap and bit-packed values.
    Bool,
    /// Validity bitmap, offsets (`i32` or, when `large`, `i64`), values.
    Bytes { large: bool, utf8: bool },
    /// Validity bitmap and integer keys into dictionary `id`.
    Dict { id: i64, key: Key },
}

/// The integer type of dictionary keys.
#[derive(Debug, Clone, Copy)]
pub(super) enum Key {
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
}

impl Key {
    pub(super) fn of(dt: &DataType) -> Option<Key> {
        Some(match dt {
            DataType::Int8 => Key::I8,
            DataType::Int16 => Key::I16,
            DataType::Int32 => Key::I32,
            DataType::Int64 => Key::I64,
            DataType::UInt8 => Key::U8,
            DataType::UInt16 => Key::U16,
            DataType::UInt32 => Key::U32,
            DataType::UInt64 => Key::U64,
            _ => return None,
        })
    }

    pub(super) fn width(self) -> usize {
        match self {
            Key::I8 | Key::U8 => 1,
            Key::I16 | Key::U16 => 2,
            Key::I32 | Key::U32 => 4,
            Key::I64 | Key::U64 => 8,
        }
    }
}

/// A schema's decode plan (see the module docs); `None` from
/// [`DecodePlan::new`] when some column needs arrow-ipc's decoder.
#[derive(Debug)]
pub(crate) struct DecodePlan {
    schema: SchemaRef,
    columns: Vec<Column>,
    buffers: usize,
}

pub(super) fn plain(dt: &DataType) -> Option<Column> {
    match dt {
        DataType::Boolean => Some(Column::Bool),
        DataType::Utf8 => Some(Column::Bytes {
            large: false,
            utf8: true,
        }),
        DataType::LargeUtf8 => Some(Column::Bytes {
            large: true,
            utf8: true,
        }),
        DataType::Binary => Some(Column::Bytes {
            large: false,
            utf8: false,
        }),
        DataType::LargeBinary => Some(Column::Bytes {
            large: true,
            utf8: false,
        }),
        DataType::FixedSizeBinary(w) if *w > 0 => Some(Column::Fixed {
            width: *w as usize,
            align: 1,
        }),
        // Native alignment of the widest types (i128, i256) is 16.
        dt if dt.is_primitive() => dt.primitive_width().map(|width| Column::Fixed {
            width,
            align: width.min(16),
        }),
        _ => None,
    }
}

impl DecodePlan {
    /// The plan of `schema`, or `None` when a column is not flat.
    pub(crate) fn new(schema: &SchemaRef) -> Option<DecodePlan> {
        let mut columns = Vec::with_capacity(schema.fields().len());
        let mut buffers = 0;
        for f in schema.fields() {
            let c = match f.data_type() {
                DataType::Dictionary(k, v) => {
                    plain(v)?;
                    #[allow(deprecated)] // arrow-ipc itself finds dictionaries by it
                    let id = f.dict_id()?;
                    Column::Dict {
                        id,
                        key: Key::of(k)?,
                    }
                }
                dt => plain(dt)?,
            };
            buffers += match c {
                Column::Bytes { .. } => 3,
                _ => 2,
            };
            columns.push(c);
        }
        Some(DecodePlan {
            schema: Arc::clone(schema),
            columns,
            buffers,
        })
    }

    /// Decodes the record batch `batch` whose body is `body` (buffers are
    /// slices of it: no copy). `Ok(None)`: an empty batch, left to
    /// arrow-ipc's decoder.
    pub(crate) fn decode(
        &self,
        body: &Buffer,
        batch: &arrow_ipc::RecordBatch<'_>,
        dictionaries: &HashMap<i64, ArrayRef>,
        validate: bool,
    ) -> Result<Option<RecordBatch>, ArrowError> {
        let bad = |what: String| ArrowError::IpcError(what);
        let rows = usize::try_from(batch.length()).map_err(|_| bad("negative row count".into()))?;
        if rows == 0 {
            return Ok(None);
        }
        // Every column needs at least a bit per row in the body (a boolean
        // column has the fewest bytes): this bounds `rows` before any size
        // below is computed from it, and the sizes are computed checked.
        if !self.columns.is_empty() && rows.div_ceil(8) > body.len() {
            return Err(bad(format!(
                "{rows} rows in a body of {} bytes",
                body.len()
            )));
        }
        let nodes = batch.nodes().ok_or_else(|| bad("no field nodes".into()))?;
        let bufs = batch.buffers().ok_or_else(|| bad("no buffers".into()))?;
        if nodes.len() != self.columns.len() || bufs.len() != self.buffers {
            return Err(bad(format!(
                "{} field nodes and {} buffers, the schema has {} and {}",
                nodes.len(),
                bufs.len(),
                self.columns.len(),
                self.buffers
            )));
        }
        if batch.variadicBufferCounts().is_some_and(|v| !v.is_empty()) {
            return Err(bad(
                "variadic buffer counts for a schema without views".into()
            ));
        }
        // frame::parse checked each buffer to lie inside the body.
        let mut next = 0;
        let mut buffer = || {
            let b = bufs.get(next);
            next += 1;
            body.slice_with_length(b.offset() as usize, b.length() as usize)
        };
        let mut columns = Vec::with_capacity(self.columns.len());
        for (i, (col, field)) in self.columns.iter().zip(self.schema.fields()).enumerate() {
            let node = nodes.get(i);
            let bad = |what: String| {
                ArrowError::IpcError(format!("column {i} ({}): {what}", field.name()))
            };
            if node.length() != batch.length() {
                return Err(bad(format!("{} rows, the batch has {rows}", node.length())));
            }
            let null_count = node.null_count() as usize; // 0..=length (frame::parse)
            if null_count > 0 && !field.is_nullable() {
                return Err(bad(format!("{null_count} nulls in a non-nullable field")));
            }
            let validity = buffer();
            let nulls = if null_count == 0 {
                None
            } else {
                if validity.len() < rows.div_ceil(8) {
                    return Err(bad(format!(
                        "validity bitmap of {} bytes for {rows} rows",
                        validity.len()
                    )));
                }
                let bits = BooleanBuffer::new(validity, 0, rows);
                if validate {
                    let counted = rows - bits.count_set_bits();
                    if counted != null_count {
                        return Err(bad(format!(
                            "null count {null_count} but the bitmap has {counted} nulls"
                        )));
                    }
                }
                // SAFETY: with validation the count was just checked against
                // the bitmap; without, the caller vouched for the producer
                // (`IpcReader::with_skip_validation` is unsafe). A wrong count
                // is a logic error, not a memory-safety one.
                Some(unsafe { NullBuffer::new_unchecked(bits, null_count) })
            };
            // Each array is built from its typed parts (no `ArrayData`, whose
            // buffer list is one more allocation per column, and no type
            // dispatch on it afterwards).
            let array: ArrayRef = match *col {
                Column::Fixed { width, align } => {
                    let values = buffer();
                    let len = bytes(rows, width).map_err(bad)?;
                    need(&values, len, 1, "values").map_err(bad)?;
                    if !aligned(&values, align) {
                        // A 16-byte type only 8-aligned (e.g. an interval,
                        // whose native alignment is 8): arrow-ipc's decoder
                        // realigns what needs it.
                        return Ok(None);
                    }
                    // Whole elements only (arrow asserts on a ragged tail).
                    let values = values.slice_with_length(0, len);
                    match fixed(field.data_type(), width, values, rows, nulls) {
                        Some(array) => array.map_err(|e| bad(e.to_string()))?,
                        None => return Ok(None),
                    }
                }
                Column::Bool => {
                    let values = buffer();
                    need(&values, rows.div_ceil(8), 1, "values").map_err(bad)?;
                    let values = BooleanBuffer::new(values, 0, rows);
                    Arc::new(BooleanArray::new(values, nulls))
                }
                Column::Bytes { large, utf8 } => {
                    let (offsets, values) = (buffer(), buffer());
                    let w = if large { 8 } else { 4 };
                    let len = bytes(rows + 1, w).map_err(bad)?;
                    need(&offsets, len, w, "offsets").map_err(bad)?;
                    let offsets = offsets.slice_with_length(0, len);
                    if validate {
                        check_offsets(&offsets, rows, large, &values, utf8).map_err(bad)?;
                    }
                    // SAFETY: `offsets` holds `rows + 1` aligned offsets
                    // (checked above). With validation they start at 0 or
                    // more, never decrease, end inside `values` and (utf8)
                    // split it into valid UTF-8 strings (check_offsets);
                    // without it the caller vouched for the producer
                    // (`with_skip_validation` is unsafe). `nulls` is `rows`
                    // bits.
                    unsafe { bytes_array(large, utf8, offsets, rows, values, nulls) }
                }
                Column::Dict { id, key } => {
                    let keys = buffer();
                    let len = bytes(rows, key.width()).map_err(bad)?;
                    need(&keys, len, key.width(), "keys").map_err(bad)?;
                    let keys = keys.slice_with_length(0, len);
                    let DataType::Dictionary(_, vt) = field.data_type() else {
                        unreachable!("planned as a dictionary");
                    };
                    let values = match dictionaries.get(&id) {
                        Some(v) => Arc::clone(v),
                        // As arrow-ipc: a column of nulls may come without
                        // its dictionary.
                        None => new_empty_array(vt),
                    };
                    // Checked with or without validation: the array built
                    // below must be of the field's type, and a schema may
                    // give one dictionary id to fields of different value
                    // types (arrow-ipc decodes the dictionary as the first
                    // such field's).
                    if values.data_type() != vt.as_ref() {
                        return Err(bad(format!(
                            "dictionary {id} holds {} values, the field declares {vt}",
                            values.data_type()
                        )));
                    }
                    if validate {
                        check_keys(&keys, key, rows, nulls.as_ref(), values.len()).map_err(bad)?;
                    }
                    dictionary(key, keys, rows, nulls, values)
                }
            };
            columns.push(array);
        }
        // SAFETY: one column per field, each of the field's type (built from
        // it above), `rows` long, and nulls only in nullable fields.
        Ok(Some(unsafe {
            RecordBatch::new_unchecked(Arc::clone(&self.schema), columns, rows)
        }))
    }
}

/// The fixed-width array of type `dt` (`width` bytes a value) over
/// `values` (`rows` whole, aligned values): `None` for a type this plan
/// does not build (then arrow-ipc's decoder does).
pub(super) fn fixed(
    dt: &DataType,
    width: usize,
    values: Buffer,
    rows: usize,
    nulls: Option<NullBuffer>,
) -> Option<Result<ArrayRef, ArrowError>> {
    macro_rules! primitive {
        ($t:ty, $dt:ident, $values:ident, $rows:ident, $nulls:ident) => {
            Some(
                PrimitiveArray::<$t>::try_new(ScalarBuffer::new($values, 0, $rows), $nulls)
                    .map(|a| Arc::new(a.with_data_type($dt.clone())) as ArrayRef),
            )
        };
    }
    match dt {
        DataType::FixedSizeBinary(_) => Some(
            FixedSizeBinaryArray::try_new(width as i32, values, nulls)
                .map(|a| Arc::new(a) as ArrayRef),
        ),
        dt => downcast_primitive! {
            dt => (primitive, dt, values, rows, nulls),
            _ => None,
        },
    }
}

/// Offsets checked by the caller, as arrow's offset buffer.
///
/// # Safety
///
/// `offsets` holds `rows + 1` offsets from 0 or more that never decrease.
pub(super) unsafe fn offs<O: arrow_array::OffsetSizeTrait>(
    offsets: Buffer,
    rows: usize,
) -> OffsetBuffer<O> {
    // SAFETY: the caller's promise, OffsetBuffer::new_unchecked's contract.
    unsafe { OffsetBuffer::new_unchecked(ScalarBuffer::new(offsets, 0, rows + 1)) }
}

/// The utf8 / binary array (`large`: 64-bit offsets) of `rows` strings cut
/// from `values` by `offsets`.
///
/// # Safety
///
/// `offsets` holds `rows + 1` aligned offsets of the width `large` names,
/// from 0 or more, never decreasing and ending inside `values`; with `utf8`
/// they split `values` into valid UTF-8 strings. `nulls`, if any, is `rows`
/// bits.
pub(super) unsafe fn bytes_array(
    large: bool,
    utf8: bool,
    offsets: Buffer,
    rows: usize,
    values: Buffer,
    nulls: Option<NullBuffer>,
) -> ArrayRef {
    // SAFETY: the caller's promise, the contract of `offs` and of the
    // arrays' new_unchecked.
    unsafe {
        match (large, utf8) {
            (false, true) => Arc::new(StringArray::new_unchecked(
                offs(offsets, rows),
                values,
                nulls,
            )),
            (true, true) => Arc::new(LargeStringArray::new_unchecked(
                offs(offsets, rows),
                values,
                nulls,
            )),
            (false, false) => Arc::new(BinaryArray::new_unchecked(
                offs(offsets, rows),
                values,
                nulls,
            )),
            (true, false) => Arc::new(LargeBinaryArray::new_unchecked(
                offs(offsets, rows),
                values,
                nulls,
            )),
        }
    }
}

/// The dictionary array of `keys` (`rows` aligned keys of type `key`,
/// within `values` where not null: checked by the caller, or vouched for)
/// into `values`.
pub(super) fn dictionary(
    key: Key,
    keys: Buffer,
    rows: usize,
    nulls: Option<NullBuffer>,
    values: ArrayRef,
) -> ArrayRef {
    fn build<K: ArrowDictionaryKeyType>(
        keys: Buffer,
        rows: usize,
        nulls: Option<NullBuffer>,
        values: ArrayRef,
    ) -> ArrayRef {
        let keys = PrimitiveArray::<K>::new(ScalarBuffer::new(keys, 0, rows), nulls);
        // SAFETY: every non-null key is within `values` (check_keys with
        // validation; without it the caller vouched for the producer:
        // `with_skip_validation` is unsafe).
        Arc::new(unsafe { DictionaryArray::<K>::new_unchecked(keys, values) })
    }
    match key {
        Key::I8 => build::<Int8Type>(keys, rows, nulls, values),
        Key::I16 => build::<Int16Type>(keys, rows, nulls, values),
        Key::I32 => build::<Int32Type>(keys, rows, nulls, values),
        Key::I64 => build::<Int64Type>(keys, rows, nulls, values),
        Key::U8 => build::<UInt8Type>(keys, rows, nulls, values),
        Key::U16 => build::<UInt16Type>(keys, rows, nulls, values),
        Key::U32 => build::<UInt32Type>(keys, rows, nulls, values),
        Key::U64 => build::<UInt64Type>(keys, rows, nulls, values),
    }
}

/// `n` elements of `width` bytes, or an error when that overflows.
fn bytes(n: usize, width: usize) -> Result<usize, String> {
    n.checked_mul(width)
        .ok_or_else(|| format!("{n} elements of {width} bytes overflow"))
}

pub(super) fn aligned(b: &Buffer, align: usize) -> bool {
    (b.as_ptr() as usize) % align == 0
}

fn need(b: &Buffer, len: usize, align: usize, what: &str) -> Result<(), String> {
    if b.len() < len {
        return Err(format!("{what} buffer of {} bytes, needs {len}", b.len()));
    }
    if !aligned(b, align) {
        return Err(format!("{what} buffer not aligned to {align} bytes"));
    }
    Ok(())
}

/// Offsets from 0 or more, never decreasing, ending inside `values`; for
/// utf8, valid UTF-8 split only at character boundaries.
pub(super) fn check_offsets(
    offsets: &Buffer,
    rows: usize,
    large: bool,
    values: &Buffer,
    utf8: bool,
) -> Result<(), String> {
    if large {
        check_offsets_of(
            &ScalarBuffer::<i64>::new(offsets.clone(), 0, rows + 1),
            values,
            utf8,
        )
    } else {
        check_offsets_of(
            &ScalarBuffer::<i32>::new(offsets.clone(), 0, rows + 1),
            values,
            utf8,
        )
    }
}

fn check_offsets_of<O: Copy + Into<i64>>(
    offs: &[O],
    values: &[u8],
    utf8: bool,
) -> Result<(), String> {
    let mut prev = 0i64;
    for (i, &o) in offs.iter().enumerate() {
        let o: i64 = o.into();
        if o < 0 || (i > 0 && o < prev) || o as u64 > values.len() as u64 {
            return Err(format!(
                "offset {i} ({o}) is negative, decreasing or outside the {}-byte values",
                values.len()
            ));
        }
        prev = o;
    }
    if !utf8 {
        return Ok(());
    }
    // In range and ordered, checked above.
    let first = offs[0].into() as usize;
    let last = offs[offs.len() - 1].into() as usize;
    let s = std::str::from_utf8(&values[first..last]).map_err(|e| format!("invalid UTF-8: {e}"))?;
    match offs
        .iter()
        .position(|&o| !s.is_char_boundary(o.into() as usize - first))
    {
        Some(i) => Err(format!("offset {i} splits a UTF-8 character")),
        None => Ok(()),
    }
}

/// Every key of a non-null slot is within `0..dict_len`.
pub(super) fn check_keys(
    keys: &Buffer,
    key: Key,
    rows: usize,
    nulls: Option<&NullBuffer>,
    dict_len: usize,
) -> Result<(), String> {
    fn run<T: Copy + TryInto<u64>>(
        keys: &[T],
        nulls: Option<&NullBuffer>,
        dict_len: usize,
    ) -> Result<(), String> {
        let ok = |k: T| k.try_into().is_ok_and(|k: u64| k < dict_len as u64);
        let bad = keys
            .iter()
            .enumerate()
            .find(|&(i, &k)| nulls.is_none_or(|n| n.is_valid(i)) && !ok(k));
        match bad {
            Some((i, _)) => Err(format!(
                "key of row {i} is outside the {dict_len}-value dictionary"
            )),
            None => Ok(()),
        }
    }
    match key {
        Key::I8 => run(
            &ScalarBuffer::<i8>::new(keys.clone(), 0, rows),
            nulls,
            dict_len,
        ),
        Key::I16 => run(
            &ScalarBuffer::<i16>::new(keys.clone(), 0, rows),
            nulls,
            dict_len,
        ),
        Key::I32 => run(
            &ScalarBuffer::<i32>::new(keys.clone(), 0, rows),
            nulls,
            dict_len,
        ),
        Key::I64 => run(
            &ScalarBuffer::<i64>::new(keys.clone(), 0, rows),
            nulls,
            dict_len,
        ),
        Key::U8 => run(
            &ScalarBuffer::<u8>::new(keys.clone(), 0, rows),
            nulls,
            dict_len,
        ),
        Key::U16 => run(
            &ScalarBuffer::<u16>::new(keys.clone(), 0, rows),
            nulls,
            dict_len,
        ),
        Key::U32 => run(
            &ScalarBuffer::<u32>::new(keys.clone(), 0, rows),
            nulls,
            dict_len,
        ),
        Key::U64 => run(
            &ScalarBuffer::<u64>::new(keys.clone(), 0, rows),
            nulls,
            dict_len,
        ),
    }
}
