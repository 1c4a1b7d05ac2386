//! A consumer that is alive but stopped is never taken for dead (issue #12,
//! LAYOUT.md §11.1 and §11.3 "No eviction"): a real consumer process holding
//! leases is SIGSTOPped for longer than every timeout (`STALE_AFTER`, the
//! producer's `reclaim_after`, a queue survivor's group check) while the
//! producer keeps trying under each back-pressure policy. It keeps its
//! entries and its leases, the producer gets `Timeout` / `Full`, and once
//! continued the consumer finds the bytes it holds intact (checksummed) and
//! reads every later message exactly as published.
//!
//! The consumer is this test binary run again (`stopped_consumer_child`,
//! ignored unless started by these tests with `ALLOY_STOPPED_CHILD`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use alloy_shm::ring::STALE_AFTER;
use alloy_shm::ring::{Backpressure, ConsumerStat, Producer, Ring, SendError};

mod common;
use common::{new_ring, SPEC};

const CHILD_ENV: &str = "ALLOY_STOPPED_CHILD";
const SLOTS: u32 = 8;
/// Messages in each run.
const TOTAL: u64 = 200;
/// How long the consumer stays stopped: longer than `STALE_AFTER`, the
/// heartbeat age at which layout v2 declared a process dead.
const STOPPED_FOR: Duration = Duration::from_millis(3_500);
/// The producer looks for dead consumers this often while the ring is full.
const RECLAIM_AFTER: Duration = Duration::from_millis(50);

struct Consumer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Consumer {
    /// Starts the child consumer: `mode` is `broadcast` or `queue`; it
    /// keeps the leases of the first `hold` messages it receives.
    fn spawn(ring: &str, mode: &str, hold: u64) -> Consumer {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "stopped_consumer_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{ring} {mode} {hold}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the child consumer");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut c = Consumer {
            child,
            stdin,
            stdout,
        };
        c.expect("ready");
        c
    }

    /// Reads the child's lines until one holds `marker`; returns the line
    /// from the marker on. (The test harness prints its own text too, e.g.
    /// "test stopped_consumer_child ... " just before the child's first
    /// line, on the same line.)
    fn expect(&mut self, marker: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "child ended before {marker:?}");
            if let Some(i) = line.find(marker) {
                return line[i..].trim().to_string();
            }
        }
    }

    fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    /// SIGSTOP, then wait until /proc shows it stopped.
    fn stop(&self) {
        self.signal(rustix::process::Signal::STOP);
        let path = format!("/proc/{}/stat", self.child.id());
        wait_until("child stopped", || {
            std::fs::read_to_string(&path)
                .unwrap()
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
        });
    }

    /// SIGCONT, then tell it to check what it holds and read on.
    fn resume(&mut self) {
        self.signal(rustix::process::Signal::CONT);
        self.stdin.write_all(b"go\n").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits for the child's summary ("received N ..." with the message
    /// numbers it got) and its successful exit.
    fn finish(mut self) -> Vec<u64> {
        let line = self.expect("received");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "child consumer failed: {status}");
        line.split_whitespace()
            .skip(2)
            .map(|w| w.parse().unwrap())
            .collect()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // On a failed assertion: never leave a stopped child behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn send(p: &mut Producer, j: u64) -> Result<u64, SendError> {
    let mut buf = vec![0u8; SPEC.max];
    let n = SPEC.write(j, &mut buf);
    p.send(&buf[..n], 0)
}

