//! The single producer of a ring: reserve → write in place → publish
//! (LAYOUT.md §4), with explicit back-pressure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::Backoff;

use super::liveness::{self, Heartbeat};
use super::proto::ProducerCursor;
use super::watch::{self, start_stream, Receivers, Watch};
use super::{counters, seqlock, table, AttachError, RingError, SendError, Shared};
use crate::layout::off;
use crate::signal::{futex_wait, futex_wake_all, WaitStrategy};
use crate::sync::Ordering;

/// What the producer does when the slowest consumer is a whole ring behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backpressure {
    /// Wait for space, at most `timeout` (`None`: for ever), then fail with
    /// [`SendError::Timeout`].
    Block {
        /// Longest wait per reservation.
        timeout: Option<Duration>,
    },
    /// Fail at once with [`SendError::Full`].
    Fail,
}

impl Default for Backpressure {
    fn default() -> Self {
        Backpressure::Block { timeout: None }
    }
}

/// The ring's only writer. Dropping it detaches without closing the
/// stream (a new producer may attach and continue); [`Producer::close`]
/// ends the stream.
pub struct Producer {
    shared: Arc<Shared>,
    cursor: ProducerCursor,
    backpressure: Backpressure,
    wait: WaitStrategy,
    closed: bool,
    reclaim_after: Duration,
    /// Since when reservations under `Fail` have found the ring full.
    full_since: Option<Instant>,
    heartbeat: Option<Heartbeat>,
    /// Generation of the stream this producer writes (LAYOUT.md §4.1),
    /// stored in every slot it publishes.
    gen: u32,
    watch: Watch,
    /// [`Producer::set_interrupt`]: how often a blocked wait runs the check.
    interrupt: Option<(Duration, ProducerInterrupt)>,
}

/// The check of [`Producer::set_interrupt`]: an `Err` ends the wait.
/// `Sync` too, so a `Producer` stays `Sync`.
type ProducerInterrupt = Box<dyn FnMut() -> Result<(), String> + Send + Sync>;

/// Options of [`Producer::attach`] beyond back-pressure and waiting; set
/// through [`super::ProducerBuilder`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AttachOptions {
    pub new_stream: bool,
    pub require_consumers: bool,
    pub report_lost_consumers: bool,
}

/// Default for [`Producer::set_reclaim_after`].
pub const DEFAULT_RECLAIM_AFTER: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("next", &self.cursor.next)
            .field("backpressure", &self.backpressure)
            .finish()
    }
}

