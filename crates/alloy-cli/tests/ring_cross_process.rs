//! A second process produces 1,000,000 checked messages of random sizes;
//! two broadcast consumers and a two-member work-queue group in this process
//! verify: each broadcast consumer sees every message in order, the queue
//! group sees each message exactly once, nothing is torn.

use std::process::{Command, Stdio};
use std::thread;

use alloy_shm::ring::Consumer;

const COUNT: u64 = 1_000_000;

#[path = "../../../tests/common/mod.rs"]
mod common;
use common::{new_ring, SPEC};

fn drain(mut c: Consumer, in_order: bool) -> Vec<u64> {
    let mut got = Vec::with_capacity(if in_order { COUNT as usize } else { 0 });
    while let Some(m) = c.recv().expect("recv") {
        let j = SPEC.verify(&m).expect("intact message");
        if in_order {
            assert_eq!(
                j,
                got.len() as u64,
                "broadcast consumer saw a gap or reorder"
            );
        }
        got.push(j);
    }
    got
}

#[test]
fn a_million_messages_from_another_process() {
    let (ring, cleanup) = new_ring("xproc", 256);
    let name = cleanup.0.clone();

    let b1 = ring.subscribe().unwrap();
    let b2 = ring.subscribe().unwrap();
    let q1 = ring.join_queue(7).unwrap();
    let q2 = ring.join_queue(7).unwrap();
    let hb: Vec<_> = [b1, b2]
        .into_iter()
        .map(|c| thread::spawn(move || drain(c, true)))
        .collect();
    let hq: Vec<_> = [q1, q2]
        .into_iter()
        .map(|c| thread::spawn(move || drain(c, false)))
        .collect();

    let out = Command::new(env!("CARGO_BIN_EXE_alloy"))
        .args([
            "test-produce",
            "--ring",
            &name,
            "--count",
            &COUNT.to_string(),
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("spawn producer");
    assert!(out.status.success(), "producer failed: {:?}", out.status);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("\"sent\":{COUNT}")));

    for h in hb {
        assert_eq!(h.join().unwrap().len() as u64, COUNT);
    }
    let mut all: Vec<u64> = hq.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert_eq!(
        all.len() as u64,
        COUNT,
        "queue group lost or duplicated messages"
    );
    all.sort_unstable();
    assert!(
        all.iter().enumerate().all(|(i, &j)| i as u64 == j),
        "queue group: not exactly once"
    );
}

/// The same in the other direction: this process produces, consumer
/// processes (`alloy test-consume`) verify and report.
#[test]
fn consumer_processes_verify_what_this_process_sends() {
    let (ring, cleanup) = new_ring("xproc2", 64);
    let name = cleanup.0.clone();
    let dir = std::env::temp_dir();
    let count = 200_000u64;
    let spawn = |args: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_alloy"))
            .args(["test-consume", "--ring", &name])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn consumer");
        // Wait for "ready" so the consumer has joined before we produce.
        use std::io::BufRead;
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        (child, out)
    };
    let files: Vec<_> = (0..2)
        .map(|i| dir.join(format!("{name}-q{i}.bin")))
        .collect();
    let mut kids = vec![
        spawn(&["--broadcast"]),
        spawn(&["--queue", "3", "--out", files[0].to_str().unwrap()]),
        spawn(&["--queue", "3", "--out", files[1].to_str().unwrap()]),
    ];
    let mut p = ring.producer().unwrap();
    let mut buf = vec![0u8; 4096];
    for j in 0..count {
        let n = SPEC.write(j, &mut buf);
        p.send(&buf[..n], 0).unwrap();
    }
    p.close();
    let mut reports = Vec::new();
    for (mut child, mut out) in kids.drain(..) {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        assert!(child.wait().unwrap().success(), "consumer failed");
        reports.push(rest);
    }
    assert!(
        reports[0].contains(&format!("\"received\":{count}")),
        "{}",
        reports[0]
    );
    let mut all: Vec<u64> = files
        .iter()
        .flat_map(|f| {
            let raw = std::fs::read(f).unwrap();
            let _ = std::fs::remove_file(f);
            raw.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .collect::<Vec<_>>()
        })
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..count).collect::<Vec<_>>());
}
