//! Hostile-memory exercise of the reader, shared by the proptest cases in
//! `make test` and the `cargo fuzz` target (`fuzz/`): whatever bytes a peer
//! scribbles over the region, a consumer gets typed errors or in-bounds
//! views, never a panic or a read outside the mapping.

use super::{Backpressure, RecvError, Ring, RingConfig, WaitStrategy};
use crate::layout::Layout;

/// Builds a small ring holding three messages for one subscriber, applies
/// `damage` (byte writes at offsets taken modulo the region size), then
/// drives the consumer and a reopen. Returns a description of any violated
/// guarantee (a panic would surface as a test failure on its own).
pub fn exercise_damaged_ring(damage: &[(u32, u8)]) -> Result<(), String> {
    let cfg = RingConfig {
        slot_count: 4,
        slot_size: 64,
        max_subscribers: 2,
        max_members: 4,
        schema_capacity: 64,
    };
    let ring = Ring::anonymous_builder()
        .config(cfg)
        .create()
        .map_err(|e| e.to_string())?;
    let mut c = ring.subscribe().map_err(|e| e.to_string())?;
    let mut p = ring
        .producer_builder()
        .backpressure(Backpressure::Fail)
        .wait(WaitStrategy::Spin)
        .create()
        .map_err(|e| e.to_string())?;
    for j in 0..3u8 {
        p.send(&[j; 10], j as u32).map_err(|e| e.to_string())?;
    }
    let total = ring.region().layout().total_size;
    let base = ring.region().base();
    for &(at, b) in damage {
        let at = at as usize % total;
        // SAFETY: `at < total_size`, inside the mapping; a volatile byte
        // store is what a hostile peer process would do to us.
        unsafe { base.add(at).write_volatile(b) };
    }
    // Re-validating the damaged bytes: a layout or a typed error.
    let snap = ring.region().snapshot();
    if let Ok(l) = Layout::parse(&snap, snap.len() as u64) {
        if l.total_size > snap.len() {
            return Err("accepted a layout larger than the file".into());
        }
    }
    // Leases point into the consumer's read-only mapping (LAYOUT.md §1).
    let lo = ring.region().read_base() as usize;
    let hi = lo + total;
    let mut held = Vec::new();
    for _ in 0..16 {
        match c.try_recv() {
            Ok(Some(l)) => {
                let at = l.as_ptr() as usize;
                if at < lo || at + l.len() > hi || l.len() > 64 {
                    return Err(format!("lease {at:#x}+{} outside the mapping", l.len()));
                }
                held.push(l);
                if held.len() > 2 {
                    held.remove(0);
                }
            }
            Ok(None) => break,
            Err(RecvError::Empty) | Err(RecvError::Corrupt { .. }) => {}
            Err(e) => return Err(format!("unexpected error kind: {e}")),
        }
        // The producer keeps going on the damaged ring too.
        let _ = p.send(b"more", 0);
    }
    let _ = ring.schema();
    let _ = ring.subscribers();
    // A damaged table lock naming a live process (even this one) is, by
    // design, waited for; clear it so detaching below cannot wait for ever.
    ring.shared
        .hdr64(crate::layout::off::TABLE_LOCK)
        .store(0, crate::sync::Ordering::SeqCst);
    drop(held);
    drop(c);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undamaged_ring_passes() {
        exercise_damaged_ring(&[]).unwrap();
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Arbitrary byte damage anywhere in the region.
        #[test]
        fn arbitrary_damage_gives_typed_errors_only(
            damage in proptest::collection::vec((proptest::num::u32::ANY, proptest::num::u8::ANY), 0..24)
        ) {
            proptest::prop_assert_eq!(exercise_damaged_ring(&damage), Ok(()));
        }

        /// Damage concentrated on the hot words: cursors, stamps, lengths.
        #[test]
        fn damage_to_cursors_and_slot_headers(
            words in proptest::collection::vec((0usize..8, proptest::num::u64::ANY), 1..6)
        ) {
            // published, claim[0], release[0], done[0][0], stamp/len of slots 0 and 1, table_epoch
            let offsets = [64u32, 256 + 64, 256 + 72, 768, 4096, 4096 + 8, 4096 + 128, 144];
            let damage: Vec<(u32, u8)> = words
                .iter()
                .flat_map(|&(f, v)| (0..8).map(move |i| (offsets[f] + i, (v >> (8 * i)) as u8)))
                .collect();
            proptest::prop_assert_eq!(exercise_damaged_ring(&damage), Ok(()));
        }
    }
}
