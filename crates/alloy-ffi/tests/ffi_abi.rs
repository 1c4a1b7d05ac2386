//! The C ABI of `crates/alloy-ffi/src/ffi.rs`, driven the way a C caller would: arrow-rs
//! plays the foreign producer and consumer of the C Data Interface.

mod common;

use std::ffi::{c_char, CString};
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard};

use alloy_ffi::ffi::*;
use alloy_ffi::oneshot::{self, Request};
use arrow_array::ffi::{from_ffi, to_ffi, FFI_ArrowArray, FFI_ArrowSchema};
use arrow_array::{Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, StructArray};

/// The live counters are process-wide: tests that read them run one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn export_array(a: &dyn Array) -> (FFI_ArrowArray, FFI_ArrowSchema) {
    to_ffi(&a.to_data()).unwrap()
}

fn export_batch(b: &RecordBatch) -> (FFI_ArrowArray, FFI_ArrowSchema) {
    let schema = FFI_ArrowSchema::try_from(b.schema_ref().as_ref()).unwrap();
    let array = FFI_ArrowArray::new(&StructArray::from(b.clone()).into_data());
    (array, schema)
}

fn batch() -> RecordBatch {
    RecordBatch::try_from_iter([
        (
            "a",
            Arc::new(Int32Array::from(vec![1, 2, 3, -4])) as ArrayRef,
        ),
        (
            "s",
            Arc::new(StringArray::from(vec![
                Some("x"),
                None,
                Some("z"),
                Some(""),
            ])) as ArrayRef,
        ),
    ])
    .unwrap()
}

struct Outcome {
    code: i64,
    err: Option<String>,
    result: Option<RecordBatch>,
    inputs_released: bool,
}

/// Calls `f` like C would, then imports the result and frees the message.
fn call(
    batches: bool,
    handler: &str,
    mut inputs: Vec<(FFI_ArrowArray, FFI_ArrowSchema)>,
) -> Outcome {
    let name = CString::new(handler).unwrap();
    let (mut arrays, mut schemas): (Vec<_>, Vec<_>) = inputs.drain(..).unzip();
    let mut out_array = FFI_ArrowArray::empty();
    let mut out_schema = FFI_ArrowSchema::empty();
    let mut err: *mut c_char = ptr::null_mut();
    let f = if batches {
        alloy_call_batches
    } else {
        alloy_call_arrays
    };
    // SAFETY: every pointer is valid; the inputs are initialized structs.
    let code = unsafe {
        f(
            name.as_ptr(),
            arrays.as_mut_ptr(),
            schemas.as_mut_ptr(),
            arrays.len(),
            &mut out_array,
            &mut out_schema,
            &mut err,
        )
    };
    let inputs_released = arrays.iter().all(FFI_ArrowArray::is_released)
        && schemas.iter().all(|s| s.release().is_none());
    // SAFETY: `err` is NULL or the library's unfreed error string.
    let err = unsafe { common::take_err(err) };
    let result = (!out_array.is_released()).then(|| {
        // SAFETY: the library exported a valid struct array into `out_array`.
        let data = unsafe { from_ffi(out_array, &out_schema) }.unwrap();
        RecordBatch::from(StructArray::from(data))
    });
    Outcome {
        code,
        err,
        result,
        inputs_released,
    }
}

fn counts() -> AlloyLiveCounts {
    let mut c = AlloyLiveCounts::default();
    // SAFETY: `c` is valid for writes.
    assert_eq!(unsafe { alloy_live_counts(&mut c) }, ALLOY_OK);
    c
}

#[test]
fn echo_counts_arrays_and_answers_nothing() {
    let _g = serial();
    let inputs = [vec![1, 2, 3, -4], vec![2, 3, 4, 5], vec![3, 4, 5, 6]]
        .map(|v| export_array(&Int32Array::from(v)))
        .into();
    let out = call(false, oneshot::ECHO, inputs);
    assert_eq!(out.code, 3, "{:?}", out.err);
    assert!(out.err.is_none() && out.result.is_none() && out.inputs_released);
    assert_eq!((counts().imported, counts().exported), (0, 0));
}

