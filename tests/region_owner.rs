//! A named region owned by another user is refused unless explicitly
//! allowed (LAYOUT.md §1: "Opening a named region checks that the file is a
//! regular file owned by the caller's effective uid").
//!
//! Both sides are real processes of different uids: as root (CI), the test
//! runs the other side as `nobody` (uid and gid 65534) by re-running this
//! test binary's ignored `child_side` test with its uid and gid dropped.
//! The ring is created by one uid and opened by the other, in both
//! directions. Without root the test skips, or fails under CI /
//! `ALLOY_REQUIRE_CROSS` (tests/support).

mod support;

use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use alloy_shm::layout::off;
use alloy_shm::region::{named_path, Region, RegionError};
use alloy_shm::ring::{OpenError, Ring, RingConfig};

/// The uid (and gid) of the other side: `nobody` on Debian and most distros.
const OTHER_UID: u32 = 65534;

/// Tells `child_side` what to do: `<role> <ring name> <messages published>`.
const CHILD_ENV: &str = "ALLOY_OWNER_CHILD";

/// The ring both sides use: a geometry no default has, so the opener can
/// tell it is the creator's ring.
const CFG: RingConfig = RingConfig {
    slot_count: 8,
    slot_size: 192,
    max_subscribers: 4,
    max_members: 4,
    schema_capacity: 256,
};

/// Messages the creator publishes (with nobody subscribed, §4 gate: they
/// are simply overwritten) so the opener can check the counter.
const PUBLISHED: u64 = 5;

