//! Async endpoints on tokio (cargo feature `tokio`): consumers are
//! [`Stream`]s woken through their eventfd (LAYOUT.md §6.3) registered with
//! tokio's reactor ([`AsyncFd`]); the producer awaits space instead of
//! blocking its thread.
//!
//! Each async type wraps its sync counterpart and fails with the same error
//! type: [`AsyncIpcReader`] and [`AsyncIpcWriter`] with
//! [`ArrowShmError`] like [`IpcReader`] and [`IpcWriter`],
//! [`AsyncConsumer`] and [`AsyncProducer`] with [`RingError`], which the
//! [`Consumer`]'s [`RecvError`] and the [`Producer`]'s
//! [`SendError`](crate::ring::SendError) convert into (their tokio waits can
//! fail too). Every await has a deadline the usual
//! tokio way, `tokio::time::timeout(d, reader.next_batch())`: receiving is
//! cancel-safe (a dropped `recv`/`next_batch` future loses no message), and
//! a producer's `Block { timeout }` bounds each wait for space.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use std::sync::Arc;
//! use alloy_shm::aio::AsyncIpcReader;
//! use alloy_shm::arrow::{IpcReader, IpcWriter};
//! use alloy_shm::ring::Ring;
//! use arrow_array::{Int32Array, RecordBatch};
//! use futures::StreamExt;
//!
//! let ring = Ring::anonymous_builder().slot_count(4).slot_size(4096).create()?;
//! let mut batches = AsyncIpcReader::new(IpcReader::new(ring.subscribe()?))?;
//! let producer = ring.producer()?;
//! let sender = tokio::task::spawn_blocking(move || {
//!     let batch = RecordBatch::try_from_iter([("n", Arc::new(Int32Array::from(vec![1, 2])) as _)])?;
//!     let mut w = IpcWriter::new(producer, batch.schema())?;
//!     for _ in 0..10 {
//!         w.write(&batch)?;
//!     }
//!     w.close()?;
//!     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//! });
//! let mut rows = 0;
//! while let Some(batch) = batches.next().await {
//!     rows += batch?.num_rows();
//! }
//! sender.await??;
//! assert_eq!(rows, 20);
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use futures_core::Stream;
use tokio::io::unix::AsyncFd;
use tokio::time::{Instant, Sleep};

use crate::arrow::{ArrowShmError, IpcReader, IpcWriter};
use crate::ring::liveness::PRODUCER_CHECK;
use crate::ring::{Backpressure, Consumer, Lease, Producer, RecvError, Reservation, RingError};

/// The eventfd of one consumer in tokio's reactor, plus the periodic
/// checks a parked consumer does: producer liveness (LAYOUT.md §11.2: a
/// producer that dies publishes nothing, so no event would ever come) and,
/// for a queue member, redelivery of a dead member's messages (§11.3).
struct Readiness {
    efd: AsyncFd<OwnedFd>,
    check: Pin<Box<Sleep>>,
}

