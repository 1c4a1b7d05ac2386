//! Copy routines for writing a message into a slot (issue #14 §3), so they
//! can be measured side by side (`cargo bench --bench slot_copy`) against
//! `copy_from_slice`, which is glibc's `memcpy`.
//!
//! On x86_64 there are three explicit routines besides `copy_from_slice`:
//! `rep movsb` (fast on CPUs with ERMS/FSRM), an AVX2 loop with ordinary
//! stores, and an AVX2 loop with non-temporal stores (which bypass the
//! cache: less pollution for the producer, but the consumer then reads the
//! payload from memory). Other architectures have `copy_from_slice` only.

/// Copies from this many bytes on go through non-temporal stores in
/// [`copy_to_slot`] (where the CPU has AVX2): the size from which Go's
/// `memmove` streams too, and from which the same-run measurement
/// (`cargo bench --bench slot_copy`) shows them ahead of `memcpy` even
/// when the consumer then reads every byte. Smaller messages are often
/// still in the consumer's cache when written normally.
pub const NON_TEMPORAL_FROM: usize = 1 << 20;

/// Copies `src` into a slot (`dst`, same length; panics otherwise): with
/// non-temporal AVX2 stores from [`NON_TEMPORAL_FROM`] bytes on x86_64
/// CPUs with AVX2, else `copy_from_slice`. The stores are fenced before it
/// returns, so the slot's Release publish orders them as any other write.
///
/// For a copy into a ring whose slot count is known, [`copy_to_ring_slot`]
/// also keeps ordinary stores where the slot is likely still cached.
pub fn copy_to_slot(dst: &mut [u8], src: &[u8]) {
    if src.len() >= NON_TEMPORAL_FROM && Routine::Avx2NonTemporal.is_available() {
        Routine::Avx2NonTemporal.copy(dst, src)
    } else {
        dst.copy_from_slice(src)
    }
}

/// Copies `src` into a slot (`dst`, same length; panics otherwise) of a
/// ring of `slot_count` slots: non-temporal stores only when
/// [`streams`] says the slot is cold, else `copy_from_slice`. Fenced as
/// [`copy_to_slot`].
pub fn copy_to_ring_slot(dst: &mut [u8], src: &[u8], slot_count: u32) {
    let routine = ring_slot_routine(src.len(), slot_count);
    #[cfg(test)]
    if routine == Routine::Avx2NonTemporal {
        tests::STREAMED.with(|n| n.set(n.get() + 1));
    }
    routine.copy(dst, src)
}

/// The routine [`copy_to_ring_slot`] uses for `len` bytes into a ring of
/// `slot_count` slots on this machine: [`Routine::Avx2NonTemporal`] where
/// [`streams`] says so (with the [`last_level_cache`]) and the CPU has
/// AVX2, else [`Routine::CopyFromSlice`].
pub fn ring_slot_routine(len: usize, slot_count: u32) -> Routine {
    if streams(len, slot_count, last_level_cache()) && Routine::Avx2NonTemporal.is_available() {
        Routine::Avx2NonTemporal
    } else {
        Routine::CopyFromSlice
    }
}

/// Whether a copy of `len` bytes into a ring of `slot_count` slots should
/// bypass the cache, on a machine whose last-level cache holds `cache`
/// bytes: from [`STREAM_FROM`] bytes, and only when the ring's rotation
/// (`slot_count × len`: what the producer writes before it comes back to
/// the same slot) is at least a quarter of that cache.
///
/// Slots are used in sequence order (LAYOUT.md §4), so a slot was last
/// written `slot_count - 1` messages ago. While the rotation fits in the
/// cache with room to spare, the slot's lines are still cached and
/// ordinary stores hit them; once it does not, every store would first
/// read its line from memory (and evict something else), and streaming
/// stores, which skip that read, are faster. Measured here
/// (`cargo bench --bench slot_copy`, its rotation table; a 32 MiB L3):
/// 1 MiB into 4 rotating slots 1.2× faster with ordinary stores, 4 MiB
/// into 4 slots 2–3× faster with streaming stores, and the throughput
/// ring's shapes (16 KiB × 1024, 64 KiB × 512, 256 KiB × 128 slots)
/// 2.3–2.6× faster with streaming stores, where `rep movsb` and an AVX2
/// loop with ordinary stores run at `copy_from_slice`'s speed: the cost is
/// reading the cold lines, not the copy loop. The quarter is conservative
/// because the source, the consumer and other processes share the cache
/// too.
pub fn streams(len: usize, slot_count: u32, cache: usize) -> bool {
    len >= STREAM_FROM && len.saturating_mul(slot_count as usize) >= cache / 4
}

