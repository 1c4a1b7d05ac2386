//! Arbitrary bytes scribbled over a live ring (header, tables, done arrays,
//! slot headers, payloads): the consumer, producer and reopen must give
//! typed errors or in-bounds views only. The same entry point runs as
//! proptest cases in `make test` (`ring::fuzzing` tests).
//!
//! Input: a sequence of 5-byte records, each a little-endian u32 offset
//! (taken modulo the region size) and the byte stored there.
#![no_main]

use std::sync::OnceLock;

use alloy_shm::layout::{off, Layout, RingConfig};
use libfuzzer_sys::fuzz_target;

/// Size of the region `exercise_damaged_ring` builds (its configuration).
fn region_size() -> u32 {
    static SIZE: OnceLock<u32> = OnceLock::new();
    *SIZE.get_or_init(|| {
        let cfg = RingConfig {
            slot_count: 4,
            slot_size: 64,
            max_subscribers: 2,
            max_members: 4,
            schema_capacity: 64,
        };
        Layout::compute(cfg).expect("layout").total_size as u32
    })
}

fuzz_target!(|data: &[u8]| {
    let size = region_size();
    let damage: Vec<(u32, u8)> = data
        .chunks_exact(5)
        .map(|c| (u32::from_le_bytes([c[0], c[1], c[2], c[3]]), c[4]))
        // An odd `schema_seq` makes the schema read wait its designed 1 s
        // before `Timeout` (LAYOUT.md §9; the proptests and unit tests cover
        // it). Left alone here, it would slow the fuzzer down 50-fold.
        .filter(|&(at, _)| (at % size) as usize & !3 != off::SCHEMA_SEQ)
        .collect();
    if let Err(violation) = alloy_shm::ring::fuzzing::exercise_damaged_ring(&damage) {
        panic!("guarantee violated: {violation} (damage {damage:?})");
    }
});