impl Producer {
    pub(super) fn attach(
        shared: Arc<Shared>,
        backpressure: Backpressure,
        wait: WaitStrategy,
        opts: AttachOptions,
    ) -> Result<Producer, AttachError> {
        let pid = shared.ident.pid;
        let me = shared.ident.word();
        // The identity word at 80: `producer_pid` and `producer_start`,
        // always exchanged as one u64 (LAYOUT.md §11.1), so nobody ever
        // sees our pid beside a predecessor's start time.
        let slot = shared.hdr64(off::PRODUCER_PID);
        let holder = slot.load(Ordering::SeqCst);
        let holder_pid = liveness::identity_pid(holder);
        // LAYOUT.md §11.2: only a dead holder may be replaced (one with our
        // own identity is another handle of this process).
        if holder_pid != 0 && (holder == me || !liveness::identity_dead(holder)) {
            return Err(AttachError::ProducerExists { pid: holder_pid });
        }
        // Heartbeat before the identity (a hint for inspection tools).
        let hb_word = shared.hdr64(off::PRODUCER_HEARTBEAT);
        hb_word.store(shared.ident.now_ns(), Ordering::SeqCst);
        // SeqCst: one producer per ring; the CAS decides who it is. (If we
        // lose, the heartbeat we wrote is the winner's to overwrite.)
        if let Err(other) = slot.compare_exchange(holder, me, Ordering::SeqCst, Ordering::SeqCst) {
            return Err(AttachError::ProducerExists {
                pid: liveness::identity_pid(other),
            });
        }
        if holder_pid != 0 {
            tracing::warn!(
                dead_pid = holder_pid,
                "took over the ring from a dead producer"
            );
        }
        let gen = if opts.new_stream {
            start_stream(&shared)
        } else if shared.hdr32(off::CLOSED).load(Ordering::Acquire) == 1 {
            let _ = slot.compare_exchange(me, 0, Ordering::SeqCst, Ordering::SeqCst);
            return Err(AttachError::StreamEnded {
                ring: shared.region.name().unwrap_or("(anonymous)").to_string(),
                seq: shared.hdr64(off::PUBLISHED).load(Ordering::Acquire),
            });
        } else {
            // We are the only writer of the stream fields now.
            shared.hdr32(off::STREAM_GEN).load(Ordering::SeqCst)
        };
        tracing::debug!(pid, gen, "producer attached");
        let cursor = ProducerCursor::attach(&*shared);
        let heartbeat = Heartbeat::start(shared.clone(), vec![off::PRODUCER_HEARTBEAT]);
        let lost = shared.hdr64(off::LOST_COUNT).load(Ordering::SeqCst);
        Ok(Producer {
            shared,
            cursor,
            backpressure,
            wait,
            closed: false,
            reclaim_after: DEFAULT_RECLAIM_AFTER,
            full_since: None,
            heartbeat: Some(heartbeat),
            gen,
            watch: Watch {
                require: opts.require_consumers,
                report_lost: opts.report_lost_consumers,
                epoch: u64::MAX,
                now: Receivers::default(),
                last: Receivers::default(),
                lost_at_attach: lost,
                lost_seen: lost,
                lost_epoch: u64::MAX,
                next_reclaim: None,
            },
            interrupt: None,
        })
    }

    /// How long a reservation waits on a full ring before the producer looks
    /// for dead consumers and detaches them (LAYOUT.md §11.3); default 1 s.
    pub fn set_reclaim_after(&mut self, after: Duration) {
        self.reclaim_after = after;
    }

    /// LAYOUT.md §11.3: detaches members (and half-joined subscribers) whose
    /// process is dead. Returns how many entries were freed.
    fn reclaim_dead(&self) -> usize {
        table::reclaim_dead(&self.shared)
    }

    /// Subscribers attached now: broadcast consumers and work-queue groups
    /// (LAYOUT.md §4.2).
    pub fn receivers(&mut self) -> Receivers {
        self.watch.refresh(&self.shared);
        self.watch.now
    }

    /// How many subscribers the last published message was published to
    /// (counted when its slot was reserved; zero before the first). As
    /// iceoryx2's `send` returns its number of receivers: a message
    /// published to nobody was overwritten unread.
    pub fn last_receivers(&self) -> Receivers {
        self.watch.last
    }

    /// How many consumer processes were found dead and detached from the
    /// ring since this producer attached (by its own reclaim or by a
    /// surviving queue member, LAYOUT.md §11.3).
    pub fn consumers_lost(&self) -> u64 {
        self.shared
            .hdr64(off::LOST_COUNT)
            .load(Ordering::SeqCst)
            .wrapping_sub(self.watch.lost_at_attach)
    }

    /// Waits until at least `n` subscribers (broadcast consumers plus
    /// work-queue groups) are attached, at most `timeout`; returns who is
    /// attached, or [`RingError::TooFewConsumers`] saying how many came.
    /// Broadcast consumers see only what is published after they join, so
    /// a producer that must not lose its first messages waits here first.
    pub fn wait_for_consumers(
        &mut self,
        n: u32,
        timeout: Duration,
    ) -> Result<Receivers, RingError> {
        let (got, ok) = watch::wait_for(&self.shared, n, timeout);
        if ok {
            return Ok(got);
        }
        Err(RingError::TooFewConsumers {
            wanted: n,
            attached: got.total(),
            waited: timeout,
        })
    }

