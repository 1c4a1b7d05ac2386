//! The iceoryx2 side of the benchmark suite: the outside anchor
//! (`make bench-iceoryx2`, driven by `go/cmd/alloy-bench`; see
//! `doc/BENCHMARKS.md`, section "Alloy against iceoryx2").
//!
//! It measures one-way latency between two processes through the `iceoryx2`
//! crate exactly the way `bench_peer lat` measures the Alloy ring, so the
//! driver can put the two side by side from one run:
//!
//! * the producer reads `CLOCK_MONOTONIC` (the same `monotonic_ns` as
//!   `bench_peer`), loans a slice sample, copies the payload into it, puts
//!   the stamp in its first 8 bytes and sends it (zero-copy: the subscriber
//!   reads the sample in the shared segment);
//! * the consumer process reads the clock as soon as `receive` hands it the
//!   sample, records the difference and answers on a second service; the
//!   producer waits for that answer, so one message is in flight;
//! * payload handling is that of `bench_peer lat` / `lat-consumer`: the
//!   producer copies the whole payload into the sample (the ring's producer
//!   copies it into its slot), the consumer reads only the stamp and the
//!   warm-up flag (the ring's consumer reads the stamp and the slot's flag
//!   word) and answers with 8 bytes;
//! * the first 10% of messages (at least 8) are warm-up, flagged in bytes
//!   8..16 and not recorded.
//!
//! Two ways of waiting, like the Alloy ring's two modes:
//!
//! * `iceoryx2` (mode `busy`): both sides poll `Subscriber::receive` in a
//!   loop, like iceoryx2's own publish-subscribe benchmark, and yield the
//!   core exactly when the Alloy ring's busy consumer does (after 20 µs of
//!   empty polls, see `Ends::recv`), so neither side of the comparison
//!   spins harder than the other;
//! * `iceoryx2-event` (mode `blocking`): each `send` is followed by
//!   `Notifier::notify` on an event service, and the waiting side sleeps in
//!   `Listener::blocking_wait` (on Linux iceoryx2's IPC event is a Unix
//!   datagram socket), to compare with the ring's futex wake-up.
//!
//! The last stdout line is one JSON object with the fields of `report.json`
//! results; the consumer role prints `ready` once its ports exist.
//!
//! Build: `cargo build --release -p alloy-examples --features bench-iceoryx2 --example
//! bench_iceoryx2` (never part of a default build: the feature pulls in
//! iceoryx2).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy_shm::ring::monotonic_ns;
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;

#[derive(Parser)]
#[command(
    name = "bench_iceoryx2",
    about = "iceoryx2 anchor of the Alloy benchmark suite"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Producer → `lat-consumer` process, one-way latency.
    Lat {
        #[arg(long)]
        size: usize,
        #[arg(long)]
        iters: u64,
        /// Wait on iceoryx2 events instead of polling (`iceoryx2-event`).
        #[arg(long)]
        event: bool,
    },
    /// The consumer half of `lat`: records the latency of every sample of
    /// service `--name`/data and answers each on `--name`/ack.
    LatConsumer {
        #[arg(long)]
        name: String,
        #[arg(long)]
        size: usize,
        #[arg(long)]
        event: bool,
    },
}

type Res<T> = Result<T, String>;

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Flag values in payload bytes 8..16.
const MEASURED: u64 = 0;
const WARMUP: u64 = 1;
const STOP: u64 = 2;

/// One direction of the ping-pong: a `[u8]` publish-subscribe service and,
/// in event mode, an event service of the same name to wake the reader.
struct Ends {
    tx: Publisher<ipc::Service, [u8], ()>,
    rx: Subscriber<ipc::Service, [u8], ()>,
    notify: Option<Notifier<ipc::Service>>,
    wait: Option<Listener<ipc::Service>>,
}

/// Opens (or creates) the services `base/data` and `base/ack` and the ports
/// of one side. `producer` publishes on data and reads ack; the consumer
/// the other way round. Both sides open with the same settings, those of
/// iceoryx2's own latency benchmark: no history, a subscriber buffer of one
/// sample (one message is in flight), safe overflow.
fn ends(
    node: &Node<ipc::Service>,
    base: &str,
    size: usize,
    producer: bool,
    event: bool,
) -> Res<Ends> {
    let (out, inn) = if producer {
        ("data", "ack")
    } else {
        ("ack", "data")
    };
    let pubsub = |which: &str| {
        let name = ServiceName::new(&format!("{base}/{which}")).map_err(err)?;
        node.service_builder(&name)
            .publish_subscribe::<[u8]>()
            .max_publishers(1)
            .max_subscribers(1)
            .history_size(0)
            .subscriber_max_buffer_size(1)
            .enable_safe_overflow(true)
            .open_or_create()
            .map_err(err)
    };
    let events = |which: &str| {
        let name = ServiceName::new(&format!("{base}/{which}-event")).map_err(err)?;
        node.service_builder(&name)
            .event()
            .max_notifiers(1)
            .max_listeners(1)
            .open_or_create()
            .map_err(err)
    };
    let out_len = if producer { size } else { 8 };
    let tx = pubsub(out)?
        .publisher_builder()
        .initial_max_slice_len(out_len)
        .max_loaned_samples(1)
        .create()
        .map_err(err)?;
    let rx = pubsub(inn)?.subscriber_builder().create().map_err(err)?;
    let (notify, wait) = if event {
        let n = events(out)?.notifier_builder().create().map_err(err)?;
        let l = events(inn)?.listener_builder().create().map_err(err)?;
        (Some(n), Some(l))
    } else {
        (None, None)
    };
    Ok(Ends {
        tx,
        rx,
        notify,
        wait,
    })
}

