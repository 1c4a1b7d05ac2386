//! Peer liveness (LAYOUT.md §11.1): pid checks through `/proc` plus
//! heartbeats in the mapping, refreshed by a background thread while a
//! producer or consumer is attached.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use crate::sync::Ordering;

/// How often attached participants refresh their heartbeats.
pub const HEARTBEAT_PERIOD: Duration = Duration::from_millis(100);
/// A heartbeat older than this marks its owner dead (catches pid reuse).
pub const STALE_AFTER: Duration = Duration::from_secs(3);
/// Longest interval between two producer checks of a waiting consumer.
pub const PRODUCER_CHECK: Duration = Duration::from_millis(50);

/// Whether process `pid` is gone: no `/proc/<pid>/stat`, or a zombie.
/// Any other error reading it counts as alive.
pub fn process_dead(pid: u32) -> bool {
    if pid == 0 {
        return true;
    }
    match std::fs::read(format!("/proc/{pid}/stat")) {
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        Ok(stat) => {
            // The state is the first field after the last ')' (the command
            // name may itself contain parentheses and spaces).
            let after = stat
                .iter()
                .rposition(|&b| b == b')')
                .map(|i| &stat[i + 1..])
                .unwrap_or(&[]);
            matches!(
                after.iter().find(|b| !b.is_ascii_whitespace()),
                Some(b'Z') | Some(b'X')
            )
        }
    }
}

/// LAYOUT.md §11.1: dead when the process is gone or its heartbeat is stale.
pub fn is_dead(pid: u32, heartbeat_ns: u64, now_ns: u64) -> bool {
    process_dead(pid) || now_ns.saturating_sub(heartbeat_ns) > STALE_AFTER.as_nanos() as u64
}

/// Refreshes a set of heartbeat words until dropped.
pub(crate) struct Heartbeat {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    /// Starts refreshing the u64 words at `offsets` every [`HEARTBEAT_PERIOD`].
    pub(crate) fn start(shared: Arc<Shared>, offsets: Vec<usize>) -> Heartbeat {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("alloy-heartbeat".into())
            .spawn(move || {
                while !s.load(std::sync::atomic::Ordering::Relaxed) {
                    let now = shared.ident.now_ns();
                    for &at in &offsets {
                        shared.hdr64(at).store(now, Ordering::Relaxed);
                    }
                    std::thread::park_timeout(HEARTBEAT_PERIOD);
                }
            });
        let thread = spawned
            .inspect_err(|e| {
                // Without the thread peers may judge us dead after
                // STALE_AFTER while we idle; say so rather than fail.
                tracing::warn!(error = %e, "could not start the heartbeat thread");
            })
            .ok();
        Heartbeat { stop, thread }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        // Stop and join, so no heartbeat lands in an entry after we free it.
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_reaped_or_zombie_children_are_dead() {
        assert!(!process_dead(std::process::id()));
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(!process_dead(pid));
        child.kill().unwrap();
        // Killed but not yet reaped: a zombie, which must count as dead.
        let t0 = std::time::Instant::now();
        while !process_dead(pid) {
            assert!(t0.elapsed() < Duration::from_secs(5), "zombie not detected");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.wait().unwrap();
        assert!(process_dead(pid), "reaped child");
    }

    #[test]
    fn stale_heartbeat_is_dead() {
        let me = std::process::id();
        let now = 100 * 1_000_000_000;
        assert!(!is_dead(me, now - 1_000_000_000, now));
        assert!(is_dead(me, now - 4_000_000_000, now));
        assert!(is_dead(0, now, now));
    }
}
