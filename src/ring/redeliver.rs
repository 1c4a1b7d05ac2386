//! Work-queue claims with holder markers and redelivery of the sequences a
//! dead member held (LAYOUT.md §3.3, §5.1, §11.3), written against
//! [`QueueWords`] so the same code runs on the mapping and, under
//! `--cfg loom`, on model-checked atomics (`proto_redeliver_loom.rs`).
//!
//! The done word of a queue subscriber goes through, for sequence `s`:
//! previous value (0 or a released `s' + 1 ≤ s + 1 − N`) → `HELD(me, s)`
//! (the claimer, right after winning the `claim` CAS) → `s + 1` (release).
//! A reclaimer turns `HELD(dead, s)`, or a previous value below `claim`
//! (claimed, holder not yet recorded), into `REDELIVER(s)`; exactly one
//! member then turns that into `HELD(itself, s)`. Every transition is a CAS
//! on the one word, so each sequence has at most one live holder at a time.

#[cfg(not(loom))]
use super::proto::{self, Words};
use crate::layout::done;
#[cfg(loom)]
use crate::proto_loom::{self as proto, Words};
use crate::sync::{AtomicU64, Ordering};

/// The words of a ring that queue redelivery needs on top of [`Words`].
pub(crate) trait QueueWords: Words {
    /// Subscriber `k`'s `redeliver` count.
    fn sub_redeliver(&self, k: usize) -> &AtomicU64;
}

/// The outcome of a queue member's claim attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueClaim {
    /// The caller now holds `seq`; `redelivered`: another member held it
    /// before and died, so it may have been processed already.
    Got { seq: u64, redelivered: bool },
    /// Nothing to read yet.
    Empty,
    /// The stream ended and everything has been handed out.
    Ended,
}

/// Whether a done word is a value left from an earlier lap (0 or a released
/// `s' + 1` with `s' < seq`): `seq` is claimed but has no recorded holder.
fn earlier_lap(word: u64, seq: u64) -> bool {
    !done::is_marker(word) && word < seq.wrapping_add(1)
}

/// Claims the next sequence for member `me` of queue subscriber `k`:
/// a sequence waiting for redelivery first, else a new one (LAYOUT.md §5.1).
pub(crate) fn try_claim<W: QueueWords>(w: &W, k: usize, me: u32) -> QueueClaim {
    loop {
        // Acquire: pairs with the reclaimer's increment, made before the
        // CAS that creates the REDELIVER word; a stale zero only delays
        // the pickup to the next claim (the reclaimer wakes waiters).
        if w.sub_redeliver(k).load(Ordering::Acquire) != 0 {
            if let Some(seq) = take_redelivery(w, k, me) {
                return QueueClaim::Got {
                    seq,
                    redelivered: true,
                };
            }
        }
        let c = w.sub_claim(k).load(Ordering::Acquire);
        // Acquire: pairs with the SeqCst store in `publish`.
        let p = w.published().load(Ordering::Acquire);
        if c >= p {
            // Not gated on `redeliver`: a count left too high by a reclaimer
            // that died mid-step must not hide the end for ever. A REDELIVER
            // word made after our scan is caught by the caller's check under
            // the table lock (`has_redelivery`, LAYOUT.md §11.3).
            if w.closed().load(Ordering::Acquire) == 1 && w.published().load(Ordering::Acquire) <= c
            {
                return QueueClaim::Ended;
            }
            return QueueClaim::Empty;
        }
        // AcqRel: members race for `c`; exactly one CAS wins it.
        if w.sub_claim(k)
            .compare_exchange(c, c + 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        if mark_held(w, k, me, c) {
            return QueueClaim::Got {
                seq: c,
                redelivered: false,
            };
        }
        // A reclaimer judged `c` orphaned while we were between the two
        // CASes and another member took it: it is theirs, claim again.
    }
}

/// Records `me` as the holder of `seq`, which `me` just won with the `claim`
/// CAS. Returns false when another member holds or held it meanwhile.
fn mark_held<W: QueueWords>(w: &W, k: usize, me: u32, seq: u64) -> bool {
    let word = w.done(k, (seq & (w.slot_count() - 1)) as usize);
    // Acquire: a REDELIVER found here was written by the reclaimer's CAS.
    let mut cur = word.load(Ordering::Acquire);
    loop {
        let took_redeliver = cur == done::redeliver(seq);
        if !took_redeliver && !earlier_lap(cur, seq) {
            // HELD(other, seq), `seq + 1`, or a later lap's value: another
            // member took the REDELIVER a reclaimer made of our claim.
            return false;
        }
        // AcqRel: ordered with the reclaimer's CAS on the same word; only
        // one of us turns the previous value into something else.
        match word.compare_exchange(
            cur,
            done::held(me, seq),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                if took_redeliver {
                    // Ours since the `claim` CAS: nobody else was ever handed
                    // it, so this is no redelivery; settle the count.
                    w.sub_redeliver(k).fetch_sub(1, Ordering::AcqRel);
                }
                return true;
            }
            Err(now) => cur = now,
        }
    }
}