/// While the consumer is stopped: the producer, under `Block` with a
/// timeout and then under `Fail`, finds the ring full (`Timeout`, `Full`)
/// for longer than `STALE_AFTER`, reclaiming every `RECLAIM_AFTER` and
/// freeing nothing. Returns the consumer entry as `stat` shows it then.
fn publish_while_stopped(
    ring: &Ring,
    p: &mut Producer,
    next: u64,
    stopped: Instant,
) -> ConsumerStat {
    let (mut timeouts, mut fulls) = (0, 0);
    p.set_backpressure(Backpressure::Block {
        timeout: Some(Duration::from_millis(200)),
    });
    while stopped.elapsed() < STOPPED_FOR / 2 {
        match send(p, next) {
            Err(SendError::Timeout(_)) => timeouts += 1,
            other => panic!("Block with timeout on a ring held by a stopped consumer: {other:?}"),
        }
    }
    p.set_backpressure(Backpressure::Fail);
    while stopped.elapsed() < STOPPED_FOR {
        match send(p, next) {
            Err(SendError::Full { .. }) => fulls += 1,
            other => panic!("Fail on a ring held by a stopped consumer: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        timeouts >= 5 && fulls >= 100,
        "{timeouts} timeouts, {fulls} Full"
    );
    assert!(stopped.elapsed() > STALE_AFTER);
    eprintln!(
        "stopped {:.1} s (STALE_AFTER {STALE_AFTER:?}, reclaim every {RECLAIM_AFTER:?}): \
         {timeouts} Timeout, {fulls} Full, nothing reclaimed",
        stopped.elapsed().as_secs_f64()
    );
    let st = ring.stat();
    assert_eq!(st.published, next, "nothing published while full");
    let c = st
        .consumers
        .iter()
        .find(|c| c.members.iter().any(|m| m.stalled))
        .unwrap_or_else(|| panic!("no stalled member shown: {st:?}"))
        .clone();
    assert!(c.alive, "a stopped consumer is alive: {c:?}");
    assert!(c.members.iter().all(|m| m.alive), "{c:?}");
    assert_eq!(c.redeliver, 0, "nothing redelivered: {c:?}");
    c
}

/// A broadcast consumer stopped holding every slot's lease keeps them and
/// its subscription; continued, it reads all 200 messages intact.
#[test]
fn a_stopped_broadcast_consumer_is_not_reclaimed_and_reads_intact_bytes() {
    let (ring, guard) = new_ring("stopped-broadcast", SLOTS);
    let mut child = Consumer::spawn(&guard.0, "broadcast", SLOTS as u64);
    let mut p = ring.producer().unwrap();
    p.set_reclaim_after(RECLAIM_AFTER);
    for j in 0..SLOTS as u64 {
        send(&mut p, j).unwrap();
    }
    child.expect(&format!("holding {SLOTS}"));
    child.stop();
    let stopped = Instant::now();
    let c = publish_while_stopped(&ring, &mut p, SLOTS as u64, stopped);
    assert_eq!((c.leases_held, c.released), (SLOTS as u64, 0), "{c:?}");
    child.resume();
    p.set_backpressure(Backpressure::Block { timeout: None });
    for j in SLOTS as u64..TOTAL {
        send(&mut p, j).unwrap();
    }
    p.close();
    let got = child.finish();
    assert_eq!(got, (0..TOTAL).collect::<Vec<_>>());
}

/// A queue member stopped holding leases is neither redelivered nor
/// detached, though a surviving member of its group waits for messages
/// (and runs its dead-member check) the whole time; continued, it releases
/// what it held and the two members share the rest exactly once.
#[test]
fn a_stopped_queue_member_is_not_redelivered_and_reads_intact_bytes() {
    const HOLD: u64 = 3;
    let (ring, guard) = new_ring("stopped-queue", SLOTS);
    let mut child = Consumer::spawn(&guard.0, "queue", HOLD);
    let mut p = ring.producer().unwrap();
    p.set_reclaim_after(RECLAIM_AFTER);
    for j in 0..HOLD {
        send(&mut p, j).unwrap();
    }
    child.expect(&format!("holding {HOLD}"));
    child.stop();
    let stopped = Instant::now();
    // The survivor joins now: it gets what the stopped member did not claim.
    let mut survivor = ring.join_queue(1).unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        loop {
            match survivor.recv_timeout(Duration::from_secs(20)) {
                Ok(Some(m)) => {
                    assert!(!m.redelivered(), "message {} redelivered", m.seq());
                    got.push(SPEC.verify(&m).expect("intact message"));
                }
                Ok(None) => return got,
                Err(e) => panic!("survivor: {e}"),
            }
        }
    });
    // The group's release cursor stays at 0: the ring takes SLOTS - HOLD
    // more messages, which the survivor reads, then it is full.
    for j in HOLD..SLOTS as u64 {
        send(&mut p, j).unwrap();
    }
    let c = publish_while_stopped(&ring, &mut p, SLOTS as u64, stopped);
    assert_eq!(c.members.len(), 2, "both members attached: {c:?}");
    assert_eq!((c.leases_held, c.released), (HOLD, 0), "{c:?}");
    child.resume();
    p.set_backpressure(Backpressure::Block { timeout: None });
    for j in SLOTS as u64..TOTAL {
        send(&mut p, j).unwrap();
    }
    p.close();
    let mut all = child.finish();
    assert_eq!(&all[..HOLD as usize], &[0, 1, 2]);
    all.extend(reader.join().unwrap());
    all.sort_unstable();
    assert_eq!(
        all,
        (0..TOTAL).collect::<Vec<_>>(),
        "every message exactly once"
    );
}

/// The consumer process of the tests above: joins, keeps the first `hold`
/// leases, says so, then waits for "go" on stdin (it is stopped meanwhile);
/// then checks that the held bytes are still the messages it received,
/// releases them and reads to the end, verifying every message. Prints
/// "received N j0 j1 …".
#[test]
#[ignore = "child process of the stopped-consumer tests, started by them"]
fn stopped_consumer_child() {
    let spec = std::env::var(CHILD_ENV).expect("run by the stopped-consumer tests");
    let mut args = spec.split(' ');
    let (name, mode) = (args.next().unwrap(), args.next().unwrap());
    let hold: u64 = args.next().unwrap().parse().unwrap();
    let ring = Ring::open(name).unwrap();
    let mut c = match mode {
        "broadcast" => ring.subscribe().unwrap(),
        _ => ring.join_queue(1).unwrap(),
    };
    println!("ready");
    let mut got = Vec::new();
    let mut held = Vec::new();
    while (held.len() as u64) < hold {
        let m = c.recv().unwrap().expect("a message");
        let j = SPEC.verify(&m).unwrap();
        got.push(j);
        // A copy to compare with after the stop.
        held.push((m.to_vec(), m));
    }
    println!("holding {hold}");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "go");
    for (copy, lease) in held {
        assert_eq!(
            &*lease,
            &copy[..],
            "held message {} was rewritten",
            lease.seq()
        );
        SPEC.verify(&lease).unwrap();
        assert!(!lease.redelivered());
    }
    while let Some(m) = c.recv().unwrap() {
        assert!(!m.redelivered());
        got.push(SPEC.verify(&m).unwrap());
    }
    let nums: Vec<String> = got.iter().map(|j| j.to_string()).collect();
    println!("received {} {}", got.len(), nums.join(" "));
}
