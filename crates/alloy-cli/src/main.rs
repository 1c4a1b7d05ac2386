//! `alloy`: create, inspect, feed and drain Alloy shared-memory rings.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::io::Write;
use std::process::ExitCode;

use alloy_shm::region::HugePages;
use alloy_shm::ring::{Backpressure, Ring, RingConfig, WaitStrategy};
use alloy_testkit::checked::Spec;
use clap::{Args, Parser, Subcommand};

mod arrow;
#[cfg(feature = "flight")]
mod flight;
mod metrics;
mod record;
mod stat;

#[derive(Parser)]
#[command(
    name = "alloy",
    about = "Alloy shared-memory rings for Arrow data",
    after_help = "The Go tool alloy-go takes the same commands and arguments."
)]
struct Cli {
    /// Directory of named rings instead of /dev/shm (sets ALLOY_SHM_DIR,
    /// which both languages' libraries read): a Kubernetes emptyDir with
    /// medium: Memory, a Docker tmpfs volume.
    #[arg(long, global = true, value_name = "DIR")]
    shm_dir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the tool and layout version.
    Version,
    /// Create a named ring under /dev/shm (or --shm-dir / $ALLOY_SHM_DIR).
    Create {
        #[command(flatten)]
        name: RingName,
        /// Number of slots (a power of two).
        #[arg(long, default_value_t = 64)]
        slots: u32,
        /// Payload bytes per slot (a multiple of 64): the largest message.
        #[arg(long, default_value_t = 1 << 20)]
        slot_size: u32,
        /// Subscriber entries (broadcast consumers + queue groups).
        #[arg(long, default_value_t = 16)]
        max_subscribers: u32,
        /// Member entries (attached consumer handles).
        #[arg(long, default_value_t = 32)]
        max_members: u32,
        /// Bytes reserved for the stream schema.
        #[arg(long, default_value_t = 64 << 10)]
        schema_capacity: u32,
        /// Share the ring with this group (mode 0660): consumers run by
        /// other users in the group may attach.
        #[arg(long, value_name = "NAME|GID")]
        group: Option<String>,
        /// Huge-page backing: `require` fails unless the ring's directory
        /// (--shm-dir / ALLOY_SHM_DIR) is a hugetlbfs mount with enough free
        /// pages reserved, naming what to reserve or mount; `prefer` falls
        /// back to normal pages (doc/README.md, "Huge pages").
        #[arg(long, value_enum, default_value_t = HugePagesArg::Off)]
        huge_pages: HugePagesArg,
        /// Populate the ring's page tables at creation, so the first
        /// messages take no page faults.
        #[arg(long)]
        prefault: bool,
    },
    /// Remove a named ring.
    Rm {
        #[command(flatten)]
        name: RingName,
    },
    /// Send every batch of an Arrow IPC file or stream, then close the
    /// stream.
    ///
    /// LZ4/ZSTD-compressed files and streams are read too. FILE `-` is
    /// standard input; a pipe or FIFO is sent batch by batch as it arrives. A ring whose stream
    /// was closed is refused unless --new-stream, and so is one left
    /// unfinished by a failed send unless --resume or --new-stream.
    Send {
        /// Ring name.
        #[arg(long)]
        ring: String,
        /// Append to the unfinished stream of a send that failed or was
        /// interrupted (its receivers get the new batches after the old).
        #[arg(long)]
        resume: bool,
        /// Start a new stream on a ring whose stream ended (or was left
        /// unfinished); receivers still attached see the old one end.
        #[arg(long)]
        new_stream: bool,
        /// Encoding: ipc, or cdata (C-Data-offsets, LAYOUT.md §8.3: every
        /// batch must fit in one slot, batches are not split).
        #[arg(long, default_value = "ipc")]
        mode: String,
        /// Send to ring --ring of the `alloy serve-flight` gateway at this
        /// URL (grpc://HOST:PORT) over Arrow Flight instead of a local ring.
        #[arg(long, value_name = "URL")]
        flight: Option<String>,
        /// Arrow IPC file or stream to send (`-`: standard input).
        file: std::path::PathBuf,
    },
    /// Arrow Flight gateway: republish every DoPut stream whose descriptor
    /// is the one-element path RING into the local ring RING (created if absent);
    /// prints `listening on grpc://ADDR` once bound.
    #[cfg(feature = "flight")]
    ServeFlight {
        /// Address to listen on (HOST:PORT; port 0 picks a free one).
        #[arg(long)]
        listen: String,
        /// Slots of rings created on demand (a power of two).
        #[arg(long, default_value_t = 64)]
        slots: u32,
        /// Slot size of rings created on demand (a multiple of 64).
        #[arg(long, default_value_t = 1 << 20)]
        slot_size: u32,
        /// Largest gRPC message accepted, in bytes.
        #[arg(long, default_value_t = 256 << 20)]
        max_message: usize,
    },
    /// Join, print `ready` once every check passed, and write the received
    /// batches to an Arrow IPC stream until end of stream.
    ///
    /// The file is written as OUT.partial and renamed to OUT at the end.
    /// Every ending (end of stream, Ctrl-C/SIGTERM, --timeout, a dead
    /// producer, the ring removed or re-created, a refused message) leaves
    /// OUT as a complete Arrow IPC stream holding exactly the batches
    /// received whole, and prints one line saying what happened and how
    /// many batches were written; if the file cannot be written (e.g. disk
    /// full) or no schema arrived, no file is left. Exit status: 0 at end
    /// of stream, 124 after --timeout, 128+N after signal N, else 1.
    Recv {
        /// Ring name.
        #[arg(long)]
        ring: String,
        /// Output Arrow IPC stream file (`-`: standard output; `ready`
        /// and the summary then go to standard error).
        #[arg(long)]
        out: std::path::PathBuf,
        /// Stop (exit 124) after this long without a message: 500ms, 2s,
        /// 1.5m, 1h; a bare number is seconds.
        #[arg(long, value_name = "DURATION", value_parser = crate::arrow::parse_duration)]
        timeout: Option<std::time::Duration>,
        /// Compress the record batches of the file written: lz4, zstd or
        /// none.
        #[arg(long, value_name = "CODEC", default_value = "none")]
        compression: String,
    },
    /// Record a ring's stream into an Arrow IPC stream file, with the time
    /// each batch was received in OUT.times (for `replay --pace`).
    ///
    /// A broadcast subscriber like `recv` (same endings, `ready` line and
    /// exit status): other consumers see no difference, and like any
    /// consumer it holds the producer back if it cannot keep up.
    Record {
        /// Ring name.
        #[arg(long)]
        ring: String,
        /// Output Arrow IPC stream file (receive times go to OUT.times).
        #[arg(long)]
        out: std::path::PathBuf,
        /// Stop (exit 124) after this long without a message.
        #[arg(long, value_name = "DURATION", value_parser = crate::arrow::parse_duration)]
        timeout: Option<std::time::Duration>,
    },
    /// Send an Arrow IPC file or stream (e.g. a recording) to a ring, then
    /// close the stream, as `send` does, at a given rate or with the
    /// recorded pacing.
    Replay {
        /// Arrow IPC file or stream to send.
        file: std::path::PathBuf,
        /// Ring name.
        #[arg(long)]
        ring: String,
        /// Record batches per second: N or N/s.
        #[arg(long, value_parser = crate::record::parse_rate)]
        rate: Option<f64>,
        /// Keep the pacing `alloy record` saw (needs FILE.times).
        #[arg(long, conflicts_with = "rate")]
        pace: bool,
        /// Start a new stream on a ring whose stream ended.
        #[arg(long)]
        new_stream: bool,
        /// Encoding: ipc or cdata.
        #[arg(long, default_value = "ipc")]
        mode: String,
    },
    /// Print messages/s and bytes/s of a ring, one line per window, like
    /// `rostopic hz` (a broadcast subscriber releasing every message at
    /// once).
    Hz {
        /// Ring name (or --ring NAME).
        name: Option<String>,
        /// Ring name.
        #[arg(long = "ring", conflicts_with = "name")]
        ring: Option<String>,
        /// Length of each window reported.
        #[arg(long, default_value = "1s", value_parser = crate::arrow::parse_duration)]
        window: std::time::Duration,
        /// Stop after N windows.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Stop after this long.
        #[arg(long, value_name = "DURATION", value_parser = crate::arrow::parse_duration)]
        duration: Option<std::time::Duration>,
        /// Print one JSON object per window.
        #[arg(long)]
        json: bool,
    },
    /// Serve the state and counters of rings as Prometheus metrics
    /// (OpenMetrics text) over HTTP; prints `listening on http://ADDR/metrics`.
    Metrics {
        /// Address to listen on (HOST:PORT; port 0 picks a free one).
        #[arg(long)]
        listen: String,
        /// Rings to report (none: every ring in the shared-memory directory,
        /// looked up at each scrape).
        rings: Vec<String>,
    },
    /// Print a ring's state: producer, consumers (lag, leases held), fill
    /// and rates (doc/README.md, "Inspection"). Maps the ring read-only.
    Stat {
        /// Ring name (or --ring NAME).
        name: Option<String>,
        /// Ring name.
        #[arg(long = "ring", conflicts_with = "name")]
        ring: Option<String>,
        /// Print one line of JSON (fields in doc/README.md, "Inspection").
        #[arg(long)]
        json: bool,
        /// Milliseconds between the two samples the rates are computed
        /// from; 0 takes one sample and prints no rates.
        #[arg(long, value_name = "MS", default_value_t = 200)]
        interval: u64,
    },
    /// Show `stat` live in the terminal until Ctrl-C or until the ring is
    /// removed.
    Watch {
        /// Ring name (or --ring NAME).
        name: Option<String>,
        /// Ring name.
        #[arg(long = "ring", conflicts_with = "name")]
        ring: Option<String>,
        /// Refresh period in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        interval: u64,
    },
    /// List the Alloy rings under /dev/shm (only their headers are read).
    Ls {
        /// Print JSON (fields in doc/README.md, "Inspection").
        #[arg(long)]
        json: bool,
        /// Directory to scan instead of /dev/shm.
        #[arg(long, hide = true)]
        dir: Option<std::path::PathBuf>,
    },
    /// Send checked test messages (doc/TESTING.md), then close the stream.
    #[command(hide = true)]
    TestProduce {
        /// Ring name.
        #[arg(long)]
        ring: String,
        /// Number of messages.
        #[arg(long)]
        count: u64,
        /// Detach dead consumers after being blocked this many milliseconds.
        #[arg(long, value_name = "MS")]
        reclaim_after: Option<u64>,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Receive and verify checked test messages until end-of-stream.
    #[command(hide = true)]
    TestConsume(TestConsumeArgs),
    /// Benchmark helper: republish every message of --in onto --out
    /// (first 8 bytes echoed, same length) until end-of-stream.
    #[command(hide = true)]
    Echo {
        /// Ring to read.
        #[arg(long = "in")]
        input: String,
        /// Ring to write.
        #[arg(long = "out")]
        output: String,
        /// Busy-poll instead of parking on the futex.
        #[arg(long)]
        spin: bool,
    },
    /// Benchmark helper: read every message, sum its u64 words (so every
    /// byte is touched), print `{"messages":N,"bytes":B,"sum":S}`.
    #[command(hide = true)]
    Sink {
        /// Ring name.
        #[arg(long)]
        ring: String,
        /// Busy-poll instead of parking on the futex.
        #[arg(long)]
        spin: bool,
    },
}

// The arguments of `test-consume` (a struct: too many for one function).
#[derive(Args)]
struct TestConsumeArgs {
    /// Ring name.
    #[arg(long)]
    ring: String,
    /// Join as a broadcast consumer.
    #[arg(long, conflicts_with = "queue", required_unless_present = "queue")]
    broadcast: bool,
    /// Join work-queue group G.
    #[arg(long, value_name = "G")]
    queue: Option<u32>,
    /// Write the received message numbers here (little-endian u64s).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Busy-poll instead of parking on the futex.
    #[arg(long)]
    spin: bool,
    /// Keep the N most recent messages' leases unreleased (to test a
    /// consumer that dies holding leases).
    #[arg(long, default_value_t = 0)]
    hold: usize,
    /// Log each message number as it is received, before its lease is
    /// released, into this existing file (sized 8 + 8×N bytes by the
    /// caller): the count as a u64 at offset 0, then the numbers, all
    /// little-endian, bit 63 set on a message flagged redelivered.
    /// Written through a shared mapping, so it survives a SIGKILL (the
    /// soak test reads it after killing consumers).
    #[arg(long)]
    record: Option<std::path::PathBuf>,
    /// Write the numbers of the messages received flagged as redelivered
    /// (work-queue redelivery after a member died) here at the end
    /// (little-endian u64s).
    #[arg(long, value_name = "PATH")]
    redelivered: Option<std::path::PathBuf>,
    #[command(flatten)]
    spec: SpecArgs,
}

/// A ring name given as the one argument or with --ring (both tools accept
/// both forms for every command that takes one ring).
#[derive(Args)]
struct RingName {
    /// Ring name (or --ring NAME).
    #[arg(value_name = "NAME")]
    name: Option<String>,
    /// Ring name.
    #[arg(long = "ring", value_name = "NAME", conflicts_with = "name")]
    ring: Option<String>,
}

impl RingName {
    fn get(self) -> Result<String, String> {
        inspect::ring_name(self.name, self.ring)
    }
}

#[derive(Args, Clone, Copy)]
struct SpecArgs {
    /// Seed of the length formula.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Smallest message size (>= 16).
    #[arg(long, default_value_t = 16)]
    min_size: usize,
    /// Largest message size.
    #[arg(long, default_value_t = 4096)]
    max_size: usize,
}

impl SpecArgs {
    fn spec(self) -> Result<Spec, String> {
        if self.min_size < 16 || self.max_size < self.min_size {
            return Err("need 16 <= --min-size <= --max-size".into());
        }
        Ok(Spec {
            seed: self.seed,
            min: self.min_size,
            max: self.max_size,
        })
    }
}

/// `alloy --version` (clap puts the name in front) and `alloy version`.
fn version() -> String {
    format!(
        "{} (layout version {})",
        env!("CARGO_PKG_VERSION"),
        alloy_shm::layout::VERSION
    )
}

/// The signal that asked `recv` to stop (0: none yet).
static STOP: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Makes SIGINT and SIGTERM set [`STOP`] instead of killing the process,
/// so `recv` can finish its file; its loop looks at least every 200 ms.
fn catch_stop_signals() {
    extern "C" fn on_signal(sig: libc::c_int) {
        // An atomic store is async-signal-safe.
        STOP.store(sig, std::sync::atomic::Ordering::SeqCst);
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is valid (no flags, empty mask once
        // sigemptyset ran); the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// `alloy recv`: the report's line and exit status.
fn recv(
    ring: &str,
    out: &std::path::Path,
    timeout: Option<std::time::Duration>,
    compression: &str,
    times: Option<std::path::PathBuf>,
) -> Result<ExitCode, String> {
    use crate::arrow::{parse_compression, RecvEnd, RecvOptions};
    let to_stdout = out.as_os_str() == "-";
    catch_stop_signals();
    let stop = || match STOP.load(std::sync::atomic::Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    };
    let opts = RecvOptions {
        ring,
        out,
        timeout,
        compression: parse_compression(compression)?,
        stop: &stop,
        times: times.as_deref(),
    };
    let report = crate::arrow::recv(&opts, || {
        // With --out - the data owns stdout.
        if to_stdout {
            eprintln!("ready");
        } else {
            println!("ready");
            let _ = std::io::stdout().flush();
        }
    })?;
    if report.end == RecvEnd::EndOfStream {
        if to_stdout {
            eprintln!("{}", report.summary);
        } else {
            println!("{}", report.summary);
        }
    } else {
        eprintln!("alloy recv: {}", report.message(ring));
    }
    Ok(ExitCode::from(report.exit_code()))
}

/// `alloy hz`: lines on stdout until the count, duration, end of stream or
/// Ctrl-C.
fn hz(
    ring: &str,
    window: std::time::Duration,
    count: Option<u64>,
    duration: Option<std::time::Duration>,
    json: bool,
) -> Result<(), String> {
    catch_stop_signals();
    let stop = || STOP.load(std::sync::atomic::Ordering::SeqCst) != 0;
    let opts = crate::record::HzOptions {
        ring,
        window,
        count,
        duration,
        json,
        stop: &stop,
    };
    crate::record::hz(&opts, &mut |line| {
        println!("{line}");
        let _ = std::io::stdout().flush();
    })?;
    Ok(())
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.cmd {
        Cmd::Version => println!("alloy {}", version()),
        Cmd::Create {
            name,
            slots,
            slot_size,
            max_subscribers,
            max_members,
            schema_capacity,
            group,
            huge_pages,
            prefault,
        } => create(
            &name.get()?,
            group.as_deref(),
            huge_pages.into(),
            prefault,
            RingConfig {
                slot_count: slots,
                slot_size,
                max_subscribers,
                max_members,
                schema_capacity,
            },
        )?,
        Cmd::Rm { name } => Ring::remove(&name.get()?).map_err(err)?,
        Cmd::Send {
            ring,
            mode,
            flight: Some(url),
            file,
            ..
        } => println!("{}", send_flight(&url, &ring, &file, &mode)?),
        Cmd::Send {
            ring,
            resume,
            new_stream,
            mode,
            file,
            ..
        } => {
            let opts = crate::arrow::SendOptions { resume, new_stream };
            println!("{}", crate::arrow::send_with(&ring, &file, &mode, opts)?);
        }
        #[cfg(feature = "flight")]
        Cmd::ServeFlight {
            listen,
            slots,
            slot_size,
            max_message,
        } => serve_flight(&listen, slots, slot_size, max_message)?,
        Cmd::Recv {
            ring,
            out,
            timeout,
            compression,
        } => return recv(&ring, &out, timeout, &compression, None),
        Cmd::Record { ring, out, timeout } => {
            if out.as_os_str() == "-" {
                return Err("record writes a file (with OUT.times next to it), not -".into());
            }
            let times = crate::record::times_path(&out);
            return recv(&ring, &out, timeout, "none", Some(times));
        }
        Cmd::Replay {
            file,
            ring,
            rate,
            pace,
            new_stream,
            mode,
        } => {
            let opts = crate::arrow::SendOptions {
                resume: false,
                new_stream,
            };
            println!(
                "{}",
                crate::record::replay(&file, &ring, &mode, rate, pace, opts)?
            );
        }
        Cmd::Hz {
            name,
            ring,
            window,
            count,
            duration,
            json,
        } => hz(
            &inspect::ring_name(name, ring)?,
            window,
            count,
            duration,
            json,
        )?,
        Cmd::Metrics { listen, rings } => {
            catch_stop_signals();
            let stop = || STOP.load(std::sync::atomic::Ordering::SeqCst) != 0;
            crate::metrics::serve(&listen, &rings, &stop)?;
        }
        Cmd::Stat {
            name,
            ring,
            json,
            interval,
        } => inspect::stat(&inspect::ring_name(name, ring)?, json, interval)?,
        Cmd::Watch {
            name,
            ring,
            interval,
        } => inspect::watch(&inspect::ring_name(name, ring)?, interval)?,
        Cmd::Ls { json, dir } => {
            inspect::ls(&dir.unwrap_or_else(alloy_shm::region::shm_dir), json)?
        }
        Cmd::TestProduce {
            ring,
            count,
            reclaim_after,
            spec,
        } => test_produce(&ring, count, reclaim_after, spec)?,
        Cmd::TestConsume(args) => test_consume(args)?,
        Cmd::Echo {
            input,
            output,
            spin,
        } => echo(&input, &output, spin)?,
        Cmd::Sink { ring, spin } => sink(&ring, spin)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A ring error as the tool prints it.
fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// `alloy create`.
fn create(
    ring: &str,
    group: Option<&str>,
    huge_pages: HugePages,
    prefault: bool,
    cfg: RingConfig,
) -> Result<(), String> {
    if ring.starts_with('-') {
        return Err(format!(
            "ring name {ring:?} begins with '-': ring names may not (it reads as an option)"
        ));
    }
    let mut b = Ring::builder(ring)
        .config(cfg)
        .huge_pages(huge_pages)
        .prefault(prefault);
    if let Some(g) = group {
        b = b.group(alloy_shm::region::resolve_group(g).map_err(|e| e.to_string())?);
    }
    let r = b.create().map_err(err)?;
    println!(
        "created ring {ring:?}: {} slots x {} bytes, {} bytes total",
        cfg.slot_count,
        cfg.slot_size,
        r.region().layout().total_size
    );
    Ok(())
}

/// `--huge-pages` of `alloy create`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum HugePagesArg {
    Off,
    Prefer,
    Require,
}

impl From<HugePagesArg> for HugePages {
    fn from(h: HugePagesArg) -> HugePages {
        match h {
            HugePagesArg::Off => HugePages::Off,
            HugePagesArg::Prefer => HugePages::Prefer,
            HugePagesArg::Require => HugePages::Require,
        }
    }
}

/// `alloy serve-flight`.
#[cfg(feature = "flight")]
fn serve_flight(
    listen: &str,
    slots: u32,
    slot_size: u32,
    max_message: usize,
) -> Result<(), String> {
    let config = alloy_shm::flight::GatewayConfig {
        ring: RingConfig {
            slot_count: slots,
            slot_size,
            ..RingConfig::default()
        },
        max_message_bytes: max_message,
    };
    crate::flight::serve_flight(listen, config)
}

/// `alloy test-produce`: checked messages (doc/TESTING.md).
fn test_produce(
    ring: &str,
    count: u64,
    reclaim_after: Option<u64>,
    spec: SpecArgs,
) -> Result<(), String> {
    let spec = spec.spec()?;
    let r = Ring::open(ring).map_err(err)?;
    if spec.max > r.config().slot_size as usize {
        return Err(format!(
            "--max-size {} exceeds the slot size {}",
            spec.max,
            r.config().slot_size
        ));
    }
    let mut p = r
        .producer_builder()
        .backpressure(Backpressure::default())
        .wait(WaitStrategy::Blocking)
        .create()
        .map_err(err)?;
    if let Some(ms) = reclaim_after {
        p.set_reclaim_after(std::time::Duration::from_millis(ms));
    }
    let mut bytes = 0u64;
    for j in 0..count {
        let mut slot = p.reserve(spec.max).map_err(err)?;
        let n = spec.write(j, &mut slot);
        slot.publish(n, 0).map_err(err)?;
        bytes += n as u64;
    }
    p.close();
    println!("{{\"sent\":{count},\"bytes\":{bytes}}}");
    Ok(())
}

/// `alloy test-consume`: receives and verifies checked messages.
fn test_consume(args: TestConsumeArgs) -> Result<(), String> {
    let TestConsumeArgs {
        ring,
        broadcast,
        queue,
        out,
        spin,
        hold,
        record,
        redelivered,
        spec,
    } = args;
    let spec = spec.spec()?;
    let mut record = record.map(|p| Record::open(&p)).transpose()?;
    let r = Ring::open(&ring).map_err(err)?;
    let mut c = match queue {
        Some(g) => r.join_queue(g).map_err(err)?,
        None => {
            debug_assert!(broadcast);
            r.subscribe().map_err(err)?
        }
    };
    if spin {
        c.set_wait_strategy(WaitStrategy::Spin);
    }
    println!("ready");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let mut seen = Vec::new();
    let (mut received, mut bytes) = (0u64, 0u64);
    let mut expect_next: Option<u64> = None;
    let mut held = std::collections::VecDeque::with_capacity(hold + 1);
    let mut again = Vec::new();
    while let Some(m) = c.recv().map_err(err)? {
        let j = spec.verify(&m)?;
        if broadcast {
            if let Some(n) = expect_next {
                if j != n {
                    return Err(format!("out of order: got message {j}, expected {n}"));
                }
            }
            expect_next = Some(j + 1);
        }
        bytes += m.len() as u64;
        received += 1;
        if m.redelivered() {
            again.push(j);
        }
        if out.is_some() {
            // Only kept for --out: a long soak must not grow.
            seen.push(j);
        }
        if let Some(r) = record.as_mut() {
            // Bit 63 flags a redelivered message (the soak's
            // at-least-once accounting reads it after a kill).
            r.push(j | (u64::from(m.redelivered()) << 63))?;
        }
        if hold > 0 {
            held.push_back(m);
            if held.len() > hold {
                held.pop_front();
            }
        }
    }
    for (path, nums) in [(out, &seen), (redelivered, &again)] {
        if let Some(path) = path {
            let raw: Vec<u8> = nums.iter().flat_map(|j| j.to_le_bytes()).collect();
            std::fs::write(&path, raw).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    println!("{{\"received\":{received},\"bytes\":{bytes}}}");
    Ok(())
}

/// `alloy echo` (benchmark helper).
fn echo(input: &str, output: &str, spin: bool) -> Result<(), String> {
    let wait = if spin {
        WaitStrategy::Spin
    } else {
        WaitStrategy::Blocking
    };
    let mut rx = Ring::open(input).map_err(err)?.subscribe().map_err(err)?;
    rx.set_wait_strategy(wait);
    let out = Ring::open(output).map_err(err)?;
    let mut tx = out
        .producer_builder()
        .backpressure(Backpressure::default())
        .wait(wait)
        .create()
        .map_err(err)?;
    println!("ready");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    while let Some(m) = rx.recv().map_err(err)? {
        let n = m.len();
        let mut r = tx.reserve(n).map_err(err)?;
        let k = n.min(8);
        r[..k].copy_from_slice(&m[..k]);
        drop(m);
        r.publish(n, 0).map_err(err)?;
    }
    tx.close();
    Ok(())
}

/// `alloy sink` (benchmark helper).
fn sink(ring: &str, spin: bool) -> Result<(), String> {
    let mut rx = Ring::open(ring).map_err(err)?.subscribe().map_err(err)?;
    if spin {
        rx.set_wait_strategy(WaitStrategy::Spin);
    }
    println!("ready");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let (mut n, mut bytes, mut sum) = (0u64, 0u64, 0u64);
    while let Some(m) = rx.recv().map_err(err)? {
        for w in m.chunks_exact(8) {
            sum = sum.wrapping_add(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        n += 1;
        bytes += m.len() as u64;
    }
    println!("{{\"messages\":{n},\"bytes\":{bytes},\"sum\":{sum}}}");
    Ok(())
}

/// `alloy send --flight`.
#[cfg(feature = "flight")]
fn send_flight(
    url: &str,
    ring: &str,
    file: &std::path::Path,
    mode: &str,
) -> Result<String, String> {
    Ok(crate::flight::send(url, ring, file, mode)?.to_string())
}

/// `alloy send --flight` in a build without Flight.
#[cfg(not(feature = "flight"))]
fn send_flight(_: &str, _: &str, _: &std::path::Path, _: &str) -> Result<String, String> {
    Err("--flight needs alloy built with the `flight` cargo feature (make build does)".into())
}

/// `alloy stat`, `watch` and `ls`: printing only; the snapshot is
/// `alloy_shm::ring::stat`.
mod inspect {
    use std::io::{IsTerminal, Write};
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use std::time::Duration;

    use crate::arrow::region_error;
    use alloy_shm::ring::{stat::list_rings, RingView};

    /// The ring name, given as an argument or with --ring.
    pub fn ring_name(name: Option<String>, ring: Option<String>) -> Result<String, String> {
        name.or(ring)
            .ok_or_else(|| "a ring NAME (or --ring NAME) is required".to_string())
    }

    pub fn stat(name: &str, json: bool, interval_ms: u64) -> Result<(), String> {
        let view = RingView::open(name).map_err(|e| region_error(&e))?;
        let mut s = view.stat();
        if interval_ms > 0 {
            std::thread::sleep(Duration::from_millis(interval_ms));
            s = view.stat().with_rates(&s);
        }
        if json {
            println!("{}", serde_json::to_string(&s).map_err(|e| e.to_string())?);
        } else {
            print!("{}", crate::stat::render(&s));
        }
        Ok(())
    }

    /// The inode of the ring's file, `None` once it is gone.
    fn inode(name: &str) -> Option<u64> {
        std::fs::metadata(alloy_shm::region::named_path(name))
            .ok()
            .map(|m| m.ino())
    }

    pub fn watch(name: &str, interval_ms: u64) -> Result<(), String> {
        if interval_ms == 0 {
            return Err("--interval must be at least 1 ms".into());
        }
        let view = RingView::open(name).map_err(|e| region_error(&e))?;
        let ino = inode(name);
        let mut prev = view.stat();
        let mut out = std::io::stdout();
        let tty = out.is_terminal();
        loop {
            std::thread::sleep(Duration::from_millis(interval_ms));
            // The mapping outlives an unlink: look at the file itself, and
            // notice a new ring created under the same name.
            if inode(name) != ino {
                println!("alloy watch: ring {name:?} was removed");
                return Ok(());
            }
            let s = view.stat().with_rates(&prev);
            // On a terminal: home the cursor and clear the screen, then
            // redraw. Into a pipe or file: frames one after the other,
            // without escape codes.
            let frame = if tty {
                format!(
                    "\x1b[H\x1b[2J{}\n(every {interval_ms} ms; Ctrl-C to quit)\n",
                    crate::stat::render(&s)
                )
            } else {
                format!("{}\n", crate::stat::render(&s))
            };
            out.write_all(frame.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| e.to_string())?;
            prev = s;
        }
    }

    pub fn ls(dir: &Path, json: bool) -> Result<(), String> {
        let mut rings = list_rings(dir).map_err(|e| e.to_string())?;
        // A file this user cannot read cannot be shown to be an Alloy ring
        // (other users' files under /dev/shm): not listed.
        rings.retain(|r| {
            !r.error
                .as_deref()
                .is_some_and(|e| e.starts_with("cannot read"))
        });
        if json {
            println!(
                "{}",
                serde_json::to_string(&rings).map_err(|e| e.to_string())?
            );
            return Ok(());
        }
        if rings.is_empty() {
            println!("no Alloy rings in {}", dir.display());
            return Ok(());
        }
        println!(
            "{:<32} {:>7} {:>12} {:>7} {:>10}  producer",
            "name", "version", "size", "slots", "slot_size"
        );
        for r in &rings {
            let producer = match (&r.error, r.producer_pid, r.producer_alive) {
                (Some(e), _, _) => format!("error: {e}"),
                (None, 0, _) => "none".into(),
                (None, pid, true) => format!("pid {pid} (alive)"),
                (None, pid, false) => format!("pid {pid} (DEAD)"),
            };
            println!(
                "{:<32} {:>7} {:>12} {:>7} {:>10}  {producer}",
                r.name, r.version, r.size, r.slot_count, r.slot_size
            );
        }
        Ok(())
    }
}

/// Exit status after SIGBUS: a ring's file was truncated under the process
/// (`alloy-go` exits with the same status for the same cause).
const EXIT_SIGBUS: i32 = 3;

/// Makes SIGBUS end the process with one line naming the likely cause and
/// [`EXIT_SIGBUS`], instead of the shell's bare "Bus error". A named ring's
/// file truncated under a process that has it mapped (only its owner can:
/// named rings are 0600; memfd rings are sealed) raises SIGBUS on the next
/// access past its new end. The library cannot turn that into an error: the
/// fault hits whichever thread touches the page, in the middle of a safe
/// reference's use, and no Rust code may run on from there (doc/README.md,
/// Troubleshooting). So the tool reports it and exits, doing only what is
/// async-signal-safe: one write(2), then _exit(2).
fn exit_on_sigbus() {
    extern "C" fn on_sigbus(_: libc::c_int) {
        const MSG: &[u8] = b"alloy: bus error (SIGBUS): a shared-memory ring's file was truncated under this process (or /dev/shm ran out of memory); exiting\n";
        // Several threads (the receive loop, a heartbeat) may fault on the
        // mapping at once: only the first one writes the line. An atomic
        // swap is async-signal-safe (lock-free, no allocation).
        static REPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let first = !REPORTED.swap(true, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: write(2), pause(2) and _exit(2) are async-signal-safe; MSG
        // is a static byte string and fd 2 needs no lock.
        unsafe {
            if first {
                libc::write(2, MSG.as_ptr().cast(), MSG.len());
                libc::_exit(EXIT_SIGBUS);
            }
            // Another thread is reporting and exiting: wait for it.
            loop {
                libc::pause();
            }
        }
    }
    // SAFETY: a zeroed sigaction is valid (no flags, empty mask once
    // sigemptyset ran); the handler is an extern "C" fn that never returns
    // and calls only async-signal-safe functions.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}

fn main() -> ExitCode {
    exit_on_sigbus();
    let version: &'static str = Box::leak(version().into_boxed_str());
    let matches = <Cli as clap::CommandFactory>::command()
        .version(version)
        .get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Some(dir) = &cli.shm_dir {
        // Still one thread: nothing reads the environment concurrently.
        std::env::set_var(alloy_shm::region::SHM_DIR_ENV, dir);
    }
    match run(cli) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("alloy: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// `test-consume --record`: received message numbers in a shared file
/// mapping, readable after the process is killed.
struct Record {
    map: memmap2::MmapMut,
    n: usize,
}

impl Record {
    fn open(path: &std::path::Path) -> Result<Record, String> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| format!("--record {}: {e}", path.display()))?;
        // SAFETY: a private test file the caller created for this process
        // alone; nobody truncates it while it is mapped.
        let map = unsafe { memmap2::MmapMut::map_mut(&f) }
            .map_err(|e| format!("--record {}: {e}", path.display()))?;
        if map.len() < 8 {
            return Err(format!(
                "--record {}: file shorter than 8 bytes",
                path.display()
            ));
        }
        Ok(Record { map, n: 0 })
    }

    /// Appends `j`, then publishes the new count: a kill between the two
    /// leaves `j` unlisted, never a count covering an unwritten number.
    fn push(&mut self, j: u64) -> Result<(), String> {
        let at = 8 + 8 * self.n;
        if at + 8 > self.map.len() {
            return Err(format!("--record file full after {} numbers", self.n));
        }
        self.map[at..at + 8].copy_from_slice(&j.to_le_bytes());
        self.n += 1;
        // The number's bytes are stored before the count that covers them.
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::Release);
        self.map[..8].copy_from_slice(&(self.n as u64).to_le_bytes());
        Ok(())
    }
}
