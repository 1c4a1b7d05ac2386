//! In-process tests of the ring protocol over a real mapping.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::layout::{off, LayoutError};

/// Polls `cond` every millisecond until it holds; panics after 10 s naming
/// `what`. Tests wait for the condition they need, never for a fixed time.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn cfg(slots: u32, size: u32) -> RingConfig {
    RingConfig {
        slot_count: slots,
        slot_size: size,
        max_subscribers: 4,
        max_members: 8,
        schema_capacity: 256,
    }
}

fn fail_producer(r: &Ring) -> Producer {
    r.producer_builder()
        .backpressure(Backpressure::Fail)
        .wait(WaitStrategy::Blocking)
        .create()
        .unwrap()
}

fn unique(tag: &str) -> String {
    format!("alloy-test-{tag}-{}-{}", std::process::id(), monotonic_ns())
}

#[test]
fn messages_arrive_in_order_with_flags_and_sizes() {
    let r = Ring::anonymous_builder()
        .config(cfg(4, 128))
        .create()
        .unwrap();
    let mut c = r.subscribe().unwrap();
    let mut p = r.producer().unwrap();
    let t = std::thread::spawn(move || {
        for i in 0..100u32 {
            let len = (i as usize * 7) % 129;
            let msg: Vec<u8> = (0..len).map(|b| (b as u32 ^ i) as u8).collect();
            assert_eq!(p.send(&msg, i).unwrap(), i as u64);
        }
        p.close();
    });
    let mut n = 0u32;
    while let Some(m) = c.recv().unwrap() {
        let len = (n as usize * 7) % 129;
        assert_eq!(m.seq(), n as u64);
        assert_eq!(m.flags(), n);
        assert_eq!(m.len(), len);
        assert!(m
            .iter()
            .enumerate()
            .all(|(b, &v)| v == (b as u32 ^ n) as u8));
        n += 1;
    }
    assert_eq!(n, 100);
    t.join().unwrap();
}

