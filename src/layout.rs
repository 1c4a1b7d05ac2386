//! The byte layout of an Alloy region, as specified in `doc/LAYOUT.md`.
//!
//! Pure functions only: nothing here maps memory or does I/O, so it runs
//! under Miri. [`Layout::compute`] derives every offset from a
//! [`RingConfig`]; [`Layout::parse`] validates a header someone else wrote;
//! [`write_header`] produces the header bytes a creator writes.

use thiserror::Error;

/// The ASCII bytes `ALLOYSHM` as a little-endian u64 (header offset 0).
pub const MAGIC: u64 = u64::from_le_bytes(*b"ALLOYSHM");
/// The layout version this crate reads and writes (3: every pid field is
/// the low half of a u64 identity word whose high half is the process's
/// start time, and heartbeats no longer prove death, LAYOUT.md §11.1;
/// 2 added the work-queue holder markers of §3.3).
pub const VERSION: u32 = 3;
/// Size of the region header in bytes.
pub const HEADER_SIZE: usize = 256;
/// Alignment of every slot payload in bytes.
pub const ALIGN: usize = 64;
/// Size of one subscriber-table entry.
pub const SUB_ENTRY: usize = 128;
/// Size of one member-table entry.
pub const MEMBER_ENTRY: usize = 64;
/// Size of the header at the start of every slot.
pub const SLOT_HEADER: usize = 64;

/// Largest allowed `slot_count`.
pub const MAX_SLOT_COUNT: u32 = 1 << 20;
/// Largest allowed `slot_size`.
pub const MAX_SLOT_SIZE: u32 = 1 << 30;
/// Largest allowed `max_subscribers`.
pub const MAX_SUBSCRIBERS: u32 = 64;
/// Largest allowed `max_members`.
pub const MAX_MEMBERS: u32 = 256;
/// Largest allowed `schema_capacity`.
pub const MAX_SCHEMA_CAPACITY: u32 = 1 << 24;

/// Byte offsets of the header fields (LAYOUT.md §2).
pub mod off {
    /// `magic` (u64).
    pub const MAGIC: usize = 0;
    /// `version` (u32).
    pub const VERSION: usize = 8;
    /// `header_size` (u32).
    pub const HEADER_SIZE: usize = 12;
    /// `slot_count` (u32).
    pub const SLOT_COUNT: usize = 16;
    /// `slot_size` (u32).
    pub const SLOT_SIZE: usize = 20;
    /// `max_subscribers` (u32).
    pub const MAX_SUBSCRIBERS: usize = 24;
    /// `max_members` (u32).
    pub const MAX_MEMBERS: usize = 28;
    /// `schema_capacity` (u32).
    pub const SCHEMA_CAPACITY: usize = 32;
    /// `align` (u32).
    pub const ALIGN: usize = 36;
    /// `total_size` (u64).
    pub const TOTAL_SIZE: usize = 40;
    /// `creator_pid` (u32).
    pub const CREATOR_PID: usize = 48;
    /// `flags` (u32).
    pub const FLAGS: usize = 52;
    /// `created_ns` (u64).
    pub const CREATED_NS: usize = 56;
    /// `published` (u64).
    pub const PUBLISHED: usize = 64;
    /// `closed` (u32).
    pub const CLOSED: usize = 72;
    /// `error` (u32).
    pub const ERROR: usize = 76;
    /// `producer_pid` (u32): the low half of the producer's identity word
    /// (u64 at the same offset, LAYOUT.md §11.1).
    pub const PRODUCER_PID: usize = 80;
    /// `producer_start` (u32): the high half of that identity word.
    pub const PRODUCER_START: usize = 84;
    /// `producer_heartbeat` (u64).
    pub const PRODUCER_HEARTBEAT: usize = 88;
    /// `stream_start` (u64): sequence number of the current stream's first
    /// message (LAYOUT.md §4.1).
    pub const STREAM_START: usize = 96;
    /// `stream_gen` (u32): generation of the current stream, 0 for the
    /// first (LAYOUT.md §4.1).
    pub const STREAM_GEN: usize = 104;
    /// `data_wakes` (u64): futex wake-ups the producer issued on publish
    /// (LAYOUT.md §2.1, informational).
    pub const DATA_WAKES: usize = 112;
    /// `full_refusals` (u64): reservations refused with `Full`.
    pub const FULL_REFUSALS: usize = 120;
    /// `data_waiters` (u32).
    pub const DATA_WAITERS: usize = 128;
    /// `data_futex` (u32).
    pub const DATA_FUTEX: usize = 132;
    /// `space_waiters` (u32).
    pub const SPACE_WAITERS: usize = 136;
    /// `space_futex` (u32).
    pub const SPACE_FUTEX: usize = 140;
    /// `table_epoch` (u64).
    pub const TABLE_EPOCH: usize = 144;
    /// `table_lock` (u32): the low half of the lock holder's identity
    /// word (u64 at the same offset).
    pub const TABLE_LOCK: usize = 152;
    /// `table_lock_start` (u32): the high half of that identity word.
    pub const TABLE_LOCK_START: usize = 156;
    /// `lost_count` (u64): consumer members reclaimed because their process
    /// died (LAYOUT.md §11.3).
    pub const LOST_COUNT: usize = 160;
    /// `lost_pid` (u32): pid of the last consumer reclaimed.
    pub const LOST_PID: usize = 168;
    /// `reclaims` (u32): reclaims that freed an entry (LAYOUT.md §2.1).
    pub const RECLAIMS: usize = 172;
    /// `backpressure_waits` (u64): reservations that waited for space.
    pub const BACKPRESSURE_WAITS: usize = 176;
    /// `backpressure_ns` (u64): total time of those waits.
    pub const BACKPRESSURE_NS: usize = 184;
    /// `schema_seq` (u32).
    pub const SCHEMA_SEQ: usize = 192;
    /// `schema_len` (u32).
    pub const SCHEMA_LEN: usize = 196;

