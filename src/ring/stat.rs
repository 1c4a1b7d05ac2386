//! Read-only inspection of a ring: the snapshot behind `alloy stat`,
//! `alloy watch` and `alloy ls` (doc/README.md, "Inspection").
//!
//! [`RingView`] maps a named ring **read-only** (`O_RDONLY`, `PROT_READ`):
//! looking at a ring can never take a producer or consumer entry, bump a
//! counter or disturb a futex. [`Ring::stat`] takes the same snapshot
//! through a ring this process already has open. Either way the snapshot is
//! read word by word while peers keep writing, so it is a diagnostic, not a
//! consistent cut.
//!
//! ```
//! use alloy_shm::ring::{Ring, RingConfig};
//!
//! let ring = Ring::create_anonymous(&RingConfig { slot_count: 4, slot_size: 64, ..Default::default() })?;
//! let consumer = ring.subscribe()?;
//! let mut producer = ring.producer()?;
//! producer.send(b"one", 0)?;
//! let stat = ring.stat();
//! assert_eq!(stat.published, 1);
//! assert_eq!(stat.consumers[0].lag, 1); // published, not yet received
//! assert_eq!(stat.slots_in_use, 1);
//! # drop(consumer);
//! # Ok::<(), alloy_shm::ring::RingError>(())
//! ```

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};
use serde::Serialize;

use super::liveness::is_dead;
use super::{monotonic_ns, Ring};
use crate::layout::{self, kind, off, state, Layout, LayoutError};
use crate::region::{self, RegionError};

/// Loads of the words of a mapped region, whichever way it is mapped.
trait Words {
    fn layout(&self) -> &Layout;
    fn u32(&self, at: usize) -> u32;
    fn u64(&self, at: usize) -> u64;
}

impl Words for Ring {
    fn layout(&self) -> &Layout {
        &self.shared.layout
    }
    fn u32(&self, at: usize) -> u32 {
        // Relaxed: every field is read independently; the Acquire fence
        // in `snapshot` orders the table reads after `published`.
        self.shared.hdr32(at).load(Ordering::Relaxed)
    }
    fn u64(&self, at: usize) -> u64 {
        self.shared.hdr64(at).load(Ordering::Relaxed)
    }
}

/// A named ring mapped read-only, for inspection. It holds no entry in
/// the ring and writes nothing to it.
pub struct RingView {
    map: MmapRaw,
    layout: Layout,
    name: String,
}

impl std::fmt::Debug for RingView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingView")
            .field("name", &self.name)
            .field("config", &self.layout.config)
            .finish()
    }
}

impl RingView {
    /// Opens `/dev/shm/<name>` read-only. Unlike [`Ring::open`] it accepts
    /// a ring owned by another user when the file's mode lets us read it.
    pub fn open(name: &str) -> Result<RingView, RegionError> {
        region::validate_name(name)?;
        Self::open_path(&region::named_path(name), name)
    }

    /// Opens the region file at `path` read-only; `name` labels it in the
    /// snapshot and in errors.
    pub fn open_path(path: &Path, name: &str) -> Result<RingView, RegionError> {
        let io = |what: &str| {
            let what = format!("{what} {}", path.display());
            move |source| RegionError::Io { what, source }
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => RegionError::NotFound(name.to_string()),
                _ => io("opening")(e),
            })?;
        let meta = file.metadata().map_err(io("fstat"))?;
        let lerr = |source| RegionError::Layout {
            name: name.to_string(),
            source,
        };
        if !meta.file_type().is_file() {
            return Err(lerr(LayoutError::InvalidLayout(
                "not a regular file".into(),
            )));
        }
        let mut line0 = [0u8; 64];
        read_prefix(&mut file, &mut line0).map_err(io("reading"))?;
        let layout = Layout::parse(&line0, meta.len()).map_err(lerr)?;
        let map = MmapOptions::new()
            .len(layout.total_size)
            .map_raw_read_only(&file)
            .map_err(io("mapping"))?;
        Ok(RingView {
            map,
            layout,
            name: name.to_string(),
        })
    }

    /// The ring's layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// A snapshot of the ring's state now.
    pub fn stat(&self) -> RingStat {
        snapshot(self, &self.name)
    }

    fn at<T>(&self, at: usize, size: usize) -> *const T {
        assert!(at % size == 0 && at + size <= self.layout.total_size);
        // SAFETY: in bounds of the mapping (asserted; the mapping is
        // `total_size` bytes long).
        unsafe { self.map.as_ptr().add(at) as *const T }
    }
}

