//! Builders for rings and their endpoints, in the style of iceoryx2's
//! `Service::new(..)…create()`: name the ring, set what differs from the
//! defaults, then `create`, `open` or `open_or_create`.
//!
//! ```
//! use std::time::Duration;
//! use alloy_shm::ring::{Backpressure, Ring, WaitStrategy};
//!
//! # let name = format!("doc-builder-{}", std::process::id());
//! let ring = Ring::builder(&name).slot_count(8).slot_size(4096).open_or_create()?;
//! let mut tx = ring
//!     .producer_builder()
//!     .backpressure(Backpressure::Block { timeout: Some(Duration::from_secs(1)) })
//!     .create()?;
//! let mut workers = ring.consumer_builder().queue(1).wait(WaitStrategy::Spin).create()?;
//! tx.send(b"job", 0)?;
//! assert_eq!(&*workers.recv()?.unwrap(), b"job");
//! Ring::remove(&name)?;
//! # Ok::<(), alloy_shm::ring::RingError>(())
//! ```

use std::time::Duration;

use super::producer::AttachOptions;
use super::{AttachError, Backpressure, Consumer, ConsumerKind, OpenError, Producer, Ring};
use crate::layout::RingConfig;
use crate::region::{HugePages, NamedOptions, Region, RegionError};
use crate::signal::WaitStrategy;

/// Configures and creates or opens a ring; from [`Ring::builder`] (named,
/// under `/dev/shm`) or [`Ring::anonymous_builder`] (a sealed memfd).
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until create/open is called"]
pub struct RingBuilder {
    name: Option<String>,
    config: RingConfig,
    /// Geometry fields the caller set explicitly (checked on open).
    set: u8,
    /// Directory, group and owner options of a named ring.
    named: NamedOptions,
}

const SET_SLOTS: u8 = 1;
const SET_SLOT_SIZE: u8 = 2;
const SET_SUBSCRIBERS: u8 = 4;
const SET_MEMBERS: u8 = 8;
const SET_SCHEMA: u8 = 16;

impl Ring {
    /// A builder for the named ring `/dev/shm/<name>`, starting from
    /// [`RingConfig::default`].
    pub fn builder(name: &str) -> RingBuilder {
        RingBuilder {
            name: Some(name.to_string()),
            config: RingConfig::default(),
            set: 0,
            named: NamedOptions::default(),
        }
    }

    /// A builder for an anonymous ring in a sealed memfd (share it through
    /// [`Ring::region`]`().fd()`).
    pub fn anonymous_builder() -> RingBuilder {
        RingBuilder {
            name: None,
            config: RingConfig::default(),
            set: 0,
            named: NamedOptions::default(),
        }
    }

    /// A builder for this ring's producer.
    pub fn producer_builder(&self) -> ProducerBuilder {
        ProducerBuilder {
            ring: self.clone(),
            backpressure: Backpressure::default(),
            wait: WaitStrategy::default(),
            reclaim_after: None,
            opts: AttachOptions::default(),
        }
    }

    /// A builder for a consumer of this ring (broadcast unless
    /// [`ConsumerBuilder::queue`] is called).
    pub fn consumer_builder(&self) -> ConsumerBuilder {
        ConsumerBuilder {
            ring: self.clone(),
            kind: ConsumerKind::Broadcast,
            wait: WaitStrategy::default(),
            held_lease_timeout: Some(super::DEFAULT_HELD_LEASE_TIMEOUT),
            skip_validation: false,
            history: 0,
        }
    }
}

impl RingBuilder {
    /// Number of slots: a power of two between 2 and 2^20 (default 64).
    pub fn slot_count(mut self, n: u32) -> Self {
        self.config.slot_count = n;
        self.set |= SET_SLOTS;
        self
    }

    /// Payload bytes per slot, a multiple of 64: the largest message
    /// (default 1 MiB).
    pub fn slot_size(mut self, bytes: u32) -> Self {
        self.config.slot_size = bytes;
        self.set |= SET_SLOT_SIZE;
        self
    }

    /// Subscriber entries: broadcast consumers plus work-queue groups
    /// (default 16).
    pub fn max_subscribers(mut self, n: u32) -> Self {
        self.config.max_subscribers = n;
        self.set |= SET_SUBSCRIBERS;
        self
    }