/// Whether some sequence of queue subscriber `k` waits for redelivery: the
/// count, confirmed by a scan (a count left too high by a reclaimer that
/// died mid-step must not make waiters spin).
pub(crate) fn has_redelivery<W: QueueWords>(w: &W, k: usize) -> bool {
    if w.sub_redeliver(k).load(Ordering::SeqCst) == 0 {
        return false;
    }
    let n = w.slot_count();
    let r = w.sub_release(k).load(Ordering::SeqCst);
    let c = w.sub_claim(k).load(Ordering::SeqCst);
    (r..c.min(r.saturating_add(n)))
        .any(|s| w.done(k, (s & (n - 1)) as usize).load(Ordering::SeqCst) == done::redeliver(s))
}

/// Takes one sequence waiting for redelivery, if any (LAYOUT.md §11.3).
pub(crate) fn take_redelivery<W: QueueWords>(w: &W, k: usize, me: u32) -> Option<u64> {
    let n = w.slot_count();
    let r = w.sub_release(k).load(Ordering::Acquire);
    let c = w.sub_claim(k).load(Ordering::Acquire);
    // At most one lap: damaged cursors must not make us loop for ages.
    for seq in r..c.min(r.saturating_add(n)) {
        let word = w.done(k, (seq & (n - 1)) as usize);
        let want = done::redeliver(seq);
        // AcqRel: exactly one member turns REDELIVER(seq) into its HELD.
        if word.load(Ordering::Acquire) == want
            && word
                .compare_exchange(
                    want,
                    done::held(me, seq),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            w.sub_redeliver(k).fetch_sub(1, Ordering::AcqRel);
            return Some(seq);
        }
    }
    None
}

/// Releases `seq` held by member `me` (LAYOUT.md §5.2 for queue groups):
/// `HELD(me, seq)` → `seq + 1`, then the cursor advance. If the word no
/// longer names us (we were judged dead and the sequence went to another
/// member), nothing is marked: the new holder's release counts.
pub(crate) fn release<W: QueueWords>(w: &W, k: usize, me: u32, seq: u64) -> bool {
    let word = w.done(k, (seq & (w.slot_count() - 1)) as usize);
    // AcqRel RMW, as the swap of §5.2: our reads of the slot happen before
    // the mark, and the mark is ordered with the releasers' checks.
    let _ = word.compare_exchange(
        done::held(me, seq),
        seq.wrapping_add(1),
        Ordering::AcqRel,
        Ordering::Relaxed,
    );
    proto::advance(w, k)
}

/// Turns the sequences dead member `dead` of queue subscriber `k` held (and
/// those claimed with no holder recorded yet) into REDELIVER words. The
/// caller holds the table lock and frees the member entry afterwards, so a
/// reclaimer dying half-way leaves the member to the next reclaim.
/// Returns how many sequences now wait for redelivery.
pub(crate) fn reclaim_member<W: QueueWords>(w: &W, k: usize, dead: u32) -> u64 {
    let n = w.slot_count();
    let r = w.sub_release(k).load(Ordering::Acquire);
    let c = w.sub_claim(k).load(Ordering::Acquire);
    let mut moved = 0;
    for seq in r..c.min(r.saturating_add(n)) {
        let word = w.done(k, (seq & (n - 1)) as usize);
        let mut cur = word.load(Ordering::Acquire);
        while cur == done::held(dead, seq) || earlier_lap(cur, seq) {
            // Counted before the word changes, so a member taking it never
            // decrements below zero.
            w.sub_redeliver(k).fetch_add(1, Ordering::AcqRel);
            match word.compare_exchange(
                cur,
                done::redeliver(seq),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    moved += 1;
                    break;
                }
                Err(now) => {
                    w.sub_redeliver(k).fetch_sub(1, Ordering::AcqRel);
                    cur = now;
                }
            }
        }
    }
    moved
}

/// Clears the done words of a queue subscriber entry that is JOINING, so no
/// marker left by an earlier occupant is mistaken for one of ours
/// (LAYOUT.md §5.3). Caller holds the table lock.
pub(crate) fn clear_done<W: QueueWords>(w: &W, k: usize) {
    for i in 0..w.slot_count() as usize {
        w.done(k, i).store(0, Ordering::Relaxed);
    }
    // SeqCst: the clears are visible before the entry turns ACTIVE (a
    // SeqCst store by the caller) and anyone claims from it.
    w.sub_redeliver(k).store(0, Ordering::SeqCst);
}

/// Loom models of redelivery (`make loom`).
#[cfg(all(test, loom))]
#[path = "proto_redeliver_loom.rs"]
mod loom_tests;

#[cfg(all(test, not(loom)))]
mod tests {
    //! Single-threaded walks through the states; the interleavings are
    //! model-checked in `proto_redeliver_loom.rs`.
    use super::*;
    use crate::layout::done;
    use crate::ring::{Ring, RingConfig};

