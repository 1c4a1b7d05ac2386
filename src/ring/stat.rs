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
//! let ring = Ring::anonymous_builder().config(RingConfig { slot_count: 4, slot_size: 64, ..Default::default() }).create()?;
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
#[cfg(feature = "serde")]
use serde::Serialize;

use super::liveness::{identity_dead, identity_pid, stalled};
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
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
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
    /// Futex wake-ups the producer issued on publish, to parked consumers
    /// (LAYOUT.md §2.1; 0 from writers that predate the counters).
    pub data_wakes: u64,
    /// Reservations refused with `Full` (`Fail` back-pressure).
    pub full_refusals: u64,
    /// Reservations that found the ring full and waited (`Block`).
    pub backpressure_waits: u64,
    /// Total nanoseconds of those waits.
    pub backpressure_ns: u64,
    /// Reclaims (LAYOUT.md §11.3) that freed a dead consumer's entry.
    pub reclaims: u32,
    /// Consumer members detached because their process died (`lost_count`).
    pub consumers_lost: u64,
    /// Milliseconds between the previous sample and this one; `None`
    /// (JSON `null`) for a single sample.
    pub interval_ms: Option<f64>,
    /// Messages published per second since the previous sample.
    pub messages_per_s: Option<f64>,
    /// CLOCK_MONOTONIC of the sample, for rates (not printed).
    #[cfg_attr(feature = "serde", serde(skip))]
    pub sampled_ns: u64,
}

/// One subscriber entry: a broadcast consumer or a whole work-queue group.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
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
    /// sequences in `[released, cursor)` whose done word is neither
    /// released nor waiting for redelivery.
    pub leases_held: u64,
    /// Work-queue groups: messages a dead member held that wait for
    /// redelivery to another member (LAYOUT.md §11.3); 0 for broadcast.
    pub redeliver: u64,
    /// Messages released per second since the previous sample.
    pub consumed_per_s: Option<f64>,
}

/// One attached consumer handle of a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
pub struct MemberStat {
    /// Member entry index.
    pub index: u32,
    /// The member's process.
    pub pid: u32,
    /// Whether it is alive (LAYOUT.md §11.1).
    pub alive: bool,
    /// Alive, but its heartbeat is older than [`STALE_AFTER`](super::STALE_AFTER)
    /// (3 s): stopped (SIGSTOP, a debugger), frozen or starved. A hint,
    /// never a reason to detach it (LAYOUT.md §11.3 "No eviction"); such a
    /// member holding leases gates the producer.
    pub stalled: bool,
    /// Futex waits for data (parks) since it attached (LAYOUT.md §2.1).
    pub parks: u64,
    /// Total nanoseconds of those parks.
    pub park_ns: u64,
    /// Futex wake-ups its releases issued to a producer waiting for space.
    pub space_wakes: u64,
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
    // Pid and start time in one load (LAYOUT.md §11.1).
    let producer = w.u64(off::PRODUCER_PID);
    let producer_pid = identity_pid(producer);
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
            let who = w.u64(b + off::MEM_PID);
            let pid = identity_pid(who);
            let alive = !identity_dead(who);
            let sub = w.u32(b + off::MEM_SUBSCRIBER);
            Some((
                sub,
                j as u32,
                MemberStat {
                    index: j as u32,
                    pid,
                    alive,
                    stalled: alive && stalled(w.u64(b + off::MEM_HEARTBEAT), now),
                    parks: w.u64(b + off::MEM_PARKS),
                    park_ns: w.u64(b + off::MEM_PARK_NS),
                    space_wakes: w.u64(b + off::MEM_SPACE_WAKES),
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
            .filter(|&s| {
                let d = w.u64(l.done(k, (s % n) as usize));
                d != s + 1 && d != crate::layout::done::redeliver(s)
            })
            .count() as u64;
        let kind_ = w.u32(b + off::SUB_KIND);
        // The word is only maintained for queue groups (LAYOUT.md §3.1).
        let redeliver = if kind_ == crate::layout::kind::QUEUE {
            w.u64(b + off::SUB_REDELIVER)
        } else {
            0
        };
        let mine: Vec<MemberStat> = members
            .iter()
            .filter(|(sub, _, _)| *sub as usize == k)
            .map(|(_, _, m)| m.clone())
            .collect();
        let owner = w.u64(b + off::SUB_OWNER_PID);
        let owner_pid = identity_pid(owner);
        let alive = if st == state::JOINING {
            !identity_dead(owner)
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
            kind: kind_name(kind_),
            group: w.u32(b + off::SUB_GROUP),
            owner_pid,
            members: mine,
            alive,
            cursor,
            released,
            lag: published.saturating_sub(cursor),
            leases_held,
            redeliver,
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
        producer_alive: producer_pid != 0 && !identity_dead(producer),
        slots_in_use,
        fill: slots_in_use as f64 / n as f64,
        consumers,
        data_wakes: w.u64(off::DATA_WAKES),
        full_refusals: w.u64(off::FULL_REFUSALS),
        backpressure_waits: w.u64(off::BACKPRESSURE_WAITS),
        backpressure_ns: w.u64(off::BACKPRESSURE_NS),
        reclaims: w.u32(off::RECLAIMS),
        consumers_lost: w.u64(off::LOST_COUNT),
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
}

/// One file under the shared-memory directory that carries the Alloy magic,
/// as `alloy ls --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
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

/// The listing error of a hidden `.<name>.<pid>.<n>.tmp` file (LAYOUT.md
/// §1): a ring still being created, or one whose creator died before
/// linking it into place. It is not a ring; nothing opens it by that name.
pub const UNFINISHED: &str =
    "not a ring: the temporary file of a creation in progress, or left by a creator that died \
     before linking it into place (remove the file if its pid is dead)";

/// Lists the Alloy rings in `dir` (normally [`region::SHM_DIR`]): every
/// regular file whose first eight bytes are the magic, sorted by name.
/// Only each file's 256-byte header is read. Files without the magic are
/// skipped silently; files that cannot be read, and a creation's leftover
/// temporary file (name starting with '.', [`UNFINISHED`]), are listed with
/// `error` set.
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
    if entry.name.starts_with('.') {
        entry.error = Some(UNFINISHED.to_string());
        return Some(entry);
    }
    if let Err(e) = Layout::parse(&hdr, size) {
        entry.error = Some(e.to_string());
        return Some(entry);
    }
    let producer = layout::get_u64(&hdr, off::PRODUCER_PID);
    entry.producer_pid = identity_pid(producer);
    entry.producer_alive = entry.producer_pid != 0 && !identity_dead(producer);
    Some(entry)
}

#[cfg(test)]
mod tests;
