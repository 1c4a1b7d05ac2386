//! The serving side: creates the channel, decodes requests in place, calls
//! the handler on one or more threads, publishes replies (LAYOUT.md §12.4).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::RecordBatch;

use super::codec::{publish_error, read_envelope, Body, Decoder, Encoder};
use super::envelope::{status, Envelope, Kind};
use super::{check_name, reply_ring, request_ring, ReqRepError, QUEUE_GROUP};
use crate::ring::{
    monotonic_ns, Backpressure, Consumer, Lease, Producer, RecvError, Ring, RingConfig, RingError,
    WaitStrategy,
};

/// Geometry and behaviour of a channel, chosen by its worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Slots per ring (a power of two): how many requests may be queued and
    /// how many replies may wait for the client.
    pub slot_count: u32,
    /// Slot size in bytes (a multiple of 64): the largest request or reply,
    /// envelope and schema included.
    pub slot_size: u32,
    /// Worker threads, each a member of the request queue group.
    pub threads: usize,
    /// How long a reply waits for space on a full reply ring before it is
    /// dropped with a warning (the client stopped reading).
    pub reply_timeout: Duration,
    /// How the worker threads wait for requests, and the reply producer
    /// for space: [`WaitStrategy::Blocking`] (spin briefly, then park) or
    /// [`WaitStrategy::Spin`] (never park: the lowest round-trip latency,
    /// one busy core per worker thread while the worker serves).
    pub wait: WaitStrategy,
}

impl Default for WorkerConfig {
    /// 32 slots of 2 MiB per ring, one thread, 5 s reply timeout, blocking
    /// waits.
    fn default() -> Self {
        WorkerConfig {
            slot_count: 32,
            slot_size: 2 << 20,
            threads: 1,
            reply_timeout: Duration::from_secs(5),
            wait: WaitStrategy::Blocking,
        }
    }
}

/// Counters of a [`Worker::serve`] run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeStats {
    /// Requests received (including expired and bad ones).
    pub requests: u64,
    /// Batch replies published.
    pub replies: u64,
    /// Error replies published.
    pub errors: u64,
    /// Requests skipped because their deadline had passed.
    pub expired: u64,
    /// Messages that could not be answered (no readable envelope) or
    /// replies dropped because the reply ring stayed full.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    replies: AtomicU64,
    errors: AtomicU64,
    expired: AtomicU64,
    dropped: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ServeStats {
        ServeStats {
            requests: self.requests.load(Ordering::Relaxed),
            replies: self.replies.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// Stops a running [`Worker::serve`] from another thread.
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Asks the worker to stop: its threads finish the request in hand and
    /// `serve` returns within about 100 ms.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// How often idle worker threads look at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// The worker of a channel: it creates `NAME.req` and `NAME.rep`
/// (LAYOUT.md §12.1), serves requests with a handler, and when dropped (or
/// when `serve` returns) closes the reply stream and removes both names.
pub struct Worker {
    name: String,
    consumers: Vec<Consumer>,
    producer: Mutex<Option<Producer>>,
    stop: Arc<AtomicBool>,
    counters: Counters,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.name)
            .field("threads", &self.consumers.len())
            .finish()
    }
}

/// Removes the rings created so far if `create` fails half-way.
struct Unlink<'a>(Vec<&'a str>);

impl Drop for Unlink<'_> {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Ring::remove(n);
        }
    }
}