    fn ring(n: u32) -> Ring {
        Ring::anonymous_builder()
            .config(RingConfig {
                slot_count: n,
                slot_size: 64,
                max_subscribers: 2,
                max_members: 4,
                schema_capacity: 0,
            })
            .create()
            .unwrap()
    }

    #[test]
    fn claim_marks_holder_and_release_clears_it() {
        let r = ring(4);
        let _c = r.join_queue(1).unwrap();
        let sh = &*r.shared;
        let mut p = r.producer().unwrap();
        p.send(b"x", 0).unwrap();
        assert_eq!(
            try_claim(sh, 0, 3),
            QueueClaim::Got {
                seq: 0,
                redelivered: false
            }
        );
        assert_eq!(sh.done(0, 0).load(Ordering::SeqCst), done::held(3, 0));
        // Someone else's release of our sequence marks nothing.
        release(sh, 0, 2, 0);
        assert_eq!(sh.sub_release(0).load(Ordering::SeqCst), 0);
        release(sh, 0, 3, 0);
        assert_eq!(sh.done(0, 0).load(Ordering::SeqCst), 1);
        assert_eq!(sh.sub_release(0).load(Ordering::SeqCst), 1);
    }

    #[test]
    fn dead_holder_and_unrecorded_claims_are_redelivered_once() {
        let r = ring(4);
        let _c = r.join_queue(1).unwrap();
        let sh = &*r.shared;
        let mut p = r.producer().unwrap();
        for _ in 0..4 {
            p.send(b"x", 0).unwrap();
        }
        // Member 1 holds 0; member 2 won 1 but died before marking it;
        // member 0 holds 2; 3 is unclaimed.
        assert!(matches!(
            try_claim(sh, 0, 1),
            QueueClaim::Got { seq: 0, .. }
        ));
        sh.sub_claim(0).store(2, Ordering::SeqCst);
        assert!(matches!(
            try_claim(sh, 0, 0),
            QueueClaim::Got { seq: 2, .. }
        ));
        assert_eq!(reclaim_member(sh, 0, 1), 2, "0 (held) and 1 (unrecorded)");
        assert_eq!(reclaim_member(sh, 0, 1), 0, "idempotent");
        assert_eq!(sh.sub_redeliver(0).load(Ordering::SeqCst), 2);
        // Redeliveries come before the unclaimed 3, flagged.
        let got: Vec<_> = (0..3).map(|_| try_claim(sh, 0, 0)).collect();
        assert_eq!(
            got,
            vec![
                QueueClaim::Got {
                    seq: 0,
                    redelivered: true
                },
                QueueClaim::Got {
                    seq: 1,
                    redelivered: true
                },
                QueueClaim::Got {
                    seq: 3,
                    redelivered: false
                },
            ]
        );
        assert_eq!(sh.sub_redeliver(0).load(Ordering::SeqCst), 0);
        for s in 0..4 {
            release(sh, 0, 0, s);
        }
        assert_eq!(sh.sub_release(0).load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_claimer_finding_its_claim_redelivered_keeps_it_unflagged() {
        let r = ring(4);
        let _c = r.join_queue(1).unwrap();
        let sh = &*r.shared;
        let mut p = r.producer().unwrap();
        p.send(b"x", 0).unwrap();
        // Member 0 wins the claim CAS for 0; a reclaim runs before its
        // HELD CAS.
        sh.sub_claim(0).store(1, Ordering::SeqCst);
        assert_eq!(reclaim_member(sh, 0, 1), 1);
        assert!(mark_held(sh, 0, 0, 0));
        assert_eq!(sh.done(0, 0).load(Ordering::SeqCst), done::held(0, 0));
        assert_eq!(sh.sub_redeliver(0).load(Ordering::SeqCst), 0);
        // Had another member taken it first, the claimer lets it go.
        sh.done(0, 0).store(done::held(2, 0), Ordering::SeqCst);
        assert!(!mark_held(sh, 0, 0, 0));
    }

    #[test]
    fn redeliveries_come_before_the_end() {
        let r = ring(4);
        let _c = r.join_queue(1).unwrap();
        let sh = &*r.shared;
        let mut p = r.producer().unwrap();
        p.send(b"x", 0).unwrap();
        p.close();
        assert!(matches!(
            try_claim(sh, 0, 1),
            QueueClaim::Got { seq: 0, .. }
        ));
        assert_eq!(reclaim_member(sh, 0, 1), 1);
        assert_eq!(
            try_claim(sh, 0, 0),
            QueueClaim::Got {
                seq: 0,
                redelivered: true
            }
        );
        assert_eq!(try_claim(sh, 0, 0), QueueClaim::Ended);
        // A count left too high (a reclaimer died between its increment
        // and its CAS) neither hides the end nor reads as pending.
        sh.sub_redeliver(0).fetch_add(1, Ordering::SeqCst);
        assert_eq!(try_claim(sh, 0, 0), QueueClaim::Ended);
        assert!(!has_redelivery(sh, 0));
    }
}