impl Words for RingView {
    fn layout(&self) -> &Layout {
        &self.layout
    }
    fn u32(&self, at: usize) -> u32 {
        // SAFETY: aligned and in bounds (checked by `at`); the mapping lives
        // as long as `self`. Other processes write these words atomically,
        // so we read them atomically too; a Relaxed load of a word no larger
        // than the platform's native atomics is allowed on read-only memory
        // (std::sync::atomic, "Atomic accesses to read-only memory").
        unsafe { (*self.at::<AtomicU32>(at, 4)).load(Ordering::Relaxed) }
    }
    fn u64(&self, at: usize) -> u64 {
        // SAFETY: as for `u32`.
        unsafe { (*self.at::<AtomicU64>(at, 8)).load(Ordering::Relaxed) }
    }
}

/// Reads as much of `buf` as the file holds (a short file leaves zeros).
fn read_prefix(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Ring {
    /// A snapshot of this ring's state (see [`RingStat`]). Reading it
    /// changes nothing in the ring.
    pub fn stat(&self) -> RingStat {
        snapshot(self, self.shared.region.name().unwrap_or(""))
    }
}

/// The state of a ring at one instant, as `alloy stat --json` prints it.
/// The JSON field names are defined in doc/README.md ("Inspection") and
/// shared with `alloy-go stat --json` (Go: `ring.Stat`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RingStat {
    /// Ring name ("" for an anonymous ring).
    pub name: String,
    /// Layout version (1).
    pub version: u32,
    /// Number of slots `N`.
    pub slot_count: u32,
    /// Payload bytes per slot.
    pub slot_size: u32,
    /// Size of the region in bytes.
    pub total_size: u64,
    /// Subscriber table entries.
    pub max_subscribers: u32,
    /// Member table entries.
    pub max_members: u32,
    /// Pid of the process that created the region.
    pub creator_pid: u32,
    /// Messages published so far, which is also the sequence number the
    /// producer gives its next message.
    pub published: u64,
    /// Whether the producer closed the stream.
    pub closed: bool,
    /// Pid of the attached producer (0: none).
    pub producer_pid: u32,
    /// Whether that producer is alive (LAYOUT.md §11.1); false without one.
    pub producer_alive: bool,
    /// Slots the producer cannot reuse yet: `published` minus the slowest
    /// subscriber's `release` cursor (0 without subscribers), at most `N`.
    pub slots_in_use: u64,
    /// `slots_in_use / slot_count`, from 0 (empty) to 1 (full).
    pub fill: f64,
    /// Every subscriber entry that is not FREE.
    pub consumers: Vec<ConsumerStat>,
    /// Milliseconds between the previous sample and this one; `None`
    /// (JSON `null`) for a single sample.
    pub interval_ms: Option<f64>,
    /// Messages published per second since the previous sample.
    pub messages_per_s: Option<f64>,
    /// CLOCK_MONOTONIC of the sample, for rates (not printed).
    #[serde(skip)]
    pub sampled_ns: u64,
}

