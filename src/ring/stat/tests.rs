//! Tests of the inspection snapshot (`ring::stat`).

use super::*;
use crate::ring::RingConfig;

fn cfg() -> RingConfig {
    RingConfig {
        slot_count: 8,
        slot_size: 64,
        max_subscribers: 4,
        max_members: 4,
        schema_capacity: 64,
    }
}

fn unique(tag: &str) -> String {
    format!("alloy-stat-{tag}-{}-{}", std::process::id(), monotonic_ns())
}

/// Lag, leases held (with an out-of-order release), fill and liveness
/// on a ring in a known state.
#[test]
fn stat_reports_lag_leases_and_fill() {
    let ring = Ring::anonymous_builder().config(cfg()).create().unwrap();
    let mut a = ring.subscribe().unwrap();
    let mut b = ring.subscribe().unwrap();
    let q1 = ring.join_queue(7).unwrap();
    let mut q2 = ring.join_queue(7).unwrap();
    let mut p = ring.producer().unwrap();
    for j in 0..5u8 {
        p.send(&[j; 10], 0).unwrap();
    }
    // a: receives 0..3, releases 1 only (out of order): holds 0 and 2.
    let l0 = a.recv().unwrap().unwrap();
    let l1 = a.recv().unwrap().unwrap();
    let l2 = a.recv().unwrap().unwrap();
    drop(l1);
    // b: receives and releases everything.
    for _ in 0..5 {
        drop(b.recv().unwrap().unwrap());
    }
    // queue group: one message received and held.
    let lq = q2.recv().unwrap().unwrap();

    let s = ring.stat();
    assert_eq!(s.version, layout::VERSION);
    assert_eq!((s.slot_count, s.slot_size), (8, 64));
    assert_eq!(s.published, 5);
    assert!(!s.closed);
    assert_eq!(s.producer_pid, std::process::id());
    assert!(s.producer_alive);
    assert_eq!(s.consumers.len(), 3);
    let (ca, cb, cq) = (&s.consumers[0], &s.consumers[1], &s.consumers[2]);
    assert_eq!((ca.kind, ca.cursor, ca.released), ("broadcast", 3, 0));
    assert_eq!((ca.lag, ca.leases_held), (2, 2));
    assert_eq!(
        (cb.cursor, cb.released, cb.lag, cb.leases_held),
        (5, 5, 0, 0)
    );
    assert_eq!((cq.kind, cq.group, cq.members.len()), ("queue", 7, 2));
    assert_eq!((cq.lag, cq.leases_held), (4, 1));
    assert_eq!((ca.redeliver, cq.redeliver), (0, 0));
    for c in &s.consumers {
        assert_eq!(c.state, "active");
        assert!(c.alive);
        assert!(c
            .members
            .iter()
            .all(|m| m.alive && m.pid == std::process::id()));
    }
    // The slowest release cursor is 0 (a and the queue group).
    assert_eq!(s.slots_in_use, 5);
    assert_eq!(s.fill, 5.0 / 8.0);

    drop((l0, l2, lq));
    for _ in 0..2 {
        drop(a.recv().unwrap().unwrap());
    }
    let s2 = ring.stat();
    assert_eq!(
        (s2.consumers[0].released, s2.consumers[0].leases_held),
        (5, 0)
    );
    assert_eq!(s2.slots_in_use, 4, "the queue group released 1 of 5");
    drop((q1, q2));
    let s3 = ring.stat();
    assert_eq!(s3.consumers.len(), 2);
    assert_eq!(s3.slots_in_use, 0);
}

