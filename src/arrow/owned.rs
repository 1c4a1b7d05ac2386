//! Owned copies of batches read in place, so that keeping them does not
//! keep their slots (LAYOUT.md §5.2: a ring's `release` cursor only passes
//! a contiguous run of released sequences, so one batch kept for ever stalls
//! the producer once it is `slot_count` messages ahead).

use std::sync::Arc;

use arrow_array::{make_array, Array, ArrayRef, RecordBatch};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer};
use arrow_data::ArrayData;
use arrow_schema::DataType;

/// A copy of `batch` whose buffers are all in fresh (64-byte aligned) heap
/// memory: keeping it holds no slot of any ring. Buffers are copied whole,
/// so a slice keeps its offset (and the bytes outside it).
///
/// ```
/// use std::sync::Arc;
/// use alloy_shm::arrow::{copy_batch, in_mapping, IpcReader, IpcWriter};
/// use alloy_shm::ring::{Ring, RingConfig};
/// use arrow_array::{Int64Array, RecordBatch};
///
/// let ring = Ring::anonymous_builder().config(RingConfig { slot_count: 4, slot_size: 4096, ..Default::default() }).create()?;
/// let mut reader = IpcReader::new(ring.subscribe()?);
/// let batch = RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1, 2])) as _)])?;
/// let mut writer = IpcWriter::new(ring.producer()?, batch.schema())?;
/// writer.write(&batch)?;
/// let in_place = reader.next_batch()?.expect("a batch");
/// let kept = copy_batch(&in_place); // keep this one as long as you like
/// drop(in_place); // releases the slot
/// assert!(!in_mapping(&ring, &kept));
/// assert_eq!(kept, batch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn copy_batch(batch: &RecordBatch) -> RecordBatch {
    let columns = batch.columns().iter().map(copy_array).collect();
    RecordBatch::try_new_with_options(
        batch.schema(),
        columns,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .expect("a copy has the schema and row count of its source")
}

/// A copy of `array` in fresh heap memory (see [`copy_batch`]).
pub fn copy_array(array: &ArrayRef) -> ArrayRef {
    make_array(copy_data(&array.to_data()))
}

fn copy_data(data: &ArrayData) -> ArrayData {
    let nulls = data.nulls().map(|n| {
        let bits = n.inner();
        // SAFETY: the same bits at the same offset as a valid null buffer,
        // so its null count is still `n.null_count()`.
        unsafe {
            NullBuffer::new_unchecked(
                BooleanBuffer::new(
                    Buffer::from(bits.inner().as_slice()),
                    bits.offset(),
                    bits.len(),
                ),
                n.null_count(),
            )
        }
    });
    let builder = ArrayData::builder(data.data_type().clone())
        .len(data.len())
        .offset(data.offset())
        .nulls(nulls)
        .buffers(
            data.buffers()
                .iter()
                .map(|b| Buffer::from(b.as_slice()))
                .collect(),
        )
        .child_data(data.child_data().iter().map(copy_data).collect());
    // SAFETY: every buffer, the null bitmap and every child are byte-for-byte
    // copies of those of `data`, an `ArrayData` that was valid (it came from
    // an array), with the same type, length and offset.
    unsafe { builder.build_unchecked() }
}

/// Whether `dt` has a dictionary anywhere in it.
pub(crate) fn has_dictionary(dt: &DataType) -> bool {
    match dt {
        DataType::Dictionary(_, _) => true,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => has_dictionary(f.data_type()),
        DataType::Struct(fs) => fs.iter().any(|f| has_dictionary(f.data_type())),
        DataType::Union(fs, _) => fs.iter().any(|(_, f)| has_dictionary(f.data_type())),
        DataType::RunEndEncoded(r, v) => {
            has_dictionary(r.data_type()) || has_dictionary(v.data_type())
        }
        _ => false,
    }
}

/// `batch` with every column that holds a dictionary copied out of the
/// slot, the other columns shared. For writers that keep the dictionary
/// columns of what they wrote to compare with the next batch (arrow-ipc's
/// `DictionaryTracker` keeps the whole column, keys included): given a
/// batch read in place, they would hold its slot for the rest of the stream.
pub fn detach_dictionaries(batch: &RecordBatch) -> RecordBatch {
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| has_dictionary(f.data_type()))
    {
        return batch.clone();
    }
    let columns = batch
        .columns()
        .iter()
        .map(|c| {
            if has_dictionary(c.data_type()) {
                copy_array(c)
            } else {
                Arc::clone(c)
            }
        })
        .collect();
    RecordBatch::try_new_with_options(
        batch.schema(),
        columns,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .expect("same schema and row count")
}
