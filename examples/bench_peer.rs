//! The Rust side of the benchmark suite (`make bench`, driven by
//! `go/cmd/alloy-bench`; see `doc/BENCHMARKS.md`).
//!
//! Every subcommand prints exactly one JSON object on its last stdout line;
//! consumer roles print `ready` first, once they are attached. Latency is
//! one-way and clock-based: the producer writes `CLOCK_MONOTONIC` (ns) into
//! the first 8 bytes of a message just before publishing it, having started
//! its clock before writing the payload; the consumer reads the clock when
//! the message is in its hands and records the difference. Each message is
//! acknowledged before the next is sent, so no queueing delay is measured.
//!
//! Build with `cargo build --release -p alloy-examples --example bench_peer`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use std::sync::Arc;

use alloy_shm::arrow::{in_mapping, CDataWriter, IpcReader, IpcWriter};
use alloy_shm::ring::{monotonic_ns, Backpressure, Consumer, Ring, RingConfig, WaitStrategy};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, DictionaryArray, Int64Array, RecordBatch, StringArray};
use arrow_buffer::ScalarBuffer;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;

#[derive(Parser)]
#[command(name = "bench_peer", about = "Rust side of the Alloy benchmark suite")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Single-threaded memcpy of SIZE-byte blocks, TOTAL bytes in all.
    Memcpy {
        #[arg(long)]
        size: usize,
        #[arg(long)]
        total: usize,
    },
    /// Two processes bouncing one cache line through shared memory.
    Pingpong {
        #[arg(long)]
        iters: u64,
    },
    /// The child half of `pingpong`.
    PingpongChild {
        #[arg(long)]
        path: String,
        #[arg(long)]
        iters: u64,
    },
    /// Rust producer → Rust `lat-consumer` process, one-way latency.
    Lat {
        #[arg(long)]
        size: usize,
        #[arg(long)]
        iters: u64,
        #[arg(long)]
        spin: bool,
        /// Sleep this long before each message (outside the timed span), so
        /// a blocking consumer has parked: mode `parked`.
        #[arg(long, default_value_t = 0)]
        pause_us: u64,
    },
    /// Latency consumer: records one-way latency of every message of
    /// --ring (flag 1 = warm-up, not recorded) and acknowledges it on --ack.
    LatConsumer {
        #[arg(long)]
        ring: String,
        #[arg(long)]
        ack: String,
        #[arg(long)]
        spin: bool,
        /// Count the measured messages the consumer slept for (its thread's
        /// voluntary context switches grew across the receive): reported as
        /// `parked_fraction`.
        #[arg(long)]
        count_parks: bool,
    },
    /// The wake-up floor: two processes on one shared futex word, both
    /// sleeping in FUTEX_WAIT; the parent pauses --pause-us before each
    /// round so the child has parked, stamps the clock, stores and wakes.
    FutexPingpong {
        #[arg(long)]
        iters: u64,
        #[arg(long)]
        pause_us: u64,
    },
    /// The child half of `futex-pingpong`.
    FutexPingpongChild {
        #[arg(long)]
        path: String,
        #[arg(long)]
        iters: u64,
    },
    /// Rust producer → COUNT Rust `sink` processes, streaming throughput.
    Tput {
        #[arg(long)]
        size: usize,
        #[arg(long)]
        total: usize,
        #[arg(long, default_value_t = 1)]
        consumers: u32,
        /// Consumers form one work-queue group instead of broadcasting.
        #[arg(long)]
        queue: bool,
        #[arg(long)]
        spin: bool,
    },
    /// Throughput consumer: sums the u64 words of every message.
    Sink {
        #[arg(long)]
        ring: String,
        /// Join work-queue group 1 instead of subscribing.
        #[arg(long)]
        queue: bool,
        #[arg(long)]
        spin: bool,
    },
    /// Arrow consumer of --ring (IPC or C-Data-offsets messages, decoded
    /// zero-copy by `IpcReader`, every batch checked to lie in the mapping):
    /// sums the int64 column 0.
    ArrowSink {
        #[arg(long)]
        ring: String,
        #[arg(long)]
        spin: bool,
    },
    /// Arrow IPC stream consumer on a Unix domain socket: sums the int64
    /// column; with --ack records latency (value 0 is the send stamp) and
    /// answers each batch with 8 bytes.
    UdsSink {
        #[arg(long)]
        socket: String,
        #[arg(long)]
        ack: bool,
        /// Read buffer and socket receive buffer, bytes (sized to the batch).
        #[arg(long, default_value_t = 1 << 16)]
        buf: usize,
    },
    /// Arrow one-way latency consumer (Go → Rust): `IpcReader` reads each
    /// batch of --ring in place (validation on unless --unchecked), records
    /// now − value 0 of column 0 (negative: warm-up, not recorded) and
    /// acknowledges on --ack.
    ArrowLatConsumer {
        #[arg(long)]
        ring: String,
        #[arg(long)]
        ack: String,
        #[arg(long)]
        spin: bool,
        #[arg(long)]
        unchecked: bool,
    },
    /// Arrow one-way latency producer (Rust → Go): writes --iters batches of
    /// --shape into --ring with `IpcWriter` (--mode ipc) or `CDataWriter`
    /// (--mode cdata), value 0 of column 0 the send stamp, one batch in
    /// flight (waits for an 8-byte message on --ack after each).
    ArrowLatProducer {
        #[arg(long)]
        ring: String,
        #[arg(long)]
        ack: String,
        #[arg(long)]
        mode: String,
        #[arg(long)]
        shape: String,
        #[arg(long)]
        iters: u64,
        #[arg(long)]
        spin: bool,
    },
    /// Arrow echo, the Rust half of a request/reply round trip over two
    /// rings: reads each batch of --ring in place (validated) and writes it
    /// back to --reply with `IpcWriter`.
    ArrowEcho {
        #[arg(long)]
        ring: String,
        #[arg(long)]
        reply: String,
        #[arg(long)]
        spin: bool,
    },
}

