//! `alloy_shm.Ring`: create, open and remove rings; make subscriptions and
//! publishers.

use std::time::Duration;

use alloy_shm::region::HugePages;
use alloy_shm::ring::{Backpressure, Ring};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::publisher::{Mode, Publisher};
use crate::ring_err;
use crate::subscription::Subscription;

/// A shared-memory ring (a file under /dev/shm) of `slot_count` slots of
/// `slot_size` bytes. One producer writes; broadcast subscribers each see
/// every message, members of one queue group share them.
#[pyclass(name = "Ring", module = "alloy_shm", frozen)]
pub struct PyRing {
    ring: Ring,
    name: String,
}

fn seconds(t: Option<f64>) -> PyResult<Option<Duration>> {
    t.map(|s| {
        Duration::try_from_secs_f64(s)
            .map_err(|_| PyValueError::new_err(format!("invalid timeout {s}")))
    })
    .transpose()
}

/// The builder of a named ring with the sizes and page options `create`
/// and `open_or_create` take.
fn sized(
    name: &str,
    slot_count: u32,
    slot_size: u32,
    max_subscribers: Option<u32>,
    huge_pages: &str,
    prefault: bool,
) -> PyResult<alloy_shm::ring::RingBuilder> {
    let huge = match huge_pages {
        "off" => HugePages::Off,
        "prefer" => HugePages::Prefer,
        "require" => HugePages::Require,
        other => {
            return Err(PyValueError::new_err(format!(
                "huge_pages={other:?}: use \"off\", \"prefer\" or \"require\""
            )))
        }
    };
    let b = Ring::builder(name)
        .slot_count(slot_count)
        .slot_size(slot_size)
        .huge_pages(huge)
        .prefault(prefault);
    Ok(match max_subscribers {
        Some(n) => b.max_subscribers(n),
        None => b,
    })
}

#[pymethods]
impl PyRing {
    /// Creates the named ring (fails if it exists).
    #[staticmethod]
    #[pyo3(signature = (name, *, slot_count = 64, slot_size = 1 << 20, max_subscribers = None, huge_pages = "off", prefault = false))]
    fn create(
        name: &str,
        slot_count: u32,
        slot_size: u32,
        max_subscribers: Option<u32>,
        huge_pages: &str,
        prefault: bool,
    ) -> PyResult<PyRing> {
        let b = sized(
            name,
            slot_count,
            slot_size,
            max_subscribers,
            huge_pages,
            prefault,
        )?;
        Ok(PyRing {
            ring: b.create().map_err(ring_err)?,
            name: name.to_owned(),
        })
    }

    /// Opens an existing ring.
    #[staticmethod]
    fn open(name: &str) -> PyResult<PyRing> {
        Ok(PyRing {
            ring: Ring::open(name).map_err(ring_err)?,
            name: name.to_owned(),
        })
    }

    /// Opens the named ring, creating it with these sizes if it does not exist.
    #[staticmethod]
    #[pyo3(signature = (name, *, slot_count = 64, slot_size = 1 << 20, max_subscribers = None, huge_pages = "off", prefault = false))]
    fn open_or_create(
        name: &str,
        slot_count: u32,
        slot_size: u32,
        max_subscribers: Option<u32>,
        huge_pages: &str,
        prefault: bool,
    ) -> PyResult<PyRing> {
        let b = sized(
            name,
            slot_count,
            slot_size,
            max_subscribers,
            huge_pages,
            prefault,
        )?;
        Ok(PyRing {
            ring: b.open_or_create().map_err(ring_err)?,
            name: name.to_owned(),
        })
    }

    /// Removes the named ring from /dev/shm (open mappings stay valid).
    #[staticmethod]
    fn remove(name: &str) -> PyResult<()> {
        Ring::remove(name).map_err(ring_err)
    }

    /// The ring's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Number of slots.
    #[getter]
    fn slot_count(&self) -> u32 {
        self.ring.config().slot_count
    }

    /// Size of one slot in bytes (the largest message).
    #[getter]
    fn slot_size(&self) -> u32 {
        self.ring.config().slot_size
    }

    /// Number of messages published so far (all streams).
    #[getter]
    fn published(&self) -> u64 {
        self.ring.published()
    }