impl Ends {
    /// Loans a sample as long as `src`, copies `src` into it (the one pass
    /// over the payload the Alloy producer makes too), overwrites its first
    /// 16 bytes with `head` when given, sends it and, in event mode, wakes
    /// the reader.
    fn send(&self, src: &[u8], head: Option<[u64; 2]>) -> Res<()> {
        let s = self.tx.loan_slice_uninit(src.len()).map_err(err)?;
        let mut s = s.write_from_slice(src);
        if let Some(h) = head {
            let p = s.payload_mut();
            p[..8].copy_from_slice(&h[0].to_le_bytes());
            p[8..16].copy_from_slice(&h[1].to_le_bytes());
        }
        s.send().map_err(err)?;
        if let Some(n) = &self.notify {
            n.notify().map_err(err)?;
        }
        Ok(())
    }

    /// The next sample: polls `receive` (busy), or sleeps on the listener
    /// between polls (event). Always polls first, so a notification that
    /// arrives for a sample already taken only costs one empty poll.
    ///
    /// Busy polling follows the yield policy of the Alloy ring's busy
    /// consumer (`WaitStrategy::Spin`, `src/ring/consumer.rs`), so both
    /// sides of the comparison wait the same way: a spin hint per empty
    /// poll, a look at the clock every [`SPIN_CHECK_EVERY`] polls, and one
    /// `sched_yield` once [`SPIN_YIELD_AFTER`] has passed without a sample
    /// (and again every [`SPIN_YIELD_AFTER`]).
    fn recv(&self) -> Res<iceoryx2::sample::Sample<ipc::Service, [u8], ()>> {
        let mut spins = 0u32;
        let mut last_yield: Option<Instant> = None;
        loop {
            if let Some(s) = self.rx.receive().map_err(err)? {
                return Ok(s);
            }
            match &self.wait {
                Some(l) => {
                    l.blocking_wait(|_| {}).map_err(err)?;
                }
                None => {
                    spins = spins.wrapping_add(1);
                    if spins % SPIN_CHECK_EVERY == 0 {
                        let now = Instant::now();
                        if now.duration_since(*last_yield.get_or_insert(now)) >= SPIN_YIELD_AFTER {
                            std::thread::yield_now();
                            last_yield = Some(Instant::now());
                        }
                    } else {
                        std::hint::spin_loop();
                    }
                }
            }
        }
    }
}

/// How long a busy poller polls an empty subscriber before yielding its
/// core once: the value of the Alloy ring's busy consumer
/// (`SPIN_YIELD_AFTER` in `src/ring/consumer.rs`).
const SPIN_YIELD_AFTER: Duration = Duration::from_micros(20);

/// Empty polls between two clock reads of a busy poller (as the ring's).
const SPIN_CHECK_EVERY: u32 = 64;

/// Messages handled so far by this process, watched by [`watchdog`].
static PROGRESS: AtomicU64 = AtomicU64::new(0);

/// Longest time without a message before the process gives up.
const STALL: Duration = Duration::from_secs(60);

/// Ends the process with an error when [`PROGRESS`] stands still for
/// [`STALL`]: neither the polling loops nor `blocking_wait` notice a peer
/// that died, and a hung point would stall the whole suite. The loops pay
/// one relaxed store per message for it.
fn watchdog(role: &'static str) {
    std::thread::spawn(move || {
        let (mut last, mut still) = (u64::MAX, Duration::ZERO);
        loop {
            std::thread::sleep(Duration::from_secs(1));
            // Relaxed: only "has it changed", no data hangs on it.
            let now = PROGRESS.load(Ordering::Relaxed);
            still = if now == last {
                still + Duration::from_secs(1)
            } else {
                Duration::ZERO
            };
            last = now;
            if still >= STALL {
                eprintln!("bench_iceoryx2 {role}: no message for {STALL:?} after {now}, giving up");
                std::process::exit(1);
            }
        }
    });
}

fn hist() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is valid")
}