type Res<T> = Result<T, String>;

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn ready() -> Res<()> {
    println!("ready");
    std::io::stdout().flush().map_err(err)
}

fn wait_of(spin: bool) -> WaitStrategy {
    if spin {
        WaitStrategy::Spin
    } else {
        WaitStrategy::Blocking
    }
}

fn mode_of(spin: bool) -> &'static str {
    if spin {
        "busy"
    } else {
        "blocking"
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is valid")
}

/// The latency fields of a result line, from a histogram of ns.
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

fn sum_u64(b: &[u8]) -> u64 {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .fold(0u64, u64::wrapping_add)
}

/// A child process of this binary and its stdout lines.
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

    /// The peer's final JSON line, after it exits successfully.
    fn finish(mut self) -> Res<serde_json::Value> {
        let line = self.line()?;
        let st = self.child.wait().map_err(err)?;
        if !st.success() {
            return Err(format!("peer failed: {st}"));
        }
        serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))
    }
}

/// A uniquely named ring removed when dropped.
struct Named {
    name: String,
    ring: Ring,
}

impl Named {
    fn create(tag: &str, cfg: &RingConfig) -> Res<Named> {
        let name = format!("alloy-bench-{}-{tag}", std::process::id());
        let _ = Ring::remove(&name);
        let ring = Ring::builder(&name).config(*cfg).create().map_err(err)?;
        Ok(Named { name, ring })
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = Ring::remove(&self.name);
    }
}

fn slot_size(size: usize) -> u32 {
    size.next_multiple_of(64).max(64) as u32
}

fn memcpy(size: usize, total: usize) -> Res<String> {
    let src: Vec<u8> = (0..size).map(|i| i as u8).collect();
    // Copy into a rotating area as large as a streaming ring's slots (see
    // `stream_slots`), so the floor pays the same cache misses as a
    // producer writing into slots.
    let n = stream_slots(size) as usize;
    let mut dst = vec![0u8; n * size];
    dst.fill(1); // fault the pages in before the clock starts
    let count = (total / size).max(1);
    let t0 = monotonic_ns();
    for i in 0..count {
        let d = &mut dst[(i % n) * size..][..size];
        d.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&d[0]);
    }
    let dt = (monotonic_ns() - t0) as f64 / 1e9;
    let bytes = (count * size) as f64;
    Ok(format!(
        "{{\"transport\":\"memcpy\",\"mode\":\"copy\",\"kind\":\"throughput\",\"payload_bytes\":{size},\"consumers\":1,\
         \"throughput_bytes_per_s\":{:.0},\"rows_per_s\":{:.0},\"messages\":{count}}}",
        bytes / dt,
        bytes / 8.0 / dt
    ))
}

/// The shared cache line of the ping-pong: a sequence word and a stamp.
#[repr(C, align(64))]
struct Line {
    seq: AtomicU64,
    stamp: AtomicU64,
}

fn map_line(path: &str, create: bool) -> Res<memmap2::MmapMut> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(create)
        .open(path)
        .map_err(err)?;
    f.set_len(4096).map_err(err)?;
    // SAFETY: the file is private to this benchmark (a fresh /dev/shm name);
    // both processes only touch it through the atomics of `Line`.
    unsafe { memmap2::MmapMut::map_mut(&f) }.map_err(err)
}

