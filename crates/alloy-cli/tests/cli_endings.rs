//! `recv` of both CLIs when a message is refused (issue #18): a producer
//! (this test) publishes two good record batches, then a message flagged as
//! an IPC record batch whose bytes are not one. The receiver stops there,
//! says so in one line with the number of batches written, exits 1, and
//! leaves a complete Arrow IPC stream of the two batches (read back with
//! arrow-rs). The other endings are in tests/cli_tools.py (pyarrow).

// The root package's test helpers: one copy for both test suites.
#[path = "../../../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use alloy_shm::arrow::{flags, IpcWriter};
use alloy_shm::ring::{Ring, RingConfig};
use arrow_array::{Int64Array, RecordBatch};

const RUST: &str = env!("CARGO_BIN_EXE_alloy");

fn batch(from: i64) -> RecordBatch {
    RecordBatch::try_from_iter([(
        "x",
        Arc::new(Int64Array::from_iter_values(from..from + 100)) as _,
    )])
    .unwrap()
}

fn refused_message_leaves_a_complete_stream(tool: PathBuf, tag: &str) {
    let name = format!("alloy-cli-end-{}-{tag}", std::process::id());
    let _ = Ring::remove(&name);
    let cfg = RingConfig {
        slot_count: 8,
        slot_size: 1 << 16,
        ..Default::default()
    };
    let ring = Ring::builder(&name).config(cfg).create().unwrap();
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out.arrows");
    let mut rx = Command::new(&tool)
        .args(["recv", "--ring", &name, "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(rx.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "{}", tool.display());

    let good = [batch(0), batch(100)];
    let mut w = IpcWriter::new(ring.producer().unwrap(), good[0].schema()).unwrap();
    for b in &good {
        w.write(b).unwrap();
    }
    // Flagged as a record batch, but not an IPC message.
    w.producer_mut()
        .send(&[0xAB; 256], flags::IPC_RECORD_BATCH)
        .unwrap();

    let status = rx.wait().unwrap();
    let mut err = String::new();
    rx.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    drop(w); // the producer stayed attached: the refusal ended the receive
    let _ = Ring::remove(&name);
    assert_eq!(status.code(), Some(1), "{}: {err}", tool.display());
    let lines: Vec<&str> = err.trim().lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("refused a message") && lines[0].contains("wrote 2 batches"),
        "{}",
        lines[0]
    );
    let file = std::fs::File::open(&out).unwrap();
    let got: Vec<RecordBatch> = arrow_ipc::reader::StreamReader::try_new(file, None)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, good);
    assert!(!dir.join("out.arrows.partial").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rust_recv_refused_message() {
    refused_message_leaves_a_complete_stream(PathBuf::from(RUST), "rust");
}

#[test]
fn go_recv_refused_message() {
    if let Some(go) = support::go_cli("go_recv_refused_message") {
        refused_message_leaves_a_complete_stream(go, "go");
    }
}