/// Removes the named ring and the copied binary when dropped.
struct Cleanup(String, Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Ring::remove(&self.0);
        if let Some(dir) = &self.1 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The `published` counter of a region, read through its mapping.
fn published(r: &Region) -> u64 {
    let snap = r.snapshot();
    u64::from_le_bytes(snap[off::PUBLISHED..off::PUBLISHED + 8].try_into().unwrap())
}

/// Creates the ring `name` with [`CFG`] and publishes [`PUBLISHED`] messages.
fn create_and_publish(name: &str) -> Ring {
    let _ = Ring::remove(name);
    let ring = Ring::builder(name).config(CFG).create().expect("create");
    let mut p = ring.producer().expect("producer");
    for i in 0..PUBLISHED {
        p.send(&i.to_le_bytes(), 0).expect("send");
    }
    ring
}

/// Checks that the opener (uid `me`) refuses `name`, owned by `owner`, by
/// default at both layers with the documented error, and opens it when
/// allowed: the same ring, [`PUBLISHED`] messages in.
fn check_refused_then_allowed(name: &str, owner: u32, me: u32) {
    match Region::open_named(name) {
        Err(RegionError::ForeignOwner {
            name: n,
            owner: o,
            me: m,
        }) => assert_eq!((n.as_str(), o, m), (name, owner, me)),
        other => panic!("uid {me}: expected ForeignOwner, got {other:?}"),
    }
    let msg = Region::open_named_with(name, false)
        .unwrap_err()
        .to_string();
    assert_eq!(
        msg,
        format!("ring {name:?} is owned by uid {owner}, not by this user (uid {me})")
    );
    match Ring::open(name) {
        Err(OpenError::Region(RegionError::ForeignOwner { owner: o, .. })) => {
            assert_eq!(o, owner)
        }
        other => panic!("uid {me}: Ring::open: expected ForeignOwner, got {other:?}"),
    }
    let foreign = Region::open_named_with(name, true).expect("allowed foreign owner opens");
    assert_eq!(foreign.layout().config, CFG);
    assert_eq!(published(&foreign), PUBLISHED);
}

/// Copies this test binary where uid 65534 can run it (the target
/// directory may not be readable by it) and returns (directory, binary).
/// `tag`: one directory per test, as the tests run in parallel.
fn binary_for_nobody(tag: &str) -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = std::env::temp_dir().join(format!("alloy-owner-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("region_owner");
    std::fs::copy(&exe, &bin).expect("copy the test binary");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, bin)
}

/// Runs `child_side` of `bin` as uid/gid 65534 (supplementary groups
/// dropped by std when uid is set as root) and returns its output.
fn as_nobody(bin: &PathBuf, role: &str, name: &str) -> Output {
    let mut tries = 0;
    let out = loop {
        let run = Command::new(bin)
            .args([
                "--ignored",
                "--exact",
                "child_side",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{role} {name}"))
            .current_dir("/")
            .uid(OTHER_UID)
            .gid(OTHER_UID)
            .output();
        match run {
            // A process forked by another test thread while the copy was
            // open for writing holds it until its exec: retry.
            Err(e) if e.kind() == ErrorKind::ExecutableFileBusy && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => break r.expect("run the child as nobody"),
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "child {role:?} as uid {OTHER_UID}: {}\n{text}",
        out.status
    );
    // The harness ran exactly our child (a filter typo would run none).
    assert!(
        text.contains("1 passed"),
        "child {role:?} ran no test:\n{text}"
    );
    out
}

/// `None` (after `support::skip`) unless we are root, who can run a process
/// as another uid.
fn root_or_skip(test: &str) -> Option<()> {
    let me = rustix::process::geteuid().as_raw();
    if me != 0 {
        support::skip(
            test,
            &format!("not root (uid {me}), so no process of another uid can be started"),
        );
        return None;
    }
    Some(())
}

/// A ring created by `nobody` is refused by root (the check is on the
/// owner, not on whether the file can be opened: root can open it), and
/// opens when allowed.
#[test]
fn ring_created_by_another_user_is_refused_unless_allowed() {
    let test = "ring_created_by_another_user_is_refused_unless_allowed";
    if root_or_skip(test).is_none() {
        return;
    }
    let (dir, bin) = binary_for_nobody("a");
    let name = format!("alloy-owner-a-{}", std::process::id());
    let _ = Ring::remove(&name);
    let _cleanup = Cleanup(name.clone(), Some(dir));
    as_nobody(&bin, "create", &name);

    let meta = std::fs::metadata(named_path(&name)).expect("the child's ring");
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777),
        (OTHER_UID, 0o600),
        "created by the child, mode 0600"
    );
    check_refused_then_allowed(&name, OTHER_UID, 0);
}

/// A ring created by root: `nobody` cannot even open it while it is 0600
/// (the kernel refuses), and once root grants access through the mode the
/// library still refuses it unless allowed.
#[test]
fn another_user_is_refused_unless_allowed() {
    let test = "another_user_is_refused_unless_allowed";
    if root_or_skip(test).is_none() {
        return;
    }
    let (dir, bin) = binary_for_nobody("b");
    let name = format!("alloy-owner-b-{}", std::process::id());
    let _cleanup = Cleanup(name.clone(), Some(dir));
    let ring = create_and_publish(&name);
    // Our own ring opens.
    Region::open_named(&name).expect("own ring opens");

    as_nobody(&bin, "denied", &name);
    let path = named_path(&name);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    as_nobody(&bin, "foreign", &name);
    // The creator's handle is unaffected.
    assert_eq!(ring.published(), PUBLISHED);
}

/// The other side, run by the tests above as uid 65534 with `CHILD_ENV`
/// set; does nothing otherwise.
#[test]
#[ignore = "the other uid's side of the tests above; they run it"]
fn child_side() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        eprintln!("child_side: {CHILD_ENV} not set; nothing to do");
        return;
    };
    let (role, name) = spec.split_once(' ').expect("role and name");
    let me = rustix::process::geteuid().as_raw();
    assert_eq!(me, OTHER_UID, "the child runs as uid {OTHER_UID}");
    match role {
        // Leaves the ring in /dev/shm for the parent.
        "create" => drop(create_and_publish(name)),
        "denied" => match Region::open_named(name) {
            Err(RegionError::Io { source, .. }) => {
                assert_eq!(source.kind(), ErrorKind::PermissionDenied, "{source}")
            }
            other => panic!("a 0600 ring of uid 0 opened as uid {me}: {other:?}"),
        },
        "foreign" => check_refused_then_allowed(name, 0, me),
        _ => panic!("unknown role {role:?}"),
    }
}