fn line_of(m: &memmap2::MmapMut) -> &Line {
    // SAFETY: the mapping is 4096 bytes, page-aligned (so 64-byte aligned),
    // zero-initialised by ftruncate, and all-zero is a valid `Line`; it
    // lives as long as the borrow of `m`.
    unsafe { &*(m.as_ptr() as *const Line) }
}

fn pingpong(iters: u64) -> Res<String> {
    let path = format!("/dev/shm/alloy-bench-{}-pingpong", std::process::id());
    let m = map_line(&path, true)?;
    let line = line_of(&m);
    let child = Peer::spawn(&[
        "pingpong-child",
        "--path",
        &path,
        "--iters",
        &iters.to_string(),
    ]);
    let _ = std::fs::remove_file(&path);
    let child = child?;
    for i in 0..iters {
        // The stamp is read by the child after its Acquire load of `seq`.
        line.stamp.store(monotonic_ns(), Ordering::Relaxed);
        // Pairs with the child's Acquire load: publishes the stamp.
        line.seq.store(2 * i + 1, Ordering::Release);
        // Pairs with the child's Release store of the acknowledgement.
        while line.seq.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
    }
    let v = child.finish()?;
    Ok(format!(
        "{{\"transport\":\"atomic-pingpong\",\"mode\":\"busy\",\"kind\":\"latency\",\"payload_bytes\":64,\"consumers\":1,{}}}",
        strip_braces(&v)
    ))
}

fn pingpong_child(path: &str, iters: u64) -> Res<String> {
    let m = map_line(path, false)?;
    let line = line_of(&m);
    let mut h = hist();
    let warm = iters / 10;
    ready()?;
    for i in 0..iters {
        // Pairs with the parent's Release store of 2i+1.
        while line.seq.load(Ordering::Acquire) != 2 * i + 1 {
            std::hint::spin_loop();
        }
        let dt = monotonic_ns().saturating_sub(line.stamp.load(Ordering::Relaxed));
        if i >= warm {
            h.record(dt).map_err(err)?;
        }
        // Pairs with the parent's Acquire load: the slot is free again.
        line.seq.store(2 * i + 2, Ordering::Release);
    }
    Ok(format!("{{{}}}", lat_json(&h)))
}

/// `{"a":1,"b":2}` → `"a":1,"b":2`, to splice a peer's fields into a line.
fn strip_braces(v: &serde_json::Value) -> String {
    let s = v.to_string();
    s[1..s.len() - 1].to_string()
}

fn lat(size: usize, iters: u64, spin: bool, pause_us: u64) -> Res<String> {
    let size = size.max(8);
    let data_cfg = RingConfig {
        slot_count: 4,
        slot_size: slot_size(size),
        max_subscribers: 2,
        max_members: 2,
        schema_capacity: 0,
    };
    let ack_cfg = RingConfig {
        slot_size: 64,
        ..data_cfg
    };
    let data = Named::create("lat-data", &data_cfg)?;
    let ack = Named::create("lat-ack", &ack_cfg)?;
    let mut back = ack.ring.subscribe().map_err(err)?;
    back.set_wait_strategy(wait_of(spin));
    let mut args = vec!["lat-consumer", "--ring", &data.name, "--ack", &ack.name];
    if spin {
        args.push("--spin");
    }
    if pause_us > 0 {
        args.push("--count-parks");
    }
    let peer = Peer::spawn(&args)?;
    let mut tx = data
        .ring
        .producer_builder()
        .backpressure(Backpressure::default())
        .wait(wait_of(spin))
        .create()
        .map_err(err)?;
    let mut src: Vec<u8> = (0..size).map(|i| i as u8).collect();
    // At least two laps of the 4-slot ring: first-touch page faults.
    let warm = (iters / 10).max(8);
    for i in 0..iters + warm {
        if pause_us > 0 {
            std::thread::sleep(std::time::Duration::from_micros(pause_us));
        }
        let t0 = monotonic_ns();
        // The stamp goes into the message, which is then sent the way a
        // user sends bytes: `Producer::send` (one copy into the slot, with
        // the library's copy routine).
        src[..8].copy_from_slice(&t0.to_le_bytes());
        tx.send(&src, u32::from(i < warm)).map_err(err)?;
        back.recv().map_err(err)?.ok_or("ack ring closed")?;
    }
    tx.close();
    let v = peer.finish()?;
    Ok(format!(
        "{{\"transport\":\"shm-rust\",\"mode\":\"{}\",\"kind\":\"latency\",\"payload_bytes\":{size},\"consumers\":1,{}}}",
        if pause_us > 0 { "parked" } else { mode_of(spin) },
        strip_braces(&v)
    ))
}

