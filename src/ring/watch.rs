//! What a producer knows about its consumers (LAYOUT.md §4.2) and the
//! stream generations of a reusable ring (§4.1): how many subscribers a
//! message is published to, waiting for consumers with a deadline, refusing
//! to publish into the void, and learning that a consumer died.
//!
//! ```
//! use std::time::Duration;
//! use alloy_shm::ring::{Ring, SendError};
//!
//! let ring = Ring::anonymous_builder().slot_count(8).slot_size(256).create()?;
//! let mut tx = ring.producer_builder().require_consumers(true).create()?;
//! // Nobody subscribed: nothing is published into the void.
//! assert!(matches!(tx.send(b"lost?", 0), Err(SendError::NoConsumers { .. })));
//! let mut rx = ring.subscribe()?;
//! let attached = tx.wait_for_consumers(1, Duration::from_secs(1))?;
//! assert_eq!(attached.total(), 1);
//! tx.send(b"hello", 0)?;
//! assert_eq!(tx.last_receivers().broadcast, 1);
//! assert_eq!(&*rx.recv()?.unwrap(), b"hello");
//! # Ok::<(), alloy_shm::ring::RingError>(())
//! ```

use std::time::{Duration, Instant};

use super::{seqlock, Shared};
use crate::layout::{kind, off, state};
use crate::signal::futex_wait;
use crate::sync::Ordering;

/// What the producer knows about its consumers (LAYOUT.md §4.2).
#[derive(Debug)]
pub(super) struct Watch {
    /// Refuse to publish while nobody is subscribed.
    pub require: bool,
    /// Report a consumer reclaimed as dead with `SendError::ConsumerLost`.
    pub report_lost: bool,
    /// `table_epoch` at which `now` was counted.
    pub epoch: u64,
    /// Subscribers attached at the last count.
    pub now: Receivers,
    /// What the last published message was published to.
    pub last: Receivers,
    /// `lost_count` at attach.
    pub lost_at_attach: u64,
    /// `lost_count` last seen (and reported).
    pub lost_seen: u64,
    /// `table_epoch` at which `lost_count` was last looked at.
    pub lost_epoch: u64,
    /// When a watching producer next looks for dead consumers.
    pub next_reclaim: Option<Instant>,
}

impl Watch {
    /// Whether the producer looks for dead consumers while it publishes,
    /// not only when the ring is full.
    pub fn active(&self) -> bool {
        self.require || self.report_lost
    }

    /// Recounts the subscribers if the table changed since the last count.
    pub fn refresh(&mut self, sh: &Shared) {
        // SeqCst: as the gate's epoch load (LAYOUT.md §5.3); every table
        // change that matters to the count bumps the epoch.
        let e = sh.hdr64(off::TABLE_EPOCH).load(Ordering::SeqCst);
        if e != self.epoch {
            self.epoch = e;
            self.now = count(sh);
        }
    }
}

/// How many subscribers a message is published to: broadcast consumers
/// (each gets every message) and work-queue groups (each gets every message
/// once, delivered to one of its members). As iceoryx2's `send` returns the
/// number of receivers, this is a snapshot: a consumer that joins or leaves
/// at the same moment may or may not be counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Receivers {
    /// Broadcast consumers.
    pub broadcast: u32,
    /// Work-queue groups (however many members each has).
    pub groups: u32,
}

impl Receivers {
    /// Broadcast consumers plus queue groups.
    pub fn total(&self) -> u32 {
        self.broadcast + self.groups
    }
}

/// Counts the ACTIVE subscriber entries by kind (a JOINING one is not
/// counted: it may start after the message being published).
pub(super) fn count(sh: &Shared) -> Receivers {
    let mut r = Receivers::default();
    for k in 0..sh.layout.config.max_subscribers as usize {
        let e = sh.subscriber(k);
        if e.state().load(Ordering::SeqCst) != state::ACTIVE {
            continue;
        }
        match e.kind().load(Ordering::SeqCst) {
            kind::QUEUE => r.groups += 1,
            _ => r.broadcast += 1,
        }
    }
    r
}

