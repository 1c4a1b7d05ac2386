//! Consumers read payloads through a read-only mapping (LAYOUT.md §1), so
//! a consumer that writes into a received message — a bug, say in C code
//! handed the bytes — dies with SIGSEGV instead of corrupting the message
//! every other reader sees. The write happens in a child process (this
//! test binary re-run), which must be killed by SIGSEGV while the message
//! stays intact for another subscriber.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use alloy_shm::ring::{Backpressure, Ring, RingConfig};

/// Tells `write_child` the ring to attach to.
const CHILD_ENV: &str = "ALLOY_READONLY_CHILD";

#[test]
fn a_consumer_writing_into_a_payload_faults() {
    let name = format!("alloy-readonly-{}", std::process::id());
    let _ = Ring::remove(&name);
    let cfg = RingConfig {
        slot_count: 4,
        slot_size: 128,
        max_subscribers: 2,
        max_members: 2,
        schema_capacity: 0,
    };
    let ring = Ring::builder(&name).config(cfg).create().unwrap();
    let mut witness = ring.subscribe().unwrap();
    let mut tx = ring
        .producer_builder()
        .backpressure(Backpressure::Fail)
        .create()
        .unwrap();
    tx.send(b"intact", 0).unwrap();

    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "write_child", "--nocapture"])
        .env(CHILD_ENV, &name)
        .output()
        .unwrap();
    let _ = Ring::remove(&name);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("writing into the lease"),
        "the child did not get to the write:\n{text}"
    );
    assert_eq!(
        out.status.signal(),
        Some(sigsegv()),
        "the child's write to a payload page did not fault: {}\n{text}",
        out.status
    );
    let got = witness.try_recv().unwrap().expect("the message");
    assert_eq!(&*got, b"intact");
}

fn sigsegv() -> i32 {
    rustix::process::Signal::SEGV.as_raw()
}

/// Attaches to the parent's ring, receives the message and writes into it.
#[test]
#[ignore = "run by a_consumer_writing_into_a_payload_faults"]
fn write_child() {
    let Ok(name) = std::env::var(CHILD_ENV) else {
        eprintln!("write_child: {CHILD_ENV} not set; nothing to do");
        return;
    };
    let ring = Ring::open(&name).unwrap();
    let mut rx = ring.consumer_builder().history(1).create().unwrap();
    let lease = rx.try_recv().unwrap().expect("the parent's message");
    println!("writing into the lease");
    let p = lease.as_ptr() as *mut u8;
    // SAFETY: none — this is the bug the read-only mapping exists to stop:
    // a consumer writing into a message it only borrowed. The page is
    // mapped PROT_READ, so the store faults and the process dies here.
    unsafe { p.write_volatile(b'X') };
    panic!("the write to a read-only payload page did not fault");
}