#[test]
fn echo_round_trips_batches_zero_copy() {
    let _g = serial();
    let input = batch();
    let values_ptr = input.column(0).to_data().buffers()[0].as_ptr();
    let out = call(true, oneshot::ECHO, vec![export_batch(&input)]);
    assert_eq!(out.code, 2, "{:?}", out.err);
    let result = out.result.expect("echo answers with the batch");
    assert_eq!(result, input);
    // The answer still points into the caller's buffer: nothing was copied.
    assert_eq!(result.column(0).to_data().buffers()[0].as_ptr(), values_ptr);
    assert_eq!(counts().imported, 1);
    assert_eq!(counts().exported, 1);
    drop(result);
    assert_eq!((counts().imported, counts().exported), (0, 0));
}

#[test]
fn several_batches_are_concatenated_by_echo() {
    let _g = serial();
    let out = call(
        true,
        oneshot::ECHO,
        vec![export_batch(&batch()), export_batch(&batch())],
    );
    assert_eq!(out.code, 4, "{:?}", out.err);
    assert_eq!(out.result.unwrap().num_rows(), 8);
}

#[test]
fn registered_handler_answers_a_new_batch() {
    let _g = serial();
    oneshot::register("test.rows", |req: &Request| {
        let rows: Vec<i64> = req.batches().iter().map(|b| b.num_rows() as i64).collect();
        Ok(Some(RecordBatch::try_from_iter([(
            "rows",
            Arc::new(Int64Array::from(rows)) as ArrayRef,
        )])?))
    });
    let name = CString::new("test.rows").unwrap();
    // SAFETY: a valid NUL-terminated name.
    assert_eq!(unsafe { alloy_has_handler(name.as_ptr()) }, 1);
    let out = call(true, "test.rows", vec![export_batch(&batch())]);
    let result = out.result.unwrap();
    assert_eq!(
        result.column(0).as_ref(),
        &Int64Array::from(vec![4]) as &dyn Array
    );
    oneshot::unregister("test.rows");
    // SAFETY: as above.
    assert_eq!(unsafe { alloy_has_handler(name.as_ptr()) }, 0);
}

#[test]
fn unknown_handler_is_an_error_and_inputs_are_released() {
    let _g = serial();
    let out = call(
        false,
        "no.such.handler",
        vec![export_array(&Int32Array::from(vec![1]))],
    );
    assert_eq!(out.code, ALLOY_ERR_UNKNOWN_HANDLER);
    assert!(out.err.unwrap().contains("no.such.handler"));
    assert!(out.inputs_released && out.result.is_none());
    assert_eq!(counts().imported, 0);
}

#[test]
fn a_panic_comes_back_as_an_error() {
    let _g = serial();
    let out = call(
        false,
        oneshot::PANIC,
        vec![export_array(&Int32Array::from(vec![1]))],
    );
    assert_eq!(out.code, ALLOY_ERR_PANIC);
    assert!(out.err.unwrap().contains("panics on purpose"));
    assert!(out.inputs_released);
    assert_eq!(
        counts().imported,
        0,
        "unwinding released the imported array"
    );
}

#[test]
fn handler_errors_are_reported() {
    let _g = serial();
    let text = export_array(&StringArray::from(vec!["a"]));
    let out = call(false, oneshot::SUM, vec![text]);
    assert_eq!(out.code, ALLOY_ERR_HANDLER);
    assert!(out.err.unwrap().contains("not a number"));
}