    /// Subscriber entry: `state` (u32).
    pub const SUB_STATE: usize = 0;
    /// Subscriber entry: `kind` (u32).
    pub const SUB_KIND: usize = 4;
    /// Subscriber entry: `group` (u32).
    pub const SUB_GROUP: usize = 8;
    /// Subscriber entry: `members` (u32).
    pub const SUB_MEMBERS: usize = 12;
    /// Subscriber entry: `owner_pid` (u32), the low half of the owner's
    /// identity word (u64 at the same offset).
    pub const SUB_OWNER_PID: usize = 16;
    /// Subscriber entry: `owner_start` (u32), the high half.
    pub const SUB_OWNER_START: usize = 20;
    /// Subscriber entry: `heartbeat` (u64).
    pub const SUB_HEARTBEAT: usize = 24;
    /// Subscriber entry: `claim` (u64).
    pub const SUB_CLAIM: usize = 64;
    /// Subscriber entry: `release` (u64).
    pub const SUB_RELEASE: usize = 72;
    /// Subscriber entry: `redeliver` (u64): sequences of a queue group
    /// waiting for redelivery (LAYOUT.md §11.3).
    pub const SUB_REDELIVER: usize = 80;

    /// Member entry: `state` (u32).
    pub const MEM_STATE: usize = 0;
    /// Member entry: `subscriber` (u32).
    pub const MEM_SUBSCRIBER: usize = 4;
    /// Member entry: `pid` (u32), the low half of the member's identity
    /// word (u64 at the same offset).
    pub const MEM_PID: usize = 8;
    /// Member entry: `start` (u32), the high half.
    pub const MEM_START: usize = 12;
    /// Member entry: `heartbeat` (u64).
    pub const MEM_HEARTBEAT: usize = 16;
    /// Member entry: `parks` (u64): futex waits for data (LAYOUT.md §2.1).
    pub const MEM_PARKS: usize = 24;
    /// Member entry: `park_ns` (u64): total time of those waits.
    pub const MEM_PARK_NS: usize = 32;
    /// Member entry: `space_wakes` (u64): futex wake-ups its releases
    /// issued to a producer waiting for space.
    pub const MEM_SPACE_WAKES: usize = 40;

    /// Slot header: `stamp` (u64).
    pub const SLOT_STAMP: usize = 0;
    /// Slot header: `len` (u32).
    pub const SLOT_LEN: usize = 8;
    /// Slot header: `flags` (u32).
    pub const SLOT_FLAGS: usize = 12;
    /// Slot header: `gen` (u32), the stream generation of the message
    /// (LAYOUT.md §4.1).
    pub const SLOT_GEN: usize = 16;
}

