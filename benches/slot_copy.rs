//! Bandwidth of copies into shared memory, the way a producer fills a slot
//! (issue #14 §3): `copy_from_slice` (glibc `memcpy`) against the explicit
//! routines of `alloy_shm::ring::slot_copy` (`rep movsb`, an AVX2 loop with
//! ordinary stores, an AVX2 loop with non-temporal stores), 16 KiB–64 MiB, from
//! a heap source into a fresh 64 MiB `MAP_SHARED` memfd mapping (pre-faulted
//! once, as a ring's slots are after their first use).
//!
//! Rounds are interleaved: every round copies each size with each routine
//! in a rotating order, so machine noise falls on all of them alike; the
//! report is the median GB/s per (size, routine) and each routine's ratio
//! to `copy_from_slice` in the same run.
//!
//! A second table copies into a rotation of slots (the shapes of the
//! benchmark suite's throughput and latency rings: the same `slots`
//! destinations in turn, one lap of warm-up) with each routine and the
//! ring's own choice (`copy_to_ring_slot`, which streams when the rotation is at
//! least a quarter of the last-level cache, see `slot_copy::streams`): while
//! the rotation stays cached, ordinary stores win; once it does not,
//! streaming stores do.
//!
//! Run: `cargo bench -p alloy-shm --features tokio,flight --bench slot_copy`
//! (`-- --rounds N` for more rounds). Under `cargo test` it runs one round
//! and checks that every routine copies exactly.

use std::time::Instant;

use alloy_shm::ring::slot_copy;
use memmap2::MmapMut;

const MIB: usize = 1 << 20;
const SIZES: [usize; 9] = [
    MIB / 64,
    MIB / 16,
    MIB / 4,
    MIB,
    2 * MIB,
    4 * MIB,
    16 * MIB,
    32 * MIB,
    64 * MIB,
];

/// A fresh shared mapping of `len` bytes (memfd, `MAP_SHARED`), every page
/// touched once.
fn shared_region(len: usize) -> MmapMut {
    let fd = rustix::fs::memfd_create("alloy-slot-copy", rustix::fs::MemfdFlags::CLOEXEC)
        .expect("memfd_create");
    let file = std::fs::File::from(fd);
    file.set_len(len as u64).expect("ftruncate");
    // SAFETY: the memfd is private to this process and nobody else maps or
    // resizes it while the mapping lives.
    let mut map = unsafe { MmapMut::map_mut(&file) }.expect("mmap");
    for page in map.chunks_mut(4096) {
        page[0] = 1;
    }
    map
}

/// Reads every byte of `b` (sums it as u64 words).
fn read_all(b: &[u8]) -> u64 {
    b.chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
        .fold(0, u64::wrapping_add)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(if smoke { 1 } else { 15 });
    let routines = slot_copy::available();
    let src: Vec<u8> = (0..64 * MIB).map(|i| (i * 31 + i / 4096) as u8).collect();
    let mut dst = shared_region(64 * MIB);
    // GB/s per size, per routine: the copy alone, and the copy followed by
    // a read of every copied byte (what a consumer that reads the whole
    // payload adds: non-temporal stores leave it outside the cache).
    let mut gbps = vec![vec![Vec::new(); routines.len()]; SIZES.len()];
    let mut read_gbps = vec![vec![Vec::new(); routines.len()]; SIZES.len()];
    let mut sink = 0u64;
    for round in 0..rounds {
        for (si, &size) in SIZES.iter().enumerate() {
            // Enough repetitions for ~64 MiB per measurement.
            let reps = (64 * MIB / size).max(1);
            for k in 0..routines.len() {
                let ri = (k + round) % routines.len();
                let r = routines[ri];
                let t = Instant::now();
                for i in 0..reps {
                    // Different destination offsets (as ring slots are),
                    // 64-byte aligned like a slot's payload.
                    let at = (i * size) % (64 * MIB - size + 1) / 64 * 64;
                    r.copy(&mut dst[at..at + size], &src[..size]);
                }
                let secs = t.elapsed().as_secs_f64();
                gbps[si][ri].push((reps * size) as f64 / secs / 1e9);
                let t = Instant::now();
                for i in 0..reps {
                    let at = (i * size) % (64 * MIB - size + 1) / 64 * 64;
                    r.copy(&mut dst[at..at + size], &src[..size]);
                    sink = sink.wrapping_add(read_all(&dst[at..at + size]));
                }
                let secs = t.elapsed().as_secs_f64();
                read_gbps[si][ri].push((reps * size) as f64 / secs / 1e9);
                if smoke {
                    let at = ((reps - 1) * size) % (64 * MIB - size + 1) / 64 * 64;
                    assert!(
                        dst[at..at + size] == src[..size],
                        "{} copied wrongly at {size} bytes",
                        r.name()
                    );
                }
            }
        }
    }
    std::hint::black_box(sink);
    rotation(rounds, smoke, &src, &mut dst);
    for (title, table) in [("copy", &mut gbps), ("copy, then read", &mut read_gbps)] {
        println!(
            "slot copy into a shared mapping ({title}), median GB/s over {rounds} interleaved rounds"
        );
        print!("{:>9}", "size KiB");
        for r in &routines {
            print!(" {:>22}", r.name());
        }
        println!();
        for (si, &size) in SIZES.iter().enumerate() {
            let meds: Vec<f64> = table[si].iter_mut().map(|v| median(v)).collect();
            print!("{:>9}", size >> 10);
            for m in &meds {
                print!(" {:>13.2} ({:>5.2}x)", m, m / meds[0]);
            }
            println!();
        }
    }
}

