//! Huge-page rings and pre-faulting (issue #14 §5, doc/README.md "Huge
//! pages, pre-faulting and NUMA"). The huge-page paths need pages reserved
//! in `/proc/sys/vm/nr_hugepages` (and, for a named ring, a hugetlbfs mount
//! named by `ALLOY_TEST_HUGETLBFS`); without them the tests check the
//! refusal and the fallback instead and say so.

use std::os::fd::AsFd;

use alloy_shm::region::{HugePages, RegionError};
use alloy_shm::ring::{OpenError, Ring};

fn free_huge_pages() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:"))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// A little over 4 MiB: two 2 MiB pages and a bit, so the file is rounded.
fn builder(b: alloy_shm::ring::RingBuilder) -> alloy_shm::ring::RingBuilder {
    b.slot_count(16).slot_size(256 * 1024)
}

fn round_trip(tx: &Ring, rx: &Ring) {
    let mut c = rx.subscribe().unwrap();
    let mut p = tx.producer_builder().create().unwrap();
    p.send(b"huge", 0).unwrap();
    assert_eq!(&*c.try_recv().unwrap().unwrap(), b"huge");
}

fn is_huge(ring: &Ring) -> Option<u64> {
    let st = rustix::fs::fstatfs(ring.region().fd()).unwrap();
    #[allow(clippy::unnecessary_cast)]
    (st.f_type as i64 == 0x9584_58f6).then_some(st.f_bsize as u64)
}

#[test]
fn anonymous_huge_pages_or_a_clear_refusal() {
    let free = free_huge_pages();
    let r = builder(Ring::anonymous_builder())
        .huge_pages(HugePages::Require)
        .prefault(true)
        .create();
    if free < 3 {
        let err = r.unwrap_err();
        assert!(
            matches!(err, OpenError::Region(RegionError::HugePages(_)))
                && err.to_string().contains("/proc/sys/vm/nr_hugepages"),
            "{err}"
        );
        let ring = builder(Ring::anonymous_builder())
            .huge_pages(HugePages::Prefer)
            .create()
            .expect("Prefer falls back to normal pages");
        assert_eq!(is_huge(&ring), None);
        eprintln!(
            "no huge pages reserved ({free} free): refusal and fallback checked, huge path not"
        );
        return;
    }
    let ring = r.unwrap();
    let page = is_huge(&ring).expect("Require gave a ring not on hugetlbfs");
    let size = rustix::fs::fstat(ring.region().fd()).unwrap().st_size as u64;
    assert_eq!(size % page, 0);
    assert!(size >= ring.region().layout().total_size as u64);
    let fd = ring.region().fd().as_fd().try_clone_to_owned().unwrap();
    let peer = Ring::open_fd(fd).unwrap();
    round_trip(&ring, &peer);
}

#[test]
fn named_huge_pages_need_hugetlbfs() {
    let tmp = std::env::temp_dir().join(format!("alloy-huge-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let err = builder(Ring::builder("huge"))
        .dir(&tmp)
        .huge_pages(HugePages::Require)
        .create()
        .unwrap_err();
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(err.to_string().contains("hugetlbfs"), "{err}");
    let Some(dir) = std::env::var_os("ALLOY_TEST_HUGETLBFS").filter(|_| free_huge_pages() >= 3)
    else {
        eprintln!("set ALLOY_TEST_HUGETLBFS to a hugetlbfs mount with >= 3 free huge pages to test named huge rings");
        return;
    };
    let name = format!("alloy-rstest-huge-{}", std::process::id());
    let ring = builder(Ring::builder(&name))
        .dir(&dir)
        .huge_pages(HugePages::Require)
        .prefault(true)
        .create()
        .unwrap();
    let peer = Ring::builder(&name).dir(&dir).prefault(true).open();
    let _ = alloy_shm::region::Region::remove_named_in(dir.as_ref(), &name);
    let peer = peer.unwrap();
    assert!(is_huge(&peer).is_some());
    round_trip(&ring, &peer);
}

fn minor_faults() -> i64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the rusage it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    assert_eq!(rc, 0);
    // SAFETY: initialised by the successful call above.
    unsafe { ru.assume_init() }.ru_minflt
}

/// Reads one byte of every 4 KiB page of the ring's mapping; returns the
/// minor faults that took.
fn touch(ring: &Ring) -> i64 {
    let base = ring.region().read_base();
    let len = ring.region().layout().total_size;
    let before = minor_faults();
    let mut sum = 0u8;
    for i in (0..len).step_by(4096) {
        // SAFETY: `i` is inside the mapping of `total_size` bytes; a
        // volatile read of one byte, raced by no writer in this test.
        sum = sum.wrapping_add(unsafe { std::ptr::read_volatile(base.add(i)) });
    }
    std::hint::black_box(sum);
    minor_faults() - before
}

#[test]
fn prefault_populates_the_mapping_at_create() {
    let plain = builder(Ring::anonymous_builder()).create().unwrap();
    let warm = builder(Ring::anonymous_builder())
        .prefault(true)
        .create()
        .unwrap();
    let pages = (plain.region().layout().total_size / 4096) as i64;
    let (cold, hot) = (touch(&plain), touch(&warm));
    eprintln!("minor faults over {pages} pages: {cold} without prefault, {hot} with");
    assert!(
        cold >= pages / 2 && hot <= pages / 8,
        "minor faults over {pages} pages: {cold} without prefault, {hot} with"
    );
}
