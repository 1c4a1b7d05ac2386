//! A named region owned by another user is refused unless explicitly
//! allowed (LAYOUT.md §1: "Opening a named region checks that the file is a
//! regular file owned by the caller's effective uid").
//!
//! The test needs to give a ring file to another uid. As root (CI) it
//! `chown`s the file to `nobody` (65534); as an ordinary user `chown` is
//! impossible and the test says so and skips.

use std::io::ErrorKind;

use alloy_shm::region::{named_path, Region, RegionError};
use alloy_shm::ring::{Ring, RingConfig, RingError};

/// The uid the ring file is given: `nobody` on Debian and most distros.
const OTHER_UID: u32 = 65534;

/// Removes the named ring when dropped, whatever the outcome.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Ring::unlink(&self.0);
    }
}

#[test]
fn region_owned_by_another_user_is_refused_unless_allowed() {
    let name = format!("alloy-owner-{}", std::process::id());
    let _ = Ring::unlink(&name);
    let cfg = RingConfig {
        slot_count: 4,
        slot_size: 64,
        ..Default::default()
    };
    let created = Ring::create(&name, &cfg).expect("create");
    let _cleanup = Cleanup(name.clone());
    let me = rustix::process::geteuid().as_raw();
    assert_ne!(me, OTHER_UID, "run the test as a user other than nobody");

    // Our own ring opens.
    Region::open_named(&name).expect("own ring opens");

    let path = named_path(&name);
    if let Err(e) = std::os::unix::fs::chown(&path, Some(OTHER_UID), None) {
        if me != 0 && e.kind() == ErrorKind::PermissionDenied {
            eprintln!(
                "SKIPPED region_owned_by_another_user_is_refused_unless_allowed: \
                 not root (uid {me}), so {} cannot be given to uid {OTHER_UID} ({e})",
                path.display()
            );
            return;
        }
        panic!(
            "chown {} to uid {OTHER_UID} as uid {me}: {e}",
            path.display()
        );
    }

    // Default: refused, with an error naming the ring, the owner and us.
    match Region::open_named(&name) {
        Err(RegionError::ForeignOwner {
            name: n,
            owner,
            me: m,
        }) => {
            assert_eq!((n.as_str(), owner, m), (name.as_str(), OTHER_UID, me));
        }
        other => panic!("expected ForeignOwner, got {other:?}"),
    }
    let msg = Region::open_named_with(&name, false)
        .unwrap_err()
        .to_string();
    assert_eq!(
        msg,
        format!("ring {name:?} is owned by uid {OTHER_UID}, not by this user (uid {me})")
    );
    // The ring layer passes the same refusal through.
    match Ring::open(&name) {
        Err(RingError::Region(RegionError::ForeignOwner { owner, .. })) => {
            assert_eq!(owner, OTHER_UID)
        }
        other => panic!("Ring::open: expected ForeignOwner, got {other:?}"),
    }

    // Explicitly allowed: opens, and it is the same ring (same geometry,
    // and a message published through the creator's mapping is visible).
    let foreign = Region::open_named_with(&name, true).expect("allowed foreign owner opens");
    assert_eq!(
        foreign.layout().total_size,
        created.region().layout().total_size
    );
    assert_eq!(foreign.layout().config.slot_count, 4);
    assert_eq!(foreign.snapshot(), created.region().snapshot());
}
