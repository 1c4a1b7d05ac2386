//! The informational counters of LAYOUT.md §2.1: futex wake-ups, parks,
//! back-pressure waits, `Full` refusals and reclaims, kept in bytes of the
//! region that were reserved (zero) so that `alloy stat` and `alloy
//! metrics` in another process can read them.
//!
//! Every counter is bumped only on a slow path — a futex wake-up actually
//! issued, a park, a wait for space, a refusal, a reclaim — so a busy
//! producer and busy consumers never touch them. A counter with one writer
//! (the producer's words; `reclaims`, written under the table lock) is
//! bumped with a Relaxed load and store, no read-modify-write; a member's
//! words may be bumped by several threads of its process (leases are
//! released from any thread), so they use a Relaxed `fetch_add`. Readers
//! load them Relaxed: they order nothing.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Shared;
use crate::layout::off;

/// Adds `n` to the u64 counter at `at`, whose only writer is the caller
/// (the attached producer, or the table lock holder).
pub(crate) fn bump(sh: &Shared, at: usize, n: u64) {
    let w = sh.hdr64(at);
    // Relaxed: a statistic, read by inspectors only; single writer.
    w.store(w.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Adds `n` to the u64 counter of member entry `member` at offset `field`
/// (several threads of the member's process may bump it at once).
pub(crate) fn bump_member(sh: &Shared, member: usize, field: usize, n: u64) {
    // Relaxed: a statistic; the RMW only keeps concurrent bumps exact.
    sh.member(member)
        .counter(field)
        .fetch_add(n, Ordering::Relaxed);
}

/// Zeroes member entry `member`'s counters: a joiner does this before it
/// stores `state = ACTIVE`, as the entry may hold an earlier member's.
pub(crate) fn reset_member(sh: &Shared, member: usize) {
    let m = sh.member(member);
    for f in [off::MEM_PARKS, off::MEM_PARK_NS, off::MEM_SPACE_WAKES] {
        m.counter(f).store(0, Ordering::Relaxed);
    }
}

/// Counts one reclaim that freed something; the caller holds the table
/// lock, which makes it the only writer of `reclaims`.
pub(crate) fn note_reclaim(sh: &Shared) {
    let w = sh.hdr32(off::RECLAIMS);
    w.store(w.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// Counts one back-pressure wait of `waited` (the producer's).
pub(crate) fn note_backpressure(sh: &Shared, waited: Duration) {
    bump(sh, off::BACKPRESSURE_WAITS, 1);
    bump(sh, off::BACKPRESSURE_NS, waited.as_nanos() as u64);
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::ring::{Backpressure, Ring, RingConfig, WaitStrategy};

    fn ring() -> Ring {
        Ring::anonymous_builder()
            .config(RingConfig {
                slot_count: 2,
                slot_size: 64,
                ..Default::default()
            })
            .create()
            .unwrap()
    }

    /// A busy producer and a consumer that never waits touch no counter.
    #[test]
    fn busy_path_counts_nothing() {
        let r = ring();
        let mut c = r.subscribe().unwrap();
        let mut p = r
            .producer_builder()
            .backpressure(Backpressure::Fail)
            .wait(WaitStrategy::Spin)
            .create()
            .unwrap();
        for i in 0..1000u32 {
            p.send(&i.to_le_bytes(), 0).unwrap();
            assert!(c.try_recv().unwrap().is_some());
        }
        let st = r.stat();
        assert_eq!(st.published, 1000);
        assert_eq!(
            (
                st.data_wakes,
                st.full_refusals,
                st.backpressure_waits,
                st.backpressure_ns
            ),
            (0, 0, 0, 0)
        );
        let m = &st.consumers[0].members[0];
        assert_eq!((m.parks, m.park_ns, m.space_wakes), (0, 0, 0));
    }

    /// Each slow-path event is counted once, by the endpoint that had it.
    #[test]
    fn slow_paths_are_counted() {
        let r = ring();
        let mut c = r.subscribe().unwrap();
        let mut p = r
            .producer_builder()
            .backpressure(Backpressure::Fail)
            .wait(WaitStrategy::Blocking)
            .create()
            .unwrap();
        p.send(b"a", 0).unwrap();
        p.send(b"b", 0).unwrap();
        assert!(p.send(b"c", 0).is_err());
        assert_eq!(r.stat().full_refusals, 1);

        // Block: a wait that times out is one wait of at least its timeout.
        let t = Duration::from_millis(30);
        p.set_backpressure(Backpressure::Block { timeout: Some(t) });
        assert!(p.send(b"c", 0).is_err());
        let st = r.stat();
        assert_eq!(st.backpressure_waits, 1);
        assert!(st.backpressure_ns >= t.as_nanos() as u64, "{st:?}");

        // A release while the producer is parked for space wakes it: one
        // wake-up issued by the consumer, one more wait.
        p.set_backpressure(Backpressure::Block { timeout: None });
        let waiter = std::thread::spawn(move || {
            p.send(b"c", 0).unwrap();
            p
        });
        let t0 = Instant::now();
        while r.stat().consumers[0].members[0].space_wakes == 0 {
            // Release only once the producer is parked (space_waiters).
            assert!(t0.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(5));
            if r.shared
                .hdr32(crate::layout::off::SPACE_WAITERS)
                .load(std::sync::atomic::Ordering::SeqCst)
                != 0
            {
                drop(c.recv().unwrap());
            }
        }
        let mut p = waiter.join().unwrap();
        assert_eq!(r.stat().backpressure_waits, 2);

        // A consumer parked on an empty ring is woken by a publish.
        while let Ok(Some(_)) = c.try_recv() {}
        let reader = std::thread::spawn(move || {
            let m = c.recv().unwrap().unwrap();
            assert_eq!(m.bytes(), b"d");
            drop(m);
            c
        });
        let t0 = Instant::now();
        while r
            .shared
            .hdr32(crate::layout::off::DATA_WAITERS)
            .load(std::sync::atomic::Ordering::SeqCst)
            == 0
        {
            assert!(t0.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        p.send(b"d", 0).unwrap();
        let c = reader.join().unwrap();
        let st = r.stat();
        assert_eq!(st.data_wakes, 1);
        let m = &st.consumers[0].members[0];
        assert!(m.parks >= 1 && m.park_ns > 0, "{m:?}");
        drop(c);
    }
}
