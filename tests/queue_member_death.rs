//! A work-queue member killed while it holds messages (LAYOUT.md §11.3,
//! version 1 limitation): what happens today, pinned so it stays visible.
//!
//! The layout records which *group* claimed a sequence, not which member,
//! so nobody can tell that the dead member's claimed sequences will never
//! be released. Today:
//!
//! * the messages the dead member held are never delivered to anyone;
//! * the surviving member keeps receiving until the group's `release`
//!   cursor, stuck behind the first lost sequence, is a whole ring behind;
//! * then the producer stalls: `Block { timeout }` returns `Timeout` and
//!   `Fail` returns `Full`, although the dead member has been detached by
//!   the reclaim (its lost messages stay counted as leases held);
//! * `alloy stat --json` shows it: one live member, `leases_held` equal to
//!   the lost messages, `released` stuck;
//! * the stall ends when the last member leaves (the group's gate goes).
//!
//! Redelivery needs a per-slot holder record (layout version 2, §11.3).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alloy_shm::ring::{Backpressure, ConsumerStat, Ring, RingError, WaitStrategy};

mod common;
use common::{new_ring, SPEC};

const SLOTS: u64 = 8;
/// Leases the doomed member keeps unreleased when it is killed.
const HELD: u64 = 3;

fn group(ring: &Ring) -> ConsumerStat {
    let st = ring.stat();
    assert_eq!(st.consumers.len(), 1, "one subscriber: the group");
    st.consumers[0].clone()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `alloy stat NAME --json --interval 0`, parsed: the group's entry.
fn stat_json(name: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_alloy"))
        .args(["stat", name, "--json", "--interval", "0"])
        .output()
        .expect("run alloy stat");
    assert!(out.status.success(), "alloy stat: {out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stat JSON");
    v["consumers"][0].clone()
}

#[test]
fn messages_held_by_a_killed_queue_member_are_lost_and_stall_the_group() {
    let (ring, guard) = new_ring("queue-death", SLOTS as u32);
    let name = guard.0.clone();

    // Member A, another process, keeps its HELD most recent leases.
    let mut a = Command::new(env!("CARGO_BIN_EXE_alloy"))
        .args(["test-consume", "--ring", &name, "--queue", "1"])
        .args(["--hold", &HELD.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn alloy test-consume");
    let mut line = String::new();
    BufReader::new(a.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    // Member B, this process, does not read yet.
    let mut b = ring.join_queue(1).unwrap();
    assert_eq!(group(&ring).members.len(), 2);

    let mut p = ring
        .producer_with(
            Backpressure::Block {
                timeout: Some(Duration::from_millis(800)),
            },
            WaitStrategy::Blocking,
        )
        .unwrap();
    p.set_reclaim_after(Duration::from_millis(100));
    let mut buf = vec![0u8; SPEC.max];
    let mut send = |p: &mut alloy_shm::ring::Producer, j: u64| {
        let n = SPEC.write(j, &mut buf);
        p.send(&buf[..n], 0)
    };
    // A fills the ring's worth: it claims 0..8 and releases all but 5, 6, 7.
    for j in 0..SLOTS {
        send(&mut p, j).unwrap();
    }
    wait_until("A claimed everything and holds 3", || {
        let g = group(&ring);
        g.cursor == SLOTS && g.leases_held == HELD && g.released == SLOTS - HELD
    });

    a.kill().unwrap();
    a.wait().unwrap();
    let lost = SLOTS - HELD..SLOTS;

    // The group's gate is stuck at the first lost sequence (5): the producer
    // can still publish up to 5 + 8 = 13, and B receives those.
    let stuck_at = lost.start;
    for j in SLOTS..stuck_at + SLOTS {
        send(&mut p, j).unwrap();
    }
    let mut got = Vec::new();
    loop {
        match b.try_recv() {
            Ok(Some(m)) => got.push(SPEC.verify(&m).unwrap()),
            Err(RingError::Empty) => break,
            other => panic!("B: {other:?}"),
        }
    }
    assert_eq!(
        got,
        (SLOTS..stuck_at + SLOTS).collect::<Vec<_>>(),
        "B continues, but never sees the lost messages {lost:?}"
    );

    // The next message does not fit: the producer reclaims the dead member
    // after 100 ms, which does not move the gate, and times out.
    let t0 = Instant::now();
    match send(&mut p, stuck_at + SLOTS) {
        Err(RingError::Timeout(_)) => {}
        other => panic!("expected the producer to stall, got {other:?}"),
    }
    assert!(t0.elapsed() >= Duration::from_millis(800));
    // B, alive and holding nothing, gets nothing more.
    assert!(matches!(b.try_recv(), Err(RingError::Empty)));
    p.set_backpressure(Backpressure::Fail);
    assert!(matches!(
        send(&mut p, stuck_at + SLOTS),
        Err(RingError::Full { .. })
    ));

    // Visible in the stat: A detached, B alive, the lost messages counted
    // as leases held, `released` stuck.
    let g = group(&ring);
    assert_eq!(g.members.len(), 1, "the dead member was reclaimed");
    assert!(g.members[0].alive);
    assert_eq!(g.members[0].pid, std::process::id());
    assert_eq!(
        (g.released, g.cursor, g.leases_held, g.lag),
        (stuck_at, stuck_at + SLOTS, HELD, 0)
    );
    let j = stat_json(&name);
    assert_eq!(j["kind"], "queue");
    assert_eq!(j["members"].as_array().unwrap().len(), 1);
    assert_eq!(j["members"][0]["alive"], true);
    assert_eq!(j["released"], stuck_at);
    assert_eq!(j["leases_held"], HELD);

    // When the last member leaves, the group's gate goes and the producer
    // continues.
    drop(b);
    assert!(ring.stat().consumers.is_empty());
    p.set_backpressure(Backpressure::Block { timeout: None });
    send(&mut p, stuck_at + SLOTS).unwrap();
}