    /// Generation of the stream this producer writes (0 for a ring's first
    /// stream; see [`ProducerBuilder::new_stream`](super::ProducerBuilder::new_stream)).
    pub fn stream_gen(&self) -> u32 {
        self.gen
    }

    /// A watching producer (`require_consumers` or `report_lost_consumers`)
    /// looks for dead consumers every `reclaim_after` while it publishes,
    /// not only when the ring is full (LAYOUT.md §4.2).
    fn watch_due(&mut self) {
        if !self.watch.active() {
            return;
        }
        let now = Instant::now();
        match self.watch.next_reclaim {
            Some(t) if now < t => {}
            _ => {
                self.watch.next_reclaim = Some(now + self.reclaim_after);
                if self.reclaim_dead() > 0 {
                    self.cursor.invalidate();
                }
            }
        }
    }

    /// After a slot was found: refuses to publish into the void
    /// (`require_consumers`) and reports consumers that died
    /// (`report_lost_consumers`, and always a log line). Nothing was
    /// written yet, so the caller may simply try again.
    fn check_consumers(&mut self) -> Result<(), SendError> {
        let sh = &*self.shared;
        // Every reclaim that bumps `lost_count` then bumps `table_epoch`
        // (SeqCst, under the table lock), so the count only needs a look
        // when the epoch moved: no extra load per message otherwise.
        self.watch.refresh(sh);
        let lost = if self.watch.lost_epoch != self.watch.epoch {
            self.watch.lost_epoch = self.watch.epoch;
            sh.hdr64(off::LOST_COUNT).load(Ordering::SeqCst)
        } else {
            self.watch.lost_seen
        };
        if lost != self.watch.lost_seen {
            let n = lost.wrapping_sub(self.watch.lost_seen);
            self.watch.lost_seen = lost;
            let pid = sh.hdr32(off::LOST_PID).load(Ordering::SeqCst);
            tracing::warn!(
                pid,
                lost = n,
                receivers = self.watch.now.total(),
                "a consumer of the ring died and was detached"
            );
            if self.watch.report_lost {
                return Err(SendError::ConsumerLost {
                    pid,
                    lost: n,
                    remaining: self.watch.now.total(),
                });
            }
        }
        if self.watch.require && self.watch.now.total() == 0 {
            return Err(SendError::NoConsumers {
                ring: self.ring_name(),
                seq: self.cursor.next,
            });
        }
        Ok(())
    }

    fn ring_name(&self) -> String {
        self.shared
            .region
            .name()
            .unwrap_or("(anonymous)")
            .to_string()
    }

    /// Largest message this ring accepts (the slot size).
    pub fn max_message_size(&self) -> usize {
        self.shared.layout.config.slot_size as usize
    }

    /// Messages published so far (LAYOUT.md's `published`, as this
    /// producer has written it): the sequence number the next published
    /// message will get. Go: `Producer.Published`.
    pub fn published(&self) -> u64 {
        self.cursor.next
    }