#[test]
fn zero_length_and_max_size_messages_and_too_large_is_refused() {
    let r = Ring::anonymous_builder()
        .config(cfg(4, 64))
        .create()
        .unwrap();
    let mut c = r.subscribe().unwrap();
    let mut p = r.producer().unwrap();
    p.send(&[], 0).unwrap();
    p.send(&[7u8; 64], 0).unwrap();
    match p.send(&[0u8; 65], 0) {
        Err(SendError::MessageTooLarge { len: 65, max: 64 }) => {}
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    let res = p.reserve(10).unwrap();
    assert!(matches!(
        res.publish(65, 0),
        Err(SendError::MessageTooLarge { .. })
    ));
    assert_eq!(c.recv().unwrap().unwrap().len(), 0);
    assert_eq!(&*c.recv().unwrap().unwrap(), &[7u8; 64][..]);
    assert!(matches!(c.try_recv(), Err(RecvError::Empty)));
}

#[test]
fn reservation_write_places_large_and_small_parts_exactly() {
    // 2 MiB slots: Reservation::write takes the streaming path in the
    // 16-slot ring (32 MiB rotation) and ordinary stores in the 2-slot
    // one (on a machine with a 32 MiB cache); both must land exactly.
    const LEN: usize = 2 << 20;
    let src: Vec<u8> = (0..LEN).map(|i| (i * 29 + i / 4096) as u8).collect();
    for slots in [2, 16] {
        let r = Ring::anonymous_builder()
            .config(cfg(slots, LEN as u32))
            .create()
            .unwrap();
        let mut c = r.subscribe().unwrap();
        let mut p = r.producer().unwrap();
        for k in 0..u64::from(slots) + 1 {
            let mut res = p.reserve(LEN).unwrap();
            res.fill(0xAA);
            // A large body at an unaligned offset, then a small header.
            res.write(9, &src[..LEN - 9 - 7]);
            res.write(0, &k.to_le_bytes());
            res.publish(LEN - 7, 0).unwrap();
            let m = c.recv().unwrap().unwrap();
            assert_eq!(m.len(), LEN - 7);
            assert_eq!(m[..8], k.to_le_bytes());
            assert_eq!(m[8], 0xAA, "{slots} slots: byte 8 written");
            assert!(m[9..] == src[..LEN - 16], "{slots} slots, message {k}");
        }
        p.send(&src, 3).unwrap();
        let m = c.recv().unwrap().unwrap();
        assert!(m[..] == src[..], "{slots} slots: send");
    }
}

#[test]
#[should_panic]
fn reservation_write_past_the_slot_panics() {
    let r = Ring::anonymous_builder()
        .config(cfg(4, 64))
        .create()
        .unwrap();
    let mut p = r.producer().unwrap();
    let mut res = p.reserve(64).unwrap();
    res.write(60, &[1u8; 5]);
}

#[test]
fn payloads_are_64_byte_aligned_views_into_the_mapping() {
    let r = Ring::anonymous_builder()
        .config(cfg(4, 192))
        .create()
        .unwrap();
    let mut c = r.subscribe().unwrap();
    let mut p = r.producer().unwrap();
    for _ in 0..6 {
        p.send(b"x", 0).unwrap();
        let m = c.recv().unwrap().unwrap();
        // Consumers read through the read-only mapping (LAYOUT.md §1).
        let base = r.region().read_base() as usize;
        assert_ne!(base, r.region().base() as usize);
        let at = m.as_ptr() as usize;
        assert_eq!(at % 64, 0);
        assert!(at >= base && at + m.len() <= base + r.region().layout().total_size);
    }
}

#[test]
fn a_held_lease_blocks_reuse_of_its_slot_until_dropped() {
    let r = Ring::anonymous_builder()
        .config(cfg(2, 64))
        .create()
        .unwrap();
    let mut c = r.subscribe().unwrap();
    let mut p = fail_producer(&r);
    p.send(b"a", 0).unwrap();
    p.send(b"b", 0).unwrap();
    let a = c.recv().unwrap().unwrap();
    let b = c.recv().unwrap().unwrap();
    assert!(matches!(p.send(b"c", 0), Err(SendError::Full { slots: 2 })));
    drop(b); // out of order: slot of `a` still held
    assert!(matches!(p.send(b"c", 0), Err(SendError::Full { .. })));
    assert_eq!(&*a, b"a", "the held slot was not overwritten");
    drop(a); // both released now
    p.send(b"c", 0).unwrap();
    p.send(b"d", 0).unwrap();
    assert!(matches!(p.send(b"e", 0), Err(SendError::Full { .. })));
    assert_eq!(&*c.recv().unwrap().unwrap(), b"c");
}

#[test]
fn blocking_backpressure_times_out_then_resumes() {
    let r = Ring::anonymous_builder()
        .config(cfg(2, 64))
        .create()
        .unwrap();
    let mut c = r.subscribe().unwrap();
    let mut p = r
        .producer_builder()
        .backpressure(Backpressure::Block {
            timeout: Some(Duration::from_millis(50)),
        })
        .wait(WaitStrategy::Blocking)
        .create()
        .unwrap();
    p.send(b"1", 0).unwrap();
    p.send(b"2", 0).unwrap();
    let t0 = Instant::now();
    assert!(matches!(p.send(b"3", 0), Err(SendError::Timeout(_))));
    assert!(t0.elapsed() >= Duration::from_millis(50));
    // A consumer thread frees space once the producer is parked.
    let space_waiters = r.shared.clone();
    let t = std::thread::spawn(move || {
        wait_until("the producer parks for space", || {
            space_waiters
                .hdr32(off::SPACE_WAITERS)
                .load(Ordering::SeqCst)
                == 1
        });
        let m = c.recv().unwrap().unwrap();
        assert_eq!(&*m, b"1");
        drop(m);
        c
    });
    // The thread frees the slot while the producer waits; on a loaded
    // machine it may not run within one 50 ms wait, so the producer tries
    // again until it does (bounded): what is tested is that a producer
    // that timed out resumes once there is space.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match p.send(b"3", 0) {
            Ok(_) => break,
            Err(SendError::Timeout(_)) if Instant::now() < deadline => {}
            Err(e) => panic!("send after the consumer freed a slot: {e}"),
        }
    }
    let mut c = t.join().unwrap();
    assert_eq!(&*c.recv().unwrap().unwrap(), b"2");
    assert_eq!(&*c.recv().unwrap().unwrap(), b"3");
}

#[test]
fn queue_members_get_each_message_exactly_once() {
    let r = Ring::anonymous_builder()
        .config(cfg(8, 64))
        .create()
        .unwrap();
    let members: Vec<Consumer> = (0..3).map(|_| r.join_queue(5).unwrap()).collect();
    assert_eq!(r.subscribers().len(), 1, "one entry for the whole group");
    assert_eq!(r.subscribers()[0].members, 3);
    let handles: Vec<_> = members
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while let Some(m) = c.recv().unwrap() {
                    got.push(u64::from_le_bytes(m[..8].try_into().unwrap()));
                }
                got
            })
        })
        .collect();
    let mut p = r.producer().unwrap();
    for i in 0..20_000u64 {
        p.send(&i.to_le_bytes(), 0).unwrap();
    }
    p.close();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..20_000).collect::<Vec<_>>());
}

