//! Peer liveness (LAYOUT.md §11.1): a process is identified by its pid
//! plus its start time, read from `/proc`; heartbeats in the mapping,
//! refreshed by a background thread while a producer or consumer is
//! attached, are only a hint for inspection tools ("stalled").

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::Shared;
use crate::sync::Ordering;

/// How often attached participants refresh their heartbeats.
pub const HEARTBEAT_PERIOD: Duration = Duration::from_millis(100);
/// A live participant whose heartbeat is older than this is shown as
/// *stalled* (stopped, traced or starved). Never a proof of death.
pub const STALE_AFTER: Duration = Duration::from_secs(3);
/// Longest interval between two producer checks of a waiting consumer.
pub const PRODUCER_CHECK: Duration = Duration::from_millis(50);

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    /// No such process, or a zombie (`Z`) or dead (`X`) one.
    Gone,
    /// A process that has not exited (running, sleeping, stopped, …),
    /// started `start` clock ticks after boot (field 22, `starttime`).
    Running {
        /// `starttime`, in clock ticks since boot.
        start: u64,
    },
    /// `/proc` could not be read or parsed (e.g. `EACCES`): assume alive.
    Unknown,
}

/// Reads `/proc/<pid>/stat`.
pub fn probe(pid: u32) -> ProcState {
    if pid == 0 || pid > i32::MAX as u32 {
        return ProcState::Gone; // no process can have this id
    }
    match std::fs::read(format!("/proc/{pid}/stat")) {
        // ESRCH: the process exited between open and read.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ProcState::Gone,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error()) => {
            ProcState::Gone
        }
        Err(_) => ProcState::Unknown,
        Ok(stat) => parse_stat(&stat),
    }
}

/// Parses the contents of a `/proc/<pid>/stat` file: the state is the
/// first field after the last `)` (the command name before it may itself
/// contain parentheses and spaces), `starttime` the 20th.
pub fn parse_stat(stat: &[u8]) -> ProcState {
    let Some(close) = stat.iter().rposition(|&b| b == b')') else {
        return ProcState::Unknown;
    };
    let mut fields = stat[close + 1..]
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    match fields.next() {
        Some(b"Z") | Some(b"X") => return ProcState::Gone,
        Some(_) => {}
        None => return ProcState::Unknown,
    }
    // Fields 4..=21 come between the state (3) and starttime (22).
    match fields
        .nth(18)
        .and_then(|f| std::str::from_utf8(f).ok())
        .and_then(|f| f.parse::<u64>().ok())
    {
        Some(start) => ProcState::Running { start },
        None => ProcState::Unknown,
    }
}

/// The low 32 bits of this process's start time, as recorded in the
/// identity words; 0 ("unknown") if `/proc/self/stat` cannot be read.
pub fn own_start() -> u32 {
    static START: OnceLock<u32> = OnceLock::new();
    *START.get_or_init(|| match probe(std::process::id()) {
        ProcState::Running { start } => start as u32,
        _ => 0,
    })
}

/// The u64 identity word of LAYOUT.md §11.1: `pid | start << 32`.
pub const fn identity(pid: u32, start: u32) -> u64 {
    pid as u64 | (start as u64) << 32
}

/// The pid half of an identity word.
pub const fn identity_pid(word: u64) -> u32 {
    word as u32
}

/// The start-time half of an identity word.
pub const fn identity_start(word: u64) -> u32 {
    (word >> 32) as u32
}

/// Whether process `pid` is gone: no `/proc/<pid>/stat`, or a zombie.
/// Any other error reading it counts as alive. Without a recorded start
/// time this cannot tell a reused pid; prefer [`is_dead`].
#[cfg(test)]
pub fn process_dead(pid: u32) -> bool {
    probe(pid) == ProcState::Gone
}

/// LAYOUT.md §11.1: the participant recorded as `(pid, start)` is dead
/// when its process is gone, a zombie, or the pid now names a process
/// with another start time (pid reuse). `start == 0` means "unknown": the
/// pid alone decides. A process that is stopped, traced or starved is
/// alive, however old its heartbeat.
pub fn is_dead(pid: u32, start: u32) -> bool {
    match probe(pid) {
        ProcState::Gone => true,
        ProcState::Running { start: actual } => start != 0 && actual as u32 != start,
        ProcState::Unknown => false,
    }
}

/// [`is_dead`] for an identity word.
pub fn identity_dead(word: u64) -> bool {
    is_dead(identity_pid(word), identity_start(word))
}