    /// Member entries: attached consumer handles (default 32).
    pub fn max_members(mut self, n: u32) -> Self {
        self.config.max_members = n;
        self.set |= SET_MEMBERS;
        self
    }

    /// Bytes reserved for the stream's schema, a multiple of 64 (default
    /// 64 KiB).
    pub fn schema_capacity(mut self, bytes: u32) -> Self {
        self.config.schema_capacity = bytes;
        self.set |= SET_SCHEMA;
        self
    }

    /// Directory of a named ring (default: `$ALLOY_SHM_DIR`, else
    /// `/dev/shm`): a tmpfs such as a Kubernetes `emptyDir` with `medium:
    /// Memory` or a Docker tmpfs volume. Creating a ring that does not fit
    /// fails with [`RegionError::NoSpace`], which names the fix.
    pub fn dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.named.dir = Some(dir.into());
        self
    }

    /// Create only: share the named ring with group `gid` (mode 0660
    /// instead of 0600), so consumers run by other users of that group can
    /// attach; everyone else is refused by the kernel (default: not
    /// shared). [`crate::region::resolve_group`] turns a name into a gid.
    pub fn group(mut self, gid: u32) -> Self {
        self.named.group = Some(gid);
        self
    }

    /// Open only: accept a named ring owned by another user whatever its
    /// mode (default: off; a ring shared with one of our groups is
    /// accepted anyway).
    pub fn allow_foreign_owner(mut self, on: bool) -> Self {
        self.named.allow_foreign_owner = on;
        self
    }

    /// Create only: back the ring with huge pages ([`HugePages`]; default
    /// `Off`). An anonymous ring uses a `MFD_HUGETLB` memfd; a named one
    /// needs a hugetlbfs [`dir`](RingBuilder::dir). `Require` fails with
    /// [`RegionError::HugePages`], naming `/proc/sys/vm/nr_hugepages`, when
    /// none are free; `Prefer` falls back to normal pages. The byte layout
    /// is unchanged (LAYOUT.md §1).
    pub fn huge_pages(mut self, h: HugePages) -> Self {
        self.named.huge_pages = h;
        self
    }

    /// Pre-fault the ring's pages so the first messages take no page
    /// faults (default: off): writable when creating (the pages are new),
    /// read-only when opening a live ring, so no byte is written.
    pub fn prefault(mut self, on: bool) -> Self {
        self.named.prefault = on;
        self
    }

    /// Replaces the whole configuration (every field counts as set).
    pub fn config(mut self, config: RingConfig) -> Self {
        self.config = config;
        self.set = SET_SLOTS | SET_SLOT_SIZE | SET_SUBSCRIBERS | SET_MEMBERS | SET_SCHEMA;
        self
    }

    /// Creates the ring; a named ring that already exists is an error
    /// ([`RegionError::AlreadyExists`]).
    pub fn create(self) -> Result<Ring, OpenError> {
        match &self.name {
            Some(name) => Ring::create_opts(name, &self.config, &self.named),
            None if self.named.huge_pages == HugePages::Off && !self.named.prefault => {
                Ring::create_anonymous(&self.config)
            }
            None => {
                let region = Region::create_anonymous_opts("ring", &self.config, &self.named)?;
                Ok(Ring::wrap(region, super::Ident::real()))
            }
        }
    }

    /// Opens the existing named ring. Geometry set on the builder must match
    /// the ring's, else [`OpenError::ConfigMismatch`]; fields left unset are
    /// taken from the ring.
    pub fn open(self) -> Result<Ring, OpenError> {
        let Some(name) = &self.name else {
            return Err(OpenError::InvalidArgument(
                "an anonymous ring cannot be opened by name; pass its fd to Ring::open_fd".into(),
            ));
        };
        let ring = Ring::open_opts(name, &self.named)?;
        self.check(&ring)?;
        Ok(ring)
    }

    /// Opens the named ring if it exists (checked like [`RingBuilder::open`]),
    /// else creates it. Safe against a concurrent creator: whoever loses the
    /// creation race opens the winner's ring.
    pub fn open_or_create(self) -> Result<Ring, OpenError> {
        if self.name.is_none() {
            return self.create();
        }
        match self.clone().create() {
            Err(OpenError::Region(RegionError::AlreadyExists(_))) => self.open(),
            other => other,
        }
    }

    fn check(&self, ring: &Ring) -> Result<(), OpenError> {
        let have = ring.config();
        let want = self.config;
        let fields = [
            (SET_SLOTS, "slot_count", want.slot_count, have.slot_count),
            (SET_SLOT_SIZE, "slot_size", want.slot_size, have.slot_size),
            (
                SET_SUBSCRIBERS,
                "max_subscribers",
                want.max_subscribers,
                have.max_subscribers,
            ),
            (
                SET_MEMBERS,
                "max_members",
                want.max_members,
                have.max_members,
            ),
            (
                SET_SCHEMA,
                "schema_capacity",
                want.schema_capacity,
                have.schema_capacity,
            ),
        ];
        for (bit, field, want, have) in fields {
            if self.set & bit != 0 && want != have {
                return Err(OpenError::ConfigMismatch {
                    field,
                    requested: want,
                    actual: have,
                });
            }
        }
        Ok(())
    }
}