#[test]
fn broadcast_and_queue_each_see_everything() {
    let r = Ring::anonymous_builder()
        .config(cfg(4, 64))
        .create()
        .unwrap();
    let b1 = r.subscribe().unwrap();
    let b2 = r.subscribe().unwrap();
    let q = r.join_queue(1).unwrap();
    let spawn = |mut c: Consumer| {
        std::thread::spawn(move || {
            let mut got = Vec::new();
            while let Some(m) = c.recv().unwrap() {
                got.push(m[0]);
            }
            got
        })
    };
    let hs = [spawn(b1), spawn(b2), spawn(q)];
    let mut p = r.producer().unwrap();
    for i in 0..250u8 {
        p.send(&[i], 0).unwrap();
    }
    p.close();
    for h in hs {
        assert_eq!(h.join().unwrap(), (0..250).collect::<Vec<u8>>());
    }
}

#[test]
fn late_joiner_starts_at_head_and_leaving_frees_the_gate() {
    let r = Ring::anonymous_builder()
        .config(cfg(2, 64))
        .create()
        .unwrap();
    let mut p = fail_producer(&r);
    for _ in 0..5 {
        p.send(b"early", 0).unwrap(); // nobody subscribed: overwritten freely
    }
    let mut c = r.subscribe().unwrap();
    p.send(b"late", 0).unwrap();
    let m = c.recv().unwrap().unwrap();
    assert_eq!((&*m, m.seq()), (&b"late"[..], 5));
    drop(m);
    p.send(b"x", 0).unwrap();
    p.send(b"y", 0).unwrap();
    assert!(matches!(p.send(b"z", 0), Err(SendError::Full { .. })));
    drop(c);
    assert!(r.subscribers().is_empty());
    p.send(b"z", 0).unwrap();
}

#[test]
fn end_of_stream_after_drain_and_send_after_close_fails() {
    let r = Ring::anonymous_builder()
        .config(cfg(4, 64))
        .create()
        .unwrap();
    let mut c = r.subscribe().unwrap();
    let mut p = r.producer().unwrap();
    p.send(b"1", 0).unwrap();
    p.send(b"2", 0).unwrap();
    p.close();
    assert!(r.is_closed());
    assert_eq!(&*c.recv().unwrap().unwrap(), b"1");
    assert_eq!(&*c.recv().unwrap().unwrap(), b"2");
    assert!(c.recv().unwrap().is_none());
    assert!(c.recv().unwrap().is_none());
    assert!(matches!(
        r.producer(),
        Err(AttachError::StreamEnded { seq: 2, .. })
    ));
}

#[test]
fn one_producer_at_a_time_and_reattach_continues() {
    let r = Ring::anonymous_builder()
        .config(cfg(4, 64))
        .create()
        .unwrap();
    let mut c = r.subscribe().unwrap();
    let mut p = r.producer().unwrap();
    assert!(matches!(
        r.producer(),
        Err(AttachError::ProducerExists { .. })
    ));
    p.send(b"a", 0).unwrap();
    drop(p);
    let mut p2 = r.producer().unwrap();
    assert_eq!(p2.send(b"b", 0).unwrap(), 1);
    assert_eq!(c.recv().unwrap().unwrap().seq(), 0);
    assert_eq!(c.recv().unwrap().unwrap().seq(), 1);
}

#[test]
fn parked_consumer_is_woken_by_publish_and_close() {
    let r = Ring::anonymous_builder()
        .config(cfg(4, 64))
        .create()
        .unwrap();
    let mut c = r.subscribe().unwrap();
    let (got, woken) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let m = c.recv().unwrap().unwrap();
        assert_eq!(&*m, b"wake");
        drop(m);
        got.send(()).unwrap();
        assert!(c.recv().unwrap().is_none());
    });
    let parked = || r.shared.hdr32(off::DATA_WAITERS).load(Ordering::SeqCst) == 1;
    wait_until("the consumer parks", parked);
    let mut p = r.producer().unwrap();
    p.send(b"wake", 0).unwrap();
    woken.recv().unwrap();
    // Parked again (registered as a waiter) before the close wakes it.
    wait_until("the consumer parks again", parked);
    p.close();
    t.join().unwrap();
}

#[test]
fn recv_timeout_times_out() {
    let r = Ring::anonymous_builder()
        .config(cfg(4, 64))
        .create()
        .unwrap();
    let mut c = r.subscribe().unwrap();
    let t0 = Instant::now();
    assert!(matches!(
        c.recv_timeout(Duration::from_millis(30)),
        Err(RecvError::Timeout(_))
    ));
    assert!(t0.elapsed() >= Duration::from_millis(30));
}