/// The done-word encoding of work-queue subscribers (LAYOUT.md §3.3).
///
/// A released sequence is `seq + 1` (bit 63 clear, as for broadcast
/// subscribers). A claimed, unreleased sequence is a *marker*: bit 63 set,
/// a holder field in bits 48–62 and the low 48 bits of `seq + 1`. The
/// holder is the member index, or [`done::REDELIVER`] for a sequence whose
/// holder died and which waits for another member.
pub mod done {
    /// Bit 63: the word is a marker, not a released `seq + 1`.
    pub const MARKER: u64 = 1 << 63;
    /// Shift of the holder field.
    pub const HOLDER_SHIFT: u32 = 48;
    /// The holder field (15 bits).
    pub const HOLDER_MASK: u64 = 0x7FFF;
    /// Holder value meaning "waiting for redelivery" (no member index is
    /// this large: `max_members` ≤ 256).
    pub const REDELIVER: u32 = 0x7FFF;
    /// The bits of `seq + 1` a marker keeps.
    pub const SEQ_MASK: u64 = (1 << 48) - 1;

    /// The marker saying `holder` holds `seq`.
    pub const fn marker(holder: u32, seq: u64) -> u64 {
        MARKER | ((holder as u64 & HOLDER_MASK) << HOLDER_SHIFT) | (seq.wrapping_add(1) & SEQ_MASK)
    }

    /// `HELD(member, seq)`.
    pub const fn held(member: u32, seq: u64) -> u64 {
        marker(member, seq)
    }

    /// `REDELIVER(seq)`.
    pub const fn redeliver(seq: u64) -> u64 {
        marker(REDELIVER, seq)
    }

    // No member index can be mistaken for REDELIVER.
    const _: () = assert!(super::MAX_MEMBERS < REDELIVER);

    /// Whether `word` is a marker (held or waiting for redelivery).
    pub const fn is_marker(word: u64) -> bool {
        word & MARKER != 0
    }

    /// The holder field of a marker.
    pub const fn holder(word: u64) -> u32 {
        ((word >> HOLDER_SHIFT) & HOLDER_MASK) as u32
    }
}

/// Subscriber and member entry states (LAYOUT.md §3.1, §3.2).
pub mod state {
    /// Entry unused.
    pub const FREE: u32 = 0;
    /// Subscriber being set up; the producer already gates on it.
    pub const JOINING: u32 = 1;
    /// Entry in use.
    pub const ACTIVE: u32 = 2;
}

/// Subscriber kinds (LAYOUT.md §3.1).
pub mod kind {
    /// One consumer that sees every message.
    pub const BROADCAST: u32 = 1;
    /// A work-queue group: each message goes to one member.
    pub const QUEUE: u32 = 2;
}

/// Errors found in a region's header or in a requested configuration.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// The file is shorter than the header or than the size it declares.
    #[error("region truncated: {size} bytes, need {needed}")]
    Truncated {
        /// Actual size in bytes.
        size: u64,
        /// Size the header requires.
        needed: u64,
    },
    /// The first eight bytes are not `ALLOYSHM`: not an Alloy region.
    #[error("not an Alloy region: magic {found:#018x}, expected {MAGIC:#018x} (\"ALLOYSHM\")")]
    BadMagic {
        /// The u64 found at offset 0.
        found: u64,
    },
    /// The region was written by an incompatible layout version.
    #[error("layout version {found} is not supported (this build reads version {expected})")]
    VersionMismatch {
        /// Version in the header.
        found: u32,
        /// Version this build implements.
        expected: u32,
    },
    /// The magic is still zero: the creator has not finished initialising.
    #[error("region is not initialised (its creator has not finished, or died while creating it)")]
    NotInitialized,
    /// A field is out of range or inconsistent with the others.
    #[error("invalid layout: {0}")]
    InvalidLayout(String),
}

/// The configurable sizes of a ring (LAYOUT.md §2 line 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Number of slots; a power of two between 2 and 2^20.
    pub slot_count: u32,
    /// Payload capacity of one slot: the largest message, a multiple of 64.
    pub slot_size: u32,
    /// Subscriber entries: broadcast consumers plus work-queue groups.
    pub max_subscribers: u32,
    /// Member entries: attached consumer handles.
    pub max_members: u32,
    /// Bytes reserved for the stream's schema (a multiple of 64, may be 0).
    pub schema_capacity: u32,
}

impl Default for RingConfig {
    /// 64 slots of 1 MiB, 16 subscribers, 32 members, a 64 KiB schema area.
    fn default() -> Self {
        RingConfig {
            slot_count: 64,
            slot_size: 1 << 20,
            max_subscribers: 16,
            max_members: 32,
            schema_capacity: 64 << 10,
        }
    }
}