/// One subscriber entry: a broadcast consumer or a whole work-queue group.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConsumerStat {
    /// Subscriber entry index.
    pub index: u32,
    /// `"joining"` or `"active"`.
    pub state: &'static str,
    /// `"broadcast"`, `"queue"`, or `"unknown"` for a damaged entry.
    pub kind: &'static str,
    /// Work-queue group id (0 for broadcast).
    pub group: u32,
    /// Pid that created the entry.
    pub owner_pid: u32,
    /// The attached member handles (one for a broadcast consumer).
    pub members: Vec<MemberStat>,
    /// Whether some member is alive (for a JOINING entry: its owner).
    pub alive: bool,
    /// `claim`: the next sequence number this consumer will receive.
    pub cursor: u64,
    /// `release`: every sequence below it has been released.
    pub released: u64,
    /// `published - cursor`: messages published but not yet received.
    pub lag: u64,
    /// Messages received and not yet released (leases held): the
    /// sequences in `[released, cursor)` whose done word is not marked.
    pub leases_held: u64,
    /// Messages released per second since the previous sample.
    pub consumed_per_s: Option<f64>,
}

/// One attached consumer handle of a subscriber.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MemberStat {
    /// Member entry index.
    pub index: u32,
    /// The member's process.
    pub pid: u32,
    /// Whether it is alive (LAYOUT.md §11.1).
    pub alive: bool,
}

fn kind_name(k: u32) -> &'static str {
    match k {
        kind::BROADCAST => "broadcast",
        kind::QUEUE => "queue",
        _ => "unknown",
    }
}

fn snapshot(w: &impl Words, name: &str) -> RingStat {
    let l = *w.layout();
    let c = l.config;
    let n = c.slot_count as u64;
    let now = monotonic_ns();
    // The pid before its heartbeat (LAYOUT.md §11.1), so a fresh producer
    // is never judged by its predecessor's stale heartbeat.
    let producer_pid = w.u32(off::PRODUCER_PID);
    let producer_hb = w.u64(off::PRODUCER_HEARTBEAT);
    let published = w.u64(off::PUBLISHED);
    // Pairs with the releasers' AcqRel CAS: cursors read below are at
    // least as new as what the `published` value above implies.
    fence(Ordering::Acquire);
    let members: Vec<(u32, u32, MemberStat)> = (0..c.max_members as usize)
        .filter_map(|j| {
            let b = l.member(j);
            if w.u32(b + off::MEM_STATE) != state::ACTIVE {
                return None;
            }
            let pid = w.u32(b + off::MEM_PID);
            let hb = w.u64(b + off::MEM_HEARTBEAT);
            let sub = w.u32(b + off::MEM_SUBSCRIBER);
            Some((
                sub,
                j as u32,
                MemberStat {
                    index: j as u32,
                    pid,
                    alive: !is_dead(pid, hb, now),
                },
            ))
        })
        .collect();
    let mut consumers = Vec::new();
    let mut slowest = None::<u64>;
    for k in 0..c.max_subscribers as usize {
        let b = l.sub(k);
        let st = w.u32(b + off::SUB_STATE);
        if st != state::JOINING && st != state::ACTIVE {
            continue;
        }
        let cursor = w.u64(b + off::SUB_CLAIM);
        let released = w.u64(b + off::SUB_RELEASE);
        slowest = Some(slowest.map_or(released, |s| s.min(released)));
        // A reader holds the sequences it claimed and has not released;
        // out-of-order releases mark done[k][s mod N] = s + 1 before the
        // release cursor moves past them (LAYOUT.md §5.2). At most N
        // sequences can be outstanding, which also bounds a damaged entry.
        let outstanding = cursor.saturating_sub(released).min(n);
        let leases_held = (released..released + outstanding)
            .filter(|&s| w.u64(l.done(k, (s % n) as usize)) != s + 1)
            .count() as u64;
        let mine: Vec<MemberStat> = members
            .iter()
            .filter(|(sub, _, _)| *sub as usize == k)
            .map(|(_, _, m)| m.clone())
            .collect();
        let owner_pid = w.u32(b + off::SUB_OWNER_PID);
        let alive = if st == state::JOINING {
            !is_dead(owner_pid, w.u64(b + off::SUB_HEARTBEAT), now)
        } else {
            mine.iter().any(|m| m.alive)
        };
        consumers.push(ConsumerStat {
            index: k as u32,
            state: if st == state::JOINING {
                "joining"
            } else {
                "active"
            },
            kind: kind_name(w.u32(b + off::SUB_KIND)),
            group: w.u32(b + off::SUB_GROUP),
            owner_pid,
            members: mine,
            alive,
            cursor,
            released,
            lag: published.saturating_sub(cursor),
            leases_held,
            consumed_per_s: None,
        });
    }
    let slots_in_use = slowest.map_or(0, |s| published.saturating_sub(s).min(n));
    RingStat {
        name: name.to_string(),
        version: w.u32(off::VERSION),
        slot_count: c.slot_count,
        slot_size: c.slot_size,
        total_size: l.total_size as u64,
        max_subscribers: c.max_subscribers,
        max_members: c.max_members,
        creator_pid: w.u32(off::CREATOR_PID),
        published,
        closed: w.u32(off::CLOSED) == 1,
        producer_pid,
        producer_alive: producer_pid != 0 && !is_dead(producer_pid, producer_hb, now),
        slots_in_use,
        fill: slots_in_use as f64 / n as f64,
        consumers,
        interval_ms: None,
        messages_per_s: None,
        sampled_ns: now,
    }
}