/// Configures and attaches a ring's single producer; from
/// [`Ring::producer_builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until create is called"]
pub struct ProducerBuilder {
    ring: Ring,
    backpressure: Backpressure,
    wait: WaitStrategy,
    reclaim_after: Option<Duration>,
    opts: AttachOptions,
}

impl ProducerBuilder {
    /// Starts a new stream on the ring (default: off; LAYOUT.md §4.1). A
    /// ring whose stream was closed can then carry another: the stream
    /// generation goes up by one, the new stream starts at the current
    /// sequence, and the schema area is emptied (the new stream may have
    /// another schema). Consumers attached across the change drain the old
    /// stream, see its end once, then receive the new stream. On an open
    /// ring with messages it ends that stream too (its producer died or
    /// detached); on an open, empty stream it changes nothing. Without it,
    /// attaching to a closed ring fails with [`AttachError::StreamEnded`].
    pub fn new_stream(mut self, on: bool) -> Self {
        self.opts.new_stream = on;
        self
    }

    /// Refuse to publish while no consumer is attached (default: off):
    /// [`Producer::reserve`] and `send` fail with
    /// [`SendError::NoConsumers`](super::SendError::NoConsumers) and write
    /// nothing, instead of publishing messages nobody will read (LAYOUT.md
    /// §4.2). Combine with [`Producer::wait_for_consumers`] at start-up.
    /// Such a producer also looks for dead consumers every `reclaim_after`
    /// while it publishes, so a consumer killed mid-stream is noticed even
    /// when the ring is not full.
    pub fn require_consumers(mut self, on: bool) -> Self {
        self.opts.require_consumers = on;
        self
    }

    /// Report consumers that died (default: off): the first reserve/send
    /// after a consumer process was found dead and detached fails once
    /// with [`SendError::ConsumerLost`](super::SendError::ConsumerLost)
    /// (nothing published; send again to go on). Deaths are always logged
    /// (`tracing::warn!`) and counted ([`Producer::consumers_lost`]); like
    /// `require_consumers`, this makes the producer look for dead consumers
    /// every `reclaim_after`.
    pub fn report_lost_consumers(mut self, on: bool) -> Self {
        self.opts.report_lost_consumers = on;
        self
    }

    /// What to do when the slowest consumer is a whole ring behind (default:
    /// block without timeout).
    pub fn backpressure(mut self, b: Backpressure) -> Self {
        self.backpressure = b;
        self
    }

    /// How a blocked producer waits for space: spin, or spin then park
    /// (default).
    pub fn wait(mut self, w: WaitStrategy) -> Self {
        self.wait = w;
        self
    }

    /// After how long on a full ring dead consumers are looked for and
    /// detached (default 1 s; see [`Producer::set_reclaim_after`]).
    pub fn reclaim_after(mut self, d: Duration) -> Self {
        self.reclaim_after = Some(d);
        self
    }

