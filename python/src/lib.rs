//! `alloy_shm`: Alloy's shared-memory rings from Python (issue #16).
//!
//! A [`Subscription`](subscription::Subscription) is an Arrow C stream
//! (`__arrow_c_stream__`, the Arrow PyCapsule interface) whose arrays point
//! into the ring's slots; iterating it yields `pyarrow.RecordBatch`es read
//! in place. A [`Publisher`](publisher::Publisher) writes anything with
//! `__arrow_c_stream__` or `__arrow_c_array__` into a ring. The stubs in
//! `alloy_shm.pyi` document the Python API.

mod capsule;
mod publisher;
mod ring;
mod subscription;

use alloy_shm::arrow::ArrowShmError;
use alloy_shm::ring::RingError;
use pyo3::exceptions::{PyException, PyTimeoutError};
use pyo3::prelude::*;

pyo3::create_exception!(
    alloy_shm,
    AlloyError,
    PyException,
    "An error of the ring or of the Arrow layer over it (dead producer, corrupt message, ring full, …)."
);
pyo3::create_exception!(
    alloy_shm,
    ProducerGone,
    AlloyError,
    "The ring's producer died without closing the stream (everything it published was delivered)."
);

/// Maps a ring error onto Python: timeouts are `TimeoutError`, a dead
/// producer `ProducerGone`, the rest `AlloyError`. Takes a per-operation
/// error ([`alloy_shm::ring::RecvError`], …) as well.
pub(crate) fn ring_err(e: impl Into<RingError>) -> PyErr {
    let e: RingError = e.into();
    match e {
        RingError::Timeout(_) => PyTimeoutError::new_err(e.to_string()),
        RingError::ProducerGone { .. } => ProducerGone::new_err(e.to_string()),
        e => AlloyError::new_err(e.to_string()),
    }
}

/// Maps an Arrow-layer error onto Python (see [`ring_err`]).
pub(crate) fn arrow_err(e: ArrowShmError) -> PyErr {
    match e {
        ArrowShmError::Ring(r) => ring_err(r),
        e if e.is_timeout() => PyTimeoutError::new_err(e.to_string()),
        e => AlloyError::new_err(e.to_string()),
    }
}

/// Removes the named ring from `/dev/shm` (processes that have it open keep
/// their mapping).
#[pyfunction]
fn remove(name: &str) -> PyResult<()> {
    alloy_shm::ring::Ring::remove(name).map_err(ring_err)
}

/// Arrow record batches between processes through a shared-memory ring,
/// read in place.
#[pymodule]
#[pyo3(name = "alloy_shm")]
fn alloy_shm_py(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ring::PyRing>()?;
    m.add_class::<subscription::Subscription>()?;
    m.add_class::<publisher::Publisher>()?;
    m.add_function(wrap_pyfunction!(remove, m)?)?;
    m.add("AlloyError", m.py().get_type::<AlloyError>())?;
    m.add("ProducerGone", m.py().get_type::<ProducerGone>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
