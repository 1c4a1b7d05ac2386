//! The C stream export: zero-copy through the FFI round trip, leases
//! released with the imported arrays, and the `get_next` contract.

use std::ffi::CStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::ffi::FFI_ArrowArray;
use arrow_array::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
use arrow_array::{Float64Array, Int64Array, RecordBatch, RecordBatchReader, StringArray};

use super::super::{in_mapping, ArrowShmError, RingStream};
use crate::ring::Ring;

fn batch(i: i64, rows: i64) -> RecordBatch {
    RecordBatch::try_from_iter([
        (
            "id",
            Arc::new(Int64Array::from_iter_values(
                (0..rows).map(|r| i * rows + r),
            )) as _,
        ),
        (
            "x",
            Arc::new(Float64Array::from_iter(
                (0..rows).map(|r| (r % 3 != 0).then_some(r as f64 * 0.5)),
            )) as _,
        ),
        (
            "s",
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|r| format!("v{}", r % 7)),
            )) as _,
        ),
    ])
    .unwrap()
}

fn ring(slots: u32) -> Ring {
    Ring::anonymous_builder()
        .slot_count(slots)
        .slot_size(1 << 16)
        .create()
        .unwrap()
}

/// The subscriber entry's release cursor: every sequence below it is
/// released (no lease held on it).
fn released(ring: &Ring) -> u64 {
    ring.subscribers()[0].release
}

/// Streams 12 batches through a 4-slot ring (so slots must be released for
/// the producer to finish) into an imported C stream, in IPC and
/// C-Data-offsets mode: every imported batch lies in the mapping, equals
/// what was sent, and holds its slot until dropped.
#[test]
fn imported_batches_are_in_place_and_release_their_slots() {
    for cdata in [false, true] {
        let ring = ring(4);
        let stream = ring.consumer_builder().ring_stream().unwrap();
        let sent: Vec<RecordBatch> = (0..12).map(|i| batch(i, 100)).collect();
        let producer = ring.producer_builder();
        let to_send = sent.clone();
        let writer = std::thread::spawn(move || {
            if cdata {
                let mut w = producer.cdata_writer(to_send[0].schema()).unwrap();
                to_send.iter().for_each(|b| w.write(b).unwrap());
                w.close().unwrap();
            } else {
                let mut w = producer.ipc_writer(to_send[0].schema()).unwrap();
                to_send.iter().for_each(|b| w.write(b).unwrap());
                w.close().unwrap();
            }
        });
        let mut reader = RecordBatchStreamReader::try_new(stream.into_ffi().unwrap()).unwrap();
        assert_eq!(reader.schema(), sent[0].schema());
        let first = reader.next().unwrap().unwrap();
        assert!(in_mapping(&ring, &first), "cdata={cdata}: copied");
        assert_eq!(first, sent[0]);
        // The first batch is held: its sequence is not released.
        let held_seq = released(&ring);
        let mut got = vec![];
        for b in reader.by_ref().take(2) {
            let b = b.unwrap();
            assert!(in_mapping(&ring, &b));
            got.push(b);
        }
        assert_eq!(released(&ring), held_seq, "a held batch was released");
        drop(first);
        drop(got);
        // The rest streams through the 4 slots only because batches are
        // released as the imported arrays are dropped.
        let mut rest = 0;
        for b in reader.by_ref() {
            let b = b.unwrap();
            assert!(in_mapping(&ring, &b));
            assert_eq!(b, sent[3 + rest]);
            rest += 1;
        }
        assert_eq!(rest, 9);
        writer.join().unwrap();
        let s = &ring.subscribers()[0];
        assert_eq!(
            s.release, s.claim,
            "leases left after every batch was dropped"
        );
    }
}

