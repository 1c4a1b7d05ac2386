//! `Producer::set_interrupt`: the check ends a `Block` wait on a full ring
//! with `SendError::Interrupted`, whether the producer parks or spins, and
//! the producer stays usable (nothing was reserved).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_shm::ring::{Backpressure, Producer, Ring, SendError, WaitStrategy};

/// A `Producer` can be shared between threads behind an `Arc` (the
/// interrupt check is `Send + Sync`).
#[allow(dead_code)]
fn producer_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Producer>();
}

fn interrupted_on_a_full_ring(wait: WaitStrategy) {
    let ring = Ring::anonymous_builder()
        .slot_count(2)
        .slot_size(64)
        .create()
        .unwrap();
    let _c = ring.subscribe().unwrap(); // never reads: the ring fills
    let mut p = ring
        .producer_builder()
        .backpressure(Backpressure::Block { timeout: None })
        .wait(wait)
        .create()
        .unwrap();
    p.send(b"one", 0).unwrap();
    p.send(b"two", 0).unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&calls);
    p.set_interrupt(Duration::from_millis(10), move || {
        if seen.fetch_add(1, Ordering::Relaxed) >= 2 {
            Err("stop".into())
        } else {
            Ok(())
        }
    });
    let start = Instant::now();
    // On a thread, so a send the check never ends fails the test instead
    // of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = p.send(b"three", 0).map(|_| ());
        let _ = tx.send((r, p.published()));
    });
    let (r, published) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the interrupt check did not end the wait");
    let err = r.unwrap_err();
    assert!(
        matches!(&err, SendError::Interrupted(why) if why == "stop"),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    assert_eq!(published, 2, "an interrupted send publishes nothing");
}

#[test]
fn a_parked_producer_is_interrupted() {
    interrupted_on_a_full_ring(WaitStrategy::default());
}

#[test]
fn a_spinning_producer_is_interrupted() {
    interrupted_on_a_full_ring(WaitStrategy::Spin);
}
