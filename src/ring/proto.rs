//! The lock-free part of the ring protocol (LAYOUT.md §4, §5.1, §5.2),
//! written against [`Words`] so the same code runs on the mapping and, under
//! `--cfg loom`, on model-checked atomics.
//!
//! Nothing here blocks: "full" and "empty" are returned to the caller, which
//! decides whether to spin, park on a futex or give up.

use crate::layout::state;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// The shared words of one ring.
pub(crate) trait Words {
    /// `slot_count`.
    fn slot_count(&self) -> u64;
    /// `max_subscribers`.
    fn subscribers(&self) -> usize;
    /// Header `published`.
    fn published(&self) -> &AtomicU64;
    /// Header `closed`.
    fn closed(&self) -> &AtomicU32;
    /// Header `table_epoch`.
    fn table_epoch(&self) -> &AtomicU64;
    /// Subscriber `k`'s `state`.
    fn sub_state(&self, k: usize) -> &AtomicU32;
    /// Subscriber `k`'s `claim`.
    fn sub_claim(&self, k: usize) -> &AtomicU64;
    /// Subscriber `k`'s `release`.
    fn sub_release(&self, k: usize) -> &AtomicU64;
    /// `done[k][i]`.
    fn done(&self, k: usize, i: usize) -> &AtomicU64;
    /// Slot `i`'s `stamp`.
    fn stamp(&self, i: usize) -> &AtomicU64;
    /// Slot `i`'s `len`.
    fn slot_len(&self, i: usize) -> &AtomicU32;
    /// Slot `i`'s `flags`.
    fn slot_flags(&self, i: usize) -> &AtomicU32;
}

/// The producer's private cursor: the next sequence and its cached gate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProducerCursor {
    /// Sequence number the next message gets.
    pub next: u64,
    /// Sequences `< limit` may be written without rescanning.
    limit: u64,
    /// `table_epoch` the limit was computed at.
    epoch: u64,
}

impl ProducerCursor {
    /// A cursor continuing after what is already published.
    pub fn attach<W: Words>(w: &W) -> ProducerCursor {
        ProducerCursor {
            // Acquire: a re-attaching producer continues after the last
            // message its predecessor published.
            next: w.published().load(Ordering::Acquire),
            limit: 0,
            epoch: u64::MAX,
        }
    }

    /// The gate: min `release` of all live subscribers, plus `N`.
    pub fn scan<W: Words>(w: &W) -> u64 {
        let mut min = u64::MAX;
        for k in 0..w.subscribers() {
            // SeqCst: part of the join handshake (LAYOUT.md §5.3) — a joiner's
            // state store and epoch bump are ordered against this load.
            let s = w.sub_state(k).load(Ordering::SeqCst);
            if s == state::JOINING || s == state::ACTIVE {
                // Acquire: pairs with the AcqRel CAS in `release`, so the
                // reader's use of the slot happens before we overwrite it.
                min = min.min(w.sub_release(k).load(Ordering::Acquire));
            }
        }
        min.saturating_add(w.slot_count())
    }

    /// Tries to take the slot for sequence `self.next`. Returns the slot
    /// index, or `None` when the slowest subscriber is a whole ring behind.
    pub fn try_reserve<W: Words>(&mut self, w: &W) -> Option<usize> {
        // SeqCst: orders this load after our previous `published` store, so a
        // joiner that bumped the epoch after it sees `published >= next`.
        let e = w.table_epoch().load(Ordering::SeqCst);
        if e != self.epoch || self.next >= self.limit {
            self.epoch = e;
            self.limit = Self::scan(w);
            if self.next >= self.limit {
                return None;
            }
        }
        Some((self.next & (w.slot_count() - 1)) as usize)
    }

    /// Forces a rescan at the next reservation (after waking up).
    pub fn invalidate(&mut self) {
        self.epoch = u64::MAX;
    }