/// The raw contract: a batch, then end of stream as a released array;
/// leases counted while a raw exported array is alive.
#[test]
fn end_of_stream_is_a_released_array_and_release_drops_the_lease() {
    let ring = ring(4);
    let mut stream = ring.consumer_builder().queue(1).ring_stream().unwrap();
    let b = batch(0, 10);
    let mut w = ring.producer_builder().ipc_writer(b.schema()).unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
    assert_eq!(stream.schema().unwrap(), b.schema());
    let counter = Arc::new(AtomicUsize::new(0));
    let seen = counter.clone();
    // Hold on to the consumer's lease count through the interrupt hook's
    // captured state: observe `leases_held` before exporting.
    assert_eq!(stream.leases_held(), 0);
    let stream = stream.with_interrupt(Duration::from_millis(10), move || {
        seen.fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    let mut ffi = stream.into_ffi().unwrap();
    let get_next = ffi.get_next().unwrap();
    let mut array = FFI_ArrowArray::empty();
    // SAFETY: a live stream and an empty array to fill.
    assert_eq!(unsafe { get_next(&mut ffi, &mut array) }, 0);
    assert!(!array.is_released());
    let held = ring.subscribers()[0].release;
    drop(array); // the release callback: drops the batch and its lease
    assert!(
        ring.subscribers()[0].release > held,
        "release did not free the slot"
    );
    let mut end = FFI_ArrowArray::empty();
    // SAFETY: as above.
    assert_eq!(unsafe { get_next(&mut ffi, &mut end) }, 0);
    assert!(end.is_released(), "end of stream must be a released array");
    assert_eq!(counter.load(Ordering::Relaxed), 0, "no wait was needed");
}

/// A corrupt message, a deadline and an interrupt are error codes with a
/// message from `get_last_error`, and the stream goes on after a timeout.
#[test]
fn errors_are_error_codes_with_a_last_error() {
    fn next(ffi: &mut FFI_ArrowArrayStream) -> Result<FFI_ArrowArray, String> {
        let mut array = FFI_ArrowArray::empty();
        // SAFETY: a live stream and an empty array to fill.
        let rc = unsafe { (ffi.get_next().unwrap())(ffi, &mut array) };
        if rc == 0 {
            return Ok(array);
        }
        // SAFETY: after a failed call the stream has a last error, valid
        // until the next call.
        let msg = unsafe { CStr::from_ptr((ffi.get_last_error().unwrap())(ffi)) };
        Err(format!("{rc}: {}", msg.to_string_lossy()))
    }
    let ring = ring(8);
    let stream = ring
        .consumer_builder()
        .ring_stream()
        .unwrap()
        .with_timeout(Some(Duration::from_millis(30)));
    let b = batch(1, 5);
    let mut w = ring.producer_builder().ipc_writer(b.schema()).unwrap();
    w.write(&b).unwrap();
    let mut ffi = stream.into_ffi().unwrap();
    assert!(!next(&mut ffi).unwrap().is_released());
    let err = next(&mut ffi).unwrap_err();
    assert!(err.contains("timed out"), "{err}");
    w.write(&b).unwrap();
    assert!(
        !next(&mut ffi).unwrap().is_released(),
        "usable after a timeout"
    );
    w.producer_mut().send(b"not arrow", 0x7000).unwrap();
    let err = next(&mut ffi).unwrap_err();
    assert!(err.contains("flags 0x7000"), "{err}");

    // An interrupt check that fails ends the wait.
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let stream = ring
        .consumer_builder()
        .ring_stream()
        .unwrap()
        .with_interrupt(Duration::from_millis(5), move || {
            if c.fetch_add(1, Ordering::Relaxed) >= 3 {
                Err("KeyboardInterrupt".into())
            } else {
                Ok(())
            }
        });
    let mut ffi = stream.into_ffi().unwrap(); // the schema area: a late joiner
    let err = next(&mut ffi).unwrap_err();
    assert!(err.contains("interrupted: KeyboardInterrupt"), "{err}");
    assert_eq!(calls.load(Ordering::Relaxed), 4);

    // A panic inside get_next (here: the interrupt check) is the stream's
    // error, never an unwind into the C caller (which aborts the process).
    let stream = ring
        .consumer_builder()
        .ring_stream()
        .unwrap()
        .with_interrupt(Duration::from_millis(5), || -> Result<(), String> {
            panic!("check failed")
        });
    let mut ffi = stream.into_ffi().unwrap();
    let err = next(&mut ffi).unwrap_err();
    assert!(err.contains("panicked: check failed"), "{err}");
}

/// The schema wait has the same deadline and keeps the stream usable.
#[test]
fn schema_wait_times_out_and_can_be_retried() {
    let ring = ring(4);
    let mut stream = ring
        .consumer_builder()
        .ring_stream()
        .unwrap()
        .with_timeout(Some(Duration::from_millis(20)));
    let err = stream.schema().unwrap_err();
    assert!(matches!(err, ArrowShmError::SchemaTimeout(_)), "{err}");
    let b = batch(2, 3);
    let mut w = ring.producer_builder().ipc_writer(b.schema()).unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
    let stream: &mut RingStream = &mut stream;
    assert_eq!(stream.schema().unwrap(), b.schema());
    assert_eq!(stream.next_batch().unwrap(), Some(b));
    assert_eq!(stream.next_batch().unwrap(), None);
}