/// Every offset of a region, derived from its [`RingConfig`] (LAYOUT.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The configuration the offsets were derived from.
    pub config: RingConfig,
    /// Start of the subscriber table.
    pub subs_off: usize,
    /// Start of the member table.
    pub members_off: usize,
    /// Start of the done arrays.
    pub done_off: usize,
    /// Start of the schema area.
    pub schema_off: usize,
    /// Start of slot 0 (a multiple of 4096).
    pub slots_off: usize,
    /// Distance between two slots: 64 + `slot_size`.
    pub slot_stride: usize,
    /// Size of the whole region.
    pub total_size: usize,
}

fn align_up(x: usize, a: usize) -> usize {
    x.div_ceil(a) * a
}

fn invalid(msg: impl Into<String>) -> LayoutError {
    LayoutError::InvalidLayout(msg.into())
}

impl RingConfig {
    /// Checks every bound of LAYOUT.md §2.
    pub fn validate(&self) -> Result<(), LayoutError> {
        let c = self;
        if !c.slot_count.is_power_of_two() || c.slot_count < 2 || c.slot_count > MAX_SLOT_COUNT {
            return Err(invalid(format!(
                "slot_count {} must be a power of two in 2..={MAX_SLOT_COUNT}",
                c.slot_count
            )));
        }
        if c.slot_size < 64 || c.slot_size > MAX_SLOT_SIZE || c.slot_size % 64 != 0 {
            return Err(invalid(format!(
                "slot_size {} must be a multiple of 64 in 64..={MAX_SLOT_SIZE}",
                c.slot_size
            )));
        }
        if c.max_subscribers == 0 || c.max_subscribers > MAX_SUBSCRIBERS {
            return Err(invalid(format!(
                "max_subscribers {} must be in 1..={MAX_SUBSCRIBERS}",
                c.max_subscribers
            )));
        }
        if c.max_members == 0 || c.max_members > MAX_MEMBERS {
            return Err(invalid(format!(
                "max_members {} must be in 1..={MAX_MEMBERS}",
                c.max_members
            )));
        }
        if c.schema_capacity > MAX_SCHEMA_CAPACITY || c.schema_capacity % 64 != 0 {
            return Err(invalid(format!(
                "schema_capacity {} must be a multiple of 64 and at most {MAX_SCHEMA_CAPACITY}",
                c.schema_capacity
            )));
        }
        Ok(())
    }
}

impl Layout {
    /// Derives the offsets for `config` after validating it.
    pub fn compute(config: RingConfig) -> Result<Layout, LayoutError> {
        config.validate()?;
        let s = config.max_subscribers as usize;
        let m = config.max_members as usize;
        let n = config.slot_count as usize;
        let subs_off = HEADER_SIZE;
        let members_off = subs_off + s * SUB_ENTRY;
        let done_off = members_off + m * MEMBER_ENTRY;
        let schema_off = align_up(done_off + s * n * 8, ALIGN);
        let slots_off = align_up(schema_off + config.schema_capacity as usize, 4096);
        let slot_stride = SLOT_HEADER + config.slot_size as usize;
        // Bounded by the config limits: 2^20 slots × (2^30 + 64) fits in u64
        // but not always in the address space; checked_mul keeps 32-bit honest.
        let total_size = n
            .checked_mul(slot_stride)
            .and_then(|b| b.checked_add(slots_off))
            .ok_or_else(|| invalid("region size overflows the address space"))?;
        Ok(Layout {
            config,
            subs_off,
            members_off,
            done_off,
            schema_off,
            slots_off,
            slot_stride,
            total_size,
        })
    }