impl Worker {
    /// Creates channel `name` and joins it, following the start-up order of
    /// LAYOUT.md §12.1: refuses with [`ReqRepError::WorkerExists`] if a live
    /// worker serves it, removes stale rings, creates `NAME.req` and joins
    /// its queue group with every thread, then creates `NAME.rep` and
    /// attaches its producer (from then on clients can connect).
    pub fn create(name: &str, config: &WorkerConfig) -> Result<Worker, ReqRepError> {
        check_name(name)?;
        if config.threads == 0 || config.threads > 200 {
            return Err(ReqRepError::InvalidArgument(format!(
                "{} worker threads; use 1-200",
                config.threads
            )));
        }
        let (req_name, rep_name) = (request_ring(name), reply_ring(name));
        if let Ok(rep) = Ring::open(&rep_name) {
            let pid = rep.producer_pid();
            if rep.producer_alive() {
                return Err(ReqRepError::WorkerExists {
                    name: name.into(),
                    pid,
                });
            }
        }
        for stale in [&req_name, &rep_name] {
            // An error means it was not there.
            if Ring::remove(stale).is_ok() {
                tracing::info!(ring = %stale, "removed a stale channel ring");
            }
        }
        let geometry = |max_subscribers, max_members| RingConfig {
            slot_count: config.slot_count,
            slot_size: config.slot_size,
            max_subscribers,
            max_members,
            schema_capacity: 0,
        };
        let mut cleanup = Unlink(Vec::new());
        let req = Ring::builder(&req_name)
            .config(geometry(2, config.threads as u32 + 2))
            .create()?;
        cleanup.0.push(&req_name);
        let consumers = (0..config.threads)
            .map(|_| {
                req.consumer_builder()
                    .queue(QUEUE_GROUP)
                    .wait(config.wait)
                    .create()
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Dead clients' subscriber entries are only reclaimed once the
        // reply ring fills (§11.3): leave room for a few.
        let rep = Ring::builder(&rep_name).config(geometry(16, 16)).create()?;
        cleanup.0.push(&rep_name);
        let producer = rep
            .producer_builder()
            .backpressure(Backpressure::Block {
                timeout: Some(config.reply_timeout),
            })
            .wait(config.wait)
            .create()?;
        cleanup.0.clear();
        tracing::info!(channel = name, threads = config.threads, "worker ready");
        Ok(Worker {
            name: name.into(),
            consumers,
            producer: Mutex::new(Some(producer)),
            stop: Arc::new(AtomicBool::new(false)),
            counters: Counters::default(),
        })
    }

    /// The channel name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A handle that makes [`Worker::serve`] return.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop.clone())
    }

    /// Serves requests until stopped ([`StopHandle::stop`]), calling
    /// `handler` on every worker thread (concurrently when there are
    /// several). The request batch points into shared memory and holds its
    /// slot until dropped. `Err(text)` becomes an error reply (status
    /// `HANDLER`); a panic becomes one with status `PANIC`. Returns the
    /// counters, then closes the channel (clients see `PeerGone`).
    pub fn serve<F>(mut self, handler: F) -> Result<ServeStats, ReqRepError>
    where
        F: Fn(RecordBatch) -> Result<RecordBatch, String> + Sync,
    {
        let consumers = std::mem::take(&mut self.consumers);
        let this = &self;
        let handler = &handler;
        std::thread::scope(|scope| {
            for (i, consumer) in consumers.into_iter().enumerate() {
                std::thread::Builder::new()
                    .name(format!("alloy-worker-{i}"))
                    .spawn_scoped(scope, move || this.run(consumer, handler))
                    .map_err(|source| RingError::Io {
                        what: "spawning a worker thread",
                        source,
                    })?;
            }
            Ok::<(), ReqRepError>(())
        })?;
        Ok(self.counters.snapshot())
    }

    /// One worker thread's loop.
    fn run<F>(&self, mut consumer: Consumer, handler: &F)
    where
        F: Fn(RecordBatch) -> Result<RecordBatch, String> + Sync,
    {
        let mut decoder = Decoder::new();
        let mut encoder = Encoder::new();
        let mut client_gone_logged = false;
        while !self.stop.load(Ordering::Relaxed) {
            match consumer.recv_timeout(STOP_CHECK) {
                Ok(Some(lease)) => {
                    client_gone_logged = false;
                    self.handle(lease, handler, &mut decoder, &mut encoder);
                }
                // Clients never close NAME.req (§12.1); someone did: stop.
                Ok(None) => {
                    tracing::warn!(channel = %self.name, "request ring closed; stopping");
                    return;
                }
                Err(RecvError::Timeout(_)) => {}
                // The client died; the next one takes over (§12.4).
                Err(RecvError::ProducerGone { pid }) => {
                    if !client_gone_logged {
                        tracing::info!(pid, "client died; waiting for the next one");
                        client_gone_logged = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "receiving a request failed");
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn handle<F>(&self, lease: Lease, handler: &F, decoder: &mut Decoder, encoder: &mut Encoder)
    where
        F: Fn(RecordBatch) -> Result<RecordBatch, String> + Sync,
    {
        let c = &self.counters;
        c.requests.fetch_add(1, Ordering::Relaxed);
        let env = match read_envelope(&lease, &[Kind::Request]) {
            Ok(env) => env,
            Err(e) => {
                // Answer if the envelope at least names a request.
                match Envelope::parse(&lease) {
                    Ok(env) if env.kind == Kind::Request => {
                        drop(lease);
                        self.reply_error(env, status::BAD_REQUEST, &e.to_string());
                    }
                    _ => {
                        tracing::warn!(seq = lease.seq(), error = %e, "unreadable request dropped");
                        c.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                return;
            }
        };
        if env.deadline_ns != 0 && monotonic_ns() > env.deadline_ns {
            c.expired.fetch_add(1, Ordering::Relaxed);
            return; // the client no longer waits: skip it (§12.4)
        }
        let batch = match decoder.decode(&env, lease) {
            Ok(Body::Batch(b)) => b,
            Ok(Body::Error { .. }) => unreachable!("read_envelope admits requests only"),
            Err(e) => return self.reply_error(env, status::BAD_REQUEST, &e.to_string()),
        };
        let answer = std::panic::catch_unwind(AssertUnwindSafe(|| handler(batch)));
        let reply = match answer {
            Ok(Ok(reply)) => reply,
            Ok(Err(text)) => return self.reply_error(env, status::HANDLER, &text),
            Err(panic) => {
                let what = crate::panic_message(&*panic);
                return self.reply_error(env, status::PANIC, &format!("handler panicked: {what}"));
            }
        };
        let out = Envelope {
            kind: Kind::Reply,
            ..env
        };
        // A flat schema without dictionaries: the reply is encoded straight
        // into the reply slot by the direct plan (once one reply of the
        // schema went through arrow-ipc to give it its template). The reply
        // is dropped after the publish, so a reply that shares the request's
        // slot (e.g. a slice of it) holds it until its bytes are copied.
        let planned = match encoder.plan(&reply) {
            Ok(p) => p,
            Err(e) => {
                let text = format!("cannot send the reply: {e}");
                return self.reply_error(env, status::HANDLER, &text);
            }
        };
        let sent = if let Some((schema, batch_len)) = planned {
            let mut guard = self.producer.lock().unwrap_or_else(|p| p.into_inner());
            match guard.as_mut() {
                Some(p) => encoder.publish_planned(p, out, &schema, batch_len, &reply),
                None => Err(ReqRepError::Closed),
            }
        } else {
            let encoded = match encoder.encode(&reply) {
                Ok(e) => e,
                Err(e) => {
                    let text = format!("cannot send the reply: {e}");
                    return self.reply_error(env, status::HANDLER, &text);
                }
            };
            drop(reply); // releases the request slot if the reply shared it
            let mut guard = self.producer.lock().unwrap_or_else(|p| p.into_inner());
            match guard.as_mut() {
                Some(p) => encoder.publish(p, out, encoded),
                None => Err(ReqRepError::Closed),
            }
        };
        match sent {
            Ok(_) => {
                c.replies.fetch_add(1, Ordering::Relaxed);
            }
            Err(ReqRepError::Ring(RingError::MessageTooLarge { len, max })) => self.reply_error(
                env,
                status::REPLY_TOO_LARGE,
                &format!("the {len}-byte reply exceeds the {max}-byte reply slot"),
            ),
            Err(e) => {
                tracing::warn!(id = env.id, error = %e, "reply dropped");
                c.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn reply_error(&self, env: Envelope, code: u32, text: &str) {
        let sent = {
            let mut guard = self.producer.lock().unwrap_or_else(|p| p.into_inner());
            match guard.as_mut() {
                Some(p) => publish_error(p, env, code, text),
                None => Err(ReqRepError::Closed),
            }
        };
        match sent {
            Ok(_) => self.counters.errors.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(id = env.id, error = %e, "error reply dropped");
                self.counters.dropped.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let producer = self
            .producer
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(p) = producer {
            p.close(); // clients see end of stream: PeerGone
        }
        self.consumers.clear();
        let _ = Ring::remove(&request_ring(&self.name));
        let _ = Ring::remove(&reply_ring(&self.name));
        tracing::info!(channel = %self.name, "worker stopped");
    }
}
