//! The ring of slots on top of a [`Region`]: one [`Producer`], any number of
//! broadcast [`Consumer`]s and work-queue groups (LAYOUT.md §4–§6).
//!
//! ```
//! use alloy_shm::ring::{Ring, RingConfig};
//!
//! let ring = Ring::anonymous_builder().config(RingConfig { slot_count: 8, slot_size: 4096, ..Default::default() }).create()?;
//! let mut consumer = ring.subscribe()?;
//! let mut producer = ring.producer()?;
//! producer.send(b"hello", 0)?;
//! producer.close();
//! let lease = consumer.recv()?.expect("one message");
//! assert_eq!(&*lease, b"hello");
//! drop(lease); // releases the slot
//! assert!(consumer.recv()?.is_none()); // end of stream
//! # Ok::<(), alloy_shm::ring::RingError>(())
//! ```

mod builder;
mod consumer;
mod counters;
pub(crate) mod error;
// The damaged-ring exerciser of the fuzz target `damaged_ring`: it needs
// crate internals (raw header words), so it stays here, hidden and only
// compiled for the crate's tests and the non-default `fuzzing` feature.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod liveness;
mod producer;
pub(crate) mod proto;
pub(crate) mod redeliver;
mod seqlock;
// Public (hidden) for `benches/slot_copy.rs`, which measures its routines.
#[doc(hidden)]
pub mod slot_copy;
use seqlock::SeqRead;
pub mod stat;
mod table;
mod watch;

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::Backoff;
use thiserror::Error;

pub use crate::layout::RingConfig;
use crate::layout::{kind, off, state, Layout};
#[cfg(test)]
use crate::region::Stamp;
use crate::region::{NamedOptions, Region, RegionError};
pub use crate::signal::WaitStrategy;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
pub use builder::{ConsumerBuilder, ProducerBuilder, RingBuilder};
pub use consumer::{Consumer, Lease, DEFAULT_HELD_LEASE_TIMEOUT};
pub use error::{AttachError, OpenError, RecvError, SendError};
/// Peer-liveness timing (LAYOUT.md §11): how often heartbeats are written,
/// when a heartbeat counts as stalled, how often a waiting consumer checks its producer.
pub use liveness::{HEARTBEAT_PERIOD, PRODUCER_CHECK, STALE_AFTER};
pub use producer::{Backpressure, Producer, Reservation};
pub use stat::{ConsumerStat, MemberStat, RingListing, RingStat, RingView};
pub use watch::Receivers;

