//! Broadcast consumers and work-queue members: claim → read in place →
//! release on drop (LAYOUT.md §5), spin-then-park waiting (§6.1) and the
//! eventfd bridge (§6.3).

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::Backoff;

use super::liveness::{self, Heartbeat};
use super::proto::{self, Claim, Words};
use super::redeliver::{self, QueueClaim};
use super::{counters, table, AttachError, ConsumerKind, RecvError, RingError, Shared};
use crate::layout::{done, off};
use crate::signal::{futex_wait, EventFd, WaitStrategy};
use crate::sync::Ordering;

/// How long a busy (`WaitStrategy::Spin`) consumer polls an empty ring
/// before yielding its core once.
const SPIN_YIELD_AFTER: Duration = Duration::from_micros(20);

/// One attachment to a subscriber entry; detaches when the consumer handle
/// and all its leases are gone.
struct Member {
    shared: Arc<Shared>,
    sub: usize,
    member: usize,
    heartbeat: Option<Heartbeat>,
    /// Leases of this handle not dropped yet.
    held: AtomicUsize,
}

impl Drop for Member {
    fn drop(&mut self) {
        // Stop heartbeats before the entries can be reused.
        self.heartbeat.take();
        table::leave(&self.shared, self.sub, self.member);
        tracing::debug!(sub = self.sub, member = self.member, "consumer detached");
    }
}

/// A reader of the ring: a broadcast consumer (sees every message) or a
/// member of a work-queue group (sees its share).
pub struct Consumer {
    member: Arc<Member>,
    kind: ConsumerKind,
    wait: WaitStrategy,
    notifier: Option<Notifier>,
    /// When this queue member last looked for dead members of its group.
    group_checked: Option<Instant>,
    /// How long a stall by this handle's own leases lasts before a receive
    /// fails with [`RecvError::RetentionStall`]; `None`: wait for ever.
    held_lease_timeout: Option<Duration>,
    /// The sequence the ring was found stalled behind by our own lease, and
    /// since when.
    stalled_since: Option<(u64, Instant)>,
    /// Generation of the stream this consumer reads (LAYOUT.md §4.1).
    gen: u32,
    /// Whether the end of stream `gen` was reported already.
    end_reported: bool,
    /// `published` when this consumer joined a stream that had already
    /// ended (it then gets [`RecvError::StreamEnded`], not a silent end).
    joined_ended: Option<u64>,
    /// The first message of the next stream, claimed when the end of ours
    /// was found; handed out by the next receive.
    pending: Option<Lease>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("subscriber", &self.member.sub)
            .field("member", &self.member.member)
            .field("kind", &self.kind)
            .finish()
    }
}

impl Consumer {
    pub(super) fn join(
        shared: Arc<Shared>,
        kind: ConsumerKind,
        wait: WaitStrategy,
        history: u32,
    ) -> Result<Consumer, AttachError> {
        let sh = &*shared;
        // Payloads are read through a read-only mapping, so a consumer
        // bug cannot scribble over a slot (LAYOUT.md §1).
        sh.region.map_read_only()?;
        let table::Joined {
            sub,
            member,
            gen,
            joined_ended,
        } = table::join(sh, kind, history)?;
        // The producer may have parked after seeing the JOINING entry, or
        // be waiting for consumers.
        sh.wake_space();
        tracing::debug!(
            sub,
            member,
            kind = kind.word(),
            group = kind.group(),
            "consumer joined"
        );
        let heartbeat = Heartbeat::start(
            shared.clone(),
            vec![
                sh.member(member).heartbeat_at(),
                sh.subscriber(sub).heartbeat_at(),
            ],
        );
        Ok(Consumer {
            member: Arc::new(Member {
                shared,
                sub,
                member,
                heartbeat: Some(heartbeat),
                held: AtomicUsize::new(0),
            }),
            kind,
            wait,
            notifier: None,
            group_checked: None,
            held_lease_timeout: Some(DEFAULT_HELD_LEASE_TIMEOUT),
            stalled_since: None,
            gen,
            end_reported: joined_ended.is_some(),
            joined_ended,
            pending: None,
        })
    }

    /// The ring this consumer joined (readers are built from a consumer
    /// alone, so the two cannot be mismatched).
    pub(crate) fn ring(&self) -> super::Ring {
        super::Ring {
            shared: self.member.shared.clone(),
        }
    }