    /// Whether the current stream was closed by its producer.
    #[getter]
    fn is_closed(&self) -> bool {
        self.ring.is_closed()
    }

    /// The address range `(start, end)` of this process's mapping of the
    /// ring: buffers of batches read in place lie inside it. Before any
    /// subscription of this Ring object it is not yet the range the
    /// subscriptions read through: use `Subscription.mapping_range()`.
    fn mapping_range(&self) -> (usize, usize) {
        let r = alloy_shm::arrow::mapped_range(&self.ring);
        (r.start, r.end)
    }

    /// The consumer table: one dict per subscriber entry (`index`, `kind`
    /// 1 broadcast / 2 queue, `group`, `members`, `claim`: next sequence to
    /// hand out, `release`: every sequence below it is released).
    fn subscribers<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.ring
            .stat()
            .consumers
            .into_iter()
            .map(|s| {
                let d = PyDict::new(py);
                d.set_item("index", s.index)?;
                let kind: u32 = match s.kind {
                    "broadcast" => 1,
                    "queue" => 2,
                    _ => 0,
                };
                d.set_item("kind", kind)?;
                d.set_item("group", s.group)?;
                d.set_item("members", s.members.len())?;
                d.set_item("claim", s.cursor)?;
                d.set_item("release", s.released)?;
                Ok(d)
            })
            .collect()
    }

    /// Joins the ring now (it sees what is published from here on, plus up to
    /// `history` earlier messages): a broadcast subscriber, or with `queue`
    /// a member of that work-queue group (≥ 1). `timeout` (seconds) bounds
    /// every wait for the schema or a batch (`None`: for ever);
    /// `held_lease_timeout` how long the ring may stay stalled by batches
    /// this subscriber holds before a receive fails (`None`: for ever).
    /// `copy` copies each batch out of its slot (one copy, the slot freed at
    /// once): for engines that keep the data (a DuckDB GROUP BY on strings,
    /// a Polars DataFrame) over a stream longer than the ring.
    #[pyo3(signature = (*, queue = None, history = 0, timeout = None, held_lease_timeout = Some(1.0), copy = false))]
    fn subscribe(
        &self,
        queue: Option<u32>,
        history: u32,
        timeout: Option<f64>,
        held_lease_timeout: Option<f64>,
        copy: bool,
    ) -> PyResult<Subscription> {
        let mut b = self.ring.consumer_builder().history(history);
        if let Some(g) = queue {
            b = b.queue(g);
        }
        b = b.held_lease_timeout(seconds(held_lease_timeout)?);
        let reader = b.ipc_reader().map_err(crate::arrow_err)?.with_copy(copy);
        let stream = alloy_shm::arrow::RingStream::new(reader);
        Ok(Subscription::new(stream, seconds(timeout)?))
    }

    /// Attaches the ring's producer. `mode` is "ipc" (Arrow IPC messages,
    /// every type) or "cdata" (C-Data-offsets messages, LAYOUT.md §8.3).
    /// `timeout` (seconds) bounds a wait for a free slot (`None`: for
    /// ever). `new_stream` starts a new stream on a ring whose stream was
    /// closed.
    #[pyo3(signature = (*, mode = "ipc", timeout = None, new_stream = false))]
    fn publisher(&self, mode: &str, timeout: Option<f64>, new_stream: bool) -> PyResult<Publisher> {
        let mode = match mode {
            "ipc" => Mode::Ipc,
            "cdata" => Mode::CData,
            m => {
                return Err(PyValueError::new_err(format!(
                    "mode {m:?}: use \"ipc\" or \"cdata\""
                )))
            }
        };
        let producer = self
            .ring
            .producer_builder()
            .new_stream(new_stream)
            .backpressure(Backpressure::Block {
                timeout: seconds(timeout)?,
            })
            .create()
            .map_err(ring_err)?;
        Ok(Publisher::new(producer, mode))
    }

    fn __repr__(&self) -> String {
        let c = self.ring.config();
        format!(
            "Ring({:?}, slot_count={}, slot_size={})",
            self.name, c.slot_count, c.slot_size
        )
    }
}