#[test]
fn eventfd_becomes_readable_on_publish() {
    let r = Ring::anonymous_builder()
        .config(cfg(4, 64))
        .create()
        .unwrap();
    let mut c = r.subscribe().unwrap();
    let efd = c.eventfd().unwrap().try_clone_to_owned().unwrap();
    let poll = |ms: i32| {
        let mut fds = [rustix::event::PollFd::new(
            &efd,
            rustix::event::PollFlags::IN,
        )];
        let ts = rustix::event::Timespec {
            tv_sec: (ms / 1000) as _,
            tv_nsec: (ms % 1000) as i64 * 1_000_000,
        };
        rustix::event::poll(&mut fds, Some(&ts)).unwrap()
    };
    assert_eq!(poll(50), 0, "nothing published yet");
    let mut p = r.producer().unwrap();
    p.send(b"e", 0).unwrap();
    assert_eq!(poll(1000), 1);
    assert_eq!(&*c.try_recv().unwrap().unwrap(), b"e");
}

#[test]
fn corrupt_slot_is_a_typed_error_and_the_ring_keeps_flowing() {
    let r = Ring::anonymous_builder()
        .config(cfg(4, 64))
        .create()
        .unwrap();
    let mut c = r.subscribe().unwrap();
    let mut p = r.producer().unwrap();
    p.send(b"ok", 0).unwrap();
    // Hostile memory: damage the stamp of slot 0.
    let l = r.region().layout();
    r.shared
        .hdr64(l.slot(0) + off::SLOT_STAMP)
        .store(99, Ordering::SeqCst);
    match c.recv() {
        Err(RecvError::Corrupt {
            seq: 0,
            slot: 0,
            stamp: 99,
            ..
        }) => {}
        other => panic!("expected Corrupt, got {other:?}"),
    }
    p.send(b"next", 0).unwrap();
    r.shared
        .hdr32(l.slot(1) + off::SLOT_LEN)
        .store(1 << 20, Ordering::SeqCst);
    assert!(matches!(c.recv(), Err(RecvError::Corrupt { seq: 1, .. })));
    p.send(b"fine", 0).unwrap();
    assert_eq!(&*c.recv().unwrap().unwrap(), b"fine");
}

#[test]
fn schema_round_trips_and_oversize_is_refused() {
    let r = Ring::anonymous_builder()
        .config(cfg(4, 64))
        .create()
        .unwrap();
    assert_eq!(r.schema().unwrap(), None);
    let mut p = r.producer().unwrap();
    p.set_schema(b"schema-v1").unwrap();
    assert_eq!(r.schema().unwrap().as_deref(), Some(&b"schema-v1"[..]));
    p.set_schema(b"v2").unwrap();
    assert_eq!(r.schema().unwrap().as_deref(), Some(&b"v2"[..]));
    assert!(matches!(
        p.set_schema(&[0u8; 257]),
        Err(RingError::SchemaTooLarge { len: 257, max: 256 })
    ));
}

#[test]
fn tables_fill_up_with_a_clear_error() {
    let r = Ring::anonymous_builder()
        .config(RingConfig {
            max_subscribers: 2,
            max_members: 3,
            ..cfg(4, 64)
        })
        .create()
        .unwrap();
    let _a = r.subscribe().unwrap();
    let _b = r.join_queue(3).unwrap();
    assert!(matches!(
        r.subscribe(),
        Err(AttachError::TableFull {
            table: "subscriber",
            max: 2
        })
    ));
    let _c = r.join_queue(3).unwrap(); // same group: no new subscriber entry
    assert!(matches!(
        r.join_queue(3),
        Err(AttachError::TableFull {
            table: "member",
            max: 3
        })
    ));
    assert!(matches!(
        r.join_queue(0),
        Err(AttachError::InvalidArgument(_))
    ));
}