/// The latency fields of a result line (as `bench_peer`'s `lat_json`).
fn lat_json(h: &Histogram<u64>) -> String {
    format!(
        "\"p50_ns\":{},\"p99_ns\":{},\"p999_ns\":{},\"max_ns\":{},\"messages\":{}",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        h.len()
    )
}

fn node() -> Res<Node<ipc::Service>> {
    set_log_level(LogLevel::Error);
    NodeBuilder::new().create::<ipc::Service>().map_err(err)
}

/// Removes what benchmark processes that died (killed, or ended by the
/// watchdog) left in shared memory: a 64 MiB point holds a few hundred MiB.
fn remove_dead_nodes() {
    let _ = Node::<ipc::Service>::list(Config::global_config(), |n| {
        if let NodeState::Dead(d) = n {
            let _ = d.blocking_remove_stale_resources(Duration::from_secs(1));
        }
        CallbackProgression::Continue
    });
}

fn word(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().expect("8 bytes"))
}

/// The consumer process and its stdout lines.
struct Peer {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Peer {
    fn spawn(args: &[&str]) -> Res<Peer> {
        let exe = std::env::current_exe().map_err(err)?;
        let mut child = Command::new(exe)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(err)?;
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut p = Peer { child, out };
        let line = p.line()?;
        if line != "ready" {
            return Err(format!("peer {args:?} said {line:?} instead of ready"));
        }
        Ok(p)
    }

    fn line(&mut self) -> Res<String> {
        let mut s = String::new();
        self.out.read_line(&mut s).map_err(err)?;
        if s.is_empty() {
            return Err("peer exited without output".into());
        }
        Ok(s.trim_end().to_string())
    }

    fn finish(mut self) -> Res<String> {
        let line = self.line()?;
        let st = self.child.wait().map_err(err)?;
        if !st.success() {
            return Err(format!("peer failed: {st}"));
        }
        Ok(line)
    }
}

fn lat(size: usize, iters: u64, event: bool) -> Res<String> {
    let size = size.max(16);
    let base = format!("alloy-bench/{}/lat", std::process::id());
    let node = node()?;
    remove_dead_nodes();
    // Ports first, so the consumer opens services that exist and finds its
    // subscriber connected when it starts.
    let me = ends(&node, &base, size, true, event)?;
    let size_s = size.to_string();
    let mut args = vec!["lat-consumer", "--name", &base, "--size", &size_s];
    if event {
        args.push("--event");
    }
    let peer = Peer::spawn(&args)?;
    watchdog("lat");
    let src: Vec<u8> = (0..size).map(|i| i as u8).collect();
    // As `bench_peer lat`: 10% warm-up, at least 8 (first-touch faults of
    // the sample pool).
    let warm = (iters / 10).max(8);
    for i in 0..iters + warm {
        let t0 = monotonic_ns();
        let flag = if i < warm { WARMUP } else { MEASURED };
        me.send(&src, Some([t0, flag]))?;
        me.recv()?;
        PROGRESS.store(i, Ordering::Relaxed);
    }
    me.send(&src, Some([0, STOP]))?;
    let v = peer.finish()?;
    let fields = v
        .strip_prefix('{')
        .and_then(|v| v.strip_suffix('}'))
        .ok_or_else(|| format!("bad peer line {v:?}"))?;
    Ok(format!(
        "{{\"transport\":\"{}\",\"mode\":\"{}\",\"kind\":\"latency\",\"payload_bytes\":{size},\"consumers\":1,{fields}}}",
        if event { "iceoryx2-event" } else { "iceoryx2" },
        if event { "blocking" } else { "busy" },
    ))
}

fn lat_consumer(base: &str, size: usize, event: bool) -> Res<String> {
    let node = node()?;
    let me = ends(&node, base, size, false, event)?;
    let ack = [0u8; 8];
    let (mut h, mut seen) = (hist(), 0u64);
    watchdog("lat-consumer");
    println!("ready");
    std::io::stdout().flush().map_err(err)?;
    loop {
        let s = me.recv()?;
        let t1 = monotonic_ns();
        seen += 1;
        PROGRESS.store(seen, Ordering::Relaxed);
        let (t0, flag) = (word(s.payload(), 0), word(s.payload(), 1));
        drop(s);
        match flag {
            MEASURED => h.record(t1.saturating_sub(t0)).map_err(err)?,
            STOP => break,
            _ => {}
        }
        me.send(&ack, None)?;
    }
    Ok(format!("{{{}}}", lat_json(&h)))
}

fn run(cli: Cli) -> Res<String> {
    match cli.cmd {
        Cmd::Lat { size, iters, event } => lat(size, iters, event),
        Cmd::LatConsumer { name, size, event } => lat_consumer(&name, size, event),
    }
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(line) => {
            println!("{line}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench_iceoryx2: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
