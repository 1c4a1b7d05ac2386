//! A named ring truncated under a running process (issue #12 §6): both
//! CLIs, as sender and as receiver, end with exit status 3 and ONE line on
//! stderr naming the cause — no "Bus error" from the shell, no Go crash
//! dump of every goroutine. `bin/alloy` is the binary cargo builds for this
//! test; `bin/alloy-go` comes from `make build` (a missing one fails the
//! test under CI / `ALLOY_REQUIRE_CROSS`, see `tests/support`).

// The root package's test helpers: one copy for both test suites.
#[path = "../../../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_shm::ring::{Ring, RingConfig};
use arrow_array::{Int64Array, RecordBatch};

const RUST: &str = env!("CARGO_BIN_EXE_alloy");

/// The exit status both CLIs use for a ring truncated under them.
const EXIT_TRUNCATED: i32 = 3;

/// The CLIs to try: the Rust one, and the Go one when it is built.
fn tools(test: &str) -> Vec<PathBuf> {
    let mut t = vec![PathBuf::from(RUST)];
    t.extend(support::go_cli(test));
    t
}

/// A named ring of 8 slots of 64 KiB, removed when dropped. The test
/// process does not keep it mapped: after the truncation a touch would
/// raise SIGBUS here too.
struct NamedRing(String);

impl NamedRing {
    fn new(tag: &str) -> NamedRing {
        let name = format!("alloy-trunc-{}-{tag}", std::process::id());
        let _ = Ring::remove(&name);
        let cfg = RingConfig {
            slot_count: 8,
            slot_size: 1 << 16,
            ..Default::default()
        };
        drop(Ring::builder(&name).config(cfg).create().unwrap());
        NamedRing(name)
    }

    fn truncate(&self) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(Path::new("/dev/shm").join(&self.0))
            .unwrap()
            .set_len(0)
            .unwrap();
    }

    /// Messages published so far, read by `alloy stat --json` (a
    /// read-only mapping in another process).
    fn published(&self) -> u64 {
        let out = Command::new(RUST)
            .args(["stat", &self.0, "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "alloy stat: {out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["published"].as_u64().expect("stat --json has published")
    }
}

impl Drop for NamedRing {
    fn drop(&mut self) {
        let _ = Ring::remove(&self.0);
    }
}

/// An Arrow IPC stream of 64 batches of 4000 int64 values (32 KB each):
/// far more than the ring holds.
fn input(dir: &Path) -> PathBuf {
    let path = dir.join("in.arrows");
    let batch =
        RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from_iter_values(0..4000)) as _)])
            .unwrap();
    let file = std::fs::File::create(&path).unwrap();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(file, &batch.schema()).unwrap();
    for _ in 0..64 {
        w.write(&batch).unwrap();
    }
    w.finish().unwrap();
    path
}

/// Starts `tool recv` on the ring and waits for its "ready" line.
fn receiver(tool: &Path, ring: &str, out: &Path) -> Child {
    let mut child = Command::new(tool)
        .args(["recv", "--ring", ring, "--out"])
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "{} recv", tool.display());
    child
}

/// Waits for `child` (at most 20 s) and checks it failed with
/// [`EXIT_TRUNCATED`] and one line naming the truncation.
fn check_reports_truncation(what: &str, mut child: Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} still runs 20 s after its ring was truncated");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let lines: Vec<&str> = stderr.trim().lines().collect();
    assert_eq!(
        status.code(),
        Some(EXIT_TRUNCATED),
        "{what}: {status}, stderr:\n{stderr}"
    );
    assert!(
        lines.len() == 1 && lines[0].contains("truncated") && !stderr.contains("goroutine"),
        "{what}: stderr is not one line naming the truncation:\n{stderr}"
    );
}

/// A sender blocked on a full ring (its receiver is stopped) when the file
/// is truncated.
#[test]
fn a_sender_reports_a_truncated_ring() {
    let dir = std::env::temp_dir().join(format!("alloy-trunc-send-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = input(&dir);
    for (i, tool) in tools("a_sender_reports_a_truncated_ring")
        .iter()
        .enumerate()
    {
        let ring = NamedRing::new(&format!("send{i}"));
        // A receiver that is stopped gates the producer without reading.
        let mut rx = receiver(Path::new(RUST), &ring.0, &dir.join("out.arrows"));
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(rx.id() as libc::pid_t, libc::SIGSTOP) };
        let tx = Command::new(tool)
            .args(["send", "--ring", &ring.0])
            .arg(&input)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while ring.published() < 8 {
            assert!(
                Instant::now() < deadline,
                "the sender never filled the ring"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        ring.truncate();
        check_reports_truncation(&format!("{} send", tool.display()), tx);
        let _ = rx.kill();
        let _ = rx.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A receiver waiting for the next message when the file is truncated.
#[test]
fn a_receiver_reports_a_truncated_ring() {
    let dir = std::env::temp_dir().join(format!("alloy-trunc-recv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, tool) in tools("a_receiver_reports_a_truncated_ring")
        .iter()
        .enumerate()
    {
        let ring = NamedRing::new(&format!("recv{i}"));
        let rx = receiver(tool, &ring.0, &dir.join("out.arrows"));
        ring.truncate();
        check_reports_truncation(&format!("{} recv", tool.display()), rx);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