impl Readiness {
    fn new(consumer: &mut Consumer) -> Result<Readiness, RingError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RingError::InvalidArgument(
                "async endpoints must be created inside a tokio runtime".into(),
            ));
        }
        let io = |what| move |source| RingError::Io { what, source };
        // A duplicate of the consumer's eventfd: the same counter, owned
        // here so the reactor can hold it.
        let fd = consumer
            .eventfd()?
            .try_clone_to_owned()
            .map_err(io("duplicating the eventfd"))?;
        // SAFETY: `fd` is an open descriptor we own; the AsyncFd owns it
        // from here until it is dropped, so it stays open and refers to the
        // same eventfd for the AsyncFd's whole life.
        let efd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| io("registering the eventfd with tokio")(e.into()))?;
        Ok(Readiness {
            efd,
            check: Box::pin(tokio::time::sleep(PRODUCER_CHECK)),
        })
    }

    /// Polls `consumer` for its next message: `Ok(None)` at end of stream.
    fn poll_lease(
        &mut self,
        consumer: &mut Consumer,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Lease>, RingError>> {
        loop {
            match consumer.try_recv() {
                Ok(next) => return Poll::Ready(Ok(next)),
                Err(RecvError::Empty) => {}
                Err(e) => return Poll::Ready(Err(e.into())),
            }
            if self.check.as_mut().poll(cx).is_ready() {
                self.check.as_mut().reset(Instant::now() + PRODUCER_CHECK);
                // A dead producer ends the stream with an error; a dead
                // queue member's messages become claimable (redelivery),
                // which no eventfd notification would announce.
                if let Err(e) = consumer.check_peers() {
                    return Poll::Ready(Err(e.into()));
                }
                // Polling the reset timer again registers its waker.
                continue;
            }
            match self.efd.poll_read_ready(cx) {
                Poll::Ready(Ok(mut guard)) => {
                    // Drain, then look again. A notification that lands
                    // after the guard was taken keeps the fd ready (tokio
                    // clears readiness only if no new event arrived).
                    let mut b = [0u8; 8];
                    let _ = rustix::io::read(self.efd.get_ref(), &mut b);
                    guard.clear_ready();
                }
                Poll::Ready(Err(source)) => {
                    return Poll::Ready(Err(RingError::Io {
                        what: "waiting on the eventfd",
                        source,
                    }))
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// A [`Consumer`] as a [`Stream`] of leases (zero-copy views into the
/// mapping, released on drop). Create it inside a tokio runtime.
///
/// The stream ends at end of stream; a dead producer yields
/// [`RingError::ProducerGone`] after everything it published.
pub struct AsyncConsumer {
    consumer: Consumer,
    ready: Readiness,
}

impl std::fmt::Debug for AsyncConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncConsumer")
            .field("consumer", &self.consumer)
            .finish()
    }
}

impl AsyncConsumer {
    /// Wraps `consumer` (starts its eventfd helper thread).
    pub fn new(mut consumer: Consumer) -> Result<AsyncConsumer, RingError> {
        let ready = Readiness::new(&mut consumer)?;
        Ok(AsyncConsumer { consumer, ready })
    }

    /// The next message; `Ok(None)` at end of stream.
    pub async fn recv(&mut self) -> Result<Option<Lease>, RingError> {
        std::future::poll_fn(|cx| self.ready.poll_lease(&mut self.consumer, cx)).await
    }

    /// The wrapped consumer.
    pub fn get_mut(&mut self) -> &mut Consumer {
        &mut self.consumer
    }

    /// Unwraps the consumer.
    pub fn into_inner(self) -> Consumer {
        self.consumer
    }
}

impl Stream for AsyncConsumer {
    type Item = Result<Lease, RingError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.ready
            .poll_lease(&mut this.consumer, cx)
            .map(Result::transpose)
    }
}

/// An [`IpcReader`] as a [`Stream`] of record batches whose buffers point
/// into the mapping (see [`IpcReader`]). Create it inside a tokio runtime.
pub struct AsyncIpcReader {
    reader: IpcReader,
    ready: Readiness,
}

impl std::fmt::Debug for AsyncIpcReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncIpcReader")
            .field("reader", &self.reader)
            .finish()
    }
}

impl AsyncIpcReader {
    /// Wraps `reader`.
    pub fn new(mut reader: IpcReader) -> Result<AsyncIpcReader, ArrowShmError> {
        let ready = Readiness::new(reader.consumer_mut())?;
        Ok(AsyncIpcReader { reader, ready })
    }

    /// The stream's schema, once known.
    pub fn schema(&self) -> Option<SchemaRef> {
        self.reader.schema()
    }

    /// The next record batch; `Ok(None)` at end of stream.
    pub async fn next_batch(&mut self) -> Result<Option<RecordBatch>, ArrowShmError> {
        std::future::poll_fn(|cx| self.poll_batch(cx)).await
    }

