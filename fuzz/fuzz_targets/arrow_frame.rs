//! Damaged Arrow IPC messages in a slot (LAYOUT.md §8.1), decoded by
//! `IpcReader::decode` with validation on (the default): only typed errors,
//! and every batch it accepts is valid Arrow data. The proptest
//! `damaged_messages_never_panic` in `make test` drives the same decoder.
//!
//! Input, first byte `mode`:
//! * even: the rest is the raw payload of one slot, published with the
//!   flags `mode >> 1` (so every flag value, including unknown ones, occurs);
//! * odd: a structured damage of a real record batch: bytes 1..9 seed the
//!   batch, byte 9 picks up to 3 column types, byte 10 a truncation point,
//!   then pairs (index, xor) flip bytes of its encoded message.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

use alloy_shm::arrow::{flags, ArrowShmError, IpcReader, IpcWriter};
use alloy_shm::ring::{Ring, RingConfig};
use alloy_testkit::testdata;
use arrow_array::RecordBatch;
use libfuzzer_sys::fuzz_target;

/// Column kinds of `testdata::column` without the last, dictionary, kind
/// (a dictionary column needs its dictionary message first).
const KINDS: u64 = testdata::KINDS - 1;

/// Panics raised inside the decoder and contained by it (`Corrupt`).
static CONTAINED: AtomicU64 = AtomicU64::new(0);

std::thread_local! {
    static LAST_PANIC: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// libfuzzer-sys installs a hook that aborts on every panic, even one the
/// reader catches and turns into `ArrowShmError::Corrupt` (arrow-rs 60
/// asserts on some malformed buffers). Count those instead; a panic that
/// escapes the reader still reaches libfuzzer-sys, which aborts.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let msg = info.to_string();
            LAST_PANIC.with(|l| *l.borrow_mut() = msg);
        }));
    });
}

fn ring() -> Ring {
    Ring::anonymous_builder()
        .config(RingConfig {
            slot_count: 4,
            slot_size: 1 << 16,
            schema_capacity: 4096,
            ..Default::default()
        })
        .create()
        .expect("ring")
}

/// Publishes `payload` with `flag` after `batch`'s schema and decodes it.
fn decode(
    batch: &RecordBatch,
    payload: &[u8],
    flag: u32,
) -> Result<Option<RecordBatch>, ArrowShmError> {
    let r = ring();
    let mut reader = IpcReader::new(r.subscribe().expect("subscribe"));
    let mut w = IpcWriter::new(r.producer().expect("producer"), batch.schema()).expect("writer");
    w.write(batch).expect("write");
    let first = reader
        .next_batch()
        .expect("intact batch")
        .expect("one batch");
    assert_eq!(&first, batch);
    w.producer_mut().send(payload, flag).expect("send");
    let lease = reader
        .consumer_mut()
        .recv()
        .expect("recv")
        .expect("a message");
    reader.decode(lease)
}

/// The bytes `IpcWriter` puts in a slot for `batch`.
fn encoded(batch: &RecordBatch) -> Vec<u8> {
    let r = ring();
    let mut c = r.subscribe().expect("subscribe");
    let mut w = IpcWriter::new(r.producer().expect("producer"), batch.schema()).expect("writer");
    w.write(batch).expect("write");
    let schema = c.recv().expect("recv").expect("schema");
    assert_eq!(schema.flags(), flags::IPC_SCHEMA);
    let msg = c.recv().expect("recv").expect("batch");
    msg.to_vec()
}

fn check(outcome: Result<Option<RecordBatch>, ArrowShmError>, flag: u32) {
    match outcome {
        Ok(Some(b)) => {
            // Accepted: it must be valid, and reading every value must
            // stay inside the mapping (ASan watches the reads).
            for col in b.columns() {
                if let Err(e) = col.to_data().validate_full() {
                    panic!("decoder accepted an invalid column: {e}");
                }
            }
            std::hint::black_box(format!("{b:?}"));
        }
        Ok(None) => assert!(
            flag == flags::IPC_SCHEMA || flag == flags::IPC_DICTIONARY_BATCH,
            "no batch from a flag-{flag} message"
        ),
        Err(ArrowShmError::Corrupt { reason, .. }) if reason.contains("panic") => {
            let n = CONTAINED.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                let last = LAST_PANIC.with(|l| l.borrow().clone());
                eprintln!("arrow_frame: {n} decoder panics contained so far; latest: {last}");
            }
        }
        Err(ArrowShmError::Ring(e)) => panic!("ring error from a damaged payload: {e}"),
        Err(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    install_hook();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let batch = testdata::batch(7, &[0, 5, 9], 8, 0, true);
        let flag = u32::from(mode >> 1);
        check(decode(&batch, rest, flag), flag);
        return;
    }
    if rest.len() < 10 {
        return;
    }
    let seed = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
    let k = rest[8];
    let kinds: Vec<u64> = (0..1 + k % 3)
        .map(|i| u64::from(k.rotate_left(3 * i as u32)) % KINDS)
        .collect();
    let batch = testdata::batch(seed, &kinds, 20, 0, true);
    let mut bytes = encoded(&batch);
    let cut = rest[9];
    for pair in rest[10..].chunks_exact(3) {
        let at = usize::from(u16::from_le_bytes([pair[0], pair[1]])) % bytes.len();
        bytes[at] ^= pair[2] | 1;
    }
    if cut != 0 {
        bytes.truncate(bytes.len() * usize::from(cut) / 256);
    }
    check(
        decode(&batch, &bytes, flags::IPC_RECORD_BATCH),
        flags::IPC_RECORD_BATCH,
    );
});