    /// Publishes the message written into the reserved slot.
    pub fn publish<W: Words>(&mut self, w: &W, len: u32, flags: u32) -> u64 {
        let seq = self.next;
        let i = (seq & (w.slot_count() - 1)) as usize;
        w.slot_len(i).store(len, Ordering::Relaxed);
        w.slot_flags(i).store(flags, Ordering::Relaxed);
        // Release: pairs with the Acquire load in `check_slot`; the payload,
        // len and flags are visible to whoever sees the stamp.
        w.stamp(i).store(seq.wrapping_add(1), Ordering::Release);
        // SeqCst: pairs with the consumers' Acquire loads in `try_claim`, and
        // with `data_waiters` (the caller's next load) for the futex
        // handshake of LAYOUT.md §6.1.
        w.published().store(seq.wrapping_add(1), Ordering::SeqCst);
        self.next = seq.wrapping_add(1);
        seq
    }
}

/// The outcome of a claim attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The caller now owns this sequence number.
    Got(u64),
    /// Nothing to read yet.
    Empty,
    /// The producer closed the stream and everything has been handed out.
    Ended,
}

/// Claims the next sequence of subscriber `k` (LAYOUT.md §5.1).
/// `exclusive`: the caller is the subscriber's only claimer (broadcast), so a
/// plain store replaces the CAS.
pub(crate) fn try_claim<W: Words>(w: &W, k: usize, exclusive: bool) -> Claim {
    loop {
        let c = w.sub_claim(k).load(Ordering::Acquire);
        // Acquire: pairs with the SeqCst store in `publish`.
        let p = w.published().load(Ordering::Acquire);
        if c >= p {
            if w.closed().load(Ordering::Acquire) == 1 && w.published().load(Ordering::Acquire) <= c
            {
                return Claim::Ended;
            }
            return Claim::Empty;
        }
        if exclusive {
            w.sub_claim(k).store(c + 1, Ordering::Release);
            return Claim::Got(c);
        }
        // AcqRel: queue members race for `c`; exactly one CAS wins it.
        if w.sub_claim(k)
            .compare_exchange(c, c + 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return Claim::Got(c);
        }
    }
}

/// Loads (Relaxed, value discarded) the stamp of the slot subscriber `k`
/// claims next, so its cache line is on its way while the caller loads
/// `published` (a timing hint only: no decision reads this value).
#[inline]
pub(crate) fn touch_next_stamp<W: Words>(w: &W, k: usize) {
    let c = w.sub_claim(k).load(Ordering::Relaxed);
    let i = (c & (w.slot_count() - 1)) as usize;
    std::hint::black_box(w.stamp(i).load(Ordering::Relaxed));
}

/// Why a claimed slot cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadSlot {
    pub slot: usize,
    pub stamp: u64,
    pub len: u32,
}

/// Checks the slot holding claimed sequence `seq`; returns `(slot, len, flags)`.
pub(crate) fn check_slot<W: Words>(
    w: &W,
    seq: u64,
    slot_size: u32,
) -> Result<(usize, u32, u32), BadSlot> {
    let i = (seq & (w.slot_count() - 1)) as usize;
    // Acquire: pairs with the Release store of the stamp in `publish`.
    let stamp = w.stamp(i).load(Ordering::Acquire);
    let len = w.slot_len(i).load(Ordering::Relaxed);
    if stamp != seq.wrapping_add(1) || len > slot_size {
        return Err(BadSlot {
            slot: i,
            stamp,
            len,
        });
    }
    Ok((i, len, w.slot_flags(i).load(Ordering::Relaxed)))
}

/// Releases sequence `seq` of subscriber `k` and advances its `release`
/// cursor over every contiguous released sequence (LAYOUT.md §5.2).
/// Returns whether the cursor moved (the caller then wakes a parked producer).
pub(crate) fn release<W: Words>(w: &W, k: usize, seq: u64) -> bool {
    let n = w.slot_count();
    // AcqRel RMW: the mark is ordered with the other releasers' checks (see
    // the "no lost advance" argument in LAYOUT.md §5.2).
    w.done(k, (seq & (n - 1)) as usize)
        .swap(seq.wrapping_add(1), Ordering::AcqRel);
    advance(w, k)
}

