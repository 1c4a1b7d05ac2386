//! A work-queue member killed while it holds messages (LAYOUT.md §11.3):
//! the producer's reclaim hands the dead member's unreleased messages to
//! the surviving members, flagged as redelivered, and the group keeps
//! flowing. Every message is processed at least once; the ones processed
//! twice are exactly the redelivered ones.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy_shm::ring::{Backpressure, ConsumerStat, Ring, SendError, WaitStrategy};

#[path = "../../../tests/common/mod.rs"]
mod common;
// The root package's test helpers: one copy for both test suites.
#[path = "../../../tests/support/mod.rs"]
mod support;
use common::{new_ring, SPEC};
use support::wait_until;

const SLOTS: u64 = 8;
/// Leases the doomed member keeps unreleased when it is killed.
const HELD: u64 = 3;

fn group(ring: &Ring) -> ConsumerStat {
    let st = ring.stat();
    assert_eq!(st.consumers.len(), 1, "one subscriber: the group");
    st.consumers[0].clone()
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

/// A `--record` file for `n` numbers (test-consume writes it through a
/// shared mapping, so it survives SIGKILL).
fn record_file(dir: &Path, tag: &str, n: u64) -> std::path::PathBuf {
    let p = dir.join(format!("{tag}.rec"));
    std::fs::write(&p, vec![0u8; 8 + 8 * n as usize]).unwrap();
    p
}

fn read_record(p: &Path) -> Vec<u64> {
    let b = std::fs::read(p).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    le_u64s(&b[8..8 + 8 * n])
}

fn le_u64s(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Spawns `alloy test-consume --queue 1` and waits for its "ready"; a
/// thread drains the rest of its stdout (its summary line).
fn member(name: &str, extra: &[&str]) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_alloy"))
        .args(["test-consume", "--ring", name, "--queue", "1"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn alloy test-consume");
    let mut line = String::new();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    c
}

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("alloy-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir(&d).unwrap();
    d
}

/// The dead member held 5, 6, 7; after the reclaim they wait for
/// redelivery (visible in `alloy stat --json`), the survivor receives them
/// first, flagged, then the rest of the stream; nothing is lost.
#[test]
fn messages_held_by_a_killed_queue_member_are_redelivered_flagged() {
    const TOTAL: u64 = 64;
    let (ring, guard) = new_ring("queue-death", SLOTS as u32);
    let name = guard.0.clone();
    let dir = tmpdir("queue-death");
    let rec = record_file(&dir, "a", TOTAL);

    // Member A, another process, keeps its HELD most recent leases.
    let mut a = member(
        &name,
        &[
            "--hold",
            &HELD.to_string(),
            "--record",
            rec.to_str().unwrap(),
        ],
    );
    // Member B, this process, does not read yet.
    let mut b = ring.join_queue(1).unwrap();
    assert_eq!(group(&ring).members.len(), 2);

    let mut p = ring
        .producer_builder()
        .backpressure(Backpressure::Block {
            timeout: Some(Duration::from_secs(10)),
        })
        .wait(WaitStrategy::Blocking)
        .create()
        .unwrap();
    p.set_reclaim_after(Duration::from_millis(100));
    let mut buf = vec![0u8; SPEC.max];
    let mut send = move |p: &mut alloy_shm::ring::Producer, j: u64| {
        let n = SPEC.write(j, &mut buf);
        p.send(&buf[..n], 0).unwrap();
    };
    // A claims 0..8 and releases all but 5, 6, 7.
    for j in 0..SLOTS {
        send(&mut p, j);
    }
    wait_until("A claimed everything and holds 3", || {
        let g = group(&ring);
        g.cursor == SLOTS && g.leases_held == HELD && g.released == SLOTS - HELD
    });
    a.kill().unwrap();
    let killed = Instant::now();
    a.wait().unwrap();
    let held: BTreeSet<u64> = (SLOTS - HELD..SLOTS).collect();
    let by_a = read_record(&rec);
    assert_eq!(by_a, (0..SLOTS).collect::<Vec<_>>(), "A received 0..8");

    // The producer fills the ring up to the stuck gate (5 + 8), then
    // blocks, reclaims A after 100 ms and goes on once B releases.
    let producer = std::thread::spawn(move || {
        for j in SLOTS..TOTAL {
            send(&mut p, j);
        }
        p.close();
    });
    wait_until("the reclaim turned A's messages into redeliveries", || {
        let g = group(&ring);
        g.members.len() == 1 && g.redeliver == HELD
    });
    let g = group(&ring);
    assert_eq!(
        (g.released, g.leases_held, g.redeliver),
        (SLOTS - HELD, 0, HELD)
    );
    let j = stat_json(&name);
    assert_eq!(j["kind"], "queue");
    assert_eq!(j["members"].as_array().unwrap().len(), 1);
    assert_eq!(j["redeliver"], HELD);
    assert_eq!(j["leases_held"], 0);

    // B: the redeliveries first, flagged, then everything else, once.
    let mut got = Vec::new();
    let mut first_redelivery = None;
    while let Some(m) = b.recv().unwrap() {
        let j = SPEC.verify(&m).unwrap();
        if m.redelivered() {
            first_redelivery.get_or_insert_with(|| killed.elapsed());
        }
        got.push((j, m.redelivered()));
    }
    producer.join().unwrap();
    let flagged: BTreeSet<u64> = got.iter().filter(|g| g.1).map(|g| g.0).collect();
    assert_eq!(flagged, held, "exactly A's held messages come back flagged");
    assert_eq!(
        got.iter()
            .take(HELD as usize)
            .map(|g| g.0)
            .collect::<Vec<_>>(),
        held.iter().copied().collect::<Vec<_>>(),
        "redeliveries come before new messages"
    );
    let by_b: Vec<u64> = got.iter().map(|g| g.0).collect();
    let mut all: Vec<u64> = by_a.iter().chain(&by_b).copied().collect();
    all.sort();
    let twice: BTreeSet<u64> = all
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    all.dedup();
    assert_eq!(all, (0..TOTAL).collect::<Vec<_>>(), "nothing lost");
    assert_eq!(twice, flagged, "processed twice = redelivered");
    let g = group(&ring);
    assert_eq!((g.released, g.redeliver, g.leases_held), (TOTAL, 0, 0));
    eprintln!(
        "redelivery: first redelivered message {:?} after the kill (reclaim_after 100 ms)",
        first_redelivery.unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two member processes; one is killed at a random moment mid-stream while
/// the producer keeps sending. Every message is processed at least once by
/// the group, and the ones processed twice are flagged redelivered.
#[test]
fn a_member_killed_mid_stream_loses_nothing() {
    const TOTAL: u64 = 20_000;
    let dir = tmpdir("queue-kill");
    for round in 0..3u64 {
        let (ring, guard) = new_ring(&format!("queue-kill{round}"), 16);
        let name = guard.0.clone();
        let rec = record_file(&dir, &format!("v{round}"), TOTAL);
        let out = dir.join(format!("s{round}.out"));
        let again = dir.join(format!("s{round}.again"));
        let mut victim = member(&name, &["--hold", "4", "--record", rec.to_str().unwrap()]);
        let mut survivor = member(
            &name,
            &[
                "--out",
                out.to_str().unwrap(),
                "--redelivered",
                again.to_str().unwrap(),
            ],
        );
        let mut p = ring
            .producer_builder()
            .backpressure(Backpressure::Block {
                timeout: Some(Duration::from_millis(300)),
            })
            .wait(WaitStrategy::Blocking)
            .create()
            .unwrap();
        p.set_reclaim_after(Duration::from_millis(50));
        let mut buf = vec![0u8; SPEC.max];
        // The victim holds its 4 latest leases until it receives more, so
        // while both live the group stalls whenever the survivor took
        // every other message: it is killed at `kill_at` or at the first
        // such stall, whichever comes first.
        let kill_at = 2_000 + round * 5_000;
        let mut alive = true;
        let mut stalls = 0;
        let mut j = 0;
        while j < TOTAL {
            if alive && j == kill_at {
                victim.kill().unwrap();
                alive = false;
            }
            let n = SPEC.write(j, &mut buf);
            match p.send(&buf[..n], 0) {
                Ok(_) => j += 1,
                Err(SendError::Timeout(_)) if alive => {
                    victim.kill().unwrap();
                    alive = false;
                }
                Err(SendError::Timeout(_)) if stalls < 10 => stalls += 1,
                Err(e) => panic!("round {round}: message {j}: {e}"),
            }
        }
        assert!(!alive, "round {round}: the victim was killed");
        victim.wait().unwrap();
        p.close();
        let st = survivor.wait().unwrap();
        assert!(st.success(), "survivor: {st:?}");
        let by_v = read_record(&rec);
        let by_s = le_u64s(&std::fs::read(&out).unwrap());
        let flagged: BTreeSet<u64> = le_u64s(&std::fs::read(&again).unwrap())
            .into_iter()
            .collect();
        let mut all: Vec<u64> = by_v.iter().chain(&by_s).copied().collect();
        all.sort();
        let twice: BTreeSet<u64> = all
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        all.dedup();
        assert_eq!(
            all,
            (0..TOTAL).collect::<Vec<_>>(),
            "round {round}: nothing lost"
        );
        assert!(
            twice.is_subset(&flagged),
            "round {round}: processed twice but not flagged: {:?}",
            twice.difference(&flagged).collect::<Vec<_>>()
        );
        // Flagged but processed once: only a message the victim had
        // claimed and not yet recorded when it died (it reads one at a time).
        assert!(
            flagged.difference(&twice).count() <= 1,
            "round {round}: flagged {flagged:?}, twice {twice:?}"
        );
        assert!(
            !flagged.is_empty(),
            "round {round}: the victim held 4 leases"
        );
        eprintln!(
            "round {round}: victim processed {}, survivor {}, redelivered {} (twice {})",
            by_v.len(),
            by_s.len(),
            flagged.len(),
            twice.len()
        );
        drop(guard);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Member A of the idle-producer tests: it keeps its last HELD leases.
fn holding_member(name: &str, dir: &Path) -> Child {
    let rec = record_file(dir, "a", 8);
    member(
        name,
        &[
            "--hold",
            &HELD.to_string(),
            "--record",
            rec.to_str().unwrap(),
        ],
    )
}

/// Publishes messages 0..5 (A claims them all, holding 2, 3, 4) and waits
/// until A holds them.
fn publish_five_until_held(ring: &Ring, p: &mut alloy_shm::ring::Producer) {
    let mut buf = vec![0u8; SPEC.max];
    for j in 0..5 {
        let n = SPEC.write(j, &mut buf);
        p.send(&buf[..n], 0).unwrap();
    }
    wait_until("A holds 3", || {
        let g = group(ring);
        g.cursor == 5 && g.leases_held == HELD
    });
}

/// The producer publishes 5 messages (the ring never fills, so it never
/// reclaims) and A, holding the last 3, is killed. The survivor B, finding
/// nothing new, redelivers them itself — while the stream is open, and
/// before it would report the end of a closed stream.
#[test]
fn a_survivor_redelivers_when_the_producer_never_blocks() {
    for close_first in [false, true] {
        let (ring, guard) = new_ring(&format!("queue-idle{close_first}"), SLOTS as u32);
        let name = guard.0.clone();
        let dir = tmpdir(&format!("queue-idle{close_first}"));
        let mut a = holding_member(&name, &dir);
        let mut b = ring.join_queue(1).unwrap();
        let mut p = ring.producer().unwrap();
        publish_five_until_held(&ring, &mut p);
        a.kill().unwrap();
        let killed = Instant::now();
        a.wait().unwrap();
        if close_first {
            p.close();
        }
        let mut got = Vec::new();
        for _ in 0..HELD {
            let m = b
                .recv_timeout(Duration::from_secs(5))
                .unwrap()
                .expect("a redelivery, not the end");
            assert!(m.redelivered());
            got.push(SPEC.verify(&m).unwrap());
        }
        assert_eq!(got, vec![2, 3, 4], "close first: {close_first}");
        eprintln!(
            "producer {}: redelivered by the survivor {:?} after the kill",
            if close_first { "closed" } else { "idle" },
            killed.elapsed()
        );
        if close_first {
            assert!(b.recv().unwrap().is_none(), "then the end of the stream");
        } else {
            assert!(matches!(
                b.try_recv(),
                Err(alloy_shm::ring::RecvError::Empty)
            ));
        }
        assert_eq!(group(&ring).released, 5);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The async survivor: an `AsyncConsumer` queue member parked on its
/// eventfd, with an idle producer, redelivers the killed member's messages
/// itself (its periodic check, as the blocking `recv` does), flagged.
#[cfg(feature = "tokio")]
#[test]
fn an_async_survivor_redelivers_while_parked() {
    use alloy_shm::aio::AsyncConsumer;

    let (ring, guard) = new_ring("queue-idle-async", SLOTS as u32);
    let name = guard.0.clone();
    let dir = tmpdir("queue-idle-async");
    let mut a = holding_member(&name, &dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got = rt.block_on(async {
        let mut b = AsyncConsumer::new(ring.join_queue(1).unwrap()).unwrap();
        let mut p = ring.producer().unwrap();
        publish_five_until_held(&ring, &mut p);
        // B is parked (nothing to claim) when A dies.
        let nothing = tokio::time::timeout(Duration::from_millis(100), b.recv()).await;
        assert!(nothing.is_err(), "B had nothing to claim before the kill");
        a.kill().unwrap();
        a.wait().unwrap();
        let mut got = Vec::new();
        for _ in 0..HELD {
            let m = tokio::time::timeout(Duration::from_secs(5), b.recv())
                .await
                .expect("a redelivery within 5 s")
                .unwrap()
                .expect("a redelivery, not the end");
            assert!(m.redelivered());
            got.push(SPEC.verify(&m).unwrap());
        }
        assert_eq!(group(&ring).released, 5);
        drop(p);
        got
    });
    assert_eq!(got, vec![2, 3, 4]);
    let _ = std::fs::remove_dir_all(&dir);
}