/// Errors of the ring protocol.
#[derive(Debug, Error)]
pub enum RingError {
    /// Creating or opening the region failed.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// Another producer is attached (one producer per ring).
    #[error("ring already has a producer (pid {pid})")]
    ProducerExists {
        /// Pid recorded in the header.
        pid: u32,
    },
    /// The slowest subscriber is a whole ring behind (back-pressure `Fail`).
    #[error("ring is full: the slowest consumer is {slots} slots behind")]
    Full {
        /// Number of slots in the ring.
        slots: u32,
    },
    /// `try_recv` found no message ready (the stream is still open).
    #[error("no message ready")]
    Empty,
    /// A blocking call waited longer than its timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The producer's interrupt check ([`Producer::set_interrupt`]) ended a
    /// wait for space; the text is the check's.
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// A message does not fit in one slot (messages never span slots).
    #[error("message of {len} bytes exceeds the slot size of {max} bytes")]
    MessageTooLarge {
        /// Requested length.
        len: usize,
        /// Slot payload capacity.
        max: usize,
    },
    /// No free subscriber or member entry.
    #[error("the ring's {table} table is full ({max} entries)")]
    TableFull {
        /// `"subscriber"` or `"member"`.
        table: &'static str,
        /// Table size.
        max: u32,
    },
    /// A slot's header contradicts the protocol: the memory was damaged.
    #[error("corrupt slot {slot} for sequence {seq}: stamp {stamp}, len {len}")]
    Corrupt {
        /// Sequence number being read.
        seq: u64,
        /// Slot index.
        slot: usize,
        /// Stamp found (expected `seq + 1`).
        stamp: u64,
        /// Length found.
        len: u32,
    },
    /// The schema does not fit in the schema area.
    #[error("schema of {len} bytes exceeds the schema capacity of {max} bytes")]
    SchemaTooLarge {
        /// Schema length.
        len: usize,
        /// Capacity.
        max: usize,
    },
    /// The schema area holds an impossible length.
    #[error("corrupt schema area: length {len} exceeds capacity {max}")]
    CorruptSchema {
        /// Length found.
        len: u32,
        /// Capacity.
        max: u32,
    },
    /// The producer died without closing the stream (LAYOUT.md §11.2).
    /// Everything it published was delivered; a new producer may take over.
    #[error("the producer (pid {pid}) died without closing the stream")]
    ProducerGone {
        /// Pid of the dead producer.
        pid: u32,
    },
    /// The producer already closed the stream.
    #[error("the stream is closed")]
    Closed,
    /// The ring's stream has ended (LAYOUT.md §4.1): a producer attaching
    /// without [`ProducerBuilder::new_stream`], or a consumer that joined
    /// after the end and has nothing to read until a new stream starts.
    #[error(
        "the stream on ring {ring} ended at sequence {seq}: a producer must start a new stream \
         on it (ProducerBuilder::new_stream; Go: ProducerOptions.NewStream), or remove the ring"
    )]
    StreamEnded {
        /// The ring's name (`(anonymous)` for a memfd ring).
        ring: String,
        /// `published` when the stream ended: its last message was `seq - 1`.
        seq: u64,
    },
    /// A producer built with `require_consumers` found no subscriber
    /// attached: nothing was published (LAYOUT.md §4.2).
    #[error(
        "no consumer is attached to ring {ring}: message {seq} was not published \
         (wait_for_consumers first, or build the producer without require_consumers)"
    )]
    NoConsumers {
        /// The ring's name.
        ring: String,
        /// Sequence the message would have had.
        seq: u64,
    },
    /// A consumer process died and was detached from the ring since the
    /// last send (producers built with `report_lost_consumers`). The
    /// message was not published; send it again to go on.
    #[error(
        "{lost} consumer(s) of the ring died and were detached (last: pid {pid}); \
         {remaining} subscriber(s) remain; the message was not published"
    )]
    ConsumerLost {
        /// Pid of the last consumer process found dead.
        pid: u32,
        /// How many consumer members were detached since the last report.
        lost: u64,
        /// Subscribers (broadcast consumers plus queue groups) still attached.
        remaining: u32,
    },
    /// [`Producer::wait_for_consumers`] timed out.
    #[error("{attached} of the {wanted} consumers awaited attached within {waited:?}")]
    TooFewConsumers {
        /// Subscribers awaited.
        wanted: u32,
        /// Subscribers attached when the wait ended.
        attached: u32,
        /// The timeout.
        waited: Duration,
    },
    /// The ring has been full behind a message this consumer still holds
    /// for longer than its held-lease timeout: the producer cannot publish
    /// until the consumer drops it (doc/README.md "Holding batches"). The
    /// consumer stays usable; receiving again waits again.
    #[error(
        "the ring is full behind sequence {seq}, whose message this consumer still holds \
         ({held} leases held): the producer cannot publish until it is released; drop the \
         batches you are done with, or copy the ones you keep (IpcReader::with_copy, \
         arrow::copy_batch)"
    )]
    RetentionStall {
        /// The oldest unreleased sequence, held by this consumer.
        seq: u64,
        /// How many leases this consumer handle holds.
        held: usize,
    },
    /// An existing ring's geometry differs from what the builder asked for.
    #[error("the ring's {field} is {actual}, not the requested {requested}")]
    ConfigMismatch {
        /// The [`RingConfig`] field that differs.
        field: &'static str,
        /// Value asked for.
        requested: u32,
        /// Value of the existing ring.
        actual: u32,
    },
    /// Invalid argument (e.g. queue group 0).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// System error creating an eventfd or thread.
    #[error("{what}: {source}")]
    Io {
        /// Operation.
        what: &'static str,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Identity of this process as written into the tables; tests inject
/// fixed values to reproduce the shared vectors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ident {
    pub pid: u32,
    /// Low 32 bits of the process's start time (LAYOUT.md §11.1).
    pub start: u32,
    /// Fixed monotonic clock value, or `None` for the real clock.
    pub fixed_ns: Option<u64>,
}

impl Ident {
    fn real() -> Ident {
        Ident {
            pid: std::process::id(),
            start: liveness::own_start(),
            fixed_ns: None,
        }
    }