/// LAYOUT.md §5.2 step 2: advances subscriber `k`'s `release` over every
/// contiguous released sequence. Returns whether it moved.
pub(crate) fn advance<W: Words>(w: &W, k: usize) -> bool {
    let n = w.slot_count();
    let mut moved = false;
    loop {
        let r = w.sub_release(k).load(Ordering::Acquire);
        // RMW read: always sees the latest mark of this word.
        if w.done(k, (r & (n - 1)) as usize)
            .fetch_or(0, Ordering::AcqRel)
            != r.wrapping_add(1)
        {
            return moved;
        }
        // AcqRel: Release publishes our use of the slot to the producer's
        // Acquire load in `scan`.
        if w.sub_release(k)
            .compare_exchange(r, r.wrapping_add(1), Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            moved = true;
        }
    }
}

/// Sets the cursors of a subscriber entry that is JOINING (LAYOUT.md §5.3
/// steps 2–4): it starts at the current head. (The loom models join this
/// way; the ring joins through [`join_cursors_at`].)
#[cfg(loom)]
pub(crate) fn join_cursors<W: Words>(w: &W, k: usize) {
    join_cursors_at(w, k, |p| p);
}

/// `join_cursors` starting the new subscriber at `at(p)` instead of the
/// head `p` (history for late joiners, LAYOUT.md §5.3). `at` must be
/// monotonic with `p + 1 − N ≤ at(p) ≤ p`: a producer on a stale gate
/// writes at most sequence `p2` (the second load), whose slot is that of
/// `p2 − N`, below where we start; later writes see our gate.
pub(crate) fn join_cursors_at<W: Words>(w: &W, k: usize, at: impl Fn(u64) -> u64) {
    let p = w.published().load(Ordering::SeqCst);
    let s = at(p);
    w.sub_release(k).store(s, Ordering::SeqCst);
    w.sub_claim(k).store(s, Ordering::SeqCst);
    w.table_epoch().fetch_add(1, Ordering::SeqCst);
    let p2 = w.published().load(Ordering::SeqCst);
    if p2 != p {
        let s2 = at(p2);
        w.sub_release(k).store(s2, Ordering::SeqCst);
        w.sub_claim(k).store(s2, Ordering::SeqCst);
    }
}

/// The model-checked ring every loom model runs on.
#[cfg(all(test, loom))]
#[path = "loom_heap.rs"]
pub(crate) mod loom_heap;

#[cfg(all(test, loom))]
mod loom_tests {
    use super::loom_heap::Heap;
    use super::*;
    use loom::sync::Arc;

    fn produce(h: &Heap, count: u64) {
        let mut cur = ProducerCursor::attach(h);
        for m in 0..count {
            let i = loop {
                match cur.try_reserve(h) {
                    Some(i) => break i,
                    None => loom::thread::yield_now(),
                }
            };
            // Writing the payload races with a reader still using the slot
            // unless the gate is right: loom reports it.
            // SAFETY: loom's UnsafeCell hands a valid pointer and tracks the access; a racing access fails the model.
            h.payload[i].with_mut(|p| unsafe { *p = m * 10 });
            cur.publish(h, 8, 0);
        }
        h.closed.store(1, Ordering::SeqCst);
    }