#[test]
fn named_region_is_0600_reopenable_and_validated() {
    use std::os::unix::fs::PermissionsExt;
    let name = unique("named");
    let r = Ring::builder(&name).config(cfg(4, 64)).create().unwrap();
    let path = crate::region::named_path(&name);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(matches!(
        Ring::builder(&name).config(cfg(4, 64)).create(),
        Err(OpenError::Region(RegionError::AlreadyExists(_)))
    ));
    let mut c = Ring::open(&name).unwrap().subscribe().unwrap();
    r.producer().unwrap().send(b"hi", 0).unwrap();
    assert_eq!(&*c.recv().unwrap().unwrap(), b"hi");

    // Damage copies of the file and check each is refused with its error.
    let bytes = std::fs::read(&path).unwrap();
    let check = |mutate: &dyn Fn(&mut Vec<u8>), want: &dyn Fn(&LayoutError) -> bool| {
        let bad = unique("bad");
        let mut b = bytes.clone();
        mutate(&mut b);
        std::fs::write(crate::region::named_path(&bad), &b).unwrap();
        let got = Ring::open(&bad);
        Ring::remove(&bad).unwrap();
        match got {
            Err(OpenError::Region(RegionError::Layout { source, .. })) if want(&source) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    check(&|b| b[0..8].copy_from_slice(b"NOTALLOY"), &|e| {
        matches!(e, LayoutError::BadMagic { .. })
    });
    check(&|b| b[8] = 9, &|e| {
        matches!(e, LayoutError::VersionMismatch { found: 9, .. })
    });
    check(&|b| b.truncate(3000), &|e| {
        matches!(e, LayoutError::Truncated { .. })
    });
    check(&|b| b.truncate(100), &|e| {
        matches!(e, LayoutError::Truncated { needed: 256, .. })
    });
    check(&|b| b[16] = 3, &|e| {
        matches!(e, LayoutError::InvalidLayout(_))
    });
    assert!(matches!(
        Ring::open("no-such-ring-here"),
        Err(OpenError::Region(RegionError::NotFound(_)))
    ));
    assert!(matches!(
        Ring::open("../etc/passwd"),
        Err(OpenError::Region(RegionError::InvalidName(_)))
    ));
    Ring::remove(&name).unwrap();
}

#[test]
fn memfd_is_sealed_against_resizing_and_shares_by_fd() {
    let r = Ring::anonymous_builder()
        .config(cfg(4, 64))
        .create()
        .unwrap();
    let fd = r.region().fd();
    let size = r.region().layout().total_size as u64;
    assert!(
        rustix::fs::ftruncate(fd, size / 2).is_err(),
        "shrink must fail"
    );
    assert!(
        rustix::fs::ftruncate(fd, size * 2).is_err(),
        "grow must fail"
    );
    // A second mapping from the fd sees the same ring.
    let other = Ring::open_fd(fd.as_fd().try_clone_to_owned().unwrap()).unwrap();
    let mut c = other.subscribe().unwrap();
    r.producer().unwrap().send(b"via fd", 0).unwrap();
    assert_eq!(&*c.recv().unwrap().unwrap(), b"via fd");
    // An unsealed memfd is refused.
    let raw = rustix::fs::memfd_create("plain", rustix::fs::MemfdFlags::ALLOW_SEALING).unwrap();
    rustix::fs::ftruncate(&raw, size).unwrap();
    assert!(matches!(
        Ring::open_fd(raw),
        Err(OpenError::Region(RegionError::NotSealed))
    ));
}

#[test]
fn leases_released_on_other_threads_in_any_order() {
    let r = Ring::anonymous_builder()
        .config(cfg(16, 64))
        .create()
        .unwrap();
    let mut c = r.subscribe().unwrap();
    let mut p = r.producer().unwrap();
    let total = 5_000u64;
    let t = std::thread::spawn(move || {
        for i in 0..total {
            p.send(&i.to_le_bytes(), 0).unwrap();
        }
        p.close();
    });
    let (tx, rx) = std::sync::mpsc::channel::<Vec<Lease>>();
    let dropper = std::thread::spawn(move || {
        for mut batch in rx {
            batch.reverse();
            drop(batch);
        }
    });
    let mut n = 0;
    let mut batch = Vec::new();
    while let Some(m) = c.recv().unwrap() {
        assert_eq!(u64::from_le_bytes(m[..8].try_into().unwrap()), n);
        n += 1;
        batch.push(m);
        if batch.len() == 5 {
            tx.send(std::mem::take(&mut batch)).unwrap();
        }
    }
    drop(batch);
    drop(tx);
    dropper.join().unwrap();
    t.join().unwrap();
    assert_eq!(n, total);
    let info = r.subscribers()[0];
    assert_eq!((info.claim, info.release), (total, total));
}

#[test]
fn consumer_threads_share_a_ring_handle() {
    let r = Arc::new(
        Ring::anonymous_builder()
            .config(cfg(4, 64))
            .create()
            .unwrap(),
    );
    let r2 = r.clone();
    let h = std::thread::spawn(move || r2.subscribe().map(|_| ()));
    h.join().unwrap().unwrap();
}