/// Voluntary context switches of the calling thread so far: each time it
/// slept (a futex wait that blocked counts one).
fn voluntary_switches() -> Res<i64> {
    // SAFETY: all-zero is a valid `rusage`; getrusage writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_THREAD with a pointer to a live, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok(ru.ru_nvcsw)
}

fn lat_consumer(ring: &str, ack: &str, spin: bool, count_parks: bool) -> Res<String> {
    let mut rx = Ring::open(ring).map_err(err)?.subscribe().map_err(err)?;
    rx.set_wait_strategy(wait_of(spin));
    let ack_ring = Ring::open(ack).map_err(err)?;
    let mut tx = ack_ring
        .producer_builder()
        .backpressure(Backpressure::default())
        .wait(wait_of(spin))
        .create()
        .map_err(err)?;
    let mut h = hist();
    let mut parked = 0u64;
    ready()?;
    loop {
        let before = if count_parks {
            voluntary_switches()?
        } else {
            0
        };
        let Some(m) = rx.recv().map_err(err)? else {
            break;
        };
        let t1 = monotonic_ns();
        let t0 = u64::from_le_bytes(m[..8].try_into().expect("8 bytes"));
        if m.flags() == 0 {
            h.record(t1.saturating_sub(t0)).map_err(err)?;
            if count_parks && voluntary_switches()? > before {
                parked += 1;
            }
        }
        drop(m);
        tx.send(&[0u8; 8], 0).map_err(err)?;
    }
    tx.close();
    if count_parks {
        let frac = parked as f64 / h.len().max(1) as f64;
        return Ok(format!("{{{},\"parked_fraction\":{frac}}}", lat_json(&h)));
    }
    Ok(format!("{{{}}}", lat_json(&h)))
}

/// FUTEX_WAIT on a shared (not private) futex word while it holds `val`:
/// whether this call slept and was woken (false: the word had changed
/// already, or a signal or spurious return).
fn futex_wait(word: &AtomicU32, val: u32) -> bool {
    // SAFETY: `word` is a live, aligned u32 in a MAP_SHARED mapping; a null
    // timeout waits for a wake; the kernel only reads the word.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            val,
            std::ptr::null::<libc::timespec>(),
        )
    };
    rc == 0
}

/// FUTEX_WAKE of one waiter on the shared futex word.
fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned u32 in a MAP_SHARED mapping.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1) };
}

/// The futex ping-pong's shared line: a 32-bit sequence word (the futex)
/// and a stamp.
#[repr(C, align(64))]
struct FutexLine {
    seq: AtomicU32,
    stamp: AtomicU64,
}

fn futex_line_of(m: &memmap2::MmapMut) -> &FutexLine {
    // SAFETY: as for `line_of`: 4096 zeroed, page-aligned bytes, and all-zero
    // is a valid `FutexLine`; it lives as long as the borrow of `m`.
    unsafe { &*(m.as_ptr() as *const FutexLine) }
}

/// Waits (futex) until `word` holds `want`.
fn futex_wait_for(word: &AtomicU32, want: u32) -> bool {
    let mut slept = false;
    loop {
        // Pairs with the peer's Release store before its wake.
        let v = word.load(Ordering::Acquire);
        if v == want {
            return slept;
        }
        slept |= futex_wait(word, v);
    }
}

fn futex_pingpong(iters: u64, pause_us: u64) -> Res<String> {
    let path = format!("/dev/shm/alloy-bench-{}-futex", std::process::id());
    let m = map_line(&path, true)?;
    let line = futex_line_of(&m);
    let child = Peer::spawn(&[
        "futex-pingpong-child",
        "--path",
        &path,
        "--iters",
        &iters.to_string(),
    ]);
    let _ = std::fs::remove_file(&path);
    let child = child?;
    for i in 0..iters as u32 {
        std::thread::sleep(std::time::Duration::from_micros(pause_us));
        line.stamp.store(monotonic_ns(), Ordering::Relaxed);
        // Pairs with the child's Acquire load: publishes the stamp.
        line.seq.store(2 * i + 1, Ordering::Release);
        futex_wake(&line.seq);
        futex_wait_for(&line.seq, 2 * i + 2);
    }
    let v = child.finish()?;
    Ok(format!(
        "{{\"transport\":\"futex-pingpong\",\"mode\":\"parked\",\"kind\":\"latency\",\"payload_bytes\":64,\"consumers\":1,{}}}",
        strip_braces(&v)
    ))
}