/// Records that the consumer member of process `pid` was reclaimed as dead
/// (LAYOUT.md §11.3; the caller holds the table lock and bumps
/// `table_epoch`).
pub(super) fn note_lost(sh: &Shared, pid: u32) {
    sh.hdr32(off::LOST_PID).store(pid, Ordering::SeqCst);
    // SeqCst: after `lost_pid`, so a producer that sees the new count
    // reads this pid (or a later one).
    sh.hdr64(off::LOST_COUNT).fetch_add(1, Ordering::SeqCst);
}

/// LAYOUT.md §4.1: the attached producer starts a new stream at
/// `published` — unless the current stream is open and still empty, which
/// it simply continues. Returns the generation to write into slots.
pub(super) fn start_stream(sh: &Shared) -> u32 {
    let gen = sh.hdr32(off::STREAM_GEN);
    let published = sh.hdr64(off::PUBLISHED).load(Ordering::SeqCst);
    let closed = sh.hdr32(off::CLOSED).load(Ordering::SeqCst) == 1;
    let start = sh.hdr64(off::STREAM_START);
    if !closed && published == start.load(Ordering::SeqCst) {
        return gen.load(Ordering::SeqCst);
    }
    // Order (all SeqCst): where the stream starts, an empty schema area,
    // the generation, and only then reopen: a consumer that sees the new
    // generation finds the start and no stale schema (§4.1).
    start.store(published, Ordering::SeqCst);
    seqlock::write(
        sh.hdr32(off::SCHEMA_SEQ),
        sh.hdr32(off::SCHEMA_LEN),
        sh.schema_words(),
        &[],
    );
    let g = gen.load(Ordering::SeqCst).wrapping_add(1);
    gen.store(g, Ordering::SeqCst);
    sh.hdr32(off::CLOSED).store(0, Ordering::SeqCst);
    // Consumers parked at the end of the old stream look again.
    sh.wake_data_always();
    tracing::info!(
        ring = sh.region.name().unwrap_or("(anonymous)"),
        gen = g,
        start = published,
        "new stream started on the ring"
    );
    g
}