    /// This process's identity word (LAYOUT.md §11.1).
    pub(crate) fn word(&self) -> u64 {
        liveness::identity(self.pid, self.start)
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.fixed_ns.unwrap_or_else(monotonic_ns)
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds (comparable across processes).
pub fn monotonic_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The mapped region plus the typed accessors of its words.
pub(crate) struct Shared {
    pub region: Region,
    pub layout: Layout,
    pub ident: Ident,
}

impl proto::Words for Shared {
    fn slot_count(&self) -> u64 {
        self.layout.config.slot_count as u64
    }
    fn subscribers(&self) -> usize {
        self.layout.config.max_subscribers as usize
    }
    fn published(&self) -> &AtomicU64 {
        self.region.u64_at(off::PUBLISHED)
    }
    fn closed(&self) -> &AtomicU32 {
        self.region.u32_at(off::CLOSED)
    }
    fn table_epoch(&self) -> &AtomicU64 {
        self.region.u64_at(off::TABLE_EPOCH)
    }
    fn sub_state(&self, k: usize) -> &AtomicU32 {
        self.region.u32_at(self.layout.sub(k) + off::SUB_STATE)
    }
    fn sub_claim(&self, k: usize) -> &AtomicU64 {
        self.region.u64_at(self.layout.sub(k) + off::SUB_CLAIM)
    }
    fn sub_release(&self, k: usize) -> &AtomicU64 {
        self.region.u64_at(self.layout.sub(k) + off::SUB_RELEASE)
    }
    fn done(&self, k: usize, i: usize) -> &AtomicU64 {
        self.region.u64_at(self.layout.done(k, i))
    }
    fn stamp(&self, i: usize) -> &AtomicU64 {
        self.region.u64_at(self.layout.slot(i) + off::SLOT_STAMP)
    }
    fn slot_len(&self, i: usize) -> &AtomicU32 {
        self.region.u32_at(self.layout.slot(i) + off::SLOT_LEN)
    }
    fn slot_flags(&self, i: usize) -> &AtomicU32 {
        self.region.u32_at(self.layout.slot(i) + off::SLOT_FLAGS)
    }
}

impl redeliver::QueueWords for Shared {
    fn sub_redeliver(&self, k: usize) -> &AtomicU64 {
        self.region.u64_at(self.layout.sub(k) + off::SUB_REDELIVER)
    }
}

impl Shared {
    pub(crate) fn hdr32(&self, at: usize) -> &AtomicU32 {
        self.region.u32_at(at)
    }

    pub(crate) fn hdr64(&self, at: usize) -> &AtomicU64 {
        self.region.u64_at(at)
    }

    /// The schema area as words (LAYOUT.md §9; its capacity is a multiple
    /// of 64 bytes).
    pub(crate) fn schema_words(&self) -> &[AtomicU64] {
        let cap = self.layout.config.schema_capacity as usize;
        self.region.u64s_at(self.layout.schema_off, cap / 8)
    }

    /// Wakes a producer parked for space, if any (LAYOUT.md §5.2 step 3).
    /// Returns whether it issued a wake-up (a producer was waiting).
    pub(crate) fn wake_space(&self) -> bool {
        // SeqCst: pairs with the producer's increment of `space_waiters`
        // before its final gate rescan (LAYOUT.md §6.2).
        if self.hdr32(off::SPACE_WAITERS).load(Ordering::SeqCst) != 0 {
            let f = self.hdr32(off::SPACE_FUTEX);
            f.fetch_add(1, Ordering::SeqCst);
            crate::signal::futex_wake_all(f);
            return true;
        }
        false
    }

    /// Wakes every parked consumer (after close).
    pub(crate) fn wake_data_always(&self) {
        let f = self.hdr32(off::DATA_FUTEX);
        f.fetch_add(1, Ordering::SeqCst);
        crate::signal::futex_wake_all(f);
    }
}

/// What a consumer is: the `kind` and `group` of its subscriber entry
/// (LAYOUT.md §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumerKind {
    /// A broadcast consumer: sees every message published after it joined.
    Broadcast,
    /// A member of work-queue group `n` (≥ 1): each message goes to exactly
    /// one member of the group.
    Queue(u32),
}

impl ConsumerKind {
    /// The subscriber entry's `kind` word.
    pub(crate) fn word(self) -> u32 {
        match self {
            ConsumerKind::Broadcast => kind::BROADCAST,
            ConsumerKind::Queue(_) => kind::QUEUE,
        }
    }

    /// The subscriber entry's `group` word (0 for broadcast).
    pub(crate) fn group(self) -> u32 {
        match self {
            ConsumerKind::Broadcast => 0,
            ConsumerKind::Queue(g) => g,
        }
    }
}

/// A mapped ring: the entry point to create producers and consumers.
/// Cheap to clone; every handle keeps the mapping alive.
#[derive(Clone)]
pub struct Ring {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("name", &self.shared.region.name())
            .field("config", &self.shared.layout.config)
            .finish()
    }
}

