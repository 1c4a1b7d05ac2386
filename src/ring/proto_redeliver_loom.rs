//! Loom models of work-queue redelivery (LAYOUT.md §11.3): a queue member
//! dies holding sequences while a reclaimer converts them and live members
//! claim, take redeliveries and release, and the producer writes the slots
//! the gate lets it have. Loom flags any payload write racing with a
//! holder's read; the assertions check that every sequence reaches a live
//! member, and that no two live members get the same one.
//!
//! Included from `redeliver.rs` under `--cfg loom`; run with `make loom`.

use super::proto::loom_heap::Heap;
use super::proto::{check_slot, ProducerCursor};
use super::*;
use crate::layout::{done, state};
use crate::sync::{AtomicU64, Ordering};
use loom::sync::Arc;

/// One queue subscriber (entry 0), ACTIVE from the start.
fn queue_heap(n: usize) -> Heap {
    let h = Heap::new(n, 1);
    h.sub_state[0].store(state::ACTIVE, Ordering::SeqCst);
    h
}

impl QueueWords for Heap {
    fn sub_redeliver(&self, k: usize) -> &AtomicU64 {
        &self.redeliver[k]
    }
}

fn publish(h: &Heap, cur: &mut ProducerCursor, m: u64) -> bool {
    let Some(i) = cur.try_reserve(h) else {
        return false;
    };
    // Writing the payload races with a holder's read unless the gate is
    // right: loom reports it.
    // SAFETY: loom's UnsafeCell hands a valid pointer and tracks the access; a racing access fails the model.
    h.payload[i].with_mut(|p| unsafe { *p = m * 10 });
    cur.publish(h, 8, 0);
    true
}

/// Reads held `seq` twice across a scheduling point, then releases it as
/// member `me`: the slot must not change while it is held.
fn read_held(h: &Heap, me: u32, seq: u64) {
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
    release(h, 0, me, seq);
}

/// `tries` claim attempts of member `me`: what it got, with the flag.
fn member(h: &Heap, me: u32, tries: usize) -> Vec<(u64, bool)> {
    let mut got = Vec::new();
    for _ in 0..tries {
        if let QueueClaim::Got { seq, redelivered } = try_claim(h, 0, me) {
            read_held(h, me, seq);
            got.push((seq, redelivered));
        }
    }
    got
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.max_branches = 100_000;
    b.check(f);
}

/// Member 1 dies holding 0 (recorded) and having won the claim CAS for 1
/// without recording itself; the ring (2 slots) is full. Concurrently the
/// reclaimer converts both, member 0 claims, the producer tries to publish
/// 2 and 3. Member 0 ends up with 0 and 1 (flagged) and everything
/// published after, each once, and no slot is written while held.
#[test]
fn loom_dead_member_sequences_are_redelivered() {
    model(|| {
        let h = Arc::new(queue_heap(2));
        let mut cur = ProducerCursor::attach(&*h);
        assert!(publish(&h, &mut cur, 0) && publish(&h, &mut cur, 1));
        assert!(matches!(
            try_claim(&*h, 0, 1),
            QueueClaim::Got { seq: 0, .. }
        ));
        h.claim[0].store(2, Ordering::SeqCst); // member 1 won 1, then died
        let producer = {
            let h = h.clone();
            loom::thread::spawn(move || {
                let mut sent = 2;
                while sent < 4 && (publish(&h, &mut cur, sent) || publish(&h, &mut cur, sent)) {
                    sent += 1;
                }
                (sent, cur)
            })
        };
        let reclaimer = {
            let h = h.clone();
            loom::thread::spawn(move || reclaim_member(&*h, 0, 1))
        };
        let mut got = member(&h, 0, 2);
        let (_, mut cur) = producer.join().unwrap();
        let converted = reclaimer.join().unwrap();
        // Alone now: drain, letting the producer finish.
        while publish_next(&h, &mut cur) {}
        h.closed.store(1, Ordering::SeqCst);
        loop {
            match try_claim(&*h, 0, 0) {
                QueueClaim::Got { seq, redelivered } => {
                    read_held(&h, 0, seq);
                    got.push((seq, redelivered));
                }
                QueueClaim::Ended => break,
                QueueClaim::Empty => panic!("empty with everything published"),
            }
        }
        let mut seqs: Vec<u64> = got.iter().map(|g| g.0).collect();
        seqs.sort();
        let published = h.published.load(Ordering::SeqCst);
        assert_eq!(
            seqs,
            (0..published).collect::<Vec<_>>(),
            "each once, none lost"
        );
        assert_eq!(converted, 2, "0 held, 1 unrecorded");
        for (seq, again) in got {
            assert_eq!(again, seq < 2, "seq {seq}: redelivered flag");
        }
        assert_eq!(h.redeliver[0].load(Ordering::SeqCst), 0);
        assert_eq!(h.release[0].load(Ordering::SeqCst), published);
    });
}

/// Publishes the next of messages 0..4 if the gate allows; false when all
/// are out or the ring is full.
fn publish_next(h: &Heap, cur: &mut ProducerCursor) -> bool {
    let next = cur.next;
    next < 4 && publish(h, cur, next)
}

/// Member 2 died holding 0. Live members 0 and 1 claim concurrently with
/// the reclaim, so a live claimer may be between its claim CAS and its
/// HELD CAS when the reclaimer converts its sequence: every sequence still
/// reaches exactly one live member, and only 0 may be flagged besides a
/// sequence taken from a claimer's window.
#[test]
fn loom_reclaim_races_live_claimers() {
    model(|| {
        let h = Arc::new(queue_heap(2));
        let mut cur = ProducerCursor::attach(&*h);
        assert!(publish(&h, &mut cur, 0) && publish(&h, &mut cur, 1));
        assert!(matches!(
            try_claim(&*h, 0, 2),
            QueueClaim::Got { seq: 0, .. }
        ));
        h.closed.store(1, Ordering::SeqCst);
        let reclaimer = {
            let h = h.clone();
            loom::thread::spawn(move || reclaim_member(&*h, 0, 2))
        };
        let other = {
            let h = h.clone();
            loom::thread::spawn(move || member(&h, 1, 1))
        };
        let mut got = member(&h, 0, 1);
        got.extend(other.join().unwrap());
        let converted = reclaimer.join().unwrap();
        assert!((1..=2).contains(&converted), "converted {converted}");
        // Drain what is left (a redelivery nobody took yet).
        loop {
            match try_claim(&*h, 0, 0) {
                QueueClaim::Got { seq, redelivered } => {
                    read_held(&h, 0, seq);
                    got.push((seq, redelivered));
                }
                QueueClaim::Ended => break,
                QueueClaim::Empty => panic!("empty: a sequence was lost"),
            }
        }
        let mut seqs: Vec<u64> = got.iter().map(|g| g.0).collect();
        seqs.sort();
        assert_eq!(seqs, vec![0, 1], "each sequence to exactly one live member");
        assert!(
            got.contains(&(0, true)),
            "the dead member's 0 comes back flagged"
        );
        assert_eq!(h.done[0].load(Ordering::SeqCst), 1);
        assert_eq!(h.done[1].load(Ordering::SeqCst), 2);
        assert_eq!(h.redeliver[0].load(Ordering::SeqCst), 0);
        assert_ne!(h.done[0].load(Ordering::SeqCst), done::redeliver(0));
    });
}