/// Waits until at least `n` subscribers are attached or `timeout` passes;
/// returns the last count. Parks on the space futex, which every joiner
/// bumps (LAYOUT.md §5.3 step 5), in slices of at most 50 ms.
pub(super) fn wait_for(sh: &Shared, n: u32, timeout: Duration) -> (Receivers, bool) {
    let start = Instant::now();
    let waiters = sh.hdr32(off::SPACE_WAITERS);
    let futex = sh.hdr32(off::SPACE_FUTEX);
    loop {
        // SeqCst: registered before the count, so a join after the count
        // bumps the futex word we wait on (as §6.2).
        waiters.fetch_add(1, Ordering::SeqCst);
        let seen = futex.load(Ordering::SeqCst);
        let got = count(sh);
        let left = timeout.saturating_sub(start.elapsed());
        if got.total() >= n || left.is_zero() {
            waiters.fetch_sub(1, Ordering::SeqCst);
            return (got, got.total() >= n);
        }
        futex_wait(futex, seen, left.min(Duration::from_millis(50)));
        waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::ring::{RecvError, Ring, RingError, SendError};

    fn ring(slots: u32) -> Ring {
        Ring::anonymous_builder()
            .slot_count(slots)
            .slot_size(64)
            .schema_capacity(64)
            .create()
            .unwrap()
    }

    #[test]
    fn a_closed_ring_carries_a_new_stream_with_another_schema() {
        let r = ring(4);
        let mut across = r.subscribe().unwrap();
        let mut p = r.producer().unwrap();
        p.set_schema(b"schema-one").unwrap();
        p.send(b"a", 0).unwrap();
        p.send(b"b", 0).unwrap();
        p.close();
        // A producer that does not ask for a new stream is told what to do.
        let err = r.producer().unwrap_err();
        assert!(
            matches!(err, crate::ring::AttachError::StreamEnded { seq: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("ended at sequence 2"), "{err}");
        // A consumer joining the ended stream gets the same error, not a
        // silent end (and again on every receive).
        let mut late = r.subscribe().unwrap();
        for _ in 0..2 {
            let e = late.recv_timeout(Duration::from_millis(100)).unwrap_err();
            assert!(matches!(e, RecvError::StreamEnded { seq: 2, .. }), "{e}");
        }
        assert_eq!(&*across.recv().unwrap().unwrap(), b"a");
        assert_eq!(&*across.recv().unwrap().unwrap(), b"b");
        assert!(across.recv().unwrap().is_none());

        let mut p2 = r.producer_builder().new_stream(true).create().unwrap();
        assert_eq!(
            (p2.stream_gen(), r.stream_gen(), r.stream_start()),
            (1, 1, 2)
        );
        assert!(!r.is_closed());
        assert_eq!(r.schema().unwrap(), None, "the old schema is gone");
        p2.set_schema(b"schema-two-longer").unwrap();
        p2.send(b"x", 0).unwrap();
        p2.close();
        assert_eq!(
            r.schema().unwrap().as_deref(),
            Some(&b"schema-two-longer"[..])
        );
        // Attached across: the end was reported once, now the new stream.
        let x = across.recv().unwrap().unwrap();
        assert_eq!((&*x, x.stream_gen(), x.seq()), (&b"x"[..], 1, 2));
        drop(x);
        assert!(across.recv().unwrap().is_none());
        // The late joiner now reads the new stream.
        assert_eq!(&*late.recv().unwrap().unwrap(), b"x");
        assert!(late.recv().unwrap().is_none());
    }

    #[test]
    fn a_lagging_consumer_sees_the_end_of_its_stream_before_the_next() {
        let r = ring(8);
        let mut lag = r.subscribe().unwrap();
        let mut p = r.producer().unwrap();
        p.send(b"a", 0).unwrap();
        p.close();
        let mut p2 = r.producer_builder().new_stream(true).create().unwrap();
        p2.send(b"x", 0).unwrap();
        // The new stream is still open: its message waits behind the end.
        assert_eq!(&*lag.recv().unwrap().unwrap(), b"a");
        assert!(lag.recv().unwrap().is_none(), "end of the first stream");
        assert_eq!(lag.stream_gen(), 1);
        assert_eq!(&*lag.recv().unwrap().unwrap(), b"x");
        // A third stream started while the second is open ends it too.
        drop(p2);
        let mut p3 = r.producer_builder().new_stream(true).create().unwrap();
        assert_eq!(p3.stream_gen(), 2);
        assert!(lag.try_recv().unwrap().is_none(), "end of the second");
        assert!(matches!(lag.try_recv(), Err(RecvError::Empty)));
        p3.send(b"y", 0).unwrap();
        assert_eq!(&*lag.recv().unwrap().unwrap(), b"y");
        // new_stream on an open, empty stream changes nothing.
        let fresh = ring(2);
        let p = fresh.producer_builder().new_stream(true).create().unwrap();
        assert_eq!(p.stream_gen(), 0);
    }

    #[test]
    fn require_consumers_refuses_to_publish_into_the_void() {
        let r = ring(4);
        let mut p = r
            .producer_builder()
            .require_consumers(true)
            .create()
            .unwrap();
        let e = p.send(b"a", 0).unwrap_err();
        assert!(matches!(e, SendError::NoConsumers { seq: 0, .. }), "{e}");
        assert_eq!(r.published(), 0, "nothing was published");
        let c = r.subscribe().unwrap();
        let mut q1 = r.join_queue(3).unwrap();
        let _q2 = r.join_queue(3).unwrap();
        p.send(b"a", 0).unwrap();
        assert_eq!(
            p.last_receivers(),
            Receivers {
                broadcast: 1,
                groups: 1
            }
        );
        drop(c);
        p.send(b"b", 0).unwrap();
        assert_eq!(
            p.last_receivers(),
            Receivers {
                broadcast: 0,
                groups: 1
            }
        );
        assert_eq!(&*q1.recv().unwrap().unwrap(), b"a");
        drop(q1);
        drop(_q2);
        // The last consumer left: refused again at once.
        let e = p.send(b"c", 0).unwrap_err();
        assert!(matches!(e, SendError::NoConsumers { seq: 2, .. }), "{e}");
        assert_eq!(p.receivers().total(), 0);
    }

    use super::Receivers;

    #[test]
    fn waiting_for_consumers_has_a_deadline() {
        let r = ring(4);
        let mut p = r.producer().unwrap();
        let t = Instant::now();
        let e = p
            .wait_for_consumers(1, Duration::from_millis(100))
            .unwrap_err();
        assert!(
            matches!(
                e,
                RingError::TooFewConsumers {
                    wanted: 1,
                    attached: 0,
                    ..
                }
            ),
            "{e}"
        );
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        let r2 = r.clone();
        let joiner = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let a = r2.subscribe().unwrap();
            let b = r2.join_queue(1).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            (a, b)
        });
        let t = Instant::now();
        let got = p.wait_for_consumers(2, Duration::from_secs(5)).unwrap();
        assert_eq!(
            got,
            Receivers {
                broadcast: 1,
                groups: 1
            }
        );
        // Woken by the joins (space futex), not at the end of a long sleep.
        assert!(
            t.elapsed() < Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
        drop(joiner.join().unwrap());
    }

    #[test]
    fn history_gives_a_late_joiner_the_last_messages_of_its_stream() {
        let r = ring(8);
        let mut p = r.producer().unwrap();
        for j in 0u64..20 {
            p.send(&j.to_le_bytes(), 0).unwrap();
        }
        let seqs = |c: &mut crate::ring::Consumer| -> Vec<u64> {
            std::iter::from_fn(|| c.try_recv().ok().flatten().map(|l| l.seq())).collect()
        };
        let mut c3 = r.consumer_builder().history(3).create().unwrap();
        assert_eq!(seqs(&mut c3), [17, 18, 19]);
        // At most N − 1 = 7 messages back.
        let mut all = r.consumer_builder().history(100).create().unwrap();
        assert_eq!(seqs(&mut all), (13..20).collect::<Vec<_>>());
        let mut q = r.consumer_builder().queue(2).history(2).create().unwrap();
        assert_eq!(seqs(&mut q), [18, 19]);
        drop((c3, all, q));
        // Only the current stream.
        p.close();
        let mut p2 = r.producer_builder().new_stream(true).create().unwrap();
        p2.send(b"x", 0).unwrap();
        let mut c = r.consumer_builder().history(5).create().unwrap();
        assert_eq!(seqs(&mut c), [20]);
    }

    /// Late joiners with the largest history while the producer runs flat
    /// out: every message they get is intact (a slot rewritten under them
    /// would show as a wrong stamp or wrong bytes).
    #[test]
    fn history_joins_race_a_running_producer_safely() {
        let r = ring(4);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r2, stop2) = (r.clone(), stop.clone());
        let producer = std::thread::spawn(move || {
            let mut p = r2.producer().unwrap();
            let mut j = 0u64;
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                p.send(&j.to_le_bytes(), 0).unwrap();
                j += 1;
            }
            j
        });
        // Enough joins against enough traffic, counted, not timed: a loaded
        // machine only makes it take longer (the deadline is a hang guard).
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut joins = 0;
        let mut got = 0;
        while (joins < 200 || r.published() < 2000) && Instant::now() < deadline {
            let mut c = r.consumer_builder().history(3).create().unwrap();
            for _ in 0..4 {
                match c.recv_timeout(Duration::from_secs(1)) {
                    Ok(Some(l)) => {
                        assert_eq!(&*l, &l.seq().to_le_bytes()[..], "seq {}", l.seq());
                        got += 1;
                    }
                    other => panic!("{other:?}"),
                }
            }
            joins += 1;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let sent = producer.join().unwrap();
        assert!(joins >= 200 && sent >= 2000, "{joins} joins, {sent} sent");
        eprintln!("{joins} joins with history 3 on 4 slots, {got} messages checked, {sent} sent");
    }
}
