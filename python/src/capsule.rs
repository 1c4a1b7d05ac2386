//! The Arrow PyCapsule interface: arrow-rs's C Data / C Stream structs in
//! capsules named `arrow_schema`, `arrow_array` and `arrow_array_stream`
//! (the names the interface fixes), and back.

use std::ffi::CStr;
use std::sync::Arc;

use alloy_shm::arrow_array::ffi::{from_ffi, FFI_ArrowArray, FFI_ArrowSchema};
use alloy_shm::arrow_array::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
use alloy_shm::arrow_array::{Array, RecordBatch, StructArray};
use alloy_shm::arrow_schema::{DataType, Schema};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyTuple};

const SCHEMA: &CStr = c"arrow_schema";
const ARRAY: &CStr = c"arrow_array";
const STREAM: &CStr = c"arrow_array_stream";

fn arrow_err(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

// The capsules own the structs: when a consumer takes one over it moves the
// struct out and sets its `release` to NULL, so the struct's `Drop` (run by
// the capsule's destructor) releases only what nobody took.

/// A capsule owning an exported schema.
pub fn schema_capsule<'py>(py: Python<'py>, schema: &Schema) -> PyResult<Bound<'py, PyCapsule>> {
    let ffi = FFI_ArrowSchema::try_from(schema).map_err(arrow_err)?;
    PyCapsule::new_with_value(py, ffi, SCHEMA)
}

/// A capsule owning an exported stream.
pub fn stream_capsule(
    py: Python<'_>,
    stream: FFI_ArrowArrayStream,
) -> PyResult<Bound<'_, PyCapsule>> {
    PyCapsule::new_with_value(py, stream, STREAM)
}

/// A record batch as a `pyarrow.RecordBatch`, through the C Data
/// Interface: no copy, the pyarrow arrays keep the batch (and so its slot)
/// alive until they are released.
pub fn to_pyarrow(py: Python<'_>, batch: RecordBatch) -> PyResult<Py<PyAny>> {
    let schema = schema_capsule(py, batch.schema().as_ref())?;
    let data = StructArray::from(batch).into_data();
    let array = PyCapsule::new_with_value(py, FFI_ArrowArray::new(&data), ARRAY)?;
    let cls = py.import("pyarrow")?.getattr("RecordBatch")?;
    Ok(cls
        .call_method1("_import_from_c_capsule", (schema, array))?
        .unbind())
}

/// The batches of any object with `__arrow_c_stream__` (preferred) or
/// `__arrow_c_array__` (one struct array: one batch).
pub enum Source {
    /// An imported stream.
    Stream(RecordBatchStreamReader),
    /// One imported batch.
    Batch(RecordBatch),
}

/// Imports `obj` through the PyCapsule interface, without copying its data.
pub fn import(obj: &Bound<'_, PyAny>) -> PyResult<Source> {
    if obj.hasattr("__arrow_c_stream__")? {
        let cap = obj.call_method0("__arrow_c_stream__")?;
        let cap = cap.cast::<PyCapsule>()?;
        let ptr = cap
            .pointer_checked(Some(STREAM))?
            .cast::<FFI_ArrowArrayStream>();
        // SAFETY: the capsule is named `arrow_array_stream`, so by the
        // PyCapsule interface it points to a valid ArrowArrayStream; `from_raw`
        // moves it out and leaves a released one for the capsule's destructor.
        let stream = unsafe { FFI_ArrowArrayStream::from_raw(ptr.as_ptr()) };
        let reader = RecordBatchStreamReader::try_new(stream).map_err(arrow_err)?;
        return Ok(Source::Stream(reader));
    }
    if obj.hasattr("__arrow_c_array__")? {
        let pair = obj.call_method0("__arrow_c_array__")?;
        let pair = pair.cast::<PyTuple>()?;
        let schema_cap = pair.get_item(0)?;
        let schema_cap = schema_cap.cast::<PyCapsule>()?;
        let array_cap = pair.get_item(1)?;
        let array_cap = array_cap.cast::<PyCapsule>()?;
        let sptr = schema_cap
            .pointer_checked(Some(SCHEMA))?
            .cast::<FFI_ArrowSchema>();
        let aptr = array_cap
            .pointer_checked(Some(ARRAY))?
            .cast::<FFI_ArrowArray>();
        // SAFETY: capsules named by the interface hold a valid ArrowSchema
        // and ArrowArray. The schema is only borrowed (its capsule, alive
        // in `schema_cap`, keeps owning it); the array is moved out, leaving
        // a released one for its capsule's destructor.
        let (ffi_schema, array) =
            unsafe { (&*sptr.as_ptr(), FFI_ArrowArray::from_raw(aptr.as_ptr())) };
        // SAFETY: the array and its schema come from the same producer call.
        let data = unsafe { from_ffi(array, ffi_schema) }.map_err(arrow_err)?;
        if !matches!(data.data_type(), DataType::Struct(_)) {
            return Err(PyTypeError::new_err(format!(
                "__arrow_c_array__ gave a {} array; a record batch (struct array) is needed",
                data.data_type()
            )));
        }
        let schema = Schema::try_from(ffi_schema).map_err(arrow_err)?;
        let columns = StructArray::from(data).into_parts().1;
        let batch = RecordBatch::try_new(Arc::new(schema), columns).map_err(arrow_err)?;
        return Ok(Source::Batch(batch));
    }
    Err(PyTypeError::new_err(format!(
        "{} has neither __arrow_c_stream__ nor __arrow_c_array__",
        obj.get_type().name()?
    )))
}