    /// Attaches the producer ([`AttachError::ProducerExists`] if a live one is
    /// attached, [`AttachError::StreamEnded`] if the ring's stream was closed
    /// and [`ProducerBuilder::new_stream`] is off).
    pub fn create(self) -> Result<Producer, AttachError> {
        let mut p = self
            .ring
            .producer_opts(self.backpressure, self.wait, self.opts)?;
        if let Some(d) = self.reclaim_after {
            p.set_reclaim_after(d);
        }
        Ok(p)
    }
}

/// Configures and attaches a consumer; from [`Ring::consumer_builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until create is called"]
pub struct ConsumerBuilder {
    ring: Ring,
    kind: ConsumerKind,
    wait: WaitStrategy,
    held_lease_timeout: Option<Duration>,
    /// For the Arrow readers made from this builder (`arrow` module).
    skip_validation: bool,
    history: u32,
}

impl ConsumerBuilder {
    /// A broadcast consumer: sees every message published after it joins
    /// (the default).
    pub fn broadcast(mut self) -> Self {
        self.kind = ConsumerKind::Broadcast;
        self
    }

    /// A member of work-queue group `group` (≥ 1): each message goes to
    /// exactly one member of the group.
    pub fn queue(mut self, group: u32) -> Self {
        self.kind = ConsumerKind::Queue(group);
        self
    }

    /// History for a late joiner (default 0, as iceoryx2's
    /// `history_size`): a new broadcast consumer or queue group starts up
    /// to `n` messages before the head, so it also receives the last `n`
    /// messages published before it joined — at most `slot_count − 1`, and
    /// only messages of the current stream (LAYOUT.md §5.3). A producer
    /// that starts before its consumers then loses none of its first
    /// `n` messages as long as it is no more than that ahead. Joining an
    /// existing queue group ignores it (the group's cursor is shared).
    pub fn history(mut self, n: u32) -> Self {
        self.history = n;
        self
    }

    /// How `recv` waits: spin, or spin then park on the futex (default).
    pub fn wait(mut self, w: WaitStrategy) -> Self {
        self.wait = w;
        self
    }

    pub(crate) fn with_skip_validation(mut self, skip: bool) -> Self {
        self.skip_validation = skip;
        self
    }

    pub(crate) fn skips_validation(&self) -> bool {
        self.skip_validation
    }

