//! `alloy`: create, inspect, feed and drain Alloy shared-memory rings.

use std::io::Write;
use std::process::ExitCode;

use alloy_shm::checked::Spec;
use alloy_shm::ring::{Backpressure, Ring, RingConfig, WaitStrategy};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "alloy",
    version,
    about = "Alloy shared-memory rings for Arrow data"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a named ring under /dev/shm.
    Create {
        /// Ring name.
        #[arg(long)]
        ring: String,
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
    },
    /// Remove a named ring.
    Rm {
        /// Ring name.
        #[arg(long)]
        ring: String,
    },
    /// Send every batch of an Arrow IPC file or stream, then close the stream.
    Send {
        /// Ring name.
        #[arg(long)]
        ring: String,
        /// Encoding: ipc, or cdata (C-Data-offsets, LAYOUT.md §8.3: every
        /// batch must fit in one slot, batches are not split).
        #[arg(long, default_value = "ipc")]
        mode: String,
        /// Send to ring --ring of the `alloy serve-flight` gateway at this
        /// URL (grpc://HOST:PORT) over Arrow Flight instead of a local ring.
        #[arg(long, value_name = "URL")]
        flight: Option<String>,
        /// Arrow IPC file or stream to send.
        file: std::path::PathBuf,
    },
    /// Arrow Flight gateway: republish every DoPut stream whose descriptor
    /// is the path [RING] into the local ring RING (created if absent);
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
    /// Join, print `ready`, and write the received batches to an Arrow IPC
    /// stream file until end of stream.
    Recv {
        /// Ring name.
        #[arg(long)]
        ring: String,
        /// Output Arrow IPC stream file.
        #[arg(long)]
        out: std::path::PathBuf,
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
        #[arg(long, hide = true, default_value = alloy_shm::region::SHM_DIR)]
        dir: std::path::PathBuf,
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
    TestConsume {
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
    },
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

fn run(cli: Cli) -> Result<(), String> {
    let e = |e: alloy_shm::ring::RingError| e.to_string();
    match cli.cmd {
        Cmd::Create {
            ring,
            slots,
            slot_size,
            max_subscribers,
            max_members,
            schema_capacity,
        } => {
            let cfg = RingConfig {
                slot_count: slots,
                slot_size,
                max_subscribers,
                max_members,
                schema_capacity,
            };
            let r = Ring::create(&ring, &cfg).map_err(e)?;
            println!(
                "created ring {ring:?}: {slots} slots x {slot_size} bytes, {} bytes total",
                r.region().layout().total_size
            );
        }
        Cmd::Rm { ring } => Ring::unlink(&ring).map_err(e)?,
        Cmd::Send {
            ring,
            mode,
            flight: Some(url),
            file,
        } => println!("{}", send_flight(&url, &ring, &file, &mode)?),
        Cmd::Send {
            ring, mode, file, ..
        } => {
            println!("{}", alloy_shm::arrow::cli::send(&ring, &file, &mode)?);
        }
        #[cfg(feature = "flight")]
        Cmd::ServeFlight {
            listen,
            slots,
            slot_size,
            max_message,
        } => {
            let config = alloy_shm::flight::GatewayConfig {
                ring: RingConfig {
                    slot_count: slots,
                    slot_size,
                    ..RingConfig::default()
                },
                max_message_bytes: max_message,
            };
            alloy_shm::flight::cli::serve_flight(&listen, config)?;
        }
        Cmd::Recv { ring, out } => {
            let summary = alloy_shm::arrow::cli::recv(&ring, &out, || {
                println!("ready");
                let _ = std::io::stdout().flush();
            })?;
            println!("{summary}");
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
        Cmd::Ls { json, dir } => inspect::ls(&dir, json)?,
        Cmd::TestProduce {
            ring,
            count,
            reclaim_after,
            spec,
        } => {
            let spec = spec.spec()?;
            let r = Ring::open(&ring).map_err(e)?;
            if spec.max > r.config().slot_size as usize {
                return Err(format!(
                    "--max-size {} exceeds the slot size {}",
                    spec.max,
                    r.config().slot_size
                ));
            }
            let mut p = r
                .producer_with(Backpressure::default(), WaitStrategy::Blocking)
                .map_err(e)?;
            if let Some(ms) = reclaim_after {
                p.set_reclaim_after(std::time::Duration::from_millis(ms));
            }
            let mut bytes = 0u64;
            for j in 0..count {
                let mut slot = p.reserve(spec.max).map_err(e)?;
                let n = spec.write(j, &mut slot);
                slot.publish(n, 0).map_err(e)?;
                bytes += n as u64;
            }
            p.close();
            println!("{{\"sent\":{count},\"bytes\":{bytes}}}");
        }
        Cmd::TestConsume {
            ring,
            broadcast,
            queue,
            out,
            spin,
            hold,
            record,
            redelivered,
            spec,
        } => {
            let spec = spec.spec()?;
            let mut record = record.map(|p| Record::open(&p)).transpose()?;
            let r = Ring::open(&ring).map_err(e)?;
            let mut c = match queue {
                Some(g) => r.join_queue(g).map_err(e)?,
                None => {
                    debug_assert!(broadcast);
                    r.subscribe().map_err(e)?
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
            while let Some(m) = c.recv().map_err(e)? {
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
        }
        Cmd::Echo {
            input,
            output,
            spin,
        } => {
            let wait = if spin {
                WaitStrategy::Spin
            } else {
                WaitStrategy::Blocking
            };
            let mut rx = Ring::open(&input).map_err(e)?.subscribe().map_err(e)?;
            rx.set_wait_strategy(wait);
            let out = Ring::open(&output).map_err(e)?;
            let mut tx = out
                .producer_with(Backpressure::default(), wait)
                .map_err(e)?;
            println!("ready");
            std::io::stdout().flush().map_err(|e| e.to_string())?;
            while let Some(m) = rx.recv().map_err(e)? {
                let n = m.len();
                let mut r = tx.reserve(n).map_err(e)?;
                let k = n.min(8);
                r[..k].copy_from_slice(&m[..k]);
                drop(m);
                r.publish(n, 0).map_err(e)?;
            }
            tx.close();
        }
        Cmd::Sink { ring, spin } => {
            let mut rx = Ring::open(&ring).map_err(e)?.subscribe().map_err(e)?;
            if spin {
                rx.set_wait_strategy(WaitStrategy::Spin);
            }
            println!("ready");
            std::io::stdout().flush().map_err(|e| e.to_string())?;
            let (mut n, mut bytes, mut sum) = (0u64, 0u64, 0u64);
            while let Some(m) = rx.recv().map_err(e)? {
                for w in m.chunks_exact(8) {
                    sum = sum.wrapping_add(u64::from_le_bytes(w.try_into().expect("8 bytes")));
                }
                n += 1;
                bytes += m.len() as u64;
            }
            println!("{{\"messages\":{n},\"bytes\":{bytes},\"sum\":{sum}}}");
        }
    }
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
    Ok(alloy_shm::flight::cli::send(url, ring, file, mode)?.to_string())
}

/// `alloy send --flight` in a build without Flight.
#[cfg(not(feature = "flight"))]
fn send_flight(_: &str, _: &str, _: &std::path::Path, _: &str) -> Result<String, String> {
    Err("--flight needs alloy built with the `flight` cargo feature (make build does)".into())
}

/// `alloy stat`, `watch` and `ls`: printing only; the snapshot is
/// `alloy_shm::ring::stat`.
mod inspect {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use std::time::Duration;

    use alloy_shm::ring::{stat::list_rings, RingView};

    /// The ring name, given as an argument or with --ring.
    pub fn ring_name(name: Option<String>, ring: Option<String>) -> Result<String, String> {
        name.or(ring)
            .ok_or_else(|| "a ring NAME (or --ring NAME) is required".to_string())
    }

    pub fn stat(name: &str, json: bool, interval_ms: u64) -> Result<(), String> {
        let view = RingView::open(name).map_err(|e| e.to_string())?;
        let mut s = view.stat();
        if interval_ms > 0 {
            std::thread::sleep(Duration::from_millis(interval_ms));
            s = view.stat().with_rates(&s);
        }
        if json {
            println!("{}", serde_json::to_string(&s).map_err(|e| e.to_string())?);
        } else {
            print!("{}", s.render());
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
        let view = RingView::open(name).map_err(|e| e.to_string())?;
        let ino = inode(name);
        let mut prev = view.stat();
        let mut out = std::io::stdout();
        loop {
            std::thread::sleep(Duration::from_millis(interval_ms));
            // The mapping outlives an unlink: look at the file itself, and
            // notice a new ring created under the same name.
            if inode(name) != ino {
                println!("alloy watch: ring {name:?} was removed");
                return Ok(());
            }
            let s = view.stat().with_rates(&prev);
            // Home the cursor and clear the screen, then redraw.
            let frame = format!(
                "\x1b[H\x1b[2J{}\n(every {interval_ms} ms; Ctrl-C to quit)\n",
                s.render()
            );
            out.write_all(frame.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| e.to_string())?;
            prev = s;
        }
    }

    pub fn ls(dir: &Path, json: bool) -> Result<(), String> {
        let rings = list_rings(dir).map_err(|e| e.to_string())?;
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
        // SAFETY: write(2) and _exit(2) are async-signal-safe; MSG is a
        // static byte string and fd 2 needs no lock.
        unsafe {
            libc::write(2, MSG.as_ptr().cast(), MSG.len());
            libc::_exit(EXIT_SIGBUS);
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
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
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