    fn poll_batch(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<RecordBatch>, ArrowShmError>> {
        loop {
            let lease = match self.ready.poll_lease(self.reader.consumer_mut(), cx) {
                Poll::Ready(Ok(Some(lease))) => lease,
                Poll::Ready(Ok(None)) => return Poll::Ready(Ok(None)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => return Poll::Pending,
            };
            match self.reader.decode(lease) {
                Ok(Some(batch)) => return Poll::Ready(Ok(Some(batch))),
                // A schema or dictionary message: keep going.
                Ok(None) => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Unwraps the reader.
    pub fn into_inner(self) -> IpcReader {
        self.reader
    }
}

impl Stream for AsyncIpcReader {
    type Item = Result<RecordBatch, ArrowShmError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_batch(cx).map(Result::transpose)
    }
}

/// A [`Producer`] whose reservations await space instead of blocking the
/// thread. The producer's [`Backpressure`] still applies: `Block { timeout }`
/// awaits at most `timeout` then fails with [`RingError::Timeout`]; `Fail`
/// fails at once with [`RingError::Full`].
///
/// While the ring is full, one blocking-pool thread (tokio's
/// `spawn_blocking`) parks on the ring's space futex in slices of at most
/// 100 ms; nothing runs while space is available.
pub struct AsyncProducer {
    producer: Producer,
}

impl std::fmt::Debug for AsyncProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncProducer")
            .field("producer", &self.producer)
            .finish()
    }
}

/// Longest single park of the space waiter: bounds how late a dead
/// consumer's reclaim (which runs on the producer's side) is noticed.
const SPACE_SLICE: Duration = Duration::from_millis(100);

impl AsyncProducer {
    /// Wraps `producer`. Call inside a tokio runtime.
    pub fn new(producer: Producer) -> AsyncProducer {
        AsyncProducer { producer }
    }

    /// Awaits a free slot, then reserves it for a message of at most `len`
    /// bytes (see [`Producer::reserve`]).
    pub async fn reserve(&mut self, len: usize) -> Result<Reservation<'_>, RingError> {
        let max = self.producer.max_message_size();
        if len > max {
            return Err(RingError::MessageTooLarge { len, max });
        }
        self.space().await?;
        // Space was seen and only this producer consumes it: the
        // reservation does not wait.
        Ok(self.producer.reserve(len)?)
    }

    /// Awaits a free slot, copies `bytes` into it and publishes it with
    /// `flags`; returns the sequence number.
    pub async fn send(&mut self, bytes: &[u8], flags: u32) -> Result<u64, RingError> {
        let mut r = self.reserve(bytes.len()).await?;
        r[..bytes.len()].copy_from_slice(bytes);
        Ok(r.publish(bytes.len(), flags)?)
    }

    async fn space(&mut self) -> Result<(), RingError> {
        if self.producer.poll_space()? {
            return Ok(());
        }
        // The ring is full: counted as the blocking producer counts it
        // (LAYOUT.md §2.1), a refusal or one wait. The guard counts the
        // wait even when this future is dropped while awaiting (a
        // `select!`, a `timeout`): a cancelled wait is a wait, as in Go.
        let mut guard = WaitCount {
            producer: &mut self.producer,
            start: Instant::now(),
            refused: false,
        };
        let start = guard.start;
        let r = wait_space(guard.producer, start).await;
        guard.refused = matches!(r, Err(RingError::Full { .. }));
        r
    }
    /// The wrapped producer.
    pub fn get_mut(&mut self) -> &mut Producer {
        &mut self.producer
    }

    /// Unwraps the producer.
    pub fn into_inner(self) -> Producer {
        self.producer
    }

    /// Ends the stream (see [`Producer::close`]).
    pub fn close(self) {
        self.producer.close();
    }
}

/// Counts one back-pressure wait (or `Full` refusal) when dropped: at the
/// end of [`AsyncProducer::space`]'s wait, or when its future is dropped
/// mid-wait.
struct WaitCount<'a> {
    producer: &'a mut Producer,
    start: Instant,
    refused: bool,
}

impl Drop for WaitCount<'_> {
    fn drop(&mut self) {
        if self.refused {
            self.producer.note_full();
        } else {
            self.producer.note_wait(self.start.elapsed());
        }
    }
}

/// Awaits space on `producer`'s full ring within its back-pressure policy.
async fn wait_space(producer: &mut Producer, start: Instant) -> Result<(), RingError> {
    let timeout = match producer.backpressure() {
        Backpressure::Fail => None,
        Backpressure::Block { timeout } => Some(timeout),
    };
    loop {
        if producer.poll_space()? {
            return Ok(());
        }
        let Some(limit) = timeout else {
            return Err(RingError::Full {
                slots: producer.max_slots(),
            });
        };
        let mut slice = SPACE_SLICE;
        if let Some(t) = limit {
            match t.checked_sub(start.elapsed()) {
                Some(r) if !r.is_zero() => slice = slice.min(r),
                _ => return Err(RingError::Timeout(t)),
            }
        }
        tracing::trace!("async producer awaiting space");
        let waiter = producer.space_waiter();
        tokio::task::spawn_blocking(move || waiter.wait(slice))
            .await
            .map_err(|e| RingError::Io {
                what: "the space-waiter task",
                source: std::io::Error::other(e),
            })?;
    }
}