#[test]
fn rates_come_from_two_samples() {
    let ring = Ring::anonymous_builder().config(cfg()).create().unwrap();
    let mut c = ring.subscribe().unwrap();
    let mut p = ring.producer().unwrap();
    let first = ring.stat();
    assert_eq!(first.messages_per_s, None);
    for _ in 0..6 {
        p.send(b"x", 0).unwrap();
        drop(c.recv().unwrap().unwrap());
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    let s = ring.stat().with_rates(&first);
    let secs = s.interval_ms.unwrap() / 1e3;
    assert!(secs >= 0.02);
    assert!((s.messages_per_s.unwrap() - 6.0 / secs).abs() < 1e-6);
    assert!((s.consumers[0].consumed_per_s.unwrap() - 6.0 / secs).abs() < 1e-6);
    // The JSON of `alloy stat --json` (feature `serde`, which the CLI enables).
    #[cfg(feature = "serde")]
    {
        let v = serde_json::to_value(&s).unwrap();
        assert!(v.get("sampled_ns").is_none());
        assert_eq!(v["consumers"][0]["kind"], "broadcast");
    }
}

/// The read-only view sees what the ring's own handle sees, and
/// taking a snapshot leaves every byte of the region unchanged.
#[test]
fn view_is_read_only_and_matches_ring_stat() {
    let name = unique("view");
    let ring = Ring::builder(&name).config(cfg()).create().unwrap();
    let _guard = Unlink(name.clone());
    let mut c = ring.subscribe().unwrap();
    let mut p = ring.producer().unwrap();
    p.send(b"hello", 0).unwrap();
    let held = c.recv().unwrap().unwrap();
    p.send(b"world", 0).unwrap();
    // Heartbeat threads keep writing their words: compare the rest.
    let before = ring.region().snapshot();
    let view = RingView::open(&name).unwrap();
    let s = view.stat();
    let after = ring.region().snapshot();
    assert_eq!(
        mask_heartbeats(&ring, before),
        mask_heartbeats(&ring, after)
    );
    let mut own = ring.stat();
    own.sampled_ns = s.sampled_ns;
    assert_eq!(s, own);
    assert_eq!(s.name, name);
    assert_eq!((s.consumers[0].lag, s.consumers[0].leases_held), (1, 1));
    drop(held);
    assert!(matches!(
        RingView::open("alloy-stat-does-not-exist"),
        Err(RegionError::NotFound(_))
    ));
}

fn mask_heartbeats(ring: &Ring, mut b: Vec<u8>) -> Vec<u8> {
    let l = ring.region().layout();
    let mut zero = |at: usize| b[at..at + 8].fill(0);
    zero(off::PRODUCER_HEARTBEAT);
    for k in 0..l.config.max_subscribers as usize {
        zero(l.sub(k) + off::SUB_HEARTBEAT);
    }
    for j in 0..l.config.max_members as usize {
        zero(l.member(j) + off::MEM_HEARTBEAT);
    }
    b
}

struct Unlink(String);
impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = Ring::remove(&self.0);
    }
}

#[test]
fn ls_lists_rings_and_skips_other_files() {
    let dir = std::env::temp_dir().join(unique("ls"));
    std::fs::create_dir(&dir).unwrap();
    let _cleanup = RmDir(dir.clone());
    // A ring: copy a real region's bytes into the directory.
    let ring = Ring::anonymous_builder().config(cfg()).create().unwrap();
    let _p = ring.producer().unwrap();
    std::fs::write(dir.join("a-ring"), ring.region().snapshot()).unwrap();
    std::fs::write(dir.join("not-alloy"), b"just some bytes, no magic").unwrap();
    std::fs::write(dir.join("empty"), b"").unwrap();
    // The magic but another version: listed, with the reason.
    let mut v1 = ring.region().snapshot();
    layout::put_u32(&mut v1, off::VERSION, 1);
    std::fs::write(dir.join("b-v1"), v1).unwrap();
    std::fs::create_dir(dir.join("subdir")).unwrap();
    // A creation's temporary file (LAYOUT §1), e.g. left by a creator that
    // died before linking it: listed as not a ring, whatever its header says.
    std::fs::write(dir.join(".a-ring.4242.0.tmp"), ring.region().snapshot()).unwrap();

    let mut got = list_rings(&dir).unwrap();
    let names: Vec<&str> = got.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, [".a-ring.4242.0.tmp", "a-ring", "b-v1"]);
    assert_eq!(got.remove(0).error.as_deref(), Some(super::UNFINISHED));
    let a = &got[0];
    assert_eq!(
        (a.version, a.slot_count, a.slot_size),
        (layout::VERSION, 8, 64)
    );
    assert_eq!(a.size, ring.region().layout().total_size as u64);
    assert_eq!(a.producer_pid, std::process::id());
    assert!(a.producer_alive);
    assert_eq!(a.error, None);
    assert_eq!(got[1].version, 1);
    assert!(got[1].error.as_deref().unwrap().contains("version 1"));
    assert!(list_rings(&dir.join("missing")).is_err());
}

struct RmDir(PathBuf);
impl Drop for RmDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
