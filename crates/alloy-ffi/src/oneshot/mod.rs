//! One-shot processing: the handlers Go calls through the C ABI in
//! [`crate::ffi`], registered by name.
//!
//! A Go program exports Arrow arrays (or record batches) through the C Data
//! Interface and calls Rust with the name of a handler. Rust imports the data
//! without copying, wraps it in a [`Request`] and runs the handler, which may
//! answer with a [`RecordBatch`] that travels back to Go the same way.
//!
//! ```
//! use std::sync::Arc;
//! use alloy_ffi::oneshot::{self, Request};
//! use arrow_array::{Array, Int64Array, RecordBatch};
//!
//! // A handler that answers with the length of every array it was sent.
//! oneshot::register("lengths", |req: &Request| {
//!     let lens: Vec<i64> = req.arrays().map(|(_, a)| a.len() as i64).collect();
//!     let batch = RecordBatch::try_from_iter([(
//!         "len",
//!         Arc::new(Int64Array::from(lens)) as _,
//!     )])?;
//!     Ok(Some(batch))
//! });
//!
//! let input = RecordBatch::try_from_iter([(
//!     "x",
//!     Arc::new(Int64Array::from(vec![1, 2, 3])) as _,
//! )])
//! .unwrap();
//! let out = oneshot::call("lengths", &Request::from_batches(vec![input]))
//!     .unwrap()
//!     .unwrap();
//! assert_eq!(out.num_rows(), 1);
//! assert!(oneshot::call("no-such-handler", &Request::from_batches(vec![])).is_err());
//! ```

mod builtin;
pub mod log;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, FieldRef};

pub use builtin::{ECHO, PANIC, SUM};

/// The error a handler returns; its text reaches the Go caller.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a handler answers: optionally one record batch for the caller.
pub type HandlerResult = Result<Option<RecordBatch>, HandlerError>;

/// A registered handler. Any `Fn(&Request) -> HandlerResult` that is
/// `Send + Sync` qualifies, closures included.
pub type Handler = dyn Fn(&Request) -> HandlerResult + Send + Sync + 'static;

/// Why [`call`] failed before or inside the handler.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No handler is registered under this name.
    #[error("no handler registered under the name {0:?}")]
    UnknownHandler(String),
    /// The handler ran and returned an error.
    #[error("handler {name:?} failed: {source}")]
    Handler {
        /// The handler's name.
        name: String,
        /// What the handler returned.
        source: HandlerError,
    },
}

/// The data of one call, as the caller sent it.
#[derive(Debug, Clone)]
pub enum Input {
    /// Independent arrays, each with its own field (Go's `FromChunks`).
    Arrays(Vec<(FieldRef, ArrayRef)>),
    /// Whole record batches (Go's `SendRecords`).
    Batches(Vec<RecordBatch>),
}

/// One call to a handler: the imported data. Buffers point into the
/// caller's memory; dropping the last clone of an array releases it.
#[derive(Debug, Clone)]
pub struct Request {
    input: Input,
}

impl Request {
    /// A request carrying independent arrays.
    pub fn from_arrays(arrays: Vec<(FieldRef, ArrayRef)>) -> Self {
        Self {
            input: Input::Arrays(arrays),
        }
    }

    /// A request carrying record batches.
    pub fn from_batches(batches: Vec<RecordBatch>) -> Self {
        Self {
            input: Input::Batches(batches),
        }
    }

    /// The data as sent.
    pub fn input(&self) -> &Input {
        &self.input
    }

    /// Every array of the call in order: the arrays themselves, or the
    /// columns of each batch one batch after the other.
    pub fn arrays(&self) -> Box<dyn Iterator<Item = (&FieldRef, &ArrayRef)> + '_> {
        match &self.input {
            Input::Arrays(v) => Box::new(v.iter().map(|(f, a)| (f, a))),
            Input::Batches(v) => Box::new(
                v.iter()
                    .flat_map(|b| b.schema_ref().fields().iter().zip(b.columns())),
            ),
        }
    }

    /// The record batches of the call; empty when independent arrays were sent.
    pub fn batches(&self) -> &[RecordBatch] {
        match &self.input {
            Input::Arrays(_) => &[],
            Input::Batches(v) => v,
        }
    }

    /// How many arrays the call carries (what `FromChunks` returns to Go).
    pub fn num_arrays(&self) -> usize {
        match &self.input {
            Input::Arrays(v) => v.len(),
            Input::Batches(v) => v.iter().map(RecordBatch::num_columns).sum(),
        }
    }

    /// The batches of the call as one batch (zero-copy when there is one).
    ///
    /// # Errors
    /// When there are no batches, or their schemas differ.
    pub fn concat(&self) -> Result<RecordBatch, ArrowError> {
        match self.batches() {
            [] => Err(ArrowError::InvalidArgumentError(
                "the request carries no record batch".into(),
            )),
            [one] => Ok(one.clone()),
            many => arrow_select::concat::concat_batches(many[0].schema_ref(), many),
        }
    }
}

type Registry = RwLock<HashMap<String, Arc<Handler>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| RwLock::new(builtin::defaults()))
}

/// Registers `handler` under `name`, replacing (and returning) any handler
/// registered under that name before. The built-in handlers ([`ECHO`],
/// [`SUM`], [`PANIC`]) can be replaced too.
pub fn register<F>(name: &str, handler: F) -> Option<Arc<Handler>>
where
    F: Fn(&Request) -> HandlerResult + Send + Sync + 'static,
{
    // A poisoned lock only means a writer panicked between two whole-map
    // operations; the map itself is still consistent.
    let mut map = registry().write().unwrap_or_else(|e| e.into_inner());
    map.insert(name.to_owned(), Arc::new(handler))
}

/// Removes the handler registered under `name` and returns it.
pub fn unregister(name: &str) -> Option<Arc<Handler>> {
    let mut map = registry().write().unwrap_or_else(|e| e.into_inner());
    map.remove(name)
}

/// The handler registered under `name`, if any.
pub fn lookup(name: &str) -> Option<Arc<Handler>> {
    let map = registry().read().unwrap_or_else(|e| e.into_inner());
    map.get(name).cloned()
}

/// The names of all registered handlers, sorted.
pub fn handler_names() -> Vec<String> {
    let map = registry().read().unwrap_or_else(|e| e.into_inner());
    let mut names: Vec<String> = map.keys().cloned().collect();
    names.sort();
    names
}

/// Runs the handler registered under `name` on `request`. Panics of the
/// handler propagate; [`crate::ffi`] catches them at the boundary.
///
/// # Errors
/// [`CallError::UnknownHandler`] or the handler's own error.
pub fn call(name: &str, request: &Request) -> Result<Option<RecordBatch>, CallError> {
    let handler = lookup(name).ok_or_else(|| CallError::UnknownHandler(name.to_owned()))?;
    handler(request).map_err(|source| CallError::Handler {
        name: name.to_owned(),
        source,
    })
}