/// (message size, slots) of the rotation table: the throughput ring of
/// `alloy-bench` at 16, 64 and 256 KiB (`streamSlots`: 32 MiB / size,
/// 4..=1024, a power of two), the latency ring (4 slots) at 1 and 4 MiB,
/// and rotations on either side of a 32 MiB cache's quarter.
const ROTATIONS: [(usize, u32); 9] = [
    (MIB / 64, 1024),
    (MIB / 16, 512),
    (MIB / 4, 128),
    (MIB, 4),
    (MIB, 16),
    (2 * MIB, 4),
    (4 * MIB, 2),
    (4 * MIB, 4),
    (16 * MIB, 4),
];

/// The ways of the rotation table: each routine this CPU can run
/// (`copy_from_slice` first), and the ring's choice.
#[derive(Clone, Copy)]
enum Way {
    Routine(slot_copy::Routine),
    Ring,
}

impl Way {
    fn all() -> Vec<Way> {
        let mut ways: Vec<Way> = slot_copy::available()
            .into_iter()
            .map(Way::Routine)
            .collect();
        ways.push(Way::Ring);
        ways
    }

    fn name(self) -> &'static str {
        match self {
            Way::Routine(r) => r.name(),
            Way::Ring => "copy_to_ring_slot",
        }
    }

    fn copy(self, dst: &mut [u8], src: &[u8], slots: u32) {
        match self {
            Way::Routine(r) => r.copy(dst, src),
            Way::Ring => slot_copy::copy_to_ring_slot(dst, src, slots),
        }
    }
}

/// The rotation table: copies of `size` bytes into `slots` destinations in
/// turn, one lap of warm-up, then timed laps; median GB/s per way.
fn rotation(rounds: usize, smoke: bool, src: &[u8], dst: &mut MmapMut) {
    let cache = slot_copy::last_level_cache();
    let ways = Way::all();
    let mut gbps = vec![vec![Vec::new(); ways.len()]; ROTATIONS.len()];
    for round in 0..rounds {
        for (ti, &(size, slots)) in ROTATIONS.iter().enumerate() {
            let n = slots as usize;
            // At least ~64 MiB per measurement, whole laps.
            let reps = ((64 * MIB / size).max(1)).div_ceil(n).max(2) * n;
            for k in 0..ways.len() {
                let wi = (k + round) % ways.len();
                let way = ways[wi];
                for i in 0..n {
                    way.copy(&mut dst[i * size..][..size], &src[..size], slots);
                }
                let t = Instant::now();
                for i in 0..reps {
                    let at = (i % n) * size;
                    way.copy(&mut dst[at..at + size], &src[..size], slots);
                }
                let secs = t.elapsed().as_secs_f64();
                gbps[ti][wi].push((reps * size) as f64 / secs / 1e9);
                if smoke {
                    let at = ((reps - 1) % n) * size;
                    assert!(
                        dst[at..at + size] == src[..size],
                        "{} copied wrongly at {size} bytes",
                        way.name()
                    );
                }
            }
        }
    }
    println!(
        "slot copy into a rotation of slots (last-level cache {} MiB), median GB/s over {rounds} interleaved rounds",
        cache >> 20
    );
    print!("{:>9} {:>5} {:>7}", "size KiB", "slots", "streams");
    for w in &ways {
        print!(" {:>22}", w.name());
    }
    println!();
    for (ti, &(size, slots)) in ROTATIONS.iter().enumerate() {
        let meds: Vec<f64> = gbps[ti].iter_mut().map(|v| median(v)).collect();
        print!(
            "{:>9} {:>5} {:>7}",
            size >> 10,
            slots,
            slot_copy::streams(size, slots, cache)
        );
        for m in &meds {
            print!(" {:>13.2} ({:>5.2}x)", m, m / meds[0]);
        }
        println!();
    }
}