fn futex_pingpong_child(path: &str, iters: u64) -> Res<String> {
    let m = map_line(path, false)?;
    let line = futex_line_of(&m);
    let mut h = hist();
    let warm = (iters / 10).max(1);
    let mut parked = 0u64;
    ready()?;
    for i in 0..iters as u32 {
        let slept = futex_wait_for(&line.seq, 2 * i + 1);
        let dt = monotonic_ns().saturating_sub(line.stamp.load(Ordering::Relaxed));
        if u64::from(i) >= warm {
            h.record(dt).map_err(err)?;
            parked += u64::from(slept);
        }
        // Pairs with the parent's Acquire load in `futex_wait_for`.
        line.seq.store(2 * i + 2, Ordering::Release);
        futex_wake(&line.seq);
    }
    let frac = parked as f64 / h.len().max(1) as f64;
    Ok(format!("{{{},\"parked_fraction\":{frac}}}", lat_json(&h)))
}

/// Slots for a streaming ring: about 32 MiB of buffering, 4 to 1024 slots.
fn stream_slots(size: usize) -> u32 {
    ((32usize << 20) / size).clamp(4, 1024).next_power_of_two() as u32
}

fn tput(size: usize, total: usize, consumers: u32, queue: bool, spin: bool) -> Res<String> {
    if size < 8 {
        return Err(format!(
            "--size {size}: a message holds at least its 8-byte index"
        ));
    }
    let cfg = RingConfig {
        slot_count: stream_slots(size),
        slot_size: slot_size(size),
        max_subscribers: consumers + 1,
        max_members: consumers + 1,
        schema_capacity: 0,
    };
    let ring = Named::create("tput", &cfg)?;
    let mut args = vec!["sink", "--ring", &ring.name];
    if queue {
        args.push("--queue");
    }
    if spin {
        args.push("--spin");
    }
    let peers = (0..consumers)
        .map(|_| Peer::spawn(&args))
        .collect::<Res<Vec<_>>>()?;
    let mut tx = ring
        .ring
        .producer_builder()
        .backpressure(Backpressure::default())
        .wait(wait_of(spin))
        .create()
        .map_err(err)?;
    let mut src: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let count = (total / size).max(1) as u64;
    let t0 = monotonic_ns();
    for i in 0..count {
        // The message's index in its first word: every message differs, so
        // a sink that read a stale or torn slot gets a different sum. Sent
        // as a user sends bytes: `Producer::send` (one copy into the slot).
        src[..8].copy_from_slice(&i.to_le_bytes());
        tx.send(&src, 0).map_err(err)?;
    }
    tx.close();
    let (mut got, mut last, mut sum) = (0u64, t0, 0u64);
    for p in peers {
        let v = p.finish()?;
        got += v["messages"].as_u64().unwrap_or(0);
        sum = sum.wrapping_add(v["sum"].as_u64().unwrap_or(0));
        last = last.max(v["last_ns"].as_u64().unwrap_or(0));
    }
    let want = if queue {
        count
    } else {
        count * u64::from(consumers)
    };
    if got != want {
        return Err(format!("consumers saw {got} messages, want {want}"));
    }
    // Every sink sums the u64 words of every message it read: the pattern's
    // words after the first, plus the message's index, for each message
    // (each consumer of a broadcast reads them all, a queue's members split
    // them).
    let per_stream = (sum_u64(&src[8..]).wrapping_mul(count))
        .wrapping_add(count.wrapping_mul(count.wrapping_sub(1)) / 2);
    let want_sum = per_stream.wrapping_mul(want / count);
    if sum != want_sum {
        return Err(format!("consumers' sum {sum}, want {want_sum}"));
    }
    let dt = (last - t0) as f64 / 1e9;
    let bytes = (count as usize * size) as f64;
    Ok(format!(
        "{{\"transport\":\"shm-rust\",\"mode\":\"{}\",\"kind\":\"{}\",\"payload_bytes\":{size},\"consumers\":{consumers},\
         \"throughput_bytes_per_s\":{:.0},\"rows_per_s\":{:.0},\"messages\":{count}}}",
        mode_of(spin),
        if queue { "queue" } else { "throughput" },
        bytes / dt,
        bytes / 8.0 / dt
    ))
}

fn sink(ring: &str, queue: bool, spin: bool) -> Res<String> {
    let r = Ring::open(ring).map_err(err)?;
    let mut rx: Consumer = if queue {
        r.join_queue(1).map_err(err)?
    } else {
        r.subscribe().map_err(err)?
    };
    rx.set_wait_strategy(wait_of(spin));
    ready()?;
    let (mut n, mut bytes, mut sum, mut last) = (0u64, 0u64, 0u64, 0u64);
    while let Some(m) = rx.recv().map_err(err)? {
        sum = sum.wrapping_add(sum_u64(&m));
        n += 1;
        bytes += m.len() as u64;
        drop(m);
        last = monotonic_ns();
    }
    Ok(format!(
        "{{\"messages\":{n},\"bytes\":{bytes},\"sum\":{sum},\"last_ns\":{last}}}"
    ))
}

