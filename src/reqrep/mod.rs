//! Request/reply channel (LAYOUT.md §12): a client sends a record batch and
//! receives the worker's result batch (or error text), matched by a
//! correlation id, with any number of requests outstanding and per-call
//! deadlines. The streaming counterpart of the one-shot bridge, between two
//! processes: two rings, `NAME.req` (client → worker threads, a work-queue
//! group) and `NAME.rep` (worker → client).
//!
//! The [`Worker`] creates the channel and serves it with a handler; requests
//! are decoded in place (zero-copy) from shared memory. The [`Client`] here
//! is the Rust counterpart of the Go client (`go/reqrep`).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use alloy_shm::reqrep::{Client, Worker, WorkerConfig};
//! use arrow_array::{cast::AsArray, types::Int64Type, Int64Array, RecordBatch};
//!
//! let name = format!("alloy-doc-reqrep-{}", std::process::id());
//! let worker = Worker::create(&name, &WorkerConfig::default())?;
//! let stop = worker.stop_handle();
//! let serving = std::thread::spawn(move || {
//!     worker.serve(|batch: RecordBatch| {
//!         let x = batch.column(0).as_primitive::<Int64Type>();
//!         let doubled: Int64Array = x.iter().map(|v| v.map(|v| 2 * v)).collect();
//!         RecordBatch::try_from_iter([("doubled", Arc::new(doubled) as _)]).map_err(|e| e.to_string())
//!     })
//! });
//!
//! let client = Client::connect(&name, Duration::from_secs(5))?;
//! let request = RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1, 2, 3])) as _)])?;
//! let reply = client.call(&request, Some(Duration::from_secs(5)))?;
//! assert_eq!(reply.column(0).as_primitive::<Int64Type>().values(), &[2, 4, 6]);
//! drop(reply); // releases the reply slot
//! client.close();
//! stop.stop();
//! serving.join().unwrap()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
mod codec;
pub mod envelope;
#[cfg(test)]
mod tests;
mod worker;

use std::time::Duration;

use arrow_schema::ArrowError;
use thiserror::Error;

use crate::ring::RingError;
pub use client::Client;
pub use envelope::{status, Envelope, EnvelopeError, Kind};
pub use worker::{ServeStats, StopHandle, Worker, WorkerConfig};

/// Slot flags of every channel message (LAYOUT.md §8 value 5, `REQREP`).
pub const FLAG: u32 = 5;

/// The work-queue group the worker threads form on `NAME.req`.
pub const QUEUE_GROUP: u32 = 1;

/// Longest channel name: ring names are at most 200 bytes and get a
/// 4-byte suffix.
pub const MAX_NAME_LEN: usize = 196;

/// Name of the request ring of channel `name`.
pub fn request_ring(name: &str) -> String {
    format!("{name}.req")
}

/// Name of the reply ring of channel `name`.
pub fn reply_ring(name: &str) -> String {
    format!("{name}.rep")
}

/// Errors of the request/reply channel.
#[derive(Debug, Error)]
pub enum ReqRepError {
    /// A ring operation failed.
    #[error(transparent)]
    Ring(#[from] RingError),
    /// A received message's envelope is invalid.
    #[error("bad channel message: {0}")]
    Envelope(#[from] EnvelopeError),
    /// A received message breaks LAYOUT.md §12.2 beyond its envelope.
    #[error("bad channel message: {0}")]
    BadMessage(String),
    /// arrow-ipc could not decode a well-framed message.
    #[error("cannot decode the batch: {0}")]
    Decode(#[source] ArrowError),
    /// Encoding a batch failed.
    #[error("cannot encode the batch: {0}")]
    Encode(#[source] ArrowError),
    /// A batch the channel cannot carry. No batch is refused any more
    /// (dictionary-encoded columns travel since issue #19).
    #[error("unsupported batch: {0}")]
    Unsupported(String),
    /// The worker answered with an error (LAYOUT.md §12.4 status and text).
    #[error("worker error (status {status}): {text}")]
    Remote {
        /// §12.4 status code (see [`status`]).
        status: u32,
        /// The worker's message.
        text: String,
    },
    /// The call's deadline passed before the reply arrived.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The worker died or stopped serving: every pending and later call
    /// fails with this. Connect a new client once a new worker serves.
    #[error("the worker is gone: {0}")]
    PeerGone(String),
    /// Another live client process holds the channel (one client process
    /// per channel, LAYOUT.md §12.1).
    #[error("channel {name:?} already has a client (pid {pid})")]
    Busy {
        /// Channel name.
        name: String,
        /// Pid of the client holding `NAME.req`.
        pid: u32,
    },
    /// A live worker already serves the channel.
    #[error("channel {name:?} is already served by pid {pid}")]
    WorkerExists {
        /// Channel name.
        name: String,
        /// The serving worker's pid.
        pid: u32,
    },
    /// No worker made the channel ready within the connect timeout.
    #[error("channel {name:?} is not served (no live worker within {waited:?})")]
    NotServed {
        /// Channel name.
        name: String,
        /// How long the client waited.
        waited: Duration,
    },
    /// The channel's worker is dead (its reply ring names a producer
    /// process that is gone): [`Client::connect`] fails with this at once
    /// instead of waiting out its timeout. A new worker on the same name
    /// removes the stale rings.
    #[error("channel {name:?} is not served: its worker (pid {pid}) is dead")]
    WorkerDead {
        /// Channel name.
        name: String,
        /// Pid of the dead worker.
        pid: u32,
    },
    /// Invalid argument (name, configuration).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The client or worker was closed.
    #[error("the channel endpoint is closed")]
    Closed,
}

// Open, attach, send and receive errors become the `RingError` variant of
// the same name and text (`?` keeps matching as `ReqRepError::Ring(…)`).
crate::ring::error::ring_errors_into!(ReqRepError::Ring);

fn check_name(name: &str) -> Result<(), ReqRepError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(ReqRepError::InvalidArgument(format!(
            "channel name {name:?} must be 1-{MAX_NAME_LEN} bytes (ring names get .req/.rep)"
        )));
    }
    Ok(())
}