    /// Validates a header written by someone else (LAYOUT.md §7). `header`
    /// must hold at least the first 64 bytes; `file_size` is the size of the
    /// whole region file. The magic is checked first so that a foreign file
    /// reports `BadMagic` rather than some field error.
    pub fn parse(header: &[u8], file_size: u64) -> Result<Layout, LayoutError> {
        if header.len() < 64 || file_size < HEADER_SIZE as u64 {
            return Err(LayoutError::Truncated {
                size: file_size.min(header.len() as u64),
                needed: HEADER_SIZE as u64,
            });
        }
        let magic = get_u64(header, off::MAGIC);
        if magic == 0 {
            return Err(LayoutError::NotInitialized);
        }
        if magic != MAGIC {
            return Err(LayoutError::BadMagic { found: magic });
        }
        let version = get_u32(header, off::VERSION);
        if version != VERSION {
            return Err(LayoutError::VersionMismatch {
                found: version,
                expected: VERSION,
            });
        }
        let header_size = get_u32(header, off::HEADER_SIZE);
        if header_size as usize != HEADER_SIZE {
            return Err(invalid(format!(
                "header_size {header_size}, expected {HEADER_SIZE}"
            )));
        }
        let align = get_u32(header, off::ALIGN);
        if align as usize != ALIGN {
            return Err(invalid(format!("align {align}, expected {ALIGN}")));
        }
        let flags = get_u32(header, off::FLAGS);
        if flags != 0 {
            return Err(invalid(format!("unknown header flags {flags:#x}")));
        }
        let config = RingConfig {
            slot_count: get_u32(header, off::SLOT_COUNT),
            slot_size: get_u32(header, off::SLOT_SIZE),
            max_subscribers: get_u32(header, off::MAX_SUBSCRIBERS),
            max_members: get_u32(header, off::MAX_MEMBERS),
            schema_capacity: get_u32(header, off::SCHEMA_CAPACITY),
        };
        let layout = Layout::compute(config)?;
        let declared = get_u64(header, off::TOTAL_SIZE);
        if declared != layout.total_size as u64 {
            return Err(invalid(format!(
                "total_size {declared} does not match the {} bytes the configuration needs",
                layout.total_size
            )));
        }
        if file_size < declared {
            return Err(LayoutError::Truncated {
                size: file_size,
                needed: declared,
            });
        }
        Ok(layout)
    }

    /// Offset of subscriber entry `k`.
    pub fn sub(&self, k: usize) -> usize {
        self.subs_off + k * SUB_ENTRY
    }

    /// Offset of member entry `j`.
    pub fn member(&self, j: usize) -> usize {
        self.members_off + j * MEMBER_ENTRY
    }

    /// Offset of `done[k][i]`.
    pub fn done(&self, k: usize, i: usize) -> usize {
        self.done_off + (k * self.config.slot_count as usize + i) * 8
    }

    /// Offset of the header of slot `i`.
    pub fn slot(&self, i: usize) -> usize {
        self.slots_off + i * self.slot_stride
    }

    /// Offset of the payload of slot `i` (always 64-byte aligned).
    pub fn payload(&self, i: usize) -> usize {
        self.slot(i) + SLOT_HEADER
    }
}

/// Writes header line 0 (everything but `magic`) for `layout` into `buf`.
/// The creator stores `magic` afterwards, with Release ordering, so openers
/// never see a half-written configuration.
pub fn write_header(buf: &mut [u8], layout: &Layout, creator_pid: u32, created_ns: u64) {
    let c = &layout.config;
    put_u32(buf, off::VERSION, VERSION);
    put_u32(buf, off::HEADER_SIZE, HEADER_SIZE as u32);
    put_u32(buf, off::SLOT_COUNT, c.slot_count);
    put_u32(buf, off::SLOT_SIZE, c.slot_size);
    put_u32(buf, off::MAX_SUBSCRIBERS, c.max_subscribers);
    put_u32(buf, off::MAX_MEMBERS, c.max_members);
    put_u32(buf, off::SCHEMA_CAPACITY, c.schema_capacity);
    put_u32(buf, off::ALIGN, ALIGN as u32);
    put_u64(buf, off::TOTAL_SIZE, layout.total_size as u64);
    put_u32(buf, off::CREATOR_PID, creator_pid);
    put_u32(buf, off::FLAGS, 0);
    put_u64(buf, off::CREATED_NS, created_ns);
}

/// Reads a little-endian u16 at `at` (the one reader of little-endian
/// fields for the whole crate: layout, C-Data-offsets descriptors and
/// request/reply envelopes).
pub fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