impl Ring {
    fn wrap(region: Region, ident: Ident) -> Ring {
        let layout = *region.layout();
        Ring {
            shared: Arc::new(Shared {
                region,
                layout,
                ident,
            }),
        }
    }

    /// Creates the named ring `<dir>/<name>` (fails if it exists); what
    /// [`RingBuilder::create`] runs.
    pub(crate) fn create_opts(
        name: &str,
        config: &RingConfig,
        opts: &NamedOptions,
    ) -> Result<Ring, OpenError> {
        let ring = Self::wrap(
            Region::create_named_opts(name, config, opts)?,
            Ident::real(),
        );
        tracing::info!(
            name,
            slots = config.slot_count,
            slot_size = config.slot_size,
            "ring created"
        );
        Ok(ring)
    }

    /// Opens the existing named ring `<shm_dir>/<name>`; the directory is
    /// `/dev/shm` or `$ALLOY_SHM_DIR` ([`crate::region::shm_dir`]). A
    /// shortcut for [`Ring::builder`]`(name).open()`, which also takes a
    /// directory, an owner check and the geometry to expect.
    pub fn open(name: &str) -> Result<Ring, OpenError> {
        Self::open_opts(name, &NamedOptions::default())
    }

    /// Opens the existing named ring with directory and owner options; what
    /// [`RingBuilder::open`] runs.
    pub(crate) fn open_opts(name: &str, opts: &NamedOptions) -> Result<Ring, OpenError> {
        let ring = Self::wrap(Region::open_named_opts(name, opts)?, Ident::real());
        tracing::debug!(name, "ring opened");
        Ok(ring)
    }

    /// Creates an anonymous ring in a sealed memfd; what
    /// [`RingBuilder::create`] runs for [`Ring::anonymous_builder`].
    pub(crate) fn create_anonymous(config: &RingConfig) -> Result<Ring, OpenError> {
        let ring = Self::wrap(Region::create_anonymous("ring", config)?, Ident::real());
        tracing::debug!(
            slots = config.slot_count,
            slot_size = config.slot_size,
            "anonymous ring created"
        );
        Ok(ring)
    }

    /// Opens a ring from a descriptor inherited from or sent by its creator.
    pub fn open_fd(fd: OwnedFd) -> Result<Ring, OpenError> {
        Ok(Self::wrap(Region::from_fd(fd)?, Ident::real()))
    }

    /// Removes the named ring from [`crate::region::shm_dir`] (mapped
    /// handles keep working).
    pub fn remove(name: &str) -> Result<(), RingError> {
        Ok(Region::remove_named(name)?)
    }

    /// Removes the named ring from `dir`.
    pub fn remove_in(dir: &std::path::Path, name: &str) -> Result<(), RingError> {
        Ok(Region::remove_named_in(dir, name)?)
    }

    /// A ring with fixed pid/clock values, for reproducing the test vectors.
    #[cfg(test)]
    pub(crate) fn create_anonymous_fixed(
        config: &RingConfig,
        creator: Stamp,
        ident: Ident,
    ) -> Result<Ring, RingError> {
        Ok(Self::wrap(
            Region::create_anonymous_stamped("vectors", config, creator)?,
            ident,
        ))
    }

    #[cfg(test)]
    pub(crate) fn with_ident(&self, ident: Ident) -> Ring {
        let region = Region::from_fd(
            self.shared
                .region
                .fd()
                .try_clone_to_owned()
                .expect("dup fd"),
        )
        .expect("reopen");
        Self::wrap(region, ident)
    }

    /// The underlying region (its layout, fd and name).
    pub fn region(&self) -> &Region {
        &self.shared.region
    }

    /// The ring's configuration.
    pub fn config(&self) -> RingConfig {
        self.shared.layout.config
    }

    /// Number of messages published so far.
    pub fn published(&self) -> u64 {
        self.shared.hdr64(off::PUBLISHED).load(Ordering::Acquire)
    }

    /// Pid of the attached producer (0: none). A dead producer's pid stays
    /// until a new producer takes over (LAYOUT.md §11.2).
    pub fn producer_pid(&self) -> u32 {
        self.shared.hdr32(off::PRODUCER_PID).load(Ordering::SeqCst)
    }

    /// Whether a producer is attached and its process is alive (LAYOUT.md
    /// §11.1: pid plus start time, so a reused pid is not taken for it).
    pub fn producer_alive(&self) -> bool {
        let word = self.shared.hdr64(off::PRODUCER_PID).load(Ordering::SeqCst);
        liveness::identity_pid(word) != 0 && !liveness::identity_dead(word)
    }