    /// How long the ring may stay stalled by this consumer's own leases
    /// before a receive fails with [`RecvError::RetentionStall`](super::RecvError::RetentionStall) (default
    /// 1 s, [`DEFAULT_HELD_LEASE_TIMEOUT`](super::DEFAULT_HELD_LEASE_TIMEOUT));
    /// `None` waits for ever.
    ///
    /// A ring of `N` slots lets the producer run at most `N` messages ahead
    /// of the oldest message a consumer still holds. A consumer that keeps
    /// messages (batches read in place) and reads on would wait for ever
    /// once it has caught up; after this timeout it gets the error instead,
    /// naming the held sequence. Set it longer, or `None`, when other
    /// threads of the process drop held messages later (a pipeline).
    pub fn held_lease_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.held_lease_timeout = timeout;
        self
    }

    /// The ring this builder attaches to.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Joins the ring.
    pub fn create(self) -> Result<Consumer, AttachError> {
        if self.kind == ConsumerKind::Queue(0) {
            return Err(AttachError::InvalidArgument(
                "queue group must be >= 1".into(),
            ));
        }
        let mut c = Consumer::join(self.ring.shared.clone(), self.kind, self.wait, self.history)?;
        c.set_wait_strategy(self.wait);
        c.set_held_lease_timeout(self.held_lease_timeout);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique(tag: &str) -> String {
        format!("alloy-builder-{tag}-{}", std::process::id())
    }

    #[test]
    fn consumer_kind_is_what_was_built() {
        let ring = Ring::anonymous_builder().slot_count(4).create().unwrap();
        let b = ring.consumer_builder().create().unwrap();
        assert_eq!(b.kind(), ConsumerKind::Broadcast);
        let q = ring.consumer_builder().queue(7).create().unwrap();
        assert_eq!(q.kind(), ConsumerKind::Queue(7));
        let also = ring.join_queue(7).unwrap();
        assert_eq!(also.kind(), ConsumerKind::Queue(7));
        // Both members share the group's one subscriber entry.
        assert_eq!(q.subscriber_index(), also.subscriber_index());
        assert_ne!(b.subscriber_index(), q.subscriber_index());
        let back = ring.consumer_builder().queue(7).broadcast();
        assert_eq!(back.create().unwrap().kind(), ConsumerKind::Broadcast);
        assert!(matches!(
            ring.consumer_builder().queue(0).create(),
            Err(AttachError::InvalidArgument(_))
        ));
    }

    #[test]
    fn open_checks_only_the_fields_that_were_set() {
        let name = unique("check");
        let _ = Ring::remove(&name);
        let ring = Ring::builder(&name)
            .slot_count(4)
            .slot_size(128)
            .create()
            .unwrap();
        assert_eq!(ring.config().slot_count, 4);
        // Unset fields are taken from the ring.
        let same = Ring::builder(&name).open().unwrap();
        assert_eq!(same.config(), ring.config());
        let err = Ring::builder(&name).slot_size(256).open().unwrap_err();
        assert!(
            matches!(
                err,
                OpenError::ConfigMismatch {
                    field: "slot_size",
                    requested: 256,
                    actual: 128
                }
            ),
            "{err}"
        );
        assert!(matches!(
            Ring::builder(&name).slot_count(4).create(),
            Err(OpenError::Region(RegionError::AlreadyExists(_)))
        ));
        let again = Ring::builder(&name).slot_count(4).open_or_create().unwrap();
        assert_eq!(again.config(), ring.config());
        Ring::remove(&name).unwrap();
    }

    #[test]
    fn open_or_create_creates_and_bad_geometry_is_refused() {
        let name = unique("new");
        let _ = Ring::remove(&name);
        let ring = Ring::builder(&name)
            .slot_count(2)
            .slot_size(64)
            .max_subscribers(2)
            .max_members(3)
            .schema_capacity(0)
            .open_or_create()
            .unwrap();
        let c = ring.config();
        assert_eq!(
            (
                c.slot_count,
                c.slot_size,
                c.max_subscribers,
                c.max_members,
                c.schema_capacity
            ),
            (2, 64, 2, 3, 0)
        );
        Ring::remove(&name).unwrap();
        assert!(Ring::builder(&name).slot_count(3).create().is_err());
        assert!(Ring::builder(&name).slot_size(100).create().is_err());
        assert!(Ring::builder("bad/name").create().is_err());
        assert!(matches!(
            Ring::anonymous_builder().open(),
            Err(OpenError::InvalidArgument(_))
        ));
    }

    #[test]
    fn endpoint_builders_apply_their_options() {
        let ring = Ring::anonymous_builder()
            .slot_count(2)
            .slot_size(64)
            .create()
            .unwrap();
        let mut q1 = ring.consumer_builder().queue(7).create().unwrap();
        let mut q2 = ring
            .consumer_builder()
            .queue(7)
            .wait(WaitStrategy::Spin)
            .create()
            .unwrap();
        assert_eq!(q1.subscriber_index(), q2.subscriber_index());
        let mut b = ring.consumer_builder().broadcast().create().unwrap();
        assert_ne!(b.subscriber_index(), q1.subscriber_index());
        assert!(ring.consumer_builder().queue(0).create().is_err());
        let mut tx = ring
            .producer_builder()
            .backpressure(Backpressure::Fail)
            .reclaim_after(Duration::from_millis(10))
            .create()
            .unwrap();
        assert!(matches!(
            ring.producer_builder().create(),
            Err(AttachError::ProducerExists { .. })
        ));
        tx.send(b"a", 0).unwrap();
        tx.send(b"b", 0).unwrap();
        // Two slots, nobody released: Fail back-pressure refuses at once.
        assert!(matches!(
            tx.send(b"c", 0),
            Err(crate::ring::SendError::Full { .. })
        ));
        let a = b.recv().unwrap().unwrap();
        let got: Vec<u8> = [q1.try_recv(), q2.try_recv()]
            .into_iter()
            .filter_map(|r| r.ok().flatten().map(|l| l[0]))
            .collect();
        assert_eq!(&*a, b"a");
        // Each message to exactly one member of the group.
        assert_eq!(got, b"ab");
    }
}
