//! A Rust worker serving a request/reply channel (LAYOUT.md §12), called by
//! the Go service in `go/examples/reqrep` (and by the Go tests of
//! `go/reqrep`).
//!
//! For a request batch with an int64 column `x` it answers with the columns
//! `x` and `x2` (= x*x) and the sum of `x` in the reply schema's metadata
//! (`"sum"`). Request schema metadata selects test behaviours:
//! `"op": "echo"` answers with the request itself, `"sleep_ms": "N"` delays
//! the answer; a batch without an int64 `x` gets an error reply.
//!
//! ```text
//! cargo build --release -p alloy-examples --example reqrep_worker
//! target/release/examples/reqrep_worker --name squares --threads 2
//! ```
//!
//! It prints `ready` on stdout once clients can connect, then serves until
//! SIGTERM or SIGINT: it then finishes the requests in hand, closes the
//! channel (clients see `PeerGone`), removes both rings and exits 0. A
//! worker killed with SIGKILL leaves its rings: clients fail at once with
//! `WorkerDead` / `ErrNotServed`, and the next worker on the same name
//! removes them (or `bin/alloy rm NAME.req` / `NAME.rep`).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use alloy_shm::reqrep::{StopHandle, Worker, WorkerConfig};
use alloy_shm::ring::WaitStrategy;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "reqrep_worker",
    about = "Serve x -> (x, x*x, sum) on an Alloy request/reply channel"
)]
struct Args {
    /// Channel name (the rings are NAME.req and NAME.rep in /dev/shm).
    #[arg(long)]
    name: String,
    /// Worker threads (members of the request queue group).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Slots per ring (a power of two).
    #[arg(long, default_value_t = 32)]
    slots: u32,
    /// Slot size in bytes: the largest request or reply.
    #[arg(long, default_value_t = 2 << 20)]
    slot_size: u32,
    /// Busy-wait for requests and reply space instead of parking
    /// (WaitStrategy::Spin: lowest latency, one core per thread).
    #[arg(long)]
    spin: bool,
}

/// The handler: x -> (x, x2) with the sum in the metadata.
fn handle(batch: RecordBatch) -> Result<RecordBatch, String> {
    let meta = batch.schema().metadata().clone();
    if let Some(ms) = meta.get("sleep_ms") {
        let ms: u64 = ms
            .parse()
            .map_err(|e| format!("bad sleep_ms {ms:?}: {e}"))?;
        std::thread::sleep(Duration::from_millis(ms));
    }
    if meta.get("op").map(String::as_str) == Some("echo") {
        return Ok(batch);
    }
    let x = batch
        .column_by_name("x")
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .ok_or("request has no int64 column \"x\"")?;
    let x2: Int64Array = x.iter().map(|v| v.map(|v| v.wrapping_mul(v))).collect();
    let sum = x.iter().flatten().fold(0i64, i64::wrapping_add);
    let schema = Schema::new(vec![
        Field::new("x", DataType::Int64, true),
        Field::new("x2", DataType::Int64, true),
    ])
    .with_metadata(HashMap::from([("sum".to_string(), sum.to_string())]));
    RecordBatch::try_new(Arc::new(schema), vec![Arc::new(x.clone()), Arc::new(x2)])
        .map_err(|e| e.to_string())
}

/// Blocks SIGTERM and SIGINT in this thread and so in every thread spawned
/// after it (the mask is inherited): they stay pending until
/// [`stop_on_signals`] takes them with `sigwait`. Call first in `main`.
fn block_stop_signals() -> std::io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use;
    // pthread_sigmask only reads the set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        match libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) {
            0 => Ok(set),
            rc => Err(std::io::Error::from_raw_os_error(rc)),
        }
    }
}

/// Stops the worker when a signal of `set` (blocked everywhere) arrives. A
/// thread waiting in `sigwait` is an ordinary thread, not a signal handler,
/// so it may call `stop` (and log) freely.
fn stop_on_signals(set: libc::sigset_t, stop: StopHandle) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut sig = 0;
            // SAFETY: `set` is initialised and blocked in every thread;
            // `sig` is a valid place for the signal number.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                tracing::warn!(signal = sig, "stopping: finishing the requests in hand");
                stop.stop();
            }
        })?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Before any thread exists, so that every thread inherits the mask.
    let signals = block_stop_signals()?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .init();
    let args = Args::parse();
    let worker = Worker::create(
        &args.name,
        &WorkerConfig {
            slot_count: args.slots,
            slot_size: args.slot_size,
            threads: args.threads,
            wait: if args.spin {
                WaitStrategy::Spin
            } else {
                WaitStrategy::Blocking
            },
            ..Default::default()
        },
    )?;
    stop_on_signals(signals, worker.stop_handle())?;
    let mut out = std::io::stdout();
    writeln!(out, "ready")?;
    out.flush()?;
    // serve returns once stopped; the worker is dropped with it, which
    // closes the channel and removes NAME.req and NAME.rep.
    let stats = worker.serve(handle)?;
    eprintln!("{stats:?}");
    Ok(())
}