impl RingStat {
    /// Adds the rates since `prev`, an earlier sample of the same ring:
    /// messages published per second and, for each consumer that was
    /// already there (same entry, kind and group), messages released per
    /// second.
    pub fn with_rates(mut self, prev: &RingStat) -> RingStat {
        let dt_ns = self.sampled_ns.saturating_sub(prev.sampled_ns);
        if dt_ns == 0 {
            return self;
        }
        let secs = dt_ns as f64 / 1e9;
        self.interval_ms = Some(dt_ns as f64 / 1e6);
        self.messages_per_s = Some(self.published.saturating_sub(prev.published) as f64 / secs);
        for c in &mut self.consumers {
            c.consumed_per_s = prev
                .consumers
                .iter()
                .find(|p| {
                    p.index == c.index
                        && p.kind == c.kind
                        && p.group == c.group
                        && p.released <= c.released
                })
                .map(|p| (c.released - p.released) as f64 / secs);
        }
        self
    }

    /// The human-readable form `alloy stat` prints without `--json`.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let rate = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.1}/s"));
        let name = if self.name.is_empty() {
            "(anonymous)"
        } else {
            &self.name
        };
        let _ = writeln!(
            s,
            "ring {name}: layout v{}, {} slots x {} bytes ({} bytes total)",
            self.version, self.slot_count, self.slot_size, self.total_size
        );
        let producer = match (self.producer_pid, self.producer_alive) {
            (0, _) => "none".to_string(),
            (pid, true) => format!("pid {pid} (alive)"),
            (pid, false) => format!("pid {pid} (DEAD)"),
        };
        let _ = writeln!(
            s,
            "producer: {producer}, published {}{}, {}",
            self.published,
            if self.closed { " (closed)" } else { "" },
            rate(self.messages_per_s)
        );
        let _ = writeln!(
            s,
            "fill: {}/{} slots in use ({:.0}%)",
            self.slots_in_use,
            self.slot_count,
            self.fill * 100.0
        );
        let _ = writeln!(
            s,
            "consumers: {} of {} entries",
            self.consumers.len(),
            self.max_subscribers
        );
        if !self.consumers.is_empty() {
            let _ = writeln!(
                s,
                "  {:>3} {:<9} {:>5} {:<7} {:<14} {:>10} {:>8} {:>6} {:>10}",
                "#", "kind", "group", "state", "pids", "cursor", "lag", "leases", "rate"
            );
        }
        for c in &self.consumers {
            let pids = if c.members.is_empty() {
                format!("({})", c.owner_pid)
            } else {
                c.members
                    .iter()
                    .map(|m| format!("{}{}", m.pid, if m.alive { "" } else { "!" }))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let st = if c.alive { c.state } else { "DEAD" };
            let _ = writeln!(
                s,
                "  {:>3} {:<9} {:>5} {:<7} {:<14} {:>10} {:>8} {:>6} {:>10}",
                c.index,
                c.kind,
                c.group,
                st,
                pids,
                c.cursor,
                c.lag,
                c.leases_held,
                rate(c.consumed_per_s)
            );
        }
        s
    }
}

