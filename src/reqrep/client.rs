//! The calling side (LAYOUT.md §12.3): a thread-safe client whose
//! demultiplexer thread routes replies to their callers by correlation id.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;

use super::codec::{read_envelope, Body, Decoder, Encoder};
use super::envelope::{Envelope, Kind};
use super::{check_name, reply_ring, request_ring, ReqRepError};
use crate::region::RegionError;
use crate::ring::{
    monotonic_ns, AttachError, Backpressure, Consumer, Lease, OpenError, Producer, RecvError, Ring,
    RingError, WaitStrategy,
};

/// How long one blocked reservation or demultiplexer wait lasts before the
/// loop looks at deadlines and the stop flag again.
const SLICE: Duration = Duration::from_millis(50);

type Delivery = (Envelope, Lease);

struct Pending {
    calls: HashMap<u64, SyncSender<Delivery>>,
    /// Set once the worker is gone; every call fails with it from then on.
    gone: Option<String>,
}

struct Shared {
    session: u64,
    next_id: AtomicU64,
    sender: Mutex<(Producer, Encoder)>,
    pending: Mutex<Pending>,
    stop: AtomicBool,
}

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fails every pending call and every later one.
    fn set_gone(&self, why: String) {
        let mut p = self.pending();
        tracing::warn!(reason = %why, pending = p.calls.len(), "request/reply worker gone");
        p.gone = Some(why);
        // Dropping the senders wakes every waiting caller.
        p.calls.clear();
    }
}

/// A client of a request/reply channel. `call` may be used from many
/// threads at once (`&self`); replies are matched by correlation id.
///
/// Reply batches point into the reply ring and hold their slot until
/// dropped: the worker blocks once every reply slot is held.
pub struct Client {
    shared: Arc<Shared>,
    demux: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("session", &self.shared.session)
            .finish()
    }
}

/// A random non-zero session id (LAYOUT.md §12.2).
fn new_session() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(monotonic_ns());
    h.finish().max(1)
}

