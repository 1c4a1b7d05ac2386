//! The request/reply worker as a process (examples/reqrep_worker.rs): a
//! worker stopped with SIGTERM removes its rings and exits 0; a client
//! connecting to the rings of a SIGKILLed worker fails at once, not at the
//! end of its timeout.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy_shm::reqrep::{reply_ring, request_ring, Client, ReqRepError};
use alloy_shm::ring::Ring;

/// The example worker (built by `make build` or `cargo test --release
/// --all-targets`), or `None` after `support::skip`.
fn worker_bin(test: &str) -> Option<PathBuf> {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/release/examples/reqrep_worker"
    ));
    if p.is_file() {
        return Some(p);
    }
    support::skip(
        test,
        &format!("{} is missing (run make build)", p.display()),
    );
    None
}

/// Starts the worker on `name` and waits for its `ready` line.
fn start(bin: &Path, name: &str) -> Child {
    let mut child = Command::new(bin)
        .args(["--name", name, "--threads", "2", "--slot-size", "65536"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the worker");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    child
}

fn shm(ring: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm/{ring}"))
}

/// Waits for `child` at most `limit`.
fn wait(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("the worker did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn sigterm_stops_the_worker_and_removes_its_rings() {
    let Some(bin) = worker_bin("sigterm_stops_the_worker_and_removes_its_rings") else {
        return;
    };
    let name = format!("alloy-rr-sigterm-{}", std::process::id());
    let mut child = start(&bin, &name);
    let client = Client::connect(&name, Duration::from_secs(5)).unwrap();
    assert!(shm(&request_ring(&name)).exists() && shm(&reply_ring(&name)).exists());
    let t0 = Instant::now();
    // SAFETY: kill(2) with the pid of our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = wait(&mut child, Duration::from_secs(5));
    let took = t0.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(!shm(&request_ring(&name)).exists(), "NAME.req left behind");
    assert!(!shm(&reply_ring(&name)).exists(), "NAME.rep left behind");
    eprintln!("SIGTERM to exit: {took:?}");
    // The client learns that the worker is gone.
    let batch = arrow_array::RecordBatch::try_from_iter([(
        "x",
        std::sync::Arc::new(arrow_array::Int64Array::from(vec![1])) as _,
    )])
    .unwrap();
    let t0 = Instant::now();
    loop {
        match client.call(&batch, Some(Duration::from_secs(2))) {
            Err(ReqRepError::PeerGone(_)) => break,
            other => assert!(t0.elapsed() < Duration::from_secs(2), "{other:?}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn connecting_to_a_killed_worker_fails_at_once() {
    let Some(bin) = worker_bin("connecting_to_a_killed_worker_fails_at_once") else {
        return;
    };
    let name = format!("alloy-rr-killed-{}", std::process::id());
    let mut child = start(&bin, &name);
    let pid = child.id();
    child.kill().unwrap(); // SIGKILL: the rings stay
    child.wait().unwrap();
    assert!(shm(&reply_ring(&name)).exists());
    let t0 = Instant::now();
    let got = Client::connect(&name, Duration::from_secs(5));
    let took = t0.elapsed();
    let _ = Ring::remove(&request_ring(&name));
    let _ = Ring::remove(&reply_ring(&name));
    match got {
        Err(ReqRepError::WorkerDead { pid: p, .. }) => assert_eq!(p, pid),
        other => panic!("expected WorkerDead, got {other:?}"),
    }
    assert!(
        took < Duration::from_secs(1),
        "took {took:?} of the 5 s timeout"
    );
    eprintln!("connect to a dead worker failed after {took:?}");
}