    /// Broadcast consumer or work-queue member (and of which group).
    pub fn kind(&self) -> ConsumerKind {
        self.kind
    }

    fn is_broadcast(&self) -> bool {
        self.kind == ConsumerKind::Broadcast
    }

    /// Generation of the stream this consumer is reading (LAYOUT.md §4.1).
    pub fn stream_gen(&self) -> u32 {
        self.gen
    }

    /// Sets how [`Consumer::recv`] waits (default: spin, then park).
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.wait = wait;
    }

    /// How long the ring may stay stalled by this consumer's own leases
    /// before a receive fails with [`RecvError::RetentionStall`] (default
    /// [`DEFAULT_HELD_LEASE_TIMEOUT`]); `None` waits for ever. See
    /// [`ConsumerBuilder::held_lease_timeout`](super::ConsumerBuilder::held_lease_timeout).
    pub fn set_held_lease_timeout(&mut self, timeout: Option<Duration>) {
        self.held_lease_timeout = timeout;
        self.stalled_since = None;
    }

    /// Number of leases of this consumer not dropped yet (messages it
    /// holds; a batch read in place holds one).
    pub fn leases_held(&self) -> usize {
        self.member.held.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Index of this consumer's subscriber entry.
    pub fn subscriber_index(&self) -> usize {
        self.member.sub
    }

    /// Takes the next message if one is ready: `Ok(Some)` a message,
    /// `Ok(None)` end-of-stream; [`RecvError::Empty`] when nothing is there
    /// yet (Go: `ErrEmpty`).
    pub fn try_recv(&mut self) -> Result<Option<Lease>, RecvError> {
        match self.poll()? {
            Polled::Msg(l) => Ok(Some(l)),
            Polled::Ended => Ok(None),
            Polled::Empty => Err(RecvError::Empty),
        }
    }

    /// Waits for the next message; `Ok(None)` once the producer closed the
    /// stream and every message has been received.
    pub fn recv(&mut self) -> Result<Option<Lease>, RecvError> {
        self.recv_deadline(None)
    }

    /// Like [`Consumer::recv`], failing with [`RecvError::Timeout`] after
    /// `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Lease>, RecvError> {
        self.recv_deadline(Some((Instant::now(), timeout)))
    }

    fn recv_deadline(
        &mut self,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<Option<Lease>, RecvError> {
        let backoff = Backoff::new();
        let mut spins = 0u32;
        // Clock read only once the ring turned out empty: a recv that finds
        // a message at once costs no clock call.
        let mut checked: Option<Instant> = None;
        let mut last_yield: Option<Instant> = None;
        loop {
            match self.poll()? {
                Polled::Msg(l) => return Ok(Some(l)),
                Polled::Ended => return Ok(None),
                Polled::Empty => {}
            }
            let spinning = self.wait == WaitStrategy::Spin && deadline.is_none();
            let since = *checked.get_or_insert_with(Instant::now);
            if (!spinning || spins % 64 == 0) && since.elapsed() >= liveness::PRODUCER_CHECK {
                checked = Some(Instant::now());
                if self.check_peers()? {
                    continue;
                }
            }
            if spinning {
                // Busy mode: stay on the core with no system call while
                // messages keep coming; once SPIN_YIELD_AFTER passes with
                // none, yield (and again every SPIN_YIELD_AFTER), so a
                // producer sharing this core on an oversubscribed machine
                // runs within microseconds, not after thousands of polls.
                spins = spins.wrapping_add(1);
                if spins % 64 == 0 {
                    let now = Instant::now();
                    if now.duration_since(*last_yield.get_or_insert(now)) >= SPIN_YIELD_AFTER {
                        std::thread::yield_now();
                        last_yield = Some(Instant::now());
                    }
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            let remaining = match deadline {
                Some((start, t)) => match t.checked_sub(start.elapsed()) {
                    Some(r) if !r.is_zero() => r,
                    _ => return Err(RecvError::Timeout(t)),
                },
                None => Duration::MAX,
            };
            spins = spins.wrapping_add(1);
            if self.wait == WaitStrategy::Spin || !backoff.is_completed() {
                backoff.snooze();
            } else {
                self.park(remaining.min(liveness::PRODUCER_CHECK));
            }
        }
    }

    /// LAYOUT.md §11.2: called while the ring is empty for us.
    pub(crate) fn check_producer(&self) -> Result<(), RecvError> {
        let sh = &*self.member.shared;
        // The identity word (§11.1): pid and start time, read together.
        let who = sh.hdr64(off::PRODUCER_PID).load(Ordering::SeqCst);
        let pid = liveness::identity_pid(who);
        if pid == 0 || sh.closed().load(Ordering::SeqCst) == 1 {
            return Ok(());
        }
        if liveness::identity_dead(who) {
            // Re-check emptiness: everything published before the death is
            // delivered before the error.
            if ready(sh, self.member.sub) {
                return Ok(());
            }
            tracing::warn!(pid, "producer died without closing the stream");
            return Err(RecvError::ProducerGone { pid });
        }
        Ok(())
    }

    /// The checks a consumer that finds nothing makes every
    /// [`liveness::PRODUCER_CHECK`], blocking or async: the producer's
    /// liveness (an error once everything it published was received), and
    /// for a queue member its group's dead members (§11.3). Returns whether
    /// messages of a dead member now wait for redelivery.
    pub(crate) fn check_peers(&mut self) -> Result<bool, RecvError> {
        self.check_producer()?;
        let redelivery = self.check_group(false);
        if !redelivery {
            self.check_retention()?;
        }
        Ok(redelivery)
    }

    /// The retention rule (doc/README.md "Holding batches"): called while
    /// the ring is empty for us. When the producer is gated by our
    /// subscriber at `release` and the sequence there is held by a lease of
    /// this very handle, only this process can unblock the stream; once
    /// that has lasted `held_lease_timeout`, the receive fails with
    /// [`RecvError::RetentionStall`] instead of waiting for ever. The
    /// consumer stays usable: the next receive waits again.
    fn check_retention(&mut self) -> Result<(), RecvError> {
        let Some(timeout) = self.held_lease_timeout else {
            return Ok(());
        };
        let Some(seq) = self.stalled_by_own_lease() else {
            self.stalled_since = None;
            return Ok(());
        };
        // A different sequence: the holder released the old one, so the
        // stream is moving (a slow pipeline), and the clock starts again.
        let since = match self.stalled_since {
            Some((s, t)) if s == seq => t,
            _ => self.stalled_since.insert((seq, Instant::now())).1,
        };
        if since.elapsed() < timeout {
            return Ok(());
        }
        self.stalled_since = None;
        let held = self.leases_held();
        tracing::warn!(seq, held, "ring stalled by the consumer's own leases");
        Err(RecvError::RetentionStall { seq, held })
    }

    /// The oldest unreleased sequence of our subscriber, if the producer
    /// cannot publish until it is released and this handle holds it.
    fn stalled_by_own_lease(&self) -> Option<u64> {
        if self.leases_held() == 0 {
            return None;
        }
        let m = &self.member;
        let sh = &*m.shared;
        let n = u64::from(sh.layout.config.slot_count);
        let r = sh.sub_release(m.sub).load(Ordering::SeqCst);
        let p = sh.published().load(Ordering::SeqCst);
        if sh.closed().load(Ordering::SeqCst) == 1 || p.saturating_sub(r) < n {
            return None;
        }
        let w = sh.done(m.sub, (r % n) as usize).load(Ordering::SeqCst);
        // A broadcast subscriber has one member, so an unreleased `r` below
        // our claim is ours; a queue member checks the holder marker.
        let ours = if self.is_broadcast() {
            w != r + 1
        } else {
            w == done::held(m.member as u32, r)
        };
        ours.then_some(r)
    }

    /// LAYOUT.md §11.3, by a surviving queue member: while it finds nothing
    /// to claim (at most every [`GROUP_CHECK`], or always when `at_end`)
    /// and its group has claimed, unreleased sequences, it redelivers those
    /// of dead members — the producer only reclaims when the ring is full,
    /// which it may never be again. Returns whether anything now waits for
    /// redelivery.
    fn check_group(&mut self, at_end: bool) -> bool {
        if self.is_broadcast() {
            return false;
        }
        let m = &self.member;
        let sh = &*m.shared;
        if sh.sub_release(m.sub).load(Ordering::SeqCst)
            >= sh.sub_claim(m.sub).load(Ordering::SeqCst)
        {
            return false;
        }
        let now = Instant::now();
        if !at_end && self.group_checked.is_some_and(|t| now - t < GROUP_CHECK) {
            return false;
        }
        self.group_checked = Some(now);
        // After the lock (taken by the reclaim) no reclaimer is half-way,
        // so the scan is authoritative: it also catches a REDELIVER made
        // just after our claim attempt found none.
        table::reclaim_dead_members(sh, m.sub) > 0 || redeliver::has_redelivery(sh, m.sub)
    }

    /// LAYOUT.md §6.1 steps 2–4.
    fn park(&self, remaining: Duration) {
        let sh = &*self.member.shared;
        let waiters = sh.hdr32(off::DATA_WAITERS);
        let futex = sh.hdr32(off::DATA_FUTEX);
        // SeqCst: pairs with the producer's SeqCst store of `published`
        // followed by its SeqCst load of `data_waiters`.
        waiters.fetch_add(1, Ordering::SeqCst);
        let seen = futex.load(Ordering::SeqCst);
        if !self.ready() {
            let t = Instant::now();
            futex_wait(futex, seen, remaining);
            // A park is the slow path by definition (LAYOUT.md §2.1).
            let j = self.member.member;
            counters::bump_member(sh, j, off::MEM_PARKS, 1);
            counters::bump_member(sh, j, off::MEM_PARK_NS, t.elapsed().as_nanos() as u64);
        }
        waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether a claim would not return Empty (data or end-of-stream).
    fn ready(&self) -> bool {
        ready(&self.member.shared, self.member.sub)
    }

    /// One claim: broadcast (§5.1), or a queue member's, redeliveries
    /// first (§11.3). Returns the sequence and its redelivered flag.
    fn claim(&self) -> Result<(u64, bool), Polled> {
        let m = &self.member;
        let sh = &*m.shared;
        if self.is_broadcast() {
            // Touch the stamp line of the sequence we wait for before the
            // `published` load of `try_claim`: the two cache misses a new
            // message causes (header line, slot header line) then overlap
            // instead of following each other. The value is not used (the
            // protocol's Acquire stamp load in `check_slot` comes after
            // `published`), so this changes no ordering, only timing.
            proto::touch_next_stamp(sh, m.sub);
            return match proto::try_claim(sh, m.sub, true) {
                Claim::Empty => Err(Polled::Empty),
                Claim::Ended => Err(Polled::Ended),
                Claim::Got(seq) => Ok((seq, false)),
            };
        }
        match redeliver::try_claim(sh, m.sub, m.member as u32) {
            QueueClaim::Empty => Err(Polled::Empty),
            QueueClaim::Ended => Err(Polled::Ended),
            QueueClaim::Got { seq, redelivered } => Ok((seq, redelivered)),
        }
    }

    /// One receive attempt with the stream generations of LAYOUT.md §4.1:
    /// a message of a newer stream ends ours first (reported once, the
    /// message is kept for the next call); messages of an older stream
    /// (published while we joined) are skipped; a consumer that joined an
    /// ended stream gets [`RecvError::StreamEnded`].
    fn poll(&mut self) -> Result<Polled, RecvError> {
        if let Some(l) = self.pending.take() {
            return Ok(Polled::Msg(l));
        }
        loop {
            match self.poll_ring()? {
                Polled::Msg(l) if l.gen == self.gen => {
                    self.end_reported = false;
                    self.joined_ended = None;
                    return Ok(Polled::Msg(l));
                }
                Polled::Msg(l) if (l.gen.wrapping_sub(self.gen) as i32) > 0 => {
                    self.gen = l.gen;
                    self.joined_ended = None;
                    if std::mem::replace(&mut self.end_reported, false) {
                        return Ok(Polled::Msg(l));
                    }
                    self.pending = Some(l);
                    return Ok(Polled::Ended);
                }
                // An older stream's message: not ours (dropped, released).
                Polled::Msg(_) => continue,
                Polled::Ended => return self.at_end(),
                Polled::Empty => {
                    let g = self
                        .member
                        .shared
                        .hdr32(off::STREAM_GEN)
                        .load(Ordering::SeqCst);
                    if g != self.gen {
                        // A new stream started and we have read everything
                        // before it: our stream has ended.
                        self.gen = g;
                        self.joined_ended = None;
                        if !std::mem::replace(&mut self.end_reported, false) {
                            return Ok(Polled::Ended);
                        }
                    }
                    return Ok(Polled::Empty);
                }
            }
        }
    }

    /// The ring reports the end of its current stream and we have read all
    /// of it.
    fn at_end(&mut self) -> Result<Polled, RecvError> {
        let sh = &*self.member.shared;
        let g = sh.hdr32(off::STREAM_GEN).load(Ordering::SeqCst);
        if g == self.gen {
            if let Some(seq) = self.joined_ended {
                return Err(RecvError::StreamEnded {
                    ring: sh.region.name().unwrap_or("(anonymous)").to_string(),
                    seq,
                });
            }
        } else {
            self.gen = g;
            self.joined_ended = None;
        }
        self.end_reported = true;
        Ok(Polled::Ended)
    }

    fn poll_ring(&mut self) -> Result<Polled, RecvError> {
        let (seq, redelivered) = match self.claim() {
            Ok(got) => got,
            // Before reporting the end, make sure no dead member of the
            // group still holds messages nobody would redeliver (§11.3).
            Err(Polled::Ended) if self.check_group(true) => match self.claim() {
                Ok(got) => got,
                Err(p) => return Ok(p),
            },
            Err(p) => return Ok(p),
        };
        let m = &self.member;
        let sh = &*m.shared;
        match proto::check_slot(sh, seq, sh.layout.config.slot_size) {
            Ok((slot, len, flags)) => {
                let off = sh.layout.payload(slot);
                // SAFETY: `off + len` ≤ slot end (len ≤ slot_size was
                // checked) inside the mapping, kept alive by the Arc. The
                // read-only mapping (made in `join`) covers the same bytes.
                let ptr = unsafe { sh.region.read_base().add(off) };
                // Relaxed: ordered after the stamp's Acquire load in
                // `check_slot` (LAYOUT.md §4.1).
                let gen = sh
                    .hdr32(sh.layout.slot(slot) + off::SLOT_GEN)
                    .load(Ordering::Relaxed);
                m.held.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(Polled::Msg(Lease {
                    member: m.clone(),
                    seq,
                    gen,
                    ptr,
                    len: len as usize,
                    flags,
                    queue: !self.is_broadcast(),
                    redelivered,
                }))
            }
            Err(bad) => {
                // Release it so the ring keeps flowing, then report.
                if release(m, !self.is_broadcast(), seq) && sh.wake_space() {
                    counters::bump_member(sh, m.member, off::MEM_SPACE_WAKES, 1);
                }
                Err(RecvError::Corrupt {
                    seq,
                    slot: bad.slot,
                    stamp: bad.stamp,
                    len: bad.len,
                })
            }
        }
    }

    /// An eventfd that becomes readable when a message (or end-of-stream)
    /// may be available, for epoll/tokio: on readiness, drain it, then call
    /// [`Consumer::try_recv`] until it reports nothing, then wait again.
    /// A helper thread in this process parks on the ring's futex and
    /// signals the eventfd (LAYOUT.md §6.3).
    pub fn eventfd(&mut self) -> Result<std::os::fd::BorrowedFd<'_>, RingError> {
        if self.notifier.is_none() {
            self.notifier = Some(Notifier::start(
                self.member.shared.clone(),
                self.member.sub,
            )?);
        }
        use std::os::fd::AsFd;
        Ok(self.notifier.as_ref().expect("just set").efd.as_fd())
    }
}

/// Default of [`Consumer::set_held_lease_timeout`]: how long the ring may
/// stay stalled by a consumer's own leases before its receive fails with
/// [`RecvError::RetentionStall`].
pub const DEFAULT_HELD_LEASE_TIMEOUT: Duration = Duration::from_secs(1);

/// How often a queue member waiting for data looks for dead members of its
/// group holding messages (LAYOUT.md §11.3).
const GROUP_CHECK: Duration = Duration::from_secs(1);

fn ready(sh: &Shared, sub: usize) -> bool {
    let c = sh.sub_claim(sub).load(Ordering::SeqCst);
    // A pending redelivery (queue groups, §11.3) is data too; the word is 0
    // for broadcast subscribers.
    sh.published().load(Ordering::SeqCst) > c
        || sh.closed().load(Ordering::SeqCst) == 1
        || redeliver::has_redelivery(sh, sub)
}

/// Releases `seq` for `m`: the queue form checks that `m` still holds it.
fn release(m: &Member, queue: bool, seq: u64) -> bool {
    if queue {
        redeliver::release(&*m.shared, m.sub, m.member as u32, seq)
    } else {
        proto::release(&*m.shared, m.sub, seq)
    }
}

enum Polled {
    Msg(Lease),
    Empty,
    Ended,
}

/// Signals an eventfd whenever `published` or `closed` changes.
struct Notifier {
    efd: Arc<EventFd>,
    stop: Arc<AtomicBool>,
}

impl Notifier {
    fn start(shared: Arc<Shared>, sub: usize) -> Result<Notifier, RingError> {
        let efd = Arc::new(EventFd::new().map_err(|source| RingError::Io {
            what: "eventfd",
            source,
        })?);
        let stop = Arc::new(AtomicBool::new(false));
        let (e, s) = (efd.clone(), stop.clone());
        std::thread::Builder::new()
            .name("alloy-eventfd".into())
            .spawn(move || notifier_loop(&shared, sub, &e, &s))
            .map_err(|source| RingError::Io {
                what: "spawning the eventfd thread",
                source,
            })?;
        Ok(Notifier { efd, stop })
    }
}

fn notifier_loop(sh: &Shared, sub: usize, efd: &EventFd, stop: &AtomicBool) {
    let waiters = sh.hdr32(off::DATA_WAITERS);
    let futex = sh.hdr32(off::DATA_FUTEX);
    // Whether the end of the stream was announced: once is enough (the
    // consumer then drains to the end). The thread stays: a producer may
    // start a new stream on the ring (LAYOUT.md §4.1), which reopens it.
    let mut told_closed = false;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        // Registered as a waiter, every publish bumps the futex word (§6.1),
        // so each message wakes us once; the slice bounds a lost wake-up.
        waiters.fetch_add(1, Ordering::SeqCst);
        let seen = futex.load(Ordering::SeqCst);
        let closed = sh.closed().load(Ordering::SeqCst) == 1;
        if ready(sh, sub) && !(closed && told_closed) {
            efd.notify();
        }
        told_closed = closed;
        futex_wait(futex, seen, crate::signal::PARK_SLICE);
        waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        // The thread notices within one park slice and exits; it holds its
        // own Arc of the mapping, so nothing dangles meanwhile.
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A message read in place from shared memory. It derefs to the payload
/// bytes (no copy) and releases the slot when dropped. Leases may be
/// dropped in any order and on any thread.
pub struct Lease {
    member: Arc<Member>,
    seq: u64,
    gen: u32,
    ptr: *const u8,
    len: usize,
    flags: u32,
    queue: bool,
    redelivered: bool,
}

// SAFETY: a lease is a read-only view of slot memory that the protocol keeps
// unchanged until the lease is released; releasing is atomic and may happen
// on any thread.
unsafe impl Send for Lease {}
// SAFETY: see `Send`; `&Lease` only hands out `&[u8]`.
unsafe impl Sync for Lease {}

impl Lease {
    /// The message's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Generation of the stream the message belongs to (LAYOUT.md §4.1).
    pub fn stream_gen(&self) -> u32 {
        self.gen
    }

    /// The slot flags the producer published with the message.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// The payload (same as deref).
    pub fn bytes(&self) -> &[u8] {
        self
    }

    /// Whether this message was handed to another member of the work-queue
    /// group before, which died holding it (LAYOUT.md §11.3): it may have
    /// been processed already, so deduplicate if that matters. Always
    /// false for broadcast consumers.
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }
}

impl std::ops::Deref for Lease {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len lies inside the mapping (checked at claim),
        // which the Arc<Member> keeps mapped; the producer does not write the
        // slot before this lease's release (LAYOUT.md §4 gate).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl AsRef<[u8]> for Lease {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("seq", &self.seq)
            .field("len", &self.len)
            .field("flags", &self.flags)
            .field("redelivered", &self.redelivered)
            .finish()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let m = &self.member;
        if release(m, self.queue, self.seq) && m.shared.wake_space() {
            counters::bump_member(&m.shared, m.member, off::MEM_SPACE_WAKES, 1);
        }
        self.member
            .held
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
