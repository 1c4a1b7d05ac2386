//! Arbitrary bytes scribbled over a live ring (header, tables, done arrays,
//! slot headers, payloads): the consumer, producer and reopen must give
//! typed errors or in-bounds views only. The same entry point runs as
//! proptest cases in `make test` (`ring::fuzzing` tests).
//!
//! Input: a sequence of 5-byte records, each a little-endian u32 offset
//! (taken modulo the region size) and the byte stored there.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let damage: Vec<(u32, u8)> = data
        .chunks_exact(5)
        .map(|c| (u32::from_le_bytes([c[0], c[1], c[2], c[3]]), c[4]))
        .collect();
    if let Err(violation) = alloy_shm::ring::fuzzing::exercise_damaged_ring(&damage) {
        panic!("guarantee violated: {violation} (damage {damage:?})");
    }
});
