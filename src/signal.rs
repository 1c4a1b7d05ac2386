//! Waiting without burning a core for ever: spin briefly, then park on a
//! shared futex in the mapping (LAYOUT.md §6), and an eventfd bridge for
//! epoll/tokio users.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicU32;
use std::time::Duration;

#[cfg(target_os = "linux")]
use rustix::event::{eventfd, EventfdFlags};
#[cfg(target_os = "linux")]
use rustix::thread::futex;

/// Longest single futex sleep: waits are re-checked at least this often, so
/// a lost wake-up (or a dead peer) delays a waiter but never hangs it.
pub const PARK_SLICE: Duration = Duration::from_millis(100);

/// How a waiting consumer or producer behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitStrategy {
    /// Spin briefly, then park on the futex (the default). Costs a wake
    /// system call on the peer only while this side is parked.
    #[default]
    Blocking,
    /// Never park: busy-poll with spin hints and `sched_yield`. Lowest
    /// latency, one core per waiter, zero system calls on the peer's side.
    Spin,
}

/// Parks on the shared futex `word` while it still holds `expected`, for at
/// most `timeout` (capped at [`PARK_SLICE`]). Spurious returns are fine:
/// callers always re-check their condition.
#[cfg(target_os = "linux")]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let t = timeout.min(PARK_SLICE);
    let ts = futex::Timespec {
        tv_sec: t.as_secs() as _,
        tv_nsec: t.subsec_nanos() as _,
    };
    // Shared futex (no PRIVATE flag): the waker is usually another process.
    // EAGAIN (value changed), EINTR and ETIMEDOUT all mean "re-check".
    let _ = futex::wait(word, futex::Flags::empty(), expected, Some(&ts));
}

/// Wakes every waiter parked on the shared futex `word`.
#[cfg(target_os = "linux")]
pub(crate) fn futex_wake_all(word: &AtomicU32) {
    let _ = futex::wake(word, futex::Flags::empty(), i32::MAX as u32);
}

// Other systems: the crate compiles (so a service that deploys on Linux builds
// on a developer's macOS laptop), but every ring entry point refuses with
// `RegionError::UnsupportedPlatform` before any of this can run. doc/README.md
// ("Other systems") sketches a real port: a wake-up primitive in place of the
// futex (`os_sync_wait_on_address` / `__ulock_wait` on macOS).
/// Other systems: a short sleep (never reached: rings refuse to open).
#[cfg(not(target_os = "linux"))]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    if word.load(std::sync::atomic::Ordering::Acquire) == expected {
        std::thread::sleep(timeout.min(Duration::from_millis(1)));
    }
}

/// Other systems: nothing to wake (never reached: rings refuse to open).
#[cfg(not(target_os = "linux"))]
pub(crate) fn futex_wake_all(_word: &AtomicU32) {}

/// A non-blocking, close-on-exec eventfd in counter mode.
#[derive(Debug)]
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    /// Creates an eventfd with counter 0.
    pub(crate) fn new() -> std::io::Result<EventFd> {
        #[cfg(not(target_os = "linux"))]
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "eventfd needs Linux",
        ));
        #[cfg(target_os = "linux")]
        Ok(EventFd(eventfd(
            0,
            EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK,
        )?))
    }

    /// Adds 1 to the counter, making the fd readable.
    pub(crate) fn notify(&self) {
        // EAGAIN only when the counter would overflow: it is readable anyway.
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
