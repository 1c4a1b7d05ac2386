//! Rust→Rust ring microbenchmark, with the hardware floors measured in the
//! same run so the ratios mean something on a noisy machine:
//!
//! * latency: one-way = round trip / 2 of a ping-pong over two rings,
//!   against a raw atomic ping-pong on one cache line (the floor), for busy
//!   (spin) and blocking (futex) consumers, 64 B messages;
//! * throughput: 64 B and 1 MiB messages written in place by the producer
//!   and read completely by the consumer (it sums every u64), against a
//!   single-threaded memcpy of the same bytes (the bandwidth floor).
//!
//! Run with `make bench` (or `cargo bench --bench ring`); `ALLOY_BENCH_QUICK=1`
//! shortens it. Results go to stdout and `target/bench/ring.json`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use alloy_shm::ring::{Ring, RingConfig, WaitStrategy};
use hdrhistogram::Histogram;

fn quick() -> bool {
    std::env::var("ALLOY_BENCH_QUICK").is_ok()
}

struct Lat {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

fn summarize(h: &Histogram<u64>) -> Lat {
    // Recorded round trips in ns; one-way = half.
    let q = |x: f64| h.value_at_quantile(x) as f64 / 2.0;
    Lat {
        p50: q(0.5),
        p99: q(0.99),
        p999: q(0.999),
        max: h.max() as f64 / 2.0,
    }
}

/// Two threads bouncing a counter on one cache line.
fn atomic_pingpong(iters: u64) -> Lat {
    let line = Arc::new(crossbeam_utils::CachePadded::new(AtomicU64::new(0)));
    let l2 = line.clone();
    let t = std::thread::spawn(move || {
        for i in 0..iters {
            while l2.load(Ordering::Acquire) != 2 * i + 1 {
                std::hint::spin_loop();
            }
            l2.store(2 * i + 2, Ordering::Release);
        }
    });
    let mut h = Histogram::<u64>::new(3).unwrap();
    for i in 0..iters {
        let t0 = Instant::now();
        line.store(2 * i + 1, Ordering::Release);
        while line.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
        h.record(t0.elapsed().as_nanos() as u64).unwrap();
    }
    t.join().unwrap();
    summarize(&h)
}

/// Ping-pong of `size`-byte messages over two rings.
fn ring_pingpong(size: usize, iters: u64, wait: WaitStrategy) -> Lat {
    let cfg = RingConfig {
        slot_count: 64,
        slot_size: size.next_multiple_of(64).max(64) as u32,
        max_subscribers: 2,
        max_members: 2,
        schema_capacity: 0,
    };
    let ping = Ring::anonymous_builder().config(cfg).create().unwrap();
    let pong = Ring::anonymous_builder().config(cfg).create().unwrap();
    let mut ping_rx = ping.subscribe().unwrap();
    let mut pong_rx = pong.subscribe().unwrap();
    ping_rx.set_wait_strategy(wait);
    pong_rx.set_wait_strategy(wait);
    let mut ping_tx = ping
        .producer_builder()
        .backpressure(Default::default())
        .wait(wait)
        .create()
        .unwrap();
    let mut pong_tx = pong
        .producer_builder()
        .backpressure(Default::default())
        .wait(wait)
        .create()
        .unwrap();
    let echo = std::thread::spawn(move || {
        while let Some(m) = ping_rx.recv().unwrap() {
            let mut r = pong_tx.reserve(m.len()).unwrap();
            r[..8].copy_from_slice(&m[..8]);
            let n = m.len();
            drop(m);
            r.publish(n, 0).unwrap();
        }
    });
    let mut h = Histogram::<u64>::new(3).unwrap();
    let warm = iters / 10;
    for i in 0..iters + warm {
        let t0 = Instant::now();
        let mut r = ping_tx.reserve(size).unwrap();
        r[..8].copy_from_slice(&i.to_le_bytes());
        r.publish(size, 0).unwrap();
        let back = pong_rx.recv().unwrap().unwrap();
        assert_eq!(back[..8], i.to_le_bytes());
        if i >= warm {
            h.record(t0.elapsed().as_nanos() as u64).unwrap();
        }
    }
    ping_tx.close();
    echo.join().unwrap();
    summarize(&h)
}

fn sum_u64(b: &[u8]) -> u64 {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .fold(0u64, u64::wrapping_add)
}

/// Streams `total` bytes in `size`-byte messages; returns GB/s and msgs/s.
fn ring_throughput(size: usize, total: usize, wait: WaitStrategy) -> (f64, f64) {
    let slot_size = size.next_multiple_of(64) as u32;
    let slots = if size >= 1 << 20 { 16 } else { 1024 };
    let cfg = RingConfig {
        slot_count: slots,
        slot_size,
        max_subscribers: 1,
        max_members: 1,
        schema_capacity: 0,
    };
    let ring = Ring::anonymous_builder().config(cfg).create().unwrap();
    let mut rx = ring.subscribe().unwrap();
    rx.set_wait_strategy(wait);
    let mut tx = ring
        .producer_builder()
        .backpressure(Default::default())
        .wait(wait)
        .create()
        .unwrap();
    let count = (total / size).max(1);
    let src: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let consumer = std::thread::spawn(move || {
        let mut acc = 0u64;
        let mut n = 0;
        while let Some(m) = rx.recv().unwrap() {
            acc = acc.wrapping_add(sum_u64(&m));
            n += 1;
        }
        (acc, n)
    });
    let t0 = Instant::now();
    for _ in 0..count {
        let mut r = tx.reserve(size).unwrap();
        r[..size].copy_from_slice(&src);
        r.publish(size, 0).unwrap();
    }
    tx.close();
    let (acc, n) = consumer.join().unwrap();
    let dt = t0.elapsed().as_secs_f64();
    black_box(acc);
    assert_eq!(n, count);
    ((count * size) as f64 / dt / 1e9, count as f64 / dt)
}

/// Single-threaded memcpy of `size`-byte blocks, `total` bytes in all.
fn memcpy_gbps(size: usize, total: usize) -> f64 {
    let src: Vec<u8> = (0..size).map(|i| i as u8).collect();
    // Rotate over several destinations so large copies are not cache-hot.
    let mut dst: Vec<Vec<u8>> = (0..16).map(|_| vec![0u8; size]).collect();
    let count = (total / size).max(1);
    let t0 = Instant::now();
    for i in 0..count {
        let d = &mut dst[i % 16];
        d.copy_from_slice(black_box(&src));
        black_box(&d[0]);
    }
    (count * size) as f64 / t0.elapsed().as_secs_f64() / 1e9
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    let q = quick();
    let lat_iters = if q { 20_000 } else { 200_000 };
    let block_iters = if q { 5_000 } else { 50_000 };
    let small_total = if q { 64 << 20 } else { 512 << 20 };
    let big_total = if q { 2 << 30 } else { 16 << 30 };

    let floor = atomic_pingpong(lat_iters);
    let spin = ring_pingpong(64, lat_iters, WaitStrategy::Spin);
    let block = ring_pingpong(64, block_iters, WaitStrategy::Blocking);
    let (t64, m64) = ring_throughput(64, small_total, WaitStrategy::Spin);
    let mc64 = memcpy_gbps(64, small_total);
    let (t1m, m1m) = ring_throughput(1 << 20, big_total, WaitStrategy::Spin);
    let (t1mb, _) = ring_throughput(1 << 20, big_total / 4, WaitStrategy::Blocking);
    let mc1m = memcpy_gbps(1 << 20, big_total);

    println!(
        "\n## Alloy ring, Rust → Rust (threads of one process, {} cores)\n",
        num_cpus()
    );
    println!("| one-way latency, 64 B | p50 ns | p99 ns | p99.9 ns | max ns | p50 / floor |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, l) in [
        ("atomic ping-pong (floor)", &floor),
        ("ring, spin", &spin),
        ("ring, blocking (futex)", &block),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
            l.p50,
            l.p99,
            l.p999,
            l.max,
            l.p50 / floor.p50
        );
    }
    println!("\n| throughput | GB/s | messages/s | / memcpy |");
    println!("|---|---:|---:|---:|");
    println!(
        "| memcpy 64 B blocks (floor) | {mc64:.2} | {:.0} | 1.00 |",
        mc64 * 1e9 / 64.0
    );
    println!(
        "| ring 64 B, spin | {t64:.2} | {m64:.0} | {:.2} |",
        t64 / mc64
    );
    println!(
        "| memcpy 1 MiB blocks (floor) | {mc1m:.2} | {:.0} | 1.00 |",
        mc1m * 1e9 / (1u64 << 20) as f64
    );
    println!(
        "| ring 1 MiB, spin | {t1m:.2} | {m1m:.0} | {:.2} |",
        t1m / mc1m
    );
    println!(
        "| ring 1 MiB, blocking | {t1mb:.2} | {:.0} | {:.2} |",
        t1mb * 1e9 / (1u64 << 20) as f64,
        t1mb / mc1m
    );
    println!("\nThroughput: the producer copies each message into its slot and the consumer reads every byte (sums u64s).");

    let json = format!(
        "{{\"latency_ns\":{{\"floor_p50\":{:.1},\"spin_p50\":{:.1},\"spin_p99\":{:.1},\"blocking_p50\":{:.1},\"blocking_p99\":{:.1}}},\
         \"throughput_gbps\":{{\"memcpy_64\":{mc64:.3},\"ring_64\":{t64:.3},\"memcpy_1m\":{mc1m:.3},\"ring_1m\":{t1m:.3},\"ring_1m_blocking\":{t1mb:.3}}},\
         \"messages_per_s\":{{\"ring_64\":{m64:.0},\"ring_1m\":{m1m:.0}}}}}\n",
        floor.p50, spin.p50, spin.p99, block.p50, block.p99
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ring.json"), json).unwrap();
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
