//! `alloy_shm.Publisher`: writes Arrow data from Python into a ring.

use std::sync::{Mutex, MutexGuard};

use alloy_shm::arrow::{ArrowShmError, CDataWriter, IpcWriter};
use alloy_shm::arrow_array::RecordBatch;
use alloy_shm::ring::{Producer, RingError};
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError};
use pyo3::prelude::*;

use crate::arrow_err;
use crate::capsule::{self, Source};
use crate::subscription::{signal_check, Raised, SIGNAL_CHECK};

/// How batches are laid out in the slots.
#[derive(Clone, Copy)]
pub enum Mode {
    /// Arrow IPC messages (every type).
    Ipc,
    /// C-Data-offsets messages (LAYOUT.md §8.3).
    CData,
}

/// The writer of either mode, boxed: the two differ in size by hundreds of
/// bytes (clippy::large_enum_variant) and one is made per publisher.
enum Writer {
    Ipc(Box<IpcWriter>),
    CData(Box<CDataWriter>),
}

/// The producer until the first batch fixes the schema, then its writer.
enum State {
    Attached(Box<Producer>, Mode),
    Writing(Writer),
}

/// The ring's producer. The first batch written fixes the stream's schema;
/// `close()` (or leaving a `with` block) ends the stream, and readers then
/// see its end. A batch too large for a slot is split by rows (IPC mode).
#[pyclass(module = "alloy_shm", frozen)]
pub struct Publisher {
    state: Mutex<Option<State>>,
    raised: Raised,
}

impl Publisher {
    /// A write blocked on a full ring looks for Ctrl-C every
    /// [`SIGNAL_CHECK`], as a receive does.
    pub fn new(mut producer: Producer, mode: Mode) -> Publisher {
        let raised: Raised = Default::default();
        producer.set_interrupt(SIGNAL_CHECK, signal_check(raised.clone()));
        Publisher {
            state: Mutex::new(Some(State::Attached(Box::new(producer), mode))),
            raised,
        }
    }

    /// An error of a write as Python sees it: the signal handler's own
    /// exception (KeyboardInterrupt) for an interrupted wait.
    fn err(&self, e: ArrowShmError) -> PyErr {
        if let ArrowShmError::Ring(RingError::Interrupted(msg)) = &e {
            let raised = self.raised.lock().unwrap_or_else(|p| p.into_inner()).take();
            return raised.unwrap_or_else(|| PyKeyboardInterrupt::new_err(msg.clone()));
        }
        arrow_err(e)
    }

    fn lock(&self) -> MutexGuard<'_, Option<State>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes `batch`, making the writer on the first batch (whose schema is
/// the stream's). A writer that cannot be made leaves the publisher closed.
fn write(slot: &mut Option<State>, batch: &RecordBatch) -> Result<(), ArrowShmError> {
    if let Some(State::Attached(..)) = slot {
        let Some(State::Attached(producer, mode)) = slot.take() else {
            unreachable!("matched above")
        };
        let writer = match mode {
            Mode::Ipc => Writer::Ipc(Box::new(IpcWriter::new(*producer, batch.schema())?)),
            Mode::CData => {
                CDataWriter::check_schema(&batch.schema())?;
                Writer::CData(Box::new(CDataWriter::new(*producer, batch.schema())?))
            }
        };
        *slot = Some(State::Writing(writer));
    }
    match slot {
        Some(State::Writing(w)) => match w {
            Writer::Ipc(w) => w.write(batch),
            Writer::CData(w) => w.write(batch),
        },
        _ => unreachable!("the writer was made above"),
    }
}

impl State {
    fn close(self) -> Result<(), ArrowShmError> {
        match self {
            State::Attached(p, _) => {
                p.close();
                Ok(())
            }
            State::Writing(w) => match w {
                Writer::Ipc(w) => w.close(),
                Writer::CData(w) => w.close(),
            },
        }
    }
}

#[pymethods]
impl Publisher {
    /// Writes `data` into the ring: anything with `__arrow_c_stream__`
    /// (a pyarrow Table or RecordBatchReader, a Polars DataFrame, a DuckDB
    /// result, an alloy_shm Subscription, …) batch by batch, or with
    /// `__arrow_c_array__` (a pyarrow RecordBatch or struct array) as one
    /// batch. Every batch must have the stream's schema (the first one's).
    /// Returns the number of record batches written. The GIL is released
    /// while writing (and while blocked on a full ring); Ctrl-C ends a
    /// wait on a full ring with KeyboardInterrupt.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let source = capsule::import(data)?;
        // The lock is taken only after the GIL is released: a thread
        // holding the GIL never waits for a write in progress (whose source
        // may need the GIL to produce its next batch).
        py.detach(|| {
            let mut guard = self.lock();
            let slot = &mut *guard;
            if slot.is_none() {
                return Err(None);
            }
            match source {
                Source::Batch(b) => write(slot, &b).map(|()| 1).map_err(Some),
                Source::Stream(reader) => {
                    let mut n = 0;
                    for b in reader {
                        write(slot, &b.map_err(ArrowShmError::Encode).map_err(Some)?)
                            .map_err(Some)?;
                        n += 1;
                    }
                    Ok(n)
                }
            }
        })
        .map_err(|e| match e {
            None => PyRuntimeError::new_err("the publisher is closed"),
            Some(e) => self.err(e),
        })
    }

    /// Ends the stream (readers see its end after the last batch). Closing
    /// twice does nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| match self.lock().take() {
            Some(state) => state.close(),
            None => Ok(()),
        })
        .map_err(arrow_err)
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
    ) -> PyResult<()> {
        self.close(py)
    }
}