/// Reads a little-endian u32 at `at`.
pub fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Reads a little-endian u64 at `at`.
pub fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Writes a little-endian u32 at `at`.
pub fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Writes a little-endian u64 at `at`.
pub fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> RingConfig {
        RingConfig {
            slot_count: 4,
            slot_size: 64,
            max_subscribers: 2,
            max_members: 4,
            schema_capacity: 64,
        }
    }

    fn header_for(cfg: RingConfig) -> (Layout, Vec<u8>) {
        let l = Layout::compute(cfg).unwrap();
        let mut b = vec![0u8; l.total_size];
        write_header(&mut b, &l, 1, 2);
        put_u64(&mut b, off::MAGIC, MAGIC);
        (l, b)
    }

    #[test]
    fn miri_small_offsets_match_the_spec() {
        let l = Layout::compute(small()).unwrap();
        assert_eq!(l.subs_off, 256);
        assert_eq!(l.members_off, 256 + 2 * 128);
        assert_eq!(l.done_off, 512 + 4 * 64);
        assert_eq!(l.schema_off, 768 + 2 * 4 * 8);
        assert_eq!(l.slots_off, 4096);
        assert_eq!(l.slot_stride, 128);
        assert_eq!(l.total_size, 4096 + 4 * 128);
        assert_eq!(l.payload(3) % 64, 0);
        assert_eq!(MAGIC, 0x4D48_5359_4F4C_4C41);
    }

    #[test]
    fn miri_parse_roundtrips_and_rejects() {
        let (l, b) = header_for(small());
        assert_eq!(Layout::parse(&b, b.len() as u64).unwrap(), l);

        let mut bad = b.clone();
        bad[0] = b'X';
        assert!(matches!(
            Layout::parse(&bad, bad.len() as u64),
            Err(LayoutError::BadMagic { .. })
        ));
        let mut bad = b.clone();
        put_u32(&mut bad, off::VERSION, 1);
        assert_eq!(
            Layout::parse(&bad, bad.len() as u64),
            Err(LayoutError::VersionMismatch {
                found: 1,
                expected: VERSION
            })
        );
        let mut bad = b.clone();
        put_u32(&mut bad, off::SLOT_COUNT, 3);
        assert!(matches!(
            Layout::parse(&bad, bad.len() as u64),
            Err(LayoutError::InvalidLayout(_))
        ));
        let mut bad = b.clone();
        put_u64(&mut bad, off::TOTAL_SIZE, 1 << 40);
        assert!(matches!(
            Layout::parse(&bad, bad.len() as u64),
            Err(LayoutError::InvalidLayout(_))
        ));
        assert_eq!(
            Layout::parse(&b, 4000),
            Err(LayoutError::Truncated {
                size: 4000,
                needed: l.total_size as u64
            })
        );
        assert!(matches!(
            Layout::parse(&b[..10], 10),
            Err(LayoutError::Truncated { .. })
        ));
        let mut zero = b.clone();
        put_u64(&mut zero, off::MAGIC, 0);
        assert_eq!(
            Layout::parse(&zero, zero.len() as u64),
            Err(LayoutError::NotInitialized)
        );
    }

    #[test]
    fn miri_config_bounds() {
        let ok = small();
        assert!(ok.validate().is_ok());
        for bad in [
            RingConfig {
                slot_count: 1,
                ..ok
            },
            RingConfig {
                slot_count: 6,
                ..ok
            },
            RingConfig {
                slot_count: MAX_SLOT_COUNT * 2,
                ..ok
            },
            RingConfig {
                slot_size: 100,
                ..ok
            },
            RingConfig { slot_size: 0, ..ok },
            RingConfig {
                max_subscribers: 0,
                ..ok
            },
            RingConfig {
                max_members: 1000,
                ..ok
            },
            RingConfig {
                schema_capacity: 65,
                ..ok
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?} should be rejected");
        }
    }

    proptest::proptest! {
        /// Whatever bytes the header holds, parsing returns a value or a typed
        /// error and never panics; an accepted layout stays inside the file.
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..320), size in 0u64..1 << 40) {
            let mut b = bytes;
            if b.len() >= 8 && b[0] & 1 == 0 {
                put_u64(&mut b, off::MAGIC, MAGIC);
                if b.len() >= 12 && b[1] & 1 == 0 { put_u32(&mut b, off::VERSION, VERSION); }
            }
            if let Ok(l) = Layout::parse(&b, size) {
                proptest::prop_assert!(l.total_size as u64 <= size);
                proptest::prop_assert_eq!(l.payload(0) % 64, 0);
            }
        }
    }

    /// Markers never equal a released value (`seq + 1 < 2^63`), name their
    /// holder, and differ between neighbouring sequences of one done word.
    #[test]
    fn done_markers_do_not_collide() {
        for seq in [0u64, 1, 7, (1 << 47) - 1, (1 << 48) - 2, (1 << 62) + 5] {
            for m in [0u32, 1, 255] {
                let h = done::held(m, seq);
                assert!(done::is_marker(h));
                assert_eq!(done::holder(h), m);
                assert_ne!(h, seq + 1);
                assert_ne!(h, done::redeliver(seq));
                assert_ne!(h, done::held(m, seq + 8), "next lap of an 8-slot ring");
            }
            let r = done::redeliver(seq);
            assert!(done::is_marker(r) && !done::is_marker(seq + 1));
            assert_eq!(done::holder(r), done::REDELIVER);
        }
    }
}