    /// Whether the producer has closed the stream.
    pub fn is_closed(&self) -> bool {
        self.shared.hdr32(off::CLOSED).load(Ordering::Acquire) == 1
    }

    /// Attaches the ring's single producer with default options (blocking
    /// back-pressure without timeout, spin-then-park waiting): a shortcut
    /// for [`Ring::producer_builder`]`().create()`.
    pub fn producer(&self) -> Result<Producer, AttachError> {
        self.producer_builder().create()
    }

    pub(crate) fn producer_opts(
        &self,
        backpressure: Backpressure,
        wait: WaitStrategy,
        opts: producer::AttachOptions,
    ) -> Result<Producer, AttachError> {
        Producer::attach(self.shared.clone(), backpressure, wait, opts)
    }

    /// Generation of the ring's current stream: 0 for its first, one more
    /// for every stream a producer started with
    /// [`ProducerBuilder::new_stream`] (LAYOUT.md §4.1).
    pub fn stream_gen(&self) -> u32 {
        self.shared.hdr32(off::STREAM_GEN).load(Ordering::SeqCst)
    }

    /// Sequence number of the current stream's first message.
    pub fn stream_start(&self) -> u64 {
        self.shared.hdr64(off::STREAM_START).load(Ordering::SeqCst)
    }

    /// Consumer processes found dead and detached from the ring since it
    /// was created (LAYOUT.md §11.3).
    pub fn consumers_lost(&self) -> u64 {
        self.shared.hdr64(off::LOST_COUNT).load(Ordering::SeqCst)
    }

    /// Joins as a new broadcast consumer, starting at the current head: it
    /// will see every message published from now on. A shortcut for
    /// [`Ring::consumer_builder`]`().create()`.
    pub fn subscribe(&self) -> Result<Consumer, AttachError> {
        self.consumer_builder().create()
    }

    /// Joins (or creates) work-queue group `group` (≥ 1): each message goes
    /// to exactly one member of the group. A shortcut for
    /// [`Ring::consumer_builder`]`().queue(group).create()`.
    pub fn join_queue(&self, group: u32) -> Result<Consumer, AttachError> {
        self.consumer_builder().queue(group).create()
    }

    /// Reads the schema the producer published (LAYOUT.md §9); `None` if
    /// none has been set yet.
    pub fn schema(&self) -> Result<Option<Vec<u8>>, RingError> {
        let sh = &self.shared;
        let backoff = Backoff::new();
        let started = std::time::Instant::now();
        loop {
            match seqlock::try_read(
                sh.hdr32(off::SCHEMA_SEQ),
                sh.hdr32(off::SCHEMA_LEN),
                sh.schema_words(),
            ) {
                SeqRead::Empty => return Ok(None),
                // Length 0: cleared by a new stream that has not set its
                // schema yet (LAYOUT.md §4.1, §9).
                SeqRead::Got(bytes) if bytes.is_empty() => return Ok(None),
                SeqRead::Got(bytes) => return Ok(Some(bytes)),
                SeqRead::Corrupt(len) => {
                    return Err(RingError::CorruptSchema {
                        len,
                        max: sh.layout.config.schema_capacity,
                    })
                }
                SeqRead::Busy => {
                    // Odd for a whole second: the writer died mid-write (§9).
                    if started.elapsed() >= Duration::from_secs(1) {
                        return Err(RingError::Timeout(Duration::from_secs(1)));
                    }
                    backoff.snooze();
                }
            }
        }
    }

    /// Occupancy of every subscriber entry (tests; tools read
    /// [`Ring::stat`]).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn subscribers(&self) -> Vec<SubscriberInfo> {
        let sh = &self.shared;
        (0..sh.layout.config.max_subscribers as usize)
            .filter_map(|k| {
                let e = sh.subscriber(k);
                let st = e.state().load(Ordering::Acquire);
                (st != state::FREE).then(|| SubscriberInfo {
                    index: k,
                    kind: e.kind().load(Ordering::Relaxed),
                    group: e.group().load(Ordering::Relaxed),
                    members: e.members().load(Ordering::Relaxed),
                    claim: e.claim().load(Ordering::Relaxed),
                    release: e.release().load(Ordering::Relaxed),
                })
            })
            .collect()
    }
}

/// A snapshot of one subscriber entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubscriberInfo {
    /// Entry index.
    pub index: usize,
    /// 1 broadcast, 2 queue.
    pub kind: u32,
    /// Queue group id (0 for broadcast).
    pub group: u32,
    /// Attached members.
    pub members: u32,
    /// Next sequence to hand out.
    pub claim: u64,
    /// Every sequence below this is released.
    pub release: u64,
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;