    /// Reserves the next slot for a message of at most `len` bytes, waiting
    /// for space according to the back-pressure policy. Write into the
    /// returned [`Reservation`] and call [`Reservation::publish`].
    pub fn reserve(&mut self, len: usize) -> Result<Reservation<'_>, SendError> {
        let max = self.max_message_size();
        if len > max {
            return Err(SendError::MessageTooLarge { len, max });
        }
        if self.closed {
            return Err(SendError::Closed);
        }
        self.watch_due();
        let slot = match self.wait_for_space() {
            Err(e @ SendError::Full { .. }) => {
                self.note_full();
                return Err(e);
            }
            r => r?,
        };
        self.check_consumers()?;
        let off = self.shared.layout.payload(slot);
        // SAFETY: the gate guarantees no subscriber can still hold this slot
        // (its previous sequence is released by everyone), and we are the
        // only producer, so this region of the mapping is ours until publish.
        let buf =
            unsafe { std::slice::from_raw_parts_mut(self.shared.region.base().add(off), max) };
        Ok(Reservation {
            producer: self,
            buf,
        })
    }

    /// Copies `bytes` into the next slot and publishes it with `flags`.
    /// Returns the message's sequence number.
    pub fn send(&mut self, bytes: &[u8], flags: u32) -> Result<u64, SendError> {
        let mut r = self.reserve(bytes.len())?;
        r.write(0, bytes);
        r.publish(bytes.len(), flags)
    }

    fn wait_for_space(&mut self) -> Result<usize, SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        if let Some(i) = self.cursor.try_reserve(&*self.shared) {
            self.full_since = None;
            return Ok(i);
        }
        let timeout = match self.backpressure {
            Backpressure::Fail => {
                // A Fail producer never waits, so dead consumers are
                // reclaimed once reservations have found the ring full for
                // `reclaim_after` (LAYOUT.md §11.3).
                let since = *self.full_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.reclaim_after {
                    self.full_since = Some(Instant::now());
                    if self.reclaim_dead() > 0 {
                        self.cursor.invalidate();
                        if let Some(i) = self.cursor.try_reserve(&*self.shared) {
                            self.full_since = None;
                            return Ok(i);
                        }
                    }
                }
                tracing::trace!("back-pressure: ring full, reservation refused");
                return Err(SendError::Full {
                    slots: self.shared.layout.config.slot_count,
                });
            }
            Backpressure::Block { timeout } => timeout,
        };
        tracing::debug!(
            slots = self.shared.layout.config.slot_count,
            "back-pressure: producer blocked on a full ring"
        );
        let start = Instant::now();
        let r = self.wait_blocked(timeout, start);
        self.note_wait(start.elapsed());
        r
    }

    /// The `Block` back-pressure wait of [`Producer::wait_for_space`],
    /// started at `start`.
    fn wait_blocked(
        &mut self,
        timeout: Option<Duration>,
        start: Instant,
    ) -> Result<usize, SendError> {
        let mut last_reclaim = start;
        let mut last_check = start;
        let backoff = Backoff::new();
        loop {
            self.cursor.invalidate();
            if let Some(i) = self.cursor.try_reserve(&*self.shared) {
                return Ok(i);
            }
            if last_reclaim.elapsed() >= self.reclaim_after {
                last_reclaim = Instant::now();
                if self.reclaim_dead() > 0 {
                    continue;
                }
            }
            let remaining = match timeout {
                Some(t) => match t.checked_sub(start.elapsed()) {
                    Some(r) if !r.is_zero() => r,
                    _ => return Err(SendError::Timeout(t)),
                },
                None => Duration::MAX,
            };
            let every = self.interrupt.as_ref().map_or(Duration::MAX, |i| i.0);
            if self.wait == WaitStrategy::Spin || !backoff.is_completed() {
                backoff.snooze();
                // A spinning producer runs the check as often as a parked one.
                if last_check.elapsed() >= every {
                    last_check = Instant::now();
                    if let Some((_, check)) = self.interrupt.as_mut() {
                        check().map_err(SendError::Interrupted)?;
                    }
                }
                continue;
            }
            self.park_for_space(remaining.min(self.reclaim_after).min(every));
            if let Some((_, check)) = self.interrupt.as_mut() {
                last_check = Instant::now();
                check().map_err(SendError::Interrupted)?;
            }
        }
    }

    /// Wakes every `every` while blocked on a full ring and runs `check`; an
    /// `Err` ends the wait with [`SendError::Interrupted`] (nothing was
    /// reserved: the producer stays usable). The Python package checks for
    /// Ctrl-C this way, as consumers do with `RingStream::with_interrupt`.
    pub fn set_interrupt(
        &mut self,
        every: Duration,
        check: impl FnMut() -> Result<(), String> + Send + Sync + 'static,
    ) {
        self.interrupt = Some((every, Box::new(check)));
    }

    /// Counts a reservation refused with `Full` (LAYOUT.md §2.1).
    pub(crate) fn note_full(&self) {
        counters::bump(&self.shared, off::FULL_REFUSALS, 1);
    }

    /// Counts one wait for space of `waited` (LAYOUT.md §2.1).
    pub(crate) fn note_wait(&self, waited: Duration) {
        counters::note_backpressure(&self.shared, waited);
    }

    /// Number of slots of the ring (the async producer's bound; the Arrow
    /// writers' copy choice, `slot_copy::copy_to_ring_slot`).
    pub(crate) fn max_slots(&self) -> u32 {
        self.shared.layout.config.slot_count
    }

    /// The back-pressure policy in force.
    pub fn backpressure(&self) -> Backpressure {
        self.backpressure
    }

    /// Changes the back-pressure policy.
    pub fn set_backpressure(&mut self, b: Backpressure) {
        self.backpressure = b;
    }

    /// Whether a slot is free now, without waiting: `Ok(false)` on a full
    /// ring (after reclaiming dead consumers if the ring has been full for
    /// the reclaim delay, as a `Fail` producer does).
    #[cfg(feature = "tokio")]
    pub(crate) fn poll_space(&mut self) -> Result<bool, SendError> {
        let saved = std::mem::replace(&mut self.backpressure, Backpressure::Fail);
        let r = self.wait_for_space();
        self.backpressure = saved;
        match r {
            Ok(_) => Ok(true),
            Err(SendError::Full { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A handle that parks on the space futex from another thread.
    #[cfg(feature = "tokio")]
    pub(crate) fn space_waiter(&self) -> SpaceWaiter {
        SpaceWaiter {
            shared: self.shared.clone(),
            next: self.cursor.next,
        }
    }

    /// LAYOUT.md §6.2: register, re-check, park.
    fn park_for_space(&mut self, remaining: Duration) {
        let sh = &self.shared;
        let waiters = sh.hdr32(off::SPACE_WAITERS);
        let futex = sh.hdr32(off::SPACE_FUTEX);
        // SeqCst: pairs with the releasers' SeqCst load of `space_waiters`
        // after they advance `release` (Shared::wake_space).
        waiters.fetch_add(1, Ordering::SeqCst);
        let seen = futex.load(Ordering::SeqCst);
        self.cursor.invalidate();
        if self.cursor.try_reserve(&**sh).is_none() {
            futex_wait(futex, seen, remaining);
        }
        waiters.fetch_sub(1, Ordering::SeqCst);
    }

    fn publish_reserved(&mut self, len: usize, flags: u32) -> Result<u64, SendError> {
        let max = self.max_message_size();
        if len > max {
            return Err(SendError::MessageTooLarge { len, max });
        }
        let sh = &*self.shared;
        let slot = sh
            .layout
            .slot((self.cursor.next % u64::from(sh.layout.config.slot_count)) as usize);
        // Relaxed: ordered by the Release store of the stamp in `publish`
        // (LAYOUT.md §4.1).
        sh.hdr32(slot + off::SLOT_GEN)
            .store(self.gen, Ordering::Relaxed);
        self.watch.last = self.watch.now;
        let seq = self.cursor.publish(sh, len as u32, flags);
        // SeqCst: the store of `published` (SeqCst, in `publish`) comes
        // before this load; a consumer increments `data_waiters` before
        // re-checking `published` — one of us sees the other (§6.1).
        if sh.hdr32(off::DATA_WAITERS).load(Ordering::SeqCst) != 0 {
            let f = sh.hdr32(off::DATA_FUTEX);
            f.fetch_add(1, Ordering::SeqCst);
            futex_wake_all(f);
            // The slow path only: a consumer was parked (LAYOUT.md §2.1).
            counters::bump(sh, off::DATA_WAKES, 1);
        }
        Ok(seq)
    }

    /// Publishes `schema` in the ring's schema area (LAYOUT.md §9) so late
    /// joiners can read it with [`super::Ring::schema`].
    pub fn set_schema(&mut self, schema: &[u8]) -> Result<(), RingError> {
        let sh = &self.shared;
        let cap = sh.layout.config.schema_capacity as usize;
        if schema.len() > cap {
            return Err(RingError::SchemaTooLarge {
                len: schema.len(),
                max: cap,
            });
        }
        // LAYOUT.md §9: the seqlock's orderings are in `seqlock`.
        seqlock::write(
            sh.hdr32(off::SCHEMA_SEQ),
            sh.hdr32(off::SCHEMA_LEN),
            sh.schema_words(),
            schema,
        );
        Ok(())
    }

    /// Ends the stream: consumers drain what was published, then see
    /// end-of-stream. Detaches the producer.
    pub fn close(mut self) {
        self.close_inner();
    }

    fn close_inner(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        // SeqCst: consumers that see `closed` and then `published` know no
        // more messages follow.
        self.shared.hdr32(off::CLOSED).store(1, Ordering::SeqCst);
        self.shared.wake_data_always();
        self.detach();
        tracing::debug!(published = self.cursor.next, "producer closed the stream");
    }

    fn detach(&mut self) {
        // Stop heartbeats first: a successor must not see ours.
        self.heartbeat.take();
        // The whole identity word, only if it is still ours.
        let _ = self.shared.hdr64(off::PRODUCER_PID).compare_exchange(
            self.shared.ident.word(),
            0,
            Ordering::SeqCst,
            Ordering::Relaxed,
        );
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if !self.closed {
            self.detach();
            tracing::debug!(
                published = self.cursor.next,
                "producer detached (stream left open)"
            );
        }
    }
}

/// Waits, on a thread of its own, until the slot for sequence `next` is free
/// (the async producer's helper: LAYOUT.md §6.2 from another thread).
#[cfg(feature = "tokio")]
pub(crate) struct SpaceWaiter {
    shared: Arc<Shared>,
    next: u64,
}

#[cfg(feature = "tokio")]
impl SpaceWaiter {
    /// Parks until space may be available or `slice` passes.
    pub(crate) fn wait(&self, slice: Duration) {
        let sh = &*self.shared;
        let waiters = sh.hdr32(off::SPACE_WAITERS);
        let futex = sh.hdr32(off::SPACE_FUTEX);
        // SeqCst: as in `park_for_space`, pairs with the releasers' SeqCst
        // load of `space_waiters` after they advance `release`.
        waiters.fetch_add(1, Ordering::SeqCst);
        let seen = futex.load(Ordering::SeqCst);
        if self.next >= ProducerCursor::scan(sh)
            && sh.hdr32(off::CLOSED).load(Ordering::SeqCst) == 0
        {
            futex_wait(futex, seen, slice);
        }
        waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A reserved slot: write the message into it (it derefs to the slot's
/// whole payload capacity), then [`publish`](Reservation::publish). Dropping
/// it without publishing discards the write; nothing becomes visible.
pub struct Reservation<'p> {
    producer: &'p mut Producer,
    buf: &'p mut [u8],
}

impl Reservation<'_> {
    /// Publishes the first `len` bytes with `flags`; returns the sequence.
    pub fn publish(self, len: usize, flags: u32) -> Result<u64, SendError> {
        self.producer.publish_reserved(len, flags)
    }

    /// The slot's payload capacity.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Copies `bytes` into the slot at offset `at` (panics if they do not
    /// fit, as slice indexing does): what [`Producer::send`] does with the
    /// whole message. Prefer it to `copy_from_slice` for large parts: from
    /// 1 MiB, when the ring's rotation (slot count × length) is too large
    /// for the slot to still be cached, it writes with non-temporal stores
    /// (x86_64 with AVX2), which skip reading the slot's old contents from
    /// memory first (2–3× faster there); smaller copies, and rings small
    /// enough to stay cached, get `copy_from_slice`.
    pub fn write(&mut self, at: usize, bytes: &[u8]) {
        let slots = self.producer.shared.layout.config.slot_count;
        super::slot_copy::copy_to_ring_slot(&mut self.buf[at..at + bytes.len()], bytes, slots);
    }
}

impl std::ops::Deref for Reservation<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.buf
    }
}

impl std::ops::DerefMut for Reservation<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.buf
    }
}