fn arrow_sink(ring: &str, spin: bool) -> Res<String> {
    let r = Ring::open(ring).map_err(err)?;
    let mut rx = r.subscribe().map_err(err)?;
    rx.set_wait_strategy(wait_of(spin));
    ready()?;
    let mut reader = IpcReader::new(rx);
    let (mut n, mut rows, mut sum, mut last) = (0u64, 0u64, 0i64, 0u64);
    while let Some(batch) = reader.next_batch().map_err(err)? {
        if !in_mapping(&r, &batch) {
            return Err(format!("batch {n} was copied out of the ring"));
        }
        let col = batch.column(0).as_primitive::<Int64Type>();
        sum = col.values().iter().fold(sum, |a, v| a.wrapping_add(*v));
        if col.null_count() > 0 {
            return Err("unexpected nulls".into());
        }
        n += 1;
        rows += batch.num_rows() as u64;
        drop(batch); // releases the slot
        last = monotonic_ns();
    }
    Ok(format!(
        "{{\"messages\":{n},\"rows\":{rows},\"sum\":{sum},\"last_ns\":{last}}}"
    ))
}

/// Sets the socket's receive buffer to `bytes` (the kernel doubles it and
/// caps it at net.core.rmem_max).
fn set_rcvbuf(conn: &UnixStream, bytes: usize) -> Res<()> {
    use std::os::fd::AsRawFd;
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid socket descriptor, and a pointer to a c_int that lives
    // across the call with its exact size as the option length.
    let rc = unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok(())
}

fn uds_sink(socket: &str, ack: bool, buf: usize) -> Res<String> {
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket).map_err(err)?;
    ready()?;
    let (conn, _) = listener.accept().map_err(err)?;
    let _ = std::fs::remove_file(socket);
    set_rcvbuf(&conn, buf)?;
    let mut back: UnixStream = conn.try_clone().map_err(err)?;
    let input: Box<dyn Read> = Box::new(BufReader::with_capacity(buf, conn));
    let reader = arrow_ipc::reader::StreamReader::try_new(input, None).map_err(err)?;
    let mut h = hist();
    let (mut n, mut rows, mut sum, mut last) = (0u64, 0u64, 0i64, 0u64);
    for batch in reader {
        let batch = batch.map_err(err)?;
        let col = batch.column(0).as_primitive::<Int64Type>();
        if ack {
            let t1 = monotonic_ns();
            // Value 0 is the stamp; a negative value marks a warm-up batch.
            let t0 = col.value(0);
            if t0 > 0 {
                h.record(t1.saturating_sub(t0 as u64)).map_err(err)?;
            }
            back.write_all(&[0u8; 8]).map_err(err)?;
        } else {
            sum = col.values().iter().fold(sum, |a, v| a.wrapping_add(*v));
            if col.null_count() > 0 {
                return Err("unexpected nulls".into());
            }
        }
        n += 1;
        rows += batch.num_rows() as u64;
        last = monotonic_ns();
    }
    if ack {
        Ok(format!("{{{},\"rows\":{rows}}}", lat_json(&h)))
    } else {
        Ok(format!(
            "{{\"messages\":{n},\"rows\":{rows},\"sum\":{sum},\"last_ns\":{last}}}"
        ))
    }
}

/// The batch shapes of the Arrow latency rows: an int64 column (value 0 is
/// the stamp) of 1, 1024 or 131072 rows (1 MiB), or `mixed`: 1024 rows of
/// int64, utf8 and a dictionary (int32 keys, utf8 values) column. Returns
/// the schema, the int64 values and the other columns (built once).
fn shape(name: &str) -> Res<(SchemaRef, Vec<i64>, Vec<ArrayRef>)> {
    let rows = match name {
        "1-row" => 1,
        "1024-rows" | "mixed" => 1024,
        "1-mib" => 131072,
        _ => return Err(format!("unknown shape {name:?}")),
    };
    let vals: Vec<i64> = (0..rows as i64).collect();
    let mut fields = vec![Field::new("v", DataType::Int64, false)];
    let mut others: Vec<ArrayRef> = Vec::new();
    if name == "mixed" {
        let s: StringArray = (0..rows).map(|i| Some(format!("row-{i:08}"))).collect();
        let d: DictionaryArray<Int32Type> = (0..rows)
            .map(|i| ["red", "green", "blue", "cyan"][i % 4])
            .collect();
        fields.push(Field::new("s", DataType::Utf8, true));
        fields.push(Field::new("d", d.data_type().clone(), true));
        others.push(Arc::new(s));
        others.push(Arc::new(d));
    }
    Ok((Arc::new(Schema::new(fields)), vals, others))
}