#[test]
fn bad_input_is_rejected() {
    let _g = serial();
    // A schema whose format string no Arrow type has.
    let bogus = arrow_schema::ffi::FFI_ArrowSchema::try_new("zzz", vec![], None).unwrap();
    let (array, _) = export_array(&Int32Array::from(vec![1]));
    let out = call(false, oneshot::ECHO, vec![(array, bogus)]);
    assert_eq!(out.code, ALLOY_ERR_INVALID_INPUT);
    assert!(out.err.unwrap().contains("invalid input #0"));
    assert!(out.inputs_released);

    // An array that was released before the call.
    let out = call(
        false,
        oneshot::ECHO,
        vec![(
            FFI_ArrowArray::empty(),
            export_array(&Int32Array::from(vec![1])).1,
        )],
    );
    assert_eq!(out.code, ALLOY_ERR_INVALID_INPUT);
    assert!(out.err.unwrap().contains("already released"));

    // A plain array where a record batch (struct) is expected.
    let out = call(
        true,
        oneshot::ECHO,
        vec![export_array(&Int32Array::from(vec![1]))],
    );
    assert_eq!(out.code, ALLOY_ERR_INVALID_INPUT);
    assert!(out.err.unwrap().contains("struct"));

    // Utf8 offsets that go backwards: validation rejects them before any
    // handler can read out of bounds.
    let offsets = Int32Array::from(vec![0, 3, 1]).into_data().buffers()[0].clone();
    let values = arrow_array::UInt8Array::from(b"abc".to_vec())
        .into_data()
        .buffers()[0]
        .clone();
    // SAFETY: deliberately invalid data, only handed to the library, which
    // must validate it; nothing here reads it.
    let bad = unsafe {
        arrow_data::ArrayData::builder(arrow_schema::DataType::Utf8)
            .len(2)
            .add_buffer(offsets)
            .add_buffer(values)
            .build_unchecked()
    };
    let out = call(false, oneshot::ECHO, vec![to_ffi(&bad).unwrap()]);
    assert_eq!(out.code, ALLOY_ERR_INVALID_INPUT, "{:?}", out.err);
    assert!(out.inputs_released);
    assert_eq!(counts().imported, 0);
}

#[test]
fn null_pointers_are_rejected() {
    let _g = serial();
    let name = CString::new("echo").unwrap();
    let mut err: *mut c_char = ptr::null_mut();
    // SAFETY: null data pointers with n > 0 are what is being tested.
    let code = unsafe {
        alloy_call_arrays(
            name.as_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
            1,
            ptr::null_mut(),
            ptr::null_mut(),
            &mut err,
        )
    };
    assert_eq!(code, ALLOY_ERR_NULL_POINTER);
    // SAFETY: message from the library, freed once.
    unsafe { alloy_string_free(err) };
    // A NULL handler name still consumes the inputs.
    let (mut a, mut s) = export_array(&Int32Array::from(vec![1]));
    // SAFETY: valid single input, NULL name and outputs.
    let code = unsafe {
        alloy_call_arrays(
            ptr::null(),
            &mut a,
            &mut s,
            1,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    assert_eq!(code, ALLOY_ERR_NULL_POINTER);
    assert!(a.is_released() && s.release().is_none());
    // SAFETY: NULL is documented as accepted.
    let code = unsafe { alloy_has_handler(ptr::null()) };
    assert_eq!(code, ALLOY_ERR_NULL_POINTER);
    // SAFETY: NULL is documented as accepted.
    let code = unsafe { alloy_live_counts(ptr::null_mut()) };
    assert_eq!(code, ALLOY_ERR_NULL_POINTER);
    // Zero inputs with NULL pointers are a valid empty call.
    // SAFETY: n == 0, nothing is read.
    let code = unsafe {
        alloy_call_arrays(
            name.as_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
            0,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    assert_eq!(code, 0);
}

#[test]
fn many_calls_leave_nothing_alive() {
    let _g = serial();
    alloy_set_log_level(8);
    let before = counts();
    for _ in 0..20_000 {
        let out = call(true, oneshot::ECHO, vec![export_batch(&batch())]);
        assert!(out.result.is_some());
    }
    let after = counts();
    alloy_set_log_level(0);
    assert_eq!((after.imported, after.exported), (0, 0));
    assert!(after.calls >= before.calls + 20_000);
}
