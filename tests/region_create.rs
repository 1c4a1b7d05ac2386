//! How a named region appears (issue #17): the file is made under a hidden
//! temporary name and linked into place only once its mode, group, size and
//! header are final, so an opener never sees a group ring still at mode
//! 0600 (a member would be refused "not open to uid") or a ring without
//! its magic.

use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_shm::layout::MAGIC;
use alloy_shm::ring::Ring;

#[test]
fn a_named_ring_is_visible_only_once_complete() {
    let dir = std::env::temp_dir().join(format!("alloy-region-create-{}", std::process::id()));
    // A tmpfs-like directory is not needed: the publication order is the
    // same on every filesystem.
    std::fs::create_dir_all(&dir).unwrap();
    let name = "visible-once-complete";
    let path = dir.join(name);
    let gid = rustix::process::getegid().as_raw();
    let done = Arc::new(AtomicBool::new(false));
    let looks = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (done, looks, path) = (done.clone(), looks.clone(), path.clone());
        std::thread::spawn(move || {
            let (mut seen, mut bad) = (0u64, Vec::new());
            while !done.load(Ordering::Acquire) {
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                seen += 1;
                looks.store(seen, Ordering::Release);
                let magic = bytes
                    .get(..8)
                    .map(|b| u64::from_le_bytes(b.try_into().unwrap()));
                if meta.mode() & 0o777 != 0o660 || magic != Some(MAGIC) {
                    bad.push((meta.mode() & 0o777, bytes.len(), magic));
                }
            }
            (seen, bad)
        })
    };
    // 1 MiB rings: sizing and reserving take long enough that a file
    // published before its header would be seen half-made.
    for _ in 0..200 {
        let ring = Ring::builder(name)
            .dir(&dir)
            .group(gid)
            .slot_count(16)
            .slot_size(64 * 1024)
            .create()
            .unwrap();
        // On a loaded 2-core machine the watcher may not run at all while
        // the ring exists: keep it until the watcher has looked at it once
        // (bounded), so every round is observed at least when complete and
        // the racing looks during the next create are the real test.
        let before = looks.load(Ordering::Acquire);
        let deadline = Instant::now() + Duration::from_millis(200);
        while looks.load(Ordering::Acquire) == before && Instant::now() < deadline {
            std::thread::yield_now();
        }
        drop(ring);
        alloy_shm::region::Region::remove_named_in(&dir, name).unwrap();
    }
    done.store(true, Ordering::Release);
    let (seen, bad) = watcher.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        bad.is_empty(),
        "{} of {seen} looks saw a half-made ring (mode, size, magic): {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert!(
        seen > 0,
        "the watcher never saw the ring: the test proves nothing"
    );
}

#[test]
fn a_failed_create_leaves_no_file_and_an_existing_name_is_kept() {
    let dir = std::env::temp_dir().join(format!("alloy-region-exists-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let first = Ring::builder("taken")
        .dir(&dir)
        .slot_count(4)
        .slot_size(64)
        .create()
        .unwrap();
    let err = Ring::builder("taken")
        .dir(&dir)
        .slot_count(4)
        .slot_size(64)
        .create()
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    // The loser's temporary file is gone; the winner's ring is untouched.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["taken".to_string()]);
    assert_eq!(first.stat().published, 0);
    let _ = std::fs::remove_dir_all(&dir);
}