impl Client {
    /// Connects to channel `name`, waiting up to `timeout` for a live
    /// worker to serve it (LAYOUT.md §12.1): [`ReqRepError::NotServed`]
    /// when none does in time, [`ReqRepError::WorkerDead`] at once when the
    /// channel's worker is known dead (its rings are left over from a
    /// killed process). A second client process is refused with
    /// [`ReqRepError::Busy`].
    pub fn connect(name: &str, timeout: Duration) -> Result<Client, ReqRepError> {
        check_name(name)?;
        let start = Instant::now();
        let consumer = loop {
            if let Some(c) = Self::try_subscribe(name)? {
                break c;
            }
            if start.elapsed() >= timeout {
                return Err(ReqRepError::NotServed {
                    name: name.into(),
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let req = Ring::open(&request_ring(name))?;
        let producer = match req
            .producer_builder()
            .backpressure(Backpressure::Block {
                timeout: Some(SLICE),
            })
            .wait(WaitStrategy::default())
            .create()
        {
            Ok(p) => p,
            Err(AttachError::ProducerExists { pid }) => {
                return Err(ReqRepError::Busy {
                    name: name.into(),
                    pid,
                })
            }
            Err(e) => return Err(e.into()),
        };
        let shared = Arc::new(Shared {
            session: new_session(),
            next_id: AtomicU64::new(1),
            sender: Mutex::new((producer, Encoder::new())),
            pending: Mutex::new(Pending {
                calls: HashMap::new(),
                gone: None,
            }),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let demux = std::thread::Builder::new()
            .name("alloy-reqrep-demux".into())
            .spawn(move || demux(s, consumer))
            .map_err(|source| RingError::Io {
                what: "spawning the reply demultiplexer",
                source,
            })?;
        Ok(Client {
            shared,
            demux: Some(demux),
        })
    }

    /// The reply subscription once the channel is ready, `None` while not.
    fn try_subscribe(name: &str) -> Result<Option<Consumer>, ReqRepError> {
        let rep = match Ring::open(&reply_ring(name)) {
            Ok(r) => r,
            Err(OpenError::Region(RegionError::NotFound(_))) => return Ok(None),
            Err(OpenError::Region(RegionError::Layout { .. })) => return Ok(None), // being created
            Err(e) => return Err(e.into()),
        };
        let pid = rep.producer_pid();
        if pid != 0 && !rep.producer_alive() {
            // A dead worker's rings: no point waiting for it (a new worker
            // would remove them first).
            return Err(ReqRepError::WorkerDead {
                name: name.into(),
                pid,
            });
        }
        if pid == 0 || rep.is_closed() {
            return Ok(None); // the worker is still starting, or stopping
        }
        Ok(Some(rep.subscribe()?))
    }

    /// This client's session id.
    pub fn session(&self) -> u64 {
        self.shared.session
    }

    /// Sends `batch` and waits for the worker's answer, at most `timeout`
    /// (`None`: no deadline). Errors: [`ReqRepError::Remote`] for an error
    /// reply, [`ReqRepError::Timeout`], [`ReqRepError::PeerGone`] once the
    /// worker is gone, `MessageTooLarge` for a request larger than a slot.
    pub fn call(
        &self,
        batch: &RecordBatch,
        timeout: Option<Duration>,
    ) -> Result<RecordBatch, ReqRepError> {
        let sh = &*self.shared;
        let start = Instant::now();
        let deadline_ns = timeout.map_or(0, |t| monotonic_ns() + t.as_nanos() as u64);
        let left = || match timeout {
            Some(t) => t
                .checked_sub(start.elapsed())
                .ok_or(ReqRepError::Timeout(t)),
            None => Ok(Duration::MAX),
        };
        let id = sh.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = sync_channel(1);
        {
            let mut p = sh.pending();
            if let Some(why) = &p.gone {
                return Err(ReqRepError::PeerGone(why.clone()));
            }
            p.calls.insert(id, tx);
        }
        let env = Envelope {
            kind: Kind::Request,
            session: sh.session,
            id,
            deadline_ns,
            status: 0,
            schema_len: 0,
            batch_len: 0,
            text_len: 0,
        };
        let sent = self.send(env, batch, &left);
        if let Err(e) = sent {
            sh.pending().calls.remove(&id);
            return Err(e);
        }
        let got = match timeout {
            Some(_) => rx.recv_timeout(left().unwrap_or(Duration::ZERO)),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match got {
            Ok((env, lease)) => match Decoder::new().decode(&env, lease)? {
                Body::Batch(b) => Ok(b),
                Body::Error { status, text } => Err(ReqRepError::Remote { status, text }),
            },
            Err(RecvTimeoutError::Timeout) => {
                // Leave the table; a reply routed meanwhile sits in the
                // channel and is released with it (`rx` dropped here).
                sh.pending().calls.remove(&id);
                drop(rx);
                Err(ReqRepError::Timeout(timeout.unwrap_or_default()))
            }
            Err(RecvTimeoutError::Disconnected) => Err(ReqRepError::PeerGone(
                sh.pending()
                    .gone
                    .clone()
                    .unwrap_or_else(|| "the client was closed".into()),
            )),
        }
    }

    /// Encodes and publishes one request, waiting for space in slices so
    /// the deadline and worker death are noticed.
    fn send(
        &self,
        env: Envelope,
        batch: &RecordBatch,
        left: &dyn Fn() -> Result<Duration, ReqRepError>,
    ) -> Result<(), ReqRepError> {
        let sh = &*self.shared;
        let mut guard = sh.sender.lock().unwrap_or_else(|p| p.into_inner());
        let (producer, encoder) = &mut *guard;
        loop {
            let encoded = encoder.encode(batch)?;
            match encoder.publish(producer, env, encoded) {
                Ok(_) => return Ok(()),
                Err(ReqRepError::Ring(RingError::Timeout(_))) => {
                    left()?;
                    if let Some(why) = &sh.pending().gone {
                        return Err(ReqRepError::PeerGone(why.clone()));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Closes the client: pending calls fail with `PeerGone`, the request
    /// ring is left open for the next client (LAYOUT.md §12.1).
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.demux.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The demultiplexer: routes replies to their callers, drops the rest, and
/// turns the worker's death or close into `PeerGone` for everyone.
fn demux(sh: Arc<Shared>, mut consumer: Consumer) {
    while !sh.stop.load(Ordering::Relaxed) {
        let lease = match consumer.recv_timeout(SLICE) {
            Ok(Some(l)) => l,
            Ok(None) => return sh.set_gone("the worker closed the channel".into()),
            Err(RecvError::ProducerGone { pid }) => {
                return sh.set_gone(format!("the worker (pid {pid}) died"))
            }
            Err(RecvError::Timeout(_)) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "receiving a reply failed");
                continue;
            }
        };
        let env = match read_envelope(&lease, &[Kind::Reply, Kind::Error]) {
            Ok(env) => env,
            Err(e) => {
                tracing::warn!(seq = lease.seq(), error = %e, "bad reply dropped");
                continue;
            }
        };
        if env.session != sh.session {
            continue; // a reply to an earlier client of this channel
        }
        // Routed under the lock: a caller that times out removes its entry
        // under the same lock, so a reply is either routed before (and
        // dropped with the caller's receiver) or not at all.
        let mut p = sh.pending();
        if let Some(tx) = p.calls.remove(&env.id) {
            let _ = tx.try_send((env, lease));
        }
        // else: a late reply to a call that timed out; released here.
    }
    sh.set_gone("the client was closed".into());
}

impl Client {
    /// Number of calls waiting for a reply (for tests and monitoring).
    pub fn pending(&self) -> usize {
        self.shared.pending().calls.len()
    }
}

// `call` is meant to be shared between threads.
const _: fn() = || {
    fn is<T: Send + Sync>() {}
    is::<Client>();
};
