//! Rings in a directory other than `/dev/shm` (issue #17, LAYOUT.md §1):
//! [`RingBuilder::dir`](alloy_shm::ring::RingBuilder::dir), the
//! `ALLOY_SHM_DIR` environment variable both languages honour, the
//! `NoSpace` error that names Docker's `--shm-size` and Kubernetes'
//! `emptyDir`, and a Go producer feeding a Rust consumer through a ring in
//! such a directory.
//!
//! The too-small test mounts a 1 MiB tmpfs, so it needs root; the Go test
//! needs `bin/alloy-go`. Without them the tests skip, or fail under CI /
//! `ALLOY_REQUIRE_CROSS` (tests/support).

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use alloy_shm::arrow::{in_mapping, IpcReader};
use alloy_shm::region::{shm_dir, RegionError, SHM_DIR_ENV};
use alloy_shm::ring::{OpenError, Ring};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};

/// Tells `env_child` the ring to create: `<ring name>`.
const CHILD_ENV: &str = "ALLOY_SHM_DIR_CHILD";

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("alloy-shmdir-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn name(tag: &str) -> String {
    format!("alloy-shmdir-{tag}-{}", std::process::id())
}

#[test]
fn builder_dir_creates_opens_and_unlinks_there() {
    let dir = TempDir::new("builder");
    let name = name("builder");
    let ring = Ring::builder(&name)
        .dir(&dir.0)
        .slot_count(8)
        .slot_size(256)
        .create()
        .unwrap();
    let meta = std::fs::metadata(dir.0.join(&name)).expect("the ring file is in the directory");
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert!(
        !Path::new("/dev/shm").join(&name).exists(),
        "nothing in /dev/shm"
    );
    // The default directory does not have it.
    assert!(matches!(
        Ring::open(&name),
        Err(OpenError::Region(RegionError::NotFound(_)))
    ));
    // A second handle opened through the directory sees the same ring.
    let opened = Ring::builder(&name).dir(&dir.0).open().unwrap();
    let mut rx = opened.subscribe().unwrap();
    let mut tx = ring.producer().unwrap();
    tx.send(b"in a custom dir", 0).unwrap();
    assert_eq!(&*rx.recv().unwrap().unwrap(), b"in a custom dir");
    drop((rx, tx));
    Ring::remove_in(&dir.0, &name).unwrap();
    assert!(!dir.0.join(&name).exists());
}

/// `ALLOY_SHM_DIR` moves `RingBuilder::create`, `Ring::open` and `Ring::remove` without any code
/// change. The variable is set for a child (this binary's ignored
/// `env_child`), not in this multi-threaded process.
#[test]
fn env_var_moves_named_rings() {
    let dir = TempDir::new("env");
    let name = name("env");
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "env_child", "--nocapture"])
        .env(SHM_DIR_ENV, &dir.0)
        .env(CHILD_ENV, &name)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "child: {text}"
    );
    let ring = Ring::builder(&name).dir(&dir.0).open().unwrap();
    assert_eq!(ring.published(), 3, "the child's three messages");
    assert_eq!(ring.config().slot_size, 128);
    Ring::remove_in(&dir.0, &name).unwrap();
}

#[test]
#[ignore = "run by env_var_moves_named_rings with ALLOY_SHM_DIR set"]
fn env_child() {
    let Ok(name) = std::env::var(CHILD_ENV) else {
        eprintln!("env_child: {CHILD_ENV} not set; nothing to do");
        return;
    };
    let dir = PathBuf::from(std::env::var_os(SHM_DIR_ENV).expect("ALLOY_SHM_DIR"));
    assert_eq!(shm_dir(), dir);
    let ring = Ring::builder(&name)
        .slot_count(4)
        .slot_size(128)
        .create()
        .unwrap();
    assert!(dir.join(&name).is_file());
    let mut tx = ring.producer().unwrap();
    for i in 0u8..3 {
        tx.send(&[i], 0).unwrap();
    }
    // Open and unlink through the variable too (then create it again for
    // the parent).
    drop(Ring::open(&name).unwrap());
    drop(tx);
    drop(ring);
    Ring::remove(&name).unwrap();
    assert!(!dir.join(&name).exists());
    let ring = Ring::builder(&name)
        .slot_count(4)
        .slot_size(128)
        .create()
        .unwrap();
    let mut tx = ring.producer().unwrap();
    for i in 0u8..3 {
        tx.send(&[i], 0).unwrap();
    }
}

