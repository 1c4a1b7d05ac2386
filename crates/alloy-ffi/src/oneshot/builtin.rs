//! The handlers registered before any user code runs.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{ArrowError, DataType, Field, Schema};

use super::{Handler, HandlerResult, Request};

/// Name of the default handler: logs every array at INFO in the seed's
/// format (`array1: Int32[1, 2, 3, -4]`) and answers with the sent record
/// batches concatenated (nothing when independent arrays were sent).
pub const ECHO: &str = "echo";

/// Name of a handler that sums every numeric column over all rows and
/// answers with a one-row batch (integers as Int64, floats as Float64).
pub const SUM: &str = "sum";

/// Name of a handler that always panics. It exists so that a host can check
/// that a panic comes back as an error instead of crossing the FFI boundary
/// (the Go tests use it).
pub const PANIC: &str = "panic";

/// Arrays longer than this are logged by [`ECHO`] with their head only.
const ECHO_MAX_VALUES: usize = 32;

pub(super) fn defaults() -> HashMap<String, Arc<Handler>> {
    let mut map: HashMap<String, Arc<Handler>> = HashMap::new();
    map.insert(ECHO.into(), Arc::new(echo));
    map.insert(SUM.into(), Arc::new(sum));
    map.insert(PANIC.into(), Arc::new(panic));
    map
}

fn echo(req: &Request) -> HandlerResult {
    if tracing::enabled!(tracing::Level::INFO) {
        tracing::info!("Hello! Reading the ffi pointers now.");
        for (i, (_, array)) in req.arrays().enumerate() {
            tracing::info!("array{}: {}", i + 1, render(array.as_ref())?);
        }
    }
    if req.batches().is_empty() {
        Ok(None)
    } else {
        Ok(Some(req.concat()?))
    }
}

/// `Int32[1, 2, 3, -4]`: the type, then the values (nulls as `null`).
pub(crate) fn render(array: &dyn Array) -> Result<String, ArrowError> {
    let options = FormatOptions::default().with_null("null");
    let formatter = ArrayFormatter::try_new(array, &options)?;
    let mut out = format!("{}[", array.data_type());
    let shown = array.len().min(ECHO_MAX_VALUES);
    for i in 0..shown {
        if i > 0 {
            out.push_str(", ");
        }
        // Writing to a String cannot fail; a value that cannot be formatted
        // is an Arrow error reported by `try_to_string`.
        out.push_str(&formatter.value(i).try_to_string()?);
    }
    if shown < array.len() {
        let _ = write!(out, ", … ({} values)", array.len());
    }
    out.push(']');
    Ok(out)
}

fn sum(req: &Request) -> HandlerResult {
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, array) in req.arrays() {
        let dt = array.data_type();
        if dt.is_integer() {
            let ints = arrow_cast::cast(array, &DataType::Int64)?;
            let total = ints
                .as_primitive::<Int64Type>()
                .iter()
                .flatten()
                .fold(0i64, i64::wrapping_add);
            fields.push(Field::new(field.name(), DataType::Int64, false));
            columns.push(Arc::new(Int64Array::from(vec![total])));
        } else if dt.is_floating() {
            let floats = arrow_cast::cast(array, &DataType::Float64)?;
            let total: f64 = floats.as_primitive::<Float64Type>().iter().flatten().sum();
            fields.push(Field::new(field.name(), DataType::Float64, false));
            columns.push(Arc::new(Float64Array::from(vec![total])));
        } else {
            return Err(
                format!("sum: column {:?} has type {dt}, not a number", field.name()).into(),
            );
        }
    }
    Ok(Some(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?))
}

fn panic(req: &Request) -> HandlerResult {
    panic!(
        "the {PANIC:?} handler panics on purpose ({} arrays sent)",
        req.num_arrays()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int32Array, StringArray};

    #[test]
    fn render_matches_seed() {
        let a = Int32Array::from(vec![1, 2, 3, -4]);
        assert_eq!(render(&a).unwrap(), "Int32[1, 2, 3, -4]");
        let s = StringArray::from(vec![Some("a"), None]);
        assert_eq!(render(&s).unwrap(), "Utf8[a, null]");
        let long = Int32Array::from((0..40).collect::<Vec<_>>());
        assert!(render(&long).unwrap().ends_with("31, … (40 values)]"));
    }

    #[test]
    fn sum_adds_columns_and_rejects_text() {
        let batch = RecordBatch::try_from_iter([
            ("i", Arc::new(Int32Array::from(vec![1, 2, -4])) as ArrayRef),
            (
                "f",
                Arc::new(Float64Array::from(vec![0.5, 0.25, 0.0])) as ArrayRef,
            ),
        ])
        .unwrap();
        let out = sum(&Request::from_batches(vec![batch])).unwrap().unwrap();
        assert_eq!(out.column(0).as_primitive::<Int64Type>().value(0), -1);
        assert_eq!(out.column(1).as_primitive::<Float64Type>().value(0), 0.75);
        let text =
            RecordBatch::try_from_iter([("s", Arc::new(StringArray::from(vec!["x"])) as ArrayRef)])
                .unwrap();
        let err = sum(&Request::from_batches(vec![text])).unwrap_err();
        assert!(err.to_string().contains("not a number"), "{err}");
    }
}
