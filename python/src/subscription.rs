//! `alloy_shm.Subscription`: a joined consumer, read in place by pyarrow
//! (iteration, `recv`) or by any engine through `__arrow_c_stream__`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use alloy_shm::arrow::{ArrowShmError, RingStream};
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::{arrow_err, capsule};

/// How often a blocking wait wakes to look for Ctrl-C (and other signals).
pub(crate) const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// A signal raised while waiting (KeyboardInterrupt for Ctrl-C), handed
/// from the interrupt check back to the caller.
pub(crate) type Raised = Arc<Mutex<Option<PyErr>>>;

/// A subscription to a ring: joined when made, it receives every record batch
/// published afterwards (a queue member: its share of them).
///
/// Iterate it (or call `recv`) for `pyarrow.RecordBatch`es whose buffers
/// lie in the shared mapping: no copy. A batch holds its slot until it and
/// every array taken from it are dropped; keep at most a ring's worth, or
/// copy what you keep. The subscription is also an Arrow C stream
/// (`__arrow_c_stream__`): `pyarrow.RecordBatchReader.from_stream(sub)`,
/// `polars.from_arrow(sub)`, DuckDB and DataFusion read it directly (the
/// stream takes the subscription over: it can be exported once).
#[pyclass(module = "alloy_shm", frozen)]
pub struct Subscription {
    stream: Mutex<Option<RingStream>>,
    raised: Raised,
    range: (usize, usize),
}

/// Runs on the waiting thread (without the GIL) every [`SIGNAL_CHECK`]:
/// on Python's main thread it runs the signal handlers, and a handler's
/// exception (KeyboardInterrupt) ends the wait.
pub(crate) fn signal_check(
    raised: Raised,
) -> impl FnMut() -> Result<(), String> + Send + Sync + 'static {
    move || {
        // Signal handlers run only on the main thread; elsewhere (an
        // engine's worker thread) there is nothing to check and the GIL is
        // not taken.
        // SAFETY: gettid and getpid have no preconditions.
        if unsafe { libc::gettid() != libc::getpid() } {
            return Ok(());
        }
        Python::attach(|py| match py.check_signals() {
            Ok(()) => Ok(()),
            Err(e) => {
                let msg = e.to_string();
                *raised.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                Err(if msg.is_empty() {
                    "KeyboardInterrupt".into()
                } else {
                    msg
                })
            }
        })
    }
}

impl Subscription {
    pub fn new(stream: RingStream, timeout: Option<Duration>) -> Subscription {
        let raised: Raised = Arc::default();
        let r = stream.mapped_range();
        let stream = stream
            .with_timeout(timeout)
            .with_interrupt(SIGNAL_CHECK, signal_check(raised.clone()));
        Subscription {
            stream: Mutex::new(Some(stream)),
            raised,
            range: (r.start, r.end),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<RingStream>> {
        self.stream.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An error of a wait as Python sees it: the signal handler's own
    /// exception for an interrupt.
    fn err(&self, e: ArrowShmError) -> PyErr {
        if let ArrowShmError::Interrupted(msg) = &e {
            let raised = self.raised.lock().unwrap_or_else(|p| p.into_inner()).take();
            return raised.unwrap_or_else(|| PyKeyboardInterrupt::new_err(msg.clone()));
        }
        arrow_err(e)
    }

    /// Runs `f` on the stream without the GIL. The stream's lock is taken
    /// only after the GIL is released (here and in every method): a thread
    /// holding the GIL never waits for a receive in progress, whose signal
    /// check needs the GIL.
    fn with_stream<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut RingStream) -> Result<T, ArrowShmError> + Send,
    ) -> PyResult<T> {
        py.detach(|| match self.lock().as_mut() {
            None => Err(None),
            Some(stream) => f(stream).map_err(Some),
        })
        .map_err(|e| match e {
            None => closed(),
            Some(e) => self.err(e),
        })
    }
}

fn closed() -> PyErr {
    PyRuntimeError::new_err("the subscription was closed or exported as a C stream")
}

fn seconds(t: Option<f64>) -> PyResult<Option<Duration>> {
    t.map(|s| {
        Duration::try_from_secs_f64(s)
            .map_err(|_| PyValueError::new_err(format!("invalid timeout {s}")))
    })
    .transpose()
}

#[pymethods]
impl Subscription {
    /// The next record batch as a `pyarrow.RecordBatch` read in place, or
    /// `None` at the end of the stream. Waits at most `timeout` seconds
    /// (default: the subscription's timeout) and raises `TimeoutError`
    /// then; raises `ProducerGone` when the producer died. Ctrl-C ends the
    /// wait with KeyboardInterrupt. The GIL is released while waiting.
    #[pyo3(signature = (timeout = None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Py<PyAny>>> {
        let timeout = seconds(timeout)?;
        let got = self.with_stream(py, move |s| match timeout {
            None => s.next_batch(),
            Some(t) => {
                let saved = s.timeout();
                s.set_timeout(Some(t));
                let got = s.next_batch();
                s.set_timeout(saved);
                got
            }
        })?;
        got.map(|b| capsule::to_pyarrow(py, b)).transpose()
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.recv(py, None)
    }

    /// The stream's schema as a capsule (waits for it, like `recv`):
    /// `pyarrow.schema(sub)` takes it.
    #[pyo3(signature = ())]
    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        let schema = self.with_stream(py, |s| s.schema())?;
        capsule::schema_capsule(py, &schema)
    }

    /// The subscription as an Arrow C stream (a capsule named
    /// `arrow_array_stream`): arrays in place, each holding its slot until
    /// the engine releases it. Waits for the schema first. The stream takes
    /// the subscription over; `requested_schema` is ignored (the batches
    /// are given as published).
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        // The schema wait and the take under one lock: a close() from
        // another thread cannot come in between.
        let ffi = py
            .detach(|| {
                let mut guard = self.lock();
                guard.as_mut().ok_or(None)?.schema().map_err(Some)?;
                let stream = guard.take().ok_or(None)?;
                stream.into_ffi().map_err(Some)
            })
            .map_err(|e| match e {
                None => closed(),
                Some(e) => self.err(e),
            })?;
        capsule::stream_capsule(py, ffi)
    }

    /// Leases this subscriber holds: batches (and arrays taken from them)
    /// not dropped yet. 0 once exported as a C stream.
    fn leases_held(&self, py: Python<'_>) -> usize {
        py.detach(|| self.lock().as_mut().map_or(0, |s| s.leases_held()))
    }

    /// The address range `(start, end)` of the ring's mapping: buffers of
    /// batches read in place lie inside it.
    fn mapping_range(&self) -> (usize, usize) {
        self.range
    }

    /// Total payload bytes received so far.
    #[getter]
    fn bytes_received(&self, py: Python<'_>) -> u64 {
        py.detach(|| {
            self.lock()
                .as_mut()
                .map_or(0, |s| s.reader_mut().bytes_received())
        })
    }

    /// Leaves the ring (batches still held keep their slots until dropped).
    /// Called from another thread while a receive waits, it waits for that
    /// receive to return (a batch, the end, or its timeout).
    fn close(&self, py: Python<'_>) {
        let stream = py.detach(|| self.lock().take());
        drop(stream);
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _t: Option<Bound<'_, PyAny>>,
        _v: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) {
        self.close(py);
    }
}
