//! Helpers shared by the cross-process ring tests.

use alloy_shm::ring::{Ring, RingConfig};
use alloy_testkit::checked::Spec;

/// The checked-message parameters every test process uses (doc/TESTING.md).
pub const SPEC: Spec = Spec {
    seed: 1,
    min: 16,
    max: 4096,
};

/// Removes a named ring when dropped, whatever the test's outcome.
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Ring::remove(&self.0);
    }
}

/// Creates the named ring `alloy-<tag>-<pid>` of `slots` × 4096-byte slots
/// (removing a leftover of that name first).
pub fn new_ring(tag: &str, slots: u32) -> (Ring, Cleanup) {
    let name = format!("alloy-{tag}-{}", std::process::id());
    let _ = Ring::remove(&name);
    let cfg = RingConfig {
        slot_count: slots,
        slot_size: 4096,
        ..Default::default()
    };
    (
        Ring::builder(&name).config(cfg).create().expect("create"),
        Cleanup(name),
    )
}