    fn consume(h: &Heap, k: usize, exclusive: bool) -> Vec<u64> {
        let mut got = Vec::new();
        loop {
            match try_claim(h, k, exclusive) {
                Claim::Got(seq) => {
                    let (i, _, _) = check_slot(h, seq, 64).expect("stamp matches");
                    // SAFETY: loom's UnsafeCell hands a valid pointer and tracks the access; a racing access fails the model.
                    let v = h.payload[i].with(|p| unsafe { *p });
                    assert_eq!(v, seq * 10, "torn or stale payload");
                    got.push(seq);
                    release(h, k, seq);
                }
                Claim::Empty => loom::thread::yield_now(),
                Claim::Ended => return got,
            }
        }
    }

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.max_branches = 100_000;
        b.check(f);
    }

    /// One producer, one broadcast consumer, 3 messages through 2 slots:
    /// wrap-around under back-pressure, in order, nothing torn.
    #[test]
    fn loom_broadcast_wraps_in_order() {
        model(|| {
            let h = Arc::new(Heap::new(2, 1));
            h.activate(0);
            let p = {
                let h = h.clone();
                loom::thread::spawn(move || produce(&h, 3))
            };
            let got = consume(&h, 0, true);
            p.join().unwrap();
            assert_eq!(got, vec![0, 1, 2]);
        });
    }

    /// Two queue members race for messages while they are published:
    /// every message is handed out exactly once and read intact. (No spin
    /// loops: each member makes one claim attempt, the rest is drained after.)
    #[test]
    fn loom_queue_exactly_once() {
        model(|| {
            let h = Arc::new(Heap::new(2, 1));
            h.activate(0);
            let p = {
                let h = h.clone();
                loom::thread::spawn(move || {
                    let mut cur = ProducerCursor::attach(&*h);
                    for m in 0..2u64 {
                        let i = cur.try_reserve(&*h).expect("2 slots, 2 messages");
                        // SAFETY: loom's UnsafeCell hands a valid pointer and tracks the access; a racing access fails the model.
                        h.payload[i].with_mut(|p| unsafe { *p = m * 10 });
                        cur.publish(&*h, 8, 0);
                    }
                })
            };
            let member = |h: Arc<Heap>| {
                loom::thread::spawn(move || match try_claim(&*h, 0, false) {
                    Claim::Got(seq) => {
                        let (i, _, _) = check_slot(&*h, seq, 64).expect("stamp matches");
                        // SAFETY: loom's UnsafeCell hands a valid pointer and tracks the access; a racing access fails the model.
                        assert_eq!(h.payload[i].with(|p| unsafe { *p }), seq * 10);
                        release(&*h, 0, seq);
                        vec![seq]
                    }
                    _ => vec![],
                })
            };
            let a = member(h.clone());
            let b = member(h.clone());
            let mut got = a.join().unwrap();
            got.extend(b.join().unwrap());
            p.join().unwrap();
            while let Claim::Got(seq) = try_claim(&*h, 0, false) {
                got.push(seq);
                release(&*h, 0, seq);
            }
            got.sort();
            assert_eq!(got, vec![0, 1]);
            assert_eq!(h.release[0].load(Ordering::SeqCst), 2);
        });
    }

    /// Reads the payload of claimed `seq`, holds the lease across a
    /// scheduling point, reads it again, then releases: the producer must
    /// not overwrite the slot in between (loom reports the write racing with
    /// either read, and the second read would see the new value).
    fn read_held(h: &Heap, k: usize, seq: u64) {
        let (i, _, _) = check_slot(h, seq, 64).expect("stamp matches");
        // SAFETY: loom's UnsafeCell hands a valid pointer and tracks the access; a racing access fails the model.
        assert_eq!(h.payload[i].with(|p| unsafe { *p }), seq * 10, "torn");
        loom::thread::yield_now();
        assert_eq!(
            // SAFETY: loom's UnsafeCell hands a valid pointer and tracks the access; a racing access fails the model.
            h.payload[i].with(|p| unsafe { *p }),
            seq * 10,
            "slot overwritten while its lease was held"
        );
        release(h, k, seq);
    }

    /// LAYOUT.md §11.3 reclaim: subscriber 1 died holding sequence 1, so the
    /// producer is gated on it. Concurrently: the producer tries to publish
    /// 2 and 3 (rescanning the gate), the live subscriber 0 holds, reads
    /// and releases 0 and 1, and the reclaimer frees entry 1 (as
    /// `Producer::reclaim_dead` does under the table lock) and lets a new
    /// consumer join into it, whose done words still hold the dead
    /// occupant's stale marks. The producer never overwrites a slot a live
    /// consumer holds (loom checks every payload access), the survivor
    /// loses nothing, and the newcomer reads an intact message from the
    /// head it joined at, never the dead occupant's sequences. No thread
    /// spins: each makes bounded attempts, which keeps the model small.
    #[test]
    fn loom_reclaim_dead_subscriber_while_producing() {
        model(|| {
            let h = Arc::new(Heap::new(2, 2));
            h.activate(0);
            h.activate(1);
            // Messages 0 and 1 fill the ring. Subscriber 0 claims 0. The
            // doomed subscriber 1 reads and releases 0 (a stale done mark
            // for the newcomer), claims 1 and dies holding it: nobody
            // touches entry 1 on its behalf again.
            let mut cur = ProducerCursor::attach(&*h);
            for m in 0..2u64 {
                let i = cur.try_reserve(&*h).unwrap();
                // SAFETY: loom's UnsafeCell hands a valid pointer and tracks the access; a racing access fails the model.
                h.payload[i].with_mut(|p| unsafe { *p = m * 10 });
                cur.publish(&*h, 8, 0);
            }
            assert_eq!(try_claim(&*h, 0, true), Claim::Got(0));
            assert_eq!(try_claim(&*h, 1, true), Claim::Got(0));
            release(&*h, 1, 0);
            assert_eq!(try_claim(&*h, 1, true), Claim::Got(1));
            let producer = {
                let h = h.clone();
                loom::thread::spawn(move || {
                    // Two attempts per message; stop at the first refusal.
                    for m in 2..4u64 {
                        let Some(i) = cur.try_reserve(&*h).or_else(|| cur.try_reserve(&*h)) else {
                            return (m, cur);
                        };
                        // SAFETY: loom's UnsafeCell hands a valid pointer and tracks the access; a racing access fails the model.
                        h.payload[i].with_mut(|p| unsafe { *p = m * 10 });
                        cur.publish(&*h, 8, 0);
                    }
                    (4, cur)
                })
            };
            let reclaimer = {
                let h = h.clone();
                loom::thread::spawn(move || {
                    // Reclaim: the dead member's subscriber becomes FREE (no
                    // epoch bump: freeing an entry only raises the gate).
                    h.sub_state[1].store(state::FREE, Ordering::SeqCst);
                    // A newcomer takes the entry and makes one claim.
                    h.activate(1);
                    match try_claim(&*h, 1, true) {
                        Claim::Got(seq) => {
                            read_held(&h, 1, seq);
                            Some(seq)
                        }
                        _ => None,
                    }
                })
            };
            read_held(&h, 0, 0);
            let mut survivor = vec![0];
            if let Claim::Got(seq) = try_claim(&*h, 0, true) {
                read_held(&h, 0, seq);
                survivor.push(seq);
            }
            let (sent, mut cur) = producer.join().unwrap();
            let newcomer = reclaimer.join().unwrap();
            // Drain what is left, alone now.
            while let Claim::Got(seq) = try_claim(&*h, 0, true) {
                read_held(&h, 0, seq);
                survivor.push(seq);
            }
            assert_eq!(
                survivor,
                (0..sent).collect::<Vec<_>>(),
                "the survivor lost nothing"
            );
            if let Some(first) = newcomer {
                assert!((2..sent).contains(&first), "the newcomer read {first}");
            }
            while let Claim::Got(seq) = try_claim(&*h, 1, true) {
                assert!(seq >= 2, "the newcomer read the dead occupant's {seq}");
                read_held(&h, 1, seq);
            }
            // Everyone alive has released everything: the dead occupant's
            // held sequence no longer gates the producer.
            assert!(
                cur.try_reserve(&*h).is_some(),
                "ring stuck after the reclaim"
            );
        });
    }

    /// Out-of-order release from two threads never loses a cursor advance.
    #[test]
    fn loom_out_of_order_release_advances() {
        model(|| {
            let h = Arc::new(Heap::new(4, 1));
            h.activate(0);
            let mut cur = ProducerCursor::attach(&*h);
            for _ in 0..2 {
                cur.try_reserve(&*h).unwrap();
                cur.publish(&*h, 0, 0);
            }
            assert_eq!(try_claim(&*h, 0, false), Claim::Got(0));
            assert_eq!(try_claim(&*h, 0, false), Claim::Got(1));
            let t = {
                let h = h.clone();
                loom::thread::spawn(move || {
                    release(&*h, 0, 1);
                })
            };
            release(&*h, 0, 0);
            t.join().unwrap();
            assert_eq!(h.release[0].load(Ordering::SeqCst), 2);
        });
    }
}