/// The shortest copy [`streams`] lets bypass the cache (in a cold
/// rotation). Below it a message costs little either way (the 4 KiB
/// throughput row is several times Go's), and the consumer, which reads
/// it next, finds a written line in the cache rather than in memory.
pub const STREAM_FROM: usize = 16 << 10;

/// Bytes of the largest CPU cache, as Linux reports it for CPU 0
/// (`/sys/devices/system/cpu/cpu0/cache/index*/size`), read once; 32 MiB
/// where that is unavailable. (`sysconf(_SC_LEVEL3_CACHE_SIZE)` is not
/// used: glibc derives it from CPUID, which under KVM here claims 256 MiB
/// for a 32 MiB L3.)
pub fn last_level_cache() -> usize {
    static CACHE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CACHE.get_or_init(|| sysfs_cache_bytes().unwrap_or(DEFAULT_CACHE))
}

/// [`last_level_cache`] where the system does not say.
pub const DEFAULT_CACHE: usize = 32 << 20;

/// The size of the highest-level cache listed under CPU 0 in sysfs.
fn sysfs_cache_bytes() -> Option<usize> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    let mut best: Option<(u32, usize)> = None;
    for entry in dir.flatten() {
        let path = entry.path();
        let read = |f: &str| std::fs::read_to_string(path.join(f)).ok();
        let (Some(level), Some(size)) = (read("level"), read("size")) else {
            continue;
        };
        let (Ok(level), Some(bytes)) = (level.trim().parse::<u32>(), parse_cache_size(&size))
        else {
            continue;
        };
        if best.is_none_or(|(l, _)| level > l) {
            best = Some((level, bytes));
        }
    }
    best.map(|(_, bytes)| bytes).filter(|&b| b > 0)
}