/// Whether a heartbeat is older than [`STALE_AFTER`] at `now_ns` (both
/// `CLOCK_MONOTONIC`): a hint that a live participant is not running.
pub fn stalled(heartbeat_ns: u64, now_ns: u64) -> bool {
    now_ns.saturating_sub(heartbeat_ns) > STALE_AFTER.as_nanos() as u64
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
    fn pid_reuse_is_dead_and_a_stale_heartbeat_is_not() {
        let me = std::process::id();
        let start = own_start();
        assert_ne!(start, 0, "/proc/self/stat has a start time");
        assert!(!is_dead(me, start));
        assert!(!is_dead(me, 0), "unknown start: the pid decides");
        // Our pid with another start time: the recorded process is gone
        // and the pid was reused (by us).
        assert!(is_dead(me, start.wrapping_add(1)));
        assert!(identity_dead(identity(me, start ^ 0x8000_0000)));
        assert!(!identity_dead(identity(me, start)));
        assert!(is_dead(0, 0));
        // Heartbeats only make a hint.
        let now = 100 * 1_000_000_000;
        assert!(!stalled(now - 1_000_000_000, now));
        assert!(stalled(now - 4_000_000_000, now));
        assert!(
            !stalled(now + 1, now),
            "a heartbeat from another clock read later"
        );
    }

    fn start_of(pid: u32) -> u32 {
        match probe(pid) {
            ProcState::Running { start } => start as u32,
            other => panic!("pid {pid}: {other:?}"),
        }
    }

    /// A producer seat, or the table lock, is taken over only from a dead
    /// holder: never from a live one with a stale heartbeat, always from a
    /// reused pid (the recorded start time differs).
    #[test]
    fn takeover_needs_death_not_a_stale_heartbeat() {
        use crate::layout::off;
        use crate::ring::{Ring, RingConfig};
        let ring = Ring::anonymous_builder()
            .config(RingConfig {
                slot_count: 4,
                slot_size: 64,
                ..Default::default()
            })
            .create()
            .unwrap();
        let sh = &*ring.shared;
        let ppid = rustix::process::getppid().unwrap().as_raw_nonzero().get() as u32;
        let parent = identity(ppid, start_of(ppid));
        sh.hdr64(off::PRODUCER_PID).store(parent, Ordering::SeqCst);
        sh.hdr64(off::PRODUCER_HEARTBEAT).store(1, Ordering::SeqCst);
        assert!(matches!(
            ring.producer(),
            Err(crate::ring::AttachError::ProducerExists { pid }) if pid == ppid
        ));
        assert!(ring.producer_alive());
        // The same pid, another start time: the pid was reused.
        sh.hdr64(off::PRODUCER_PID)
            .store(parent + (1 << 32), Ordering::SeqCst);
        assert!(!ring.producer_alive());
        let p = ring.producer().expect("takeover from a reused pid");
        assert_eq!(
            sh.hdr64(off::PRODUCER_PID).load(Ordering::SeqCst),
            sh.ident.word()
        );
        drop(p);
        assert_eq!(sh.hdr64(off::PRODUCER_PID).load(Ordering::SeqCst), 0);

        // The table lock recorded for our pid with another start time is a
        // dead process's: joining takes it over.
        let me = std::process::id();
        sh.hdr64(off::TABLE_LOCK)
            .store(identity(me, own_start().wrapping_add(1)), Ordering::SeqCst);
        drop(ring.subscribe().expect("join past a reused pid's lock"));
        assert_eq!(sh.hdr64(off::TABLE_LOCK).load(Ordering::SeqCst), 0);
    }

    #[test]
    fn stat_lines_are_parsed_after_the_last_parenthesis() {
        let line = |comm: &str, state: &str| {
            let mut f = vec!["4242".to_string(), format!("({comm})"), state.to_string()];
            f.extend((4..22).map(|i| i.to_string()));
            f.push("123456789012".into()); // starttime
            f.extend((23..53).map(|i| i.to_string()));
            f.join(" ") + "\n"
        };
        for comm in ["sleep", "a b", "x) S 1 (y", ")", ""] {
            assert_eq!(
                parse_stat(line(comm, "S").as_bytes()),
                ProcState::Running {
                    start: 123456789012
                },
                "comm {comm:?}"
            );
            assert_eq!(
                parse_stat(line(comm, "T").as_bytes()),
                ProcState::Running {
                    start: 123456789012
                }
            );
            assert_eq!(parse_stat(line(comm, "Z").as_bytes()), ProcState::Gone);
            assert_eq!(parse_stat(line(comm, "X").as_bytes()), ProcState::Gone);
        }
        assert_eq!(parse_stat(b"garbage"), ProcState::Unknown);
        assert_eq!(parse_stat(b"1 (x) S 2 3"), ProcState::Unknown);
    }

    #[test]
    fn a_stopped_process_is_alive() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let pid = child.id();
        let ProcState::Running { start } = probe(pid) else {
            panic!("child not running");
        };
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::STOP,
        )
        .unwrap();
        let t0 = std::time::Instant::now();
        while !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap()
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
        {
            assert!(t0.elapsed() < Duration::from_secs(5), "child never stopped");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!is_dead(pid, start as u32), "stopped is alive");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(is_dead(pid, start as u32));
    }
}
