//! The schema area's seqlock (LAYOUT.md §9), written against plain atomics
//! so that the same code runs on the mapping and, under `--cfg loom`, on
//! model-checked atomics (`loom_tests` below).
//!
//! The schema bytes are stored and loaded as `u64` words with Relaxed
//! atomics (little-endian, the tail word zero-padded), never with plain
//! copies: a reader may run while the producer rewrites the area, and a
//! racing plain access would be a data race even though the reader throws
//! its copy away. The orderings are the classic seqlock's (H.-J. Boehm,
//! "Can seqlocks get along with programming language memory models?"):
//!
//! * writer: odd `seq` (Relaxed RMW-free store), **`fence(Release)`**, the
//!   words and `len` (Relaxed), even `seq` (Release).
//! * reader: `seq` (Acquire), `len` and the words (Relaxed),
//!   **`fence(Acquire)`**, `seq` again (Relaxed); equal and even: the copy
//!   is whole.
//!
//! The writer's fence is what keeps the word stores from becoming visible
//! before the odd value on a weakly ordered CPU (ARM64): a Release or SeqCst
//! *store* of the odd value orders only what comes before it. If a reader's
//! Relaxed load sees any word stored after the fence, its Acquire fence
//! synchronises with the writer's Release fence, so its second `seq` load
//! sees the odd value (or later) and the copy is discarded.

use crate::sync::{fence, AtomicU32, AtomicU64, Ordering};

/// The outcome of one read attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SeqRead {
    /// `seq == 0`: no schema was ever written.
    Empty,
    /// A write is in progress (odd `seq`) or raced with the copy: retry.
    Busy,
    /// `len` exceeds the area: the header is damaged.
    Corrupt(u32),
    /// The bytes of one complete write.
    Got(Vec<u8>),
}

/// Writes `bytes` (at most `8 × words.len()`) as the new content, moving
/// `seq` to the next odd value and then to the even one after it. An odd
/// value left by a writer that died mid-write is moved past, never back to
/// even. Only one writer (the attached producer) may call this at a time.
pub(crate) fn write(seq: &AtomicU32, len: &AtomicU32, words: &[AtomicU64], bytes: &[u8]) {
    assert!(bytes.len() <= words.len() * 8, "checked by the caller");
    // Relaxed: only this writer stores `seq`; the fence below orders it.
    let s = seq.load(Ordering::Relaxed);
    let odd = if s % 2 == 0 {
        s.wrapping_add(1)
    } else {
        s.wrapping_add(2)
    };
    seq.store(odd, Ordering::Relaxed);
    // Release fence: no word or `len` store below becomes visible before
    // the odd `seq` (pairs with the reader's Acquire fence).
    fence(Ordering::Release);
    for (w, chunk) in words.iter().zip(bytes.chunks(8)) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        w.store(u64::from_le_bytes(b), Ordering::Relaxed);
    }
    len.store(bytes.len() as u32, Ordering::Relaxed);
    // Release: pairs with the reader's Acquire load of `seq`; everything
    // above is visible to a reader that sees the even value.
    seq.store(odd.wrapping_add(1), Ordering::Release);
}

/// One attempt to copy the content out.
pub(crate) fn try_read(seq: &AtomicU32, len: &AtomicU32, words: &[AtomicU64]) -> SeqRead {
    // Acquire: pairs with the writer's final Release store.
    let s1 = seq.load(Ordering::Acquire);
    if s1 == 0 {
        return SeqRead::Empty;
    }
    if s1 % 2 == 1 {
        return SeqRead::Busy;
    }
    let n = len.load(Ordering::Relaxed);
    if n as usize > words.len() * 8 {
        // Re-checked below: a torn read of `len` is just a retry.
        fence(Ordering::Acquire);
        return if seq.load(Ordering::Relaxed) == s1 {
            SeqRead::Corrupt(n)
        } else {
            SeqRead::Busy
        };
    }
    let mut out = Vec::with_capacity(n as usize);
    for w in &words[..(n as usize).div_ceil(8)] {
        out.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
    }
    out.truncate(n as usize);
    // Acquire fence: if any load above saw a store of a later write, the
    // `seq` load below sees that write's odd value (pairs with the
    // writer's Release fence).
    fence(Ordering::Acquire);
    if seq.load(Ordering::Relaxed) == s1 {
        SeqRead::Got(out)
    } else {
        SeqRead::Busy
    }
}

// Plain atomics only: under `--cfg loom` these would be loom's, which
// work only inside `loom::model`.
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_odd_leftover() {
        let seq = AtomicU32::new(0);
        let len = AtomicU32::new(0);
        let words: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(0)).collect();
        assert_eq!(try_read(&seq, &len, &words), SeqRead::Empty);
        write(&seq, &len, &words, b"schema-v1");
        assert_eq!(seq.load(Ordering::Relaxed), 2);
        assert_eq!(
            try_read(&seq, &len, &words),
            SeqRead::Got(b"schema-v1".to_vec())
        );
        // A writer that died mid-write left an odd value: readers wait,
        // the next writer moves past it.
        seq.store(3, Ordering::Relaxed);
        assert_eq!(try_read(&seq, &len, &words), SeqRead::Busy);
        write(&seq, &len, &words, &[7u8; 32]);
        assert_eq!(seq.load(Ordering::Relaxed), 6);
        assert_eq!(try_read(&seq, &len, &words), SeqRead::Got(vec![7u8; 32]));
        len.store(33, Ordering::Relaxed);
        assert_eq!(try_read(&seq, &len, &words), SeqRead::Corrupt(33));
    }
}

/// Loom model: a reader racing with two writes never returns a mix of two
/// contents (each write fills every word with one value). Without the
/// writer's Release fence or the reader's Acquire fence loom finds a torn
/// copy that passes the check.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    struct Area {
        seq: AtomicU32,
        len: AtomicU32,
        words: Vec<AtomicU64>,
    }

    #[test]
    fn loom_schema_seqlock_never_torn() {
        loom::model(|| {
            let a = Arc::new(Area {
                seq: AtomicU32::new(0),
                len: AtomicU32::new(0),
                words: (0..2).map(|_| AtomicU64::new(0)).collect(),
            });
            write(&a.seq, &a.len, &a.words, &[1u8; 16]);
            let w = a.clone();
            let writer = loom::thread::spawn(move || {
                write(&w.seq, &w.len, &w.words, &[2u8; 16]);
            });
            if let SeqRead::Got(bytes) = try_read(&a.seq, &a.len, &a.words) {
                assert_eq!(bytes.len(), 16);
                assert!(
                    bytes.iter().all(|&b| b == bytes[0]),
                    "torn schema copy: {bytes:?}"
                );
            }
            writer.join().unwrap();
        });
    }
}