/// An [`IpcWriter`] for async code: [`write`](AsyncIpcWriter::write) and
/// [`close`](AsyncIpcWriter::close) await instead of blocking the runtime's
/// thread while the ring is full. The counterpart of [`AsyncIpcReader`],
/// with the same error type as the sync writer ([`ArrowShmError`]) and the
/// same behaviour: the schema first, dictionaries when they change,
/// batches too large for a slot split by rows, the producer's
/// [`Backpressure`] (`Block { timeout }` fails with
/// [`RingError::Timeout`], `Fail` with [`RingError::Full`]).
///
/// Each call runs the sync writer on tokio's blocking pool
/// (`spawn_blocking`: one hand-over, a few microseconds, per call), since
/// one batch may take several slots (schema, dictionaries, parts of a split
/// batch) and each may have to wait. A write whose future is dropped before
/// it finishes still completes on the pool, but the writer is lost with it:
/// later calls fail with [`RingError::Closed`].
///
/// ```
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use std::sync::Arc;
/// use alloy_shm::aio::{AsyncIpcReader, AsyncIpcWriter};
/// use alloy_shm::ring::Ring;
/// use arrow_array::{Int32Array, RecordBatch};
/// use futures::StreamExt;
///
/// let ring = Ring::anonymous_builder().slot_count(4).slot_size(4096).create()?;
/// let mut batches = AsyncIpcReader::new(ring.consumer_builder().ipc_reader()?)?;
/// let batch = RecordBatch::try_from_iter([("n", Arc::new(Int32Array::from(vec![1, 2])) as _)])?;
/// let mut w = AsyncIpcWriter::new(ring.producer_builder().ipc_writer(batch.schema())?);
/// let sender = tokio::spawn(async move {
///     for _ in 0..10 {
///         w.write(&batch).await?; // awaits while the 4 slots are full
///     }
///     w.close().await
/// });
/// let mut rows = 0;
/// while let Some(got) = batches.next().await {
///     rows += got?.num_rows();
/// }
/// sender.await??;
/// assert_eq!(rows, 20);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncIpcWriter {
    /// `None` once a write's future was dropped mid-write.
    writer: Option<IpcWriter>,
}

impl AsyncIpcWriter {
    /// Wraps `writer`.
    pub fn new(writer: IpcWriter) -> AsyncIpcWriter {
        AsyncIpcWriter {
            writer: Some(writer),
        }
    }

    /// Sends `batch` (see [`IpcWriter::write`]), awaiting free slots.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowShmError> {
        let mut w = self.writer.take().ok_or(RingError::Closed)?;
        let batch = batch.clone(); // Arcs: no data is copied
        let (w, result) = tokio::task::spawn_blocking(move || {
            let result = w.write(&batch);
            (w, result)
        })
        .await
        .map_err(join_error)?;
        self.writer = Some(w);
        result
    }

    /// Sends the schema if nothing was written, then ends the stream (see
    /// [`IpcWriter::close`]).
    pub async fn close(mut self) -> Result<(), ArrowShmError> {
        let w = self.writer.take().ok_or(RingError::Closed)?;
        tokio::task::spawn_blocking(move || w.close())
            .await
            .map_err(join_error)?
    }

    /// The stream's schema, unless the writer was lost.
    pub fn schema(&self) -> Option<&SchemaRef> {
        self.writer.as_ref().map(IpcWriter::schema)
    }

    /// The wrapped writer, unless it was lost.
    pub fn get_mut(&mut self) -> Option<&mut IpcWriter> {
        self.writer.as_mut()
    }

    /// Unwraps the writer, unless it was lost.
    pub fn into_inner(self) -> Option<IpcWriter> {
        self.writer
    }
}

/// A blocking-pool task that panicked or was cancelled (runtime shutdown).
fn join_error(e: tokio::task::JoinError) -> ArrowShmError {
    ArrowShmError::Ring(RingError::Io {
        what: "the writer's blocking task",
        source: std::io::Error::other(e),
    })
}

#[cfg(test)]
mod tests;