/// One file under the shared-memory directory that carries the Alloy magic,
/// as `alloy ls --json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RingListing {
    /// File name (the ring name).
    pub name: String,
    /// Layout version from the header.
    pub version: u32,
    /// File size in bytes.
    pub size: u64,
    /// Slots, from the header (0 when `error` is set and it was unreadable).
    pub slot_count: u32,
    /// Payload bytes per slot, from the header.
    pub slot_size: u32,
    /// Pid of the attached producer (0: none).
    pub producer_pid: u32,
    /// Whether that producer is alive.
    pub producer_alive: bool,
    /// Why the ring cannot be used or read (`None`: a valid version-1 ring).
    pub error: Option<String>,
}

/// Lists the Alloy rings in `dir` (normally [`region::SHM_DIR`]): every
/// regular file whose first eight bytes are the magic, sorted by name.
/// Only each file's 256-byte header is read. Files without the magic are
/// skipped silently; files that cannot be read are listed with `error` set.
pub fn list_rings(dir: &Path) -> Result<Vec<RingListing>, RegionError> {
    let rd = std::fs::read_dir(dir).map_err(|source| RegionError::Io {
        what: format!("listing {}", dir.display()),
        source,
    })?;
    let mut out = Vec::new();
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        match ent.file_type() {
            Ok(t) if t.is_file() => {}
            _ => continue,
        }
        if let Some(l) = list_one(&ent.path(), name) {
            out.push(l);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn list_one(path: &PathBuf, name: String) -> Option<RingListing> {
    let mut entry = RingListing {
        name,
        version: 0,
        size: 0,
        slot_count: 0,
        slot_size: 0,
        producer_pid: 0,
        producer_alive: false,
        error: None,
    };
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .and_then(|f| Ok((f.metadata()?.len(), f)));
    let (size, mut file) = match opened {
        Ok(x) => x,
        Err(e) => {
            entry.error = Some(format!("cannot read: {e}"));
            return Some(entry);
        }
    };
    entry.size = size;
    let mut hdr = [0u8; layout::HEADER_SIZE];
    match read_prefix(&mut file, &mut hdr) {
        Ok(n) if n >= 8 => {}
        Ok(_) => return None,
        Err(e) => {
            entry.error = Some(format!("cannot read: {e}"));
            return Some(entry);
        }
    }
    if layout::get_u64(&hdr, off::MAGIC) != layout::MAGIC {
        return None;
    }
    entry.version = layout::get_u32(&hdr, off::VERSION);
    entry.slot_count = layout::get_u32(&hdr, off::SLOT_COUNT);
    entry.slot_size = layout::get_u32(&hdr, off::SLOT_SIZE);
    if let Err(e) = Layout::parse(&hdr, size) {
        entry.error = Some(e.to_string());
        return Some(entry);
    }
    entry.producer_pid = layout::get_u32(&hdr, off::PRODUCER_PID);
    let hb = layout::get_u64(&hdr, off::PRODUCER_HEARTBEAT);
    entry.producer_alive =
        entry.producer_pid != 0 && !is_dead(entry.producer_pid, hb, monotonic_ns());
    Some(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::RingConfig;

    fn cfg() -> RingConfig {
        RingConfig {
            slot_count: 8,
            slot_size: 64,
            max_subscribers: 4,
            max_members: 4,
            schema_capacity: 64,
        }
    }

    fn unique(tag: &str) -> String {
        format!("alloy-stat-{tag}-{}-{}", std::process::id(), monotonic_ns())
    }

    /// Lag, leases held (with an out-of-order release), fill and liveness
    /// on a ring in a known state.
    #[test]
    fn stat_reports_lag_leases_and_fill() {
        let ring = Ring::create_anonymous(&cfg()).unwrap();
        let mut a = ring.subscribe().unwrap();
        let mut b = ring.subscribe().unwrap();
        let q1 = ring.join_queue(7).unwrap();
        let mut q2 = ring.join_queue(7).unwrap();
        let mut p = ring.producer().unwrap();
        for j in 0..5u8 {
            p.send(&[j; 10], 0).unwrap();
        }
        // a: receives 0..3, releases 1 only (out of order): holds 0 and 2.
        let l0 = a.recv().unwrap().unwrap();
        let l1 = a.recv().unwrap().unwrap();
        let l2 = a.recv().unwrap().unwrap();
        drop(l1);
        // b: receives and releases everything.
        for _ in 0..5 {
            drop(b.recv().unwrap().unwrap());
        }
        // queue group: one message received and held.
        let lq = q2.recv().unwrap().unwrap();

        let s = ring.stat();
        assert_eq!(s.version, 1);
        assert_eq!((s.slot_count, s.slot_size), (8, 64));
        assert_eq!(s.published, 5);
        assert!(!s.closed);
        assert_eq!(s.producer_pid, std::process::id());
        assert!(s.producer_alive);
        assert_eq!(s.consumers.len(), 3);
        let (ca, cb, cq) = (&s.consumers[0], &s.consumers[1], &s.consumers[2]);
        assert_eq!((ca.kind, ca.cursor, ca.released), ("broadcast", 3, 0));
        assert_eq!((ca.lag, ca.leases_held), (2, 2));
        assert_eq!(
            (cb.cursor, cb.released, cb.lag, cb.leases_held),
            (5, 5, 0, 0)
        );
        assert_eq!((cq.kind, cq.group, cq.members.len()), ("queue", 7, 2));
        assert_eq!((cq.lag, cq.leases_held), (4, 1));
        for c in &s.consumers {
            assert_eq!(c.state, "active");
            assert!(c.alive);
            assert!(c
                .members
                .iter()
                .all(|m| m.alive && m.pid == std::process::id()));
        }
        // The slowest release cursor is 0 (a and the queue group).
        assert_eq!(s.slots_in_use, 5);
        assert_eq!(s.fill, 5.0 / 8.0);

        drop((l0, l2, lq));
        for _ in 0..2 {
            drop(a.recv().unwrap().unwrap());
        }
        let s2 = ring.stat();
        assert_eq!(
            (s2.consumers[0].released, s2.consumers[0].leases_held),
            (5, 0)
        );
        assert_eq!(s2.slots_in_use, 4, "the queue group released 1 of 5");
        drop((q1, q2));
        let s3 = ring.stat();
        assert_eq!(s3.consumers.len(), 2);
        assert_eq!(s3.slots_in_use, 0);
    }

    #[test]
    fn rates_come_from_two_samples() {
        let ring = Ring::create_anonymous(&cfg()).unwrap();
        let mut c = ring.subscribe().unwrap();
        let mut p = ring.producer().unwrap();
        let first = ring.stat();
        assert_eq!(first.messages_per_s, None);
        for _ in 0..6 {
            p.send(b"x", 0).unwrap();
            drop(c.recv().unwrap().unwrap());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let s = ring.stat().with_rates(&first);
        let secs = s.interval_ms.unwrap() / 1e3;
        assert!(secs >= 0.02);
        assert!((s.messages_per_s.unwrap() - 6.0 / secs).abs() < 1e-6);
        assert!((s.consumers[0].consumed_per_s.unwrap() - 6.0 / secs).abs() < 1e-6);
        let v = serde_json::to_value(&s).unwrap();
        assert!(v.get("sampled_ns").is_none());
        assert_eq!(v["consumers"][0]["kind"], "broadcast");
    }

    /// The read-only view sees what the ring's own handle sees, and
    /// taking a snapshot leaves every byte of the region unchanged.
    #[test]
    fn view_is_read_only_and_matches_ring_stat() {
        let name = unique("view");
        let ring = Ring::create(&name, &cfg()).unwrap();
        let _guard = Unlink(name.clone());
        let mut c = ring.subscribe().unwrap();
        let mut p = ring.producer().unwrap();
        p.send(b"hello", 0).unwrap();
        let held = c.recv().unwrap().unwrap();
        p.send(b"world", 0).unwrap();
        // Heartbeat threads keep writing their words: compare the rest.
        let before = ring.region().snapshot();
        let view = RingView::open(&name).unwrap();
        let s = view.stat();
        let after = ring.region().snapshot();
        assert_eq!(
            mask_heartbeats(&ring, before),
            mask_heartbeats(&ring, after)
        );
        let mut own = ring.stat();
        own.sampled_ns = s.sampled_ns;
        assert_eq!(s, own);
        assert_eq!(s.name, name);
        assert_eq!((s.consumers[0].lag, s.consumers[0].leases_held), (1, 1));
        drop(held);
        assert!(matches!(
            RingView::open("alloy-stat-does-not-exist"),
            Err(RegionError::NotFound(_))
        ));
    }

    fn mask_heartbeats(ring: &Ring, mut b: Vec<u8>) -> Vec<u8> {
        let l = ring.region().layout();
        let mut zero = |at: usize| b[at..at + 8].fill(0);
        zero(off::PRODUCER_HEARTBEAT);
        for k in 0..l.config.max_subscribers as usize {
            zero(l.sub(k) + off::SUB_HEARTBEAT);
        }
        for j in 0..l.config.max_members as usize {
            zero(l.member(j) + off::MEM_HEARTBEAT);
        }
        b
    }

    struct Unlink(String);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = Ring::unlink(&self.0);
        }
    }

    #[test]
    fn ls_lists_rings_and_skips_other_files() {
        let dir = std::env::temp_dir().join(unique("ls"));
        std::fs::create_dir(&dir).unwrap();
        let _cleanup = RmDir(dir.clone());
        // A ring: copy a real region's bytes into the directory.
        let ring = Ring::create_anonymous(&cfg()).unwrap();
        let _p = ring.producer().unwrap();
        std::fs::write(dir.join("a-ring"), ring.region().snapshot()).unwrap();
        std::fs::write(dir.join("not-alloy"), b"just some bytes, no magic").unwrap();
        std::fs::write(dir.join("empty"), b"").unwrap();
        // The magic but another version: listed, with the reason.
        let mut v2 = ring.region().snapshot();
        layout::put_u32(&mut v2, off::VERSION, 2);
        std::fs::write(dir.join("b-v2"), v2).unwrap();
        std::fs::create_dir(dir.join("subdir")).unwrap();

        let got = list_rings(&dir).unwrap();
        let names: Vec<&str> = got.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["a-ring", "b-v2"]);
        let a = &got[0];
        assert_eq!((a.version, a.slot_count, a.slot_size), (1, 8, 64));
        assert_eq!(a.size, ring.region().layout().total_size as u64);
        assert_eq!(a.producer_pid, std::process::id());
        assert!(a.producer_alive);
        assert_eq!(a.error, None);
        assert_eq!(got[1].version, 2);
        assert!(got[1].error.as_deref().unwrap().contains("version 2"));
        assert!(list_rings(&dir.join("missing")).is_err());
    }

    struct RmDir(PathBuf);
    impl Drop for RmDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