/// Unmounts the tmpfs and removes its mount point when dropped.
struct Tmpfs(TempDir);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0 .0).status();
    }
}

/// A ring bigger than its directory's filesystem (Docker's 64 MB
/// `/dev/shm` holds no default 64 MiB ring) fails at creation with an
/// error naming the fix, and leaves no file; a ring that fits is created.
#[test]
fn too_small_dir_fails_naming_shm_size_and_emptydir() {
    let test = "too_small_dir_fails_naming_shm_size_and_emptydir";
    let me = rustix::process::geteuid().as_raw();
    if me != 0 {
        support::skip(
            test,
            &format!("not root (uid {me}), so no 1 MiB tmpfs can be mounted"),
        );
        return;
    }
    let mnt = Tmpfs(TempDir::new("small"));
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt.0 .0)
        .status()
        .expect("run mount");
    if !st.success() {
        support::skip(test, "mount -t tmpfs failed (no CAP_SYS_ADMIN here?)");
        return;
    }
    let name = name("small");
    // The default geometry: 64 slots of 1 MiB.
    let err = Ring::builder(&name).dir(&mnt.0 .0).create().unwrap_err();
    let OpenError::Region(RegionError::NoSpace {
        needed, free, dir, ..
    }) = &err
    else {
        panic!("expected NoSpace, got {err:?}");
    };
    assert!(*needed > 64 << 20 && *free <= 1 << 20, "{needed} {free}");
    assert_eq!(Path::new(dir), mnt.0 .0);
    let msg = err.to_string();
    for want in [
        "needs",
        "free",
        "--shm-size",
        "emptyDir",
        "medium: Memory",
        "sizeLimit",
    ] {
        assert!(msg.contains(want), "{want:?} missing from: {msg}");
    }
    assert!(!mnt.0 .0.join(&name).exists(), "no file left behind");
    // A ring that fits is created in the same directory.
    let small = Ring::builder(&name)
        .dir(&mnt.0 .0)
        .slot_count(8)
        .slot_size(4096)
        .create()
        .unwrap();
    assert!(small.region().layout().total_size < 1 << 20);
    drop(small);
    Ring::remove_in(&mnt.0 .0, &name).unwrap();
}

/// A Go producer (`bin/alloy-go send`, told the directory by
/// `ALLOY_SHM_DIR`) and a Rust consumer (told it by the builder) share a
/// ring in a custom directory; the batches arrive intact and zero-copy.
#[test]
fn go_producer_rust_consumer_in_custom_dir() {
    let Some(go) = support::go_cli("go_producer_rust_consumer_in_custom_dir") else {
        return;
    };
    let dir = TempDir::new("go");
    let name = name("go");
    let batch = RecordBatch::try_from_iter([
        (
            "id",
            Arc::new(Int64Array::from_iter_values(0..1000)) as ArrayRef,
        ),
        (
            "s",
            Arc::new(StringArray::from_iter_values(
                (0..1000).map(|i| format!("row {i}")),
            )) as ArrayRef,
        ),
    ])
    .unwrap();
    let input = dir.0.join("in.arrows");
    {
        let f = std::fs::File::create(&input).unwrap();
        let mut w = arrow_ipc::writer::StreamWriter::try_new(f, &batch.schema()).unwrap();
        for _ in 0..3 {
            w.write(&batch).unwrap();
        }
        w.finish().unwrap();
    }
    let ring = Ring::builder(&name)
        .dir(&dir.0)
        .slot_count(8)
        .slot_size(1 << 16)
        .create()
        .unwrap();
    let mut reader = IpcReader::new(ring.subscribe().unwrap());
    let mut child = Command::new(go)
        .args(["send", "--ring", &name])
        .arg(&input)
        .env(SHM_DIR_ENV, &dir.0)
        .spawn()
        .unwrap();
    let mut got = 0;
    while let Some(b) = reader.next_batch().unwrap() {
        assert!(in_mapping(&ring, &b), "batch {got} was copied");
        assert_eq!(b, batch);
        got += 1;
    }
    assert!(child.wait().unwrap().success(), "alloy-go send failed");
    assert_eq!(got, 3);
    assert!(!Path::new("/dev/shm").join(&name).exists());
    Ring::remove_in(&dir.0, &name).unwrap();
}
