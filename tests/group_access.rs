//! Rings shared by a group (issue #17, LAYOUT.md §1): the creator gives the
//! ring to a group at creation ([`RingBuilder::group`], mode 0660); a
//! consumer run by another user in that group attaches with a plain
//! `Ring::open` and receives; a user outside the group is refused by the
//! kernel with an error naming the ring's owner, group and mode.
//!
//! As root (CI) the other users are this test binary re-run with its uid
//! and gid dropped (std clears the supplementary groups): the member as uid
//! 65534 with primary group [`GROUP`], the outsider as uid/gid 65533.
//! Without root the test skips, or fails under CI / `ALLOY_REQUIRE_CROSS`
//! (tests/support).
//!
//! [`RingBuilder::group`]: alloy_shm::ring::RingBuilder::group

mod support;

use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alloy_shm::region::{named_path, RegionError};
use alloy_shm::ring::{OpenError, Ring};

/// The group the ring is shared with: one no account needs to have.
const GROUP: u32 = 4242;
/// The member of [`GROUP`] (uid; its primary group is [`GROUP`]).
const MEMBER_UID: u32 = 65534;
/// The user outside the group (uid and gid).
const OUTSIDER_UID: u32 = 65533;

/// Tells `group_child` what to do: `<role> <ring name>`.
const CHILD_ENV: &str = "ALLOY_GROUP_CHILD";

struct Cleanup(String, PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Ring::remove(&self.0);
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// A copy of this test binary that other uids can run (the target
/// directory may not be readable by them): (directory, binary).
fn runnable_copy() -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("alloy-group-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("group_access");
    std::fs::copy(std::env::current_exe().unwrap(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, bin)
}

/// Starts `group_child` of `bin` as `uid`/`gid` with stdout piped.
fn start_as(bin: &Path, uid: u32, gid: u32, role: &str, name: &str) -> Child {
    let mut tries = 0;
    loop {
        let run = Command::new(bin)
            .args([
                "--ignored",
                "--exact",
                "group_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{role} {name}"))
            .current_dir("/")
            .uid(uid)
            .gid(gid)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match run {
            // Another test's fork may hold the copy open for writing until
            // its exec: retry.
            Err(e) if e.kind() == ErrorKind::ExecutableFileBusy && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r.expect("start the child"),
        }
    }
}

/// Waits for the child and checks that `group_child` ran and passed.
fn finish(mut child: Child, role: &str, mut seen: String) {
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut seen)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.success() && seen.contains("1 passed"),
        "child {role:?}: {status}\n{seen}{err}"
    );
}

#[test]
fn group_members_attach_and_others_are_refused() {
    let test = "group_members_attach_and_others_are_refused";
    let me = rustix::process::geteuid().as_raw();
    if me != 0 {
        support::skip(
            test,
            &format!("not root (uid {me}), so no process of another uid can be started"),
        );
        return;
    }
    let (dir, bin) = runnable_copy();
    let name = format!("alloy-group-{}", std::process::id());
    let _ = Ring::remove(&name);
    let _cleanup = Cleanup(name.clone(), dir);
    let ring = Ring::builder(&name)
        .slot_count(8)
        .slot_size(192)
        .max_subscribers(4)
        .max_members(4)
        .schema_capacity(0)
        .group(GROUP)
        .create()
        .unwrap();
    let meta = std::fs::metadata(named_path(&name)).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (0, GROUP, 0o660)
    );
    let mut tx = ring.producer().unwrap();

    finish(
        start_as(&bin, OUTSIDER_UID, OUTSIDER_UID, "outsider", &name),
        "outsider",
        String::new(),
    );

    let mut member = start_as(&bin, MEMBER_UID, GROUP, "member", &name);
    let mut out = BufReader::new(member.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "member exited before ready:\n{seen}"
        );
        seen.push_str(&line);
        // The harness prints "test group_child ... " on the same line.
        if line.trim_end().ends_with("ready") {
            break;
        }
    }
    tx.send(b"to the group", 0).unwrap();
    tx.close(); // ends the stream
    member.stdout = Some(out.into_inner());
    finish(member, "member", seen);
}

/// The other users' side, run by the test above with `CHILD_ENV` set.
#[test]
#[ignore = "the other users' side of group_members_attach_and_others_are_refused"]
fn group_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        eprintln!("group_child: {CHILD_ENV} not set; nothing to do");
        return;
    };
    let (role, name) = spec.split_once(' ').unwrap();
    let me = rustix::process::geteuid().as_raw();
    match role {
        "member" => {
            // A plain open: a ring shared with our group is accepted
            // although another user owns it.
            let ring = Ring::open(name).expect("a group member opens the ring");
            let mut rx = ring.subscribe().unwrap();
            println!("ready");
            let got = rx.recv_timeout(Duration::from_secs(30)).unwrap();
            assert_eq!(&*got.expect("a message"), b"to the group");
            assert!(
                rx.recv_timeout(Duration::from_secs(30)).unwrap().is_none(),
                "end of stream"
            );
        }
        "outsider" => {
            let want = format!(
                "({}: owner uid 0, group gid {GROUP}, mode 660) is not open to uid {me}",
                named_path(name).display()
            );
            for allow in [false, true] {
                match Ring::builder(name).allow_foreign_owner(allow).open() {
                    Err(OpenError::Region(e @ RegionError::Io { .. })) => {
                        let RegionError::Io { source, .. } = &e else {
                            unreachable!()
                        };
                        assert_eq!(source.kind(), ErrorKind::PermissionDenied);
                        assert!(e.to_string().contains(&want), "{e}");
                    }
                    other => panic!("uid {me} outside the group: {other:?}"),
                }
            }
            // Nor can it give a ring of its own to a group it is not in.
            let other = format!("{name}-outsider");
            let err = Ring::builder(&other)
                .slot_count(4)
                .slot_size(64)
                .group(GROUP)
                .create()
                .unwrap_err();
            assert!(
                err.to_string()
                    .contains("the creator must be root or in that group"),
                "{err}"
            );
            assert!(!named_path(&other).exists(), "no file left behind");
        }
        _ => panic!("unknown role {role:?}"),
    }
}