fn arrow_lat_consumer(ring: &str, ack: &str, spin: bool, unchecked: bool) -> Res<String> {
    let r = Ring::open(ring).map_err(err)?;
    let mut rx = r.subscribe().map_err(err)?;
    rx.set_wait_strategy(wait_of(spin));
    let ack_ring = Ring::open(ack).map_err(err)?;
    let mut tx = ack_ring
        .producer_builder()
        .backpressure(Backpressure::default())
        .wait(wait_of(spin))
        .create()
        .map_err(err)?;
    let mut reader = IpcReader::new(rx);
    if unchecked {
        // SAFETY: the producer is this suite's Go driver, which writes
        // valid arrays; the row measures what skipping validation saves.
        reader = unsafe { reader.with_skip_validation(true) };
    }
    let mut h = hist();
    let (mut n, mut rows) = (0u64, 0u64);
    ready()?;
    while let Some(batch) = reader.next_batch().map_err(err)? {
        let t1 = monotonic_ns();
        let t0 = batch.column(0).as_primitive::<Int64Type>().value(0);
        if t0 > 0 {
            h.record(t1.saturating_sub(t0 as u64)).map_err(err)?;
        }
        if n == 0 && !in_mapping(&r, &batch) {
            return Err("the first batch was copied out of the ring".into());
        }
        n += 1;
        rows += batch.num_rows() as u64;
        drop(batch); // releases the slot before the acknowledgement
        tx.send(&[0u8; 8], 0).map_err(err)?;
    }
    tx.close();
    Ok(format!(
        "{{{},\"rows\":{rows},\"batches\":{n}}}",
        lat_json(&h)
    ))
}

/// Either Rust Arrow writer of the ring (boxed: both are large).
enum AnyWriter {
    Ipc(Box<IpcWriter>),
    CData(Box<CDataWriter>),
}

impl AnyWriter {
    fn write(&mut self, b: &RecordBatch) -> Res<()> {
        match self {
            AnyWriter::Ipc(w) => w.write(b).map_err(err),
            AnyWriter::CData(w) => w.write(b).map_err(err),
        }
    }

    fn close(self) -> Res<()> {
        match self {
            AnyWriter::Ipc(w) => w.close().map_err(err),
            AnyWriter::CData(w) => w.close().map_err(err),
        }
    }
}

fn arrow_lat_producer(
    ring: &str,
    ack: &str,
    mode: &str,
    shape_name: &str,
    iters: u64,
    spin: bool,
) -> Res<String> {
    let (schema, mut vals, others) = shape(shape_name)?;
    let r = Ring::open(ring).map_err(err)?;
    let tx = r
        .producer_builder()
        .backpressure(Backpressure::default())
        .wait(wait_of(spin))
        .create()
        .map_err(err)?;
    let mut w = match mode {
        "ipc" => AnyWriter::Ipc(Box::new(IpcWriter::new(tx, schema.clone()).map_err(err)?)),
        "cdata" => AnyWriter::CData(Box::new(CDataWriter::new(tx, schema.clone()).map_err(err)?)),
        _ => return Err(format!("unknown mode {mode:?}")),
    };
    let ack_ring = Ring::open(ack).map_err(err)?;
    let mut back = ack_ring.subscribe().map_err(err)?;
    back.set_wait_strategy(wait_of(spin));
    ready()?;
    let warm = (iters / 10).max(8);
    for i in 0..iters + warm {
        let t0 = monotonic_ns();
        vals[0] = if i < warm { -1 } else { t0 as i64 };
        // The values move into the array and back without a copy, as a
        // producer that owns its record would hand it over.
        let col = Int64Array::new(ScalarBuffer::from(std::mem::take(&mut vals)), None);
        let mut cols: Vec<ArrayRef> = vec![Arc::new(col.clone())];
        cols.extend(others.iter().cloned());
        let batch = RecordBatch::try_new(schema.clone(), cols).map_err(err)?;
        w.write(&batch)?;
        drop(batch);
        vals = col
            .into_parts()
            .1
            .into_inner()
            .into_vec::<i64>()
            .map_err(|_| "the writer kept the int64 column".to_string())?;
        back.recv().map_err(err)?.ok_or("ack ring closed")?;
    }
    w.close()?;
    Ok("{}".into())
}