/// Parses sysfs's cache size notation: `32768K`, `1M`, or plain bytes.
fn parse_cache_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last()? {
        (i, 'K') => (&s[..i], 1 << 10),
        (i, 'M') => (&s[..i], 1 << 20),
        (i, 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

/// One way to copy bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Routine {
    /// `<[u8]>::copy_from_slice` (the platform `memcpy`).
    #[default]
    CopyFromSlice,
    /// One `rep movsb` instruction (x86_64).
    RepMovsb,
    /// A loop of 32-byte AVX2 loads and aligned stores (x86_64 with AVX2).
    Avx2,
    /// The same loop with non-temporal (streaming) stores and a final
    /// `sfence` (x86_64 with AVX2).
    Avx2NonTemporal,
}

impl Routine {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Routine::CopyFromSlice => "copy_from_slice",
            Routine::RepMovsb => "rep_movsb",
            Routine::Avx2 => "avx2",
            Routine::Avx2NonTemporal => "avx2_nt",
        }
    }

    /// Whether this CPU can run the routine.
    pub fn is_available(self) -> bool {
        match self {
            Routine::CopyFromSlice => true,
            #[cfg(target_arch = "x86_64")]
            Routine::RepMovsb => true,
            #[cfg(target_arch = "x86_64")]
            Routine::Avx2 | Routine::Avx2NonTemporal => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Copies `src` into `dst` (same length; panics otherwise). A routine
    /// this CPU cannot run falls back to `copy_from_slice`.
    pub fn copy(self, dst: &mut [u8], src: &[u8]) {
        assert_eq!(
            dst.len(),
            src.len(),
            "copy between slices of different lengths"
        );
        match self {
            #[cfg(target_arch = "x86_64")]
            Routine::RepMovsb => {
                // SAFETY: dst and src are valid for len bytes (checked equal
                // above) and cannot overlap (a &mut and a & slice).
                unsafe { x86::rep_movsb(dst.as_mut_ptr(), src.as_ptr(), src.len()) }
            }
            #[cfg(target_arch = "x86_64")]
            Routine::Avx2 | Routine::Avx2NonTemporal if self.is_available() => {
                // SAFETY: AVX2 is present (checked just now); dst and src
                // are valid for len bytes and do not overlap.
                unsafe {
                    if self == Routine::Avx2 {
                        x86::avx2_copy::<false>(dst.as_mut_ptr(), src.as_ptr(), src.len())
                    } else {
                        x86::avx2_copy::<true>(dst.as_mut_ptr(), src.as_ptr(), src.len())
                    }
                }
            }
            _ => dst.copy_from_slice(src),
        }
    }
}

/// The routines this CPU can run, `copy_from_slice` first.
pub fn available() -> Vec<Routine> {
    [
        Routine::CopyFromSlice,
        Routine::RepMovsb,
        Routine::Avx2,
        Routine::Avx2NonTemporal,
    ]
    .into_iter()
    .filter(|r| r.is_available())
    .collect()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m256i, _mm256_loadu_si256, _mm256_store_si256, _mm256_stream_si256, _mm_sfence,
    };

    /// Copies `n` bytes with one `rep movsb`.
    ///
    /// # Safety
    /// `dst` and `src` are valid for `n` bytes and do not overlap.
    pub(super) unsafe fn rep_movsb(dst: *mut u8, src: *const u8, n: usize) {
        // SAFETY: the caller's contract; Rust guarantees the direction flag
        // is clear on entry to an `asm!` block (and requires it clear on
        // exit), so the copy runs forward.
        unsafe {
            std::arch::asm!(
                "rep movsb",
                inout("rcx") n => _,
                inout("rdi") dst => _,
                inout("rsi") src => _,
                options(nostack, preserves_flags)
            );
        }
    }

    /// Copies `n` bytes: an unaligned head up to the first 32-byte aligned
    /// destination address, 128 bytes per iteration of unaligned loads and
    /// aligned (`NT`: non-temporal) stores, then the tail.
    ///
    /// # Safety
    /// The CPU has AVX2; `dst` and `src` are valid for `n` bytes and do
    /// not overlap.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2_copy<const NT: bool>(dst: *mut u8, src: *const u8, n: usize) {
        let head = dst.align_offset(32).min(n);
        // SAFETY: head <= n, so both ranges lie in the caller's buffers.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, head) };
        let mut i = head;
        while i + 128 <= n {
            // SAFETY: i + 128 <= n keeps the four 32-byte loads and stores
            // inside the buffers; dst + i is 32-byte aligned (head made it
            // so and i advances by 128), as the aligned and streaming
            // stores require.
            unsafe {
                let s = src.add(i).cast::<__m256i>();
                let d = dst.add(i).cast::<__m256i>();
                let a = _mm256_loadu_si256(s);
                let b = _mm256_loadu_si256(s.add(1));
                let c = _mm256_loadu_si256(s.add(2));
                let e = _mm256_loadu_si256(s.add(3));
                if NT {
                    _mm256_stream_si256(d, a);
                    _mm256_stream_si256(d.add(1), b);
                    _mm256_stream_si256(d.add(2), c);
                    _mm256_stream_si256(d.add(3), e);
                } else {
                    _mm256_store_si256(d, a);
                    _mm256_store_si256(d.add(1), b);
                    _mm256_store_si256(d.add(2), c);
                    _mm256_store_si256(d.add(3), e);
                }
            }
            i += 128;
        }
        if NT {
            // Streaming stores are weakly ordered: fence them before the
            // caller's Release store publishes the slot.
            _mm_sfence();
        }
        // SAFETY: i <= n; the rest lies inside both buffers.
        unsafe { std::ptr::copy_nonoverlapping(src.add(i), dst.add(i), n - i) };
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    thread_local! {
        /// Copies [`copy_to_ring_slot`] made with streaming stores on
        /// this thread: lets the writers' tests see which path a buffer
        /// took.
        pub(crate) static STREAMED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// [`STREAMED`] now.
    pub(crate) fn streamed() -> u64 {
        STREAMED.with(|n| n.get())
    }

    #[test]
    fn miri_streams_only_from_16_kib_in_a_rotation_larger_than_the_cache_allows() {
        const MIB: usize = 1 << 20;
        let cache = 32 * MIB;
        // The latency ring of the benchmark suite (4 slots): 1 MiB stays
        // cached, 4 MiB and more does not.
        assert!(!streams(MIB, 4, cache));
        assert!(streams(4 * MIB, 4, cache));
        assert!(streams(64 * MIB, 4, cache));
        // Streaming rings: many slots, so cold even at 1 MiB, and at the
        // throughput ring's 16 KiB × 1024 and 64 KiB × 512 slots.
        assert!(streams(MIB, 32, cache));
        assert!(streams(16 << 10, 1024, cache));
        assert!(streams(64 << 10, 512, cache));
        // 64 KiB into the 4-slot latency ring stays cached.
        assert!(!streams(64 << 10, 4, cache));
        // Never below STREAM_FROM, however large the ring.
        assert!(!streams(STREAM_FROM - 1, 1 << 20, cache));
        // A larger cache keeps more in it.
        assert!(!streams(4 * MIB, 4, 256 * MIB));
        assert!(!streams(usize::MAX, 0, cache));
        assert!(streams(usize::MAX, 2, cache));
    }

    #[test]
    fn cache_sizes_parse_as_sysfs_writes_them() {
        assert_eq!(parse_cache_size("32768K\n"), Some(32 << 20));
        assert_eq!(parse_cache_size("1M"), Some(1 << 20));
        assert_eq!(parse_cache_size("2G"), Some(2 << 30));
        assert_eq!(parse_cache_size("512"), Some(512));
        assert_eq!(parse_cache_size("K"), None);
        assert_eq!(parse_cache_size(""), None);
        assert_eq!(parse_cache_size("12X"), None);
        assert!(last_level_cache() > 0);
    }

    #[test]
    fn ring_slot_copy_copies_exactly_on_both_paths() {
        let len = 4 * NON_TEMPORAL_FROM + 33;
        let src: Vec<u8> = (0..len).map(|i| (i * 13 + i / 4096) as u8).collect();
        // 1 slot: ordinary stores unless the cache is under 16 MiB; 1 << 20
        // slots: streaming stores where the CPU has AVX2.
        for slots in [1, 1 << 20] {
            let mut dst = vec![0xAAu8; len + 7];
            copy_to_ring_slot(&mut dst[3..3 + len], &src, slots);
            assert!(dst[3..3 + len] == src[..], "{slots} slots");
            assert!(dst[..3].iter().all(|&b| b == 0xAA));
            assert!(dst[3 + len..].iter().all(|&b| b == 0xAA));
        }
    }

    #[test]
    fn every_routine_copies_every_length_and_alignment() {
        let src: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 256) as u8).collect();
        for r in available() {
            for len in [0, 1, 31, 32, 33, 127, 128, 129, 300, 4096, 4999] {
                for (s_off, d_off) in [(0, 0), (1, 0), (0, 5), (3, 17)] {
                    let mut dst = vec![0xAAu8; 5100];
                    if s_off + len > src.len() || d_off + len > dst.len() {
                        continue;
                    }
                    r.copy(&mut dst[d_off..d_off + len], &src[s_off..s_off + len]);
                    assert_eq!(
                        &dst[d_off..d_off + len],
                        &src[s_off..s_off + len],
                        "{r:?} {len} {s_off} {d_off}"
                    );
                    assert!(
                        dst[..d_off].iter().all(|&b| b == 0xAA),
                        "{r:?} wrote before"
                    );
                    assert!(
                        dst[d_off + len..].iter().all(|&b| b == 0xAA),
                        "{r:?} wrote after"
                    );
                }
            }
        }
    }
}