fn arrow_echo(ring: &str, reply: &str, spin: bool) -> Res<String> {
    let r = Ring::open(ring).map_err(err)?;
    let mut rx = r.subscribe().map_err(err)?;
    rx.set_wait_strategy(wait_of(spin));
    let out = Ring::open(reply).map_err(err)?;
    let mut tx = Some(
        out.producer_builder()
            .backpressure(Backpressure::default())
            .wait(wait_of(spin))
            .create()
            .map_err(err)?,
    );
    let mut reader = IpcReader::new(rx);
    let mut w: Option<IpcWriter> = None;
    let mut n = 0u64;
    ready()?;
    while let Some(batch) = reader.next_batch().map_err(err)? {
        if w.is_none() {
            let p = tx.take().expect("one producer");
            w = Some(IpcWriter::new(p, batch.schema()).map_err(err)?);
        }
        w.as_mut()
            .expect("created above")
            .write(&batch)
            .map_err(err)?;
        n += 1;
    }
    if let Some(w) = w {
        w.close().map_err(err)?;
    }
    Ok(format!("{{\"messages\":{n}}}"))
}

fn run(cli: Cli) -> Res<String> {
    match cli.cmd {
        Cmd::Memcpy { size, total } => memcpy(size, total),
        Cmd::Pingpong { iters } => pingpong(iters),
        Cmd::PingpongChild { path, iters } => pingpong_child(&path, iters),
        Cmd::Lat {
            size,
            iters,
            spin,
            pause_us,
        } => lat(size, iters, spin, pause_us),
        Cmd::LatConsumer {
            ring,
            ack,
            spin,
            count_parks,
        } => lat_consumer(&ring, &ack, spin, count_parks),
        Cmd::FutexPingpong { iters, pause_us } => futex_pingpong(iters, pause_us),
        Cmd::FutexPingpongChild { path, iters } => futex_pingpong_child(&path, iters),
        Cmd::Tput {
            size,
            total,
            consumers,
            queue,
            spin,
        } => tput(size, total, consumers, queue, spin),
        Cmd::Sink { ring, queue, spin } => sink(&ring, queue, spin),
        Cmd::ArrowSink { ring, spin } => arrow_sink(&ring, spin),
        Cmd::UdsSink { socket, ack, buf } => uds_sink(&socket, ack, buf),
        Cmd::ArrowLatConsumer {
            ring,
            ack,
            spin,
            unchecked,
        } => arrow_lat_consumer(&ring, &ack, spin, unchecked),
        Cmd::ArrowLatProducer {
            ring,
            ack,
            mode,
            shape,
            iters,
            spin,
        } => arrow_lat_producer(&ring, &ack, &mode, &shape, iters, spin),
        Cmd::ArrowEcho { ring, reply, spin } => arrow_echo(&ring, &reply, spin),
    }
}

/// The environment variable through which the driver pins the two sides of
/// a latency measurement to distinct CPUs: `PRODUCER,CONSUMER` (CPU
/// numbers). Producer roles pin themselves to the first, the roles that
/// wait for messages (and the child halves of the ping-pongs) to the
/// second; unset, nothing is pinned.
const PIN_ENV: &str = "ALLOY_BENCH_CPUS";

/// Whether `cmd` is a role that receives (the child of a ping-pong, a
/// consumer, a sink or the echo), pinned to the second CPU of [`PIN_ENV`].
fn receives(cmd: &Cmd) -> bool {
    !matches!(
        cmd,
        Cmd::Memcpy { .. }
            | Cmd::Pingpong { .. }
            | Cmd::Lat { .. }
            | Cmd::FutexPingpong { .. }
            | Cmd::Tput { .. }
            | Cmd::ArrowLatProducer { .. }
    )
}

/// Pins the calling thread (the process's only one at start-up; threads it
/// creates later inherit the mask) to this role's CPU of [`PIN_ENV`].
fn pin(cmd: &Cmd) -> Res<()> {
    let Ok(v) = std::env::var(PIN_ENV) else {
        return Ok(());
    };
    let cpus: Vec<usize> = v
        .split(',')
        .map(|c| c.trim().parse::<usize>().map_err(err))
        .collect::<Res<_>>()?;
    let [producer, consumer] = cpus[..] else {
        return Err(format!("{PIN_ENV}={v:?}: want PRODUCER,CONSUMER"));
    };
    let cpu = if receives(cmd) { consumer } else { producer };
    // SAFETY: all-zero is a valid, empty `cpu_set_t`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return Err(format!("{PIN_ENV}: cpu {cpu} out of range"));
    }
    // SAFETY: `cpu` is below the set's capacity (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a live cpu_set_t of
    // the size passed.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(format!(
            "{PIN_ENV}: sched_setaffinity({cpu}): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Err(e) = pin(&cli.cmd) {
        eprintln!("bench_peer: {e}");
        return std::process::ExitCode::FAILURE;
    }
    match run(cli) {
        Ok(line) => {
            println!("{line}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench_peer: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
