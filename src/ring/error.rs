//! Errors per operation, as iceoryx2 has them (`SendError`, `ReceiveError`,
//! …): each enum holds only what its operation can return, so a `match` on
//! a receive's error does not list `Full` or `TableFull`. [`RingError`]
//! stays the umbrella: every per-operation error converts into it (`?` in a
//! function returning `RingError` keeps working), variant to the variant of
//! the same name and text, so code matching on `RingError` sees what it saw
//! before.
//!
//! Opening and attaching keep the region layer's own error whole
//! ([`OpenError::Region`], [`AttachError::Region`]: one enum per layer,
//! chained with `#[from]`), so `NotFound`, `ForeignOwner`, `NoSpace` or an
//! `Io` with its OS error reach the caller as the region reported them.

use std::time::Duration;

use thiserror::Error;

use super::RingError;
use crate::region::RegionError;

/// `From` every per-operation ring error ([`OpenError`], [`AttachError`],
/// [`SendError`], [`RecvError`]) into a higher layer's error enum through
/// its `$variant(RingError)` variant, where each becomes the [`RingError`]
/// variant of the same name and text: `?` on any ring operation keeps
/// matching as `$outer::$variant(RingError::…)`.
macro_rules! ring_errors_into {
    ($outer:ident :: $variant:ident) => {
        $crate::ring::error::ring_errors_into!(
            @each $outer::$variant: OpenError AttachError SendError RecvError
        );
    };
    (@each $outer:ident :: $variant:ident : $($e:ident)*) => {
        $(
            impl From<$crate::ring::$e> for $outer {
                fn from(e: $crate::ring::$e) -> Self {
                    $outer::$variant(e.into())
                }
            }
        )*
    };
}
pub(crate) use ring_errors_into;

/// What creating or opening a ring can fail with
/// ([`RingBuilder::create`](super::RingBuilder::create),
/// [`RingBuilder::open`](super::RingBuilder::open),
/// [`RingBuilder::open_or_create`](super::RingBuilder::open_or_create),
/// [`Ring::open`](super::Ring::open), [`Ring::open_fd`](super::Ring::open_fd)).
#[derive(Debug, Error)]
pub enum OpenError {
    /// Creating, opening or mapping the region failed: a bad name
    /// ([`RegionError::InvalidName`]), no such ring
    /// ([`RegionError::NotFound`]), one that already exists
    /// ([`RegionError::AlreadyExists`]), another user's ring
    /// ([`RegionError::ForeignOwner`]), too little room in the directory
    /// with the `--shm-size` hint ([`RegionError::NoSpace`]), no huge pages
    /// ([`RegionError::HugePages`]), bytes that are not an Alloy ring of
    /// this version ([`RegionError::Layout`]), an fd that is not a sealed
    /// memfd ([`RegionError::NotSealed`]), not Linux
    /// ([`RegionError::UnsupportedPlatform`]) or a system call's error
    /// ([`RegionError::Io`], permission denied included, with the OS error
    /// as its source).
    #[error(transparent)]
    Region(#[from] RegionError),
    /// An existing ring's geometry differs from what the builder asked for.
    #[error("the ring's {field} is {actual}, not the requested {requested}")]
    ConfigMismatch {
        /// The [`RingConfig`](super::RingConfig) field that differs.
        field: &'static str,
        /// Value asked for.
        requested: u32,
        /// Value of the existing ring.
        actual: u32,
    },
    /// The builder cannot do what was asked (an anonymous ring opened by
    /// name: pass its fd to `Ring::open_fd`).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl From<OpenError> for RingError {
    fn from(e: OpenError) -> RingError {
        match e {
            OpenError::Region(r) => RingError::Region(r),
            OpenError::ConfigMismatch {
                field,
                requested,
                actual,
            } => RingError::ConfigMismatch {
                field,
                requested,
                actual,
            },
            OpenError::InvalidArgument(s) => RingError::InvalidArgument(s),
        }
    }
}

/// What attaching an endpoint to an open ring can fail with: the producer
/// ([`ProducerBuilder::create`](super::ProducerBuilder::create),
/// [`Ring::producer`](super::Ring::producer)) or a consumer
/// ([`ConsumerBuilder::create`](super::ConsumerBuilder::create),
/// [`Ring::subscribe`](super::Ring::subscribe),
/// [`Ring::join_queue`](super::Ring::join_queue)).
#[derive(Debug, Error)]
pub enum AttachError {
    /// Another producer is attached (one producer per ring).
    #[error("ring already has a producer (pid {pid})")]
    ProducerExists {
        /// Pid recorded in the header.
        pid: u32,
    },
    /// A producer attaching without
    /// [`ProducerBuilder::new_stream`](super::ProducerBuilder::new_stream)
    /// found the ring's stream ended (LAYOUT.md §4.1).
    #[error(
        "the stream on ring {ring} ended at sequence {seq}: a producer must start a new stream \
         on it (ProducerBuilder::new_stream; Go: ProducerOptions.NewStream), or remove the ring"
    )]
    StreamEnded {
        /// The ring's name (`(anonymous)` for a memfd ring).
        ring: String,
        /// `published` when the stream ended: its last message was `seq - 1`.
        seq: u64,
    },
    /// No free entry: the subscriber table (a new broadcast consumer or
    /// queue group) or the member table (any consumer handle) is full.
    #[error("the ring's {table} table is full ({max} entries)")]
    TableFull {
        /// `"subscriber"` or `"member"`.
        table: &'static str,
        /// Table size.
        max: u32,
    },
    /// Invalid argument (queue group 0).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A consumer's read-only mapping of the region failed
    /// ([`RegionError::Io`] with the OS error as its source).
    #[error(transparent)]
    Region(#[from] RegionError),
}

impl From<AttachError> for RingError {
    fn from(e: AttachError) -> RingError {
        match e {
            AttachError::ProducerExists { pid } => RingError::ProducerExists { pid },
            AttachError::StreamEnded { ring, seq } => RingError::StreamEnded { ring, seq },
            AttachError::TableFull { table, max } => RingError::TableFull { table, max },
            AttachError::InvalidArgument(s) => RingError::InvalidArgument(s),
            AttachError::Region(r) => RingError::Region(r),
        }
    }
}

/// What a receive ([`Consumer::recv`](super::Consumer::recv),
/// [`Consumer::try_recv`](super::Consumer::try_recv),
/// [`Consumer::recv_timeout`](super::Consumer::recv_timeout)) can fail with.
/// The end of the stream is not an error: it is `Ok(None)`.
#[derive(Debug, Error)]
pub enum RecvError {
    /// `try_recv` found no message ready (the stream is still open).
    #[error("no message ready")]
    Empty,
    /// `recv_timeout` waited longer than its timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The producer died without closing the stream (LAYOUT.md §11.2).
    /// Everything it published was delivered; a new producer may take over.
    #[error("the producer (pid {pid}) died without closing the stream")]
    ProducerGone {
        /// Pid of the dead producer.
        pid: u32,
    },
    /// The consumer joined after the ring's stream had ended (LAYOUT.md
    /// §4.1): it has nothing to read until a producer starts a new stream.
    #[error(
        "the stream on ring {ring} ended at sequence {seq}: a producer must start a new stream \
         on it (ProducerBuilder::new_stream; Go: ProducerOptions.NewStream), or remove the ring"
    )]
    StreamEnded {
        /// The ring's name (`(anonymous)` for a memfd ring).
        ring: String,
        /// `published` when the stream ended: its last message was `seq - 1`.
        seq: u64,
    },
    /// A slot's header contradicts the protocol: the memory was damaged.
    #[error("corrupt slot {slot} for sequence {seq}: stamp {stamp}, len {len}")]
    Corrupt {
        /// Sequence number being read.
        seq: u64,
        /// Slot index.
        slot: usize,
        /// Stamp found (expected `seq + 1`).
        stamp: u64,
        /// Length found.
        len: u32,
    },
    /// The ring has been full behind a message this consumer still holds
    /// for longer than its held-lease timeout (doc/README.md "Holding
    /// batches"). The consumer stays usable; receiving again waits again.
    #[error(
        "the ring is full behind sequence {seq}, whose message this consumer still holds \
         ({held} leases held): the producer cannot publish until it is released; drop the \
         batches you are done with, or copy the ones you keep (IpcReader::with_copy, \
         arrow::copy_batch)"
    )]
    RetentionStall {
        /// The oldest unreleased sequence, held by this consumer.
        seq: u64,
        /// How many leases this consumer handle holds.
        held: usize,
    },
}

impl From<RecvError> for RingError {
    fn from(e: RecvError) -> RingError {
        match e {
            RecvError::Empty => RingError::Empty,
            RecvError::Timeout(t) => RingError::Timeout(t),
            RecvError::ProducerGone { pid } => RingError::ProducerGone { pid },
            RecvError::StreamEnded { ring, seq } => RingError::StreamEnded { ring, seq },
            RecvError::Corrupt {
                seq,
                slot,
                stamp,
                len,
            } => RingError::Corrupt {
                seq,
                slot,
                stamp,
                len,
            },
            RecvError::RetentionStall { seq, held } => RingError::RetentionStall { seq, held },
        }
    }
}

/// What a send ([`Producer::send`](super::Producer::send),
/// [`Producer::reserve`](super::Producer::reserve),
/// [`Reservation::publish`](super::Reservation::publish)) can fail with.
/// Nothing was published when it fails; the producer stays usable (except
/// after `Closed`).
#[derive(Debug, Error)]
pub enum SendError {
    /// The slowest subscriber is a whole ring behind (back-pressure `Fail`).
    #[error("ring is full: the slowest consumer is {slots} slots behind")]
    Full {
        /// Number of slots in the ring.
        slots: u32,
    },
    /// `Backpressure::Block { timeout }` waited longer than its timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The producer's interrupt check ([`Producer::set_interrupt`](super::Producer::set_interrupt))
    /// ended a wait for space; the text is the check's.
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// A message does not fit in one slot (messages never span slots).
    #[error("message of {len} bytes exceeds the slot size of {max} bytes")]
    MessageTooLarge {
        /// Requested length.
        len: usize,
        /// Slot payload capacity.
        max: usize,
    },
    /// The producer already closed the stream.
    #[error("the stream is closed")]
    Closed,
    /// A producer built with `require_consumers` found no subscriber
    /// attached: nothing was published (LAYOUT.md §4.2).
    #[error(
        "no consumer is attached to ring {ring}: message {seq} was not published \
         (wait_for_consumers first, or build the producer without require_consumers)"
    )]
    NoConsumers {
        /// The ring's name.
        ring: String,
        /// Sequence the message would have had.
        seq: u64,
    },
    /// A consumer process died and was detached from the ring since the
    /// last send (producers built with `report_lost_consumers`). The
    /// message was not published; send it again to go on.
    #[error(
        "{lost} consumer(s) of the ring died and were detached (last: pid {pid}); \
         {remaining} subscriber(s) remain; the message was not published"
    )]
    ConsumerLost {
        /// Pid of the last consumer process found dead.
        pid: u32,
        /// How many consumer members were detached since the last report.
        lost: u64,
        /// Subscribers (broadcast consumers plus queue groups) still attached.
        remaining: u32,
    },
}

impl From<SendError> for RingError {
    fn from(e: SendError) -> RingError {
        match e {
            SendError::Full { slots } => RingError::Full { slots },
            SendError::Timeout(t) => RingError::Timeout(t),
            SendError::Interrupted(s) => RingError::Interrupted(s),
            SendError::MessageTooLarge { len, max } => RingError::MessageTooLarge { len, max },
            SendError::Closed => RingError::Closed,
            SendError::NoConsumers { ring, seq } => RingError::NoConsumers { ring, seq },
            SendError::ConsumerLost {
                pid,
                lost,
                remaining,
            } => RingError::ConsumerLost {
                pid,
                lost,
                remaining,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each error converts into the umbrella variant of the same name and
    /// text.
    fn same_in_umbrella<E>(errors: impl IntoIterator<Item = E>)
    where
        E: std::fmt::Display + std::fmt::Debug,
        RingError: From<E>,
    {
        for e in errors {
            let text = e.to_string();
            let name = format!("{e:?}");
            let u = RingError::from(e);
            assert_eq!(u.to_string(), text);
            assert_eq!(format!("{u:?}"), name);
        }
    }

    /// Each per-operation variant reads exactly as its umbrella variant
    /// (tests and docs match on the texts).
    #[test]
    fn conversions_keep_variant_and_text() {
        let recv = [
            RecvError::Empty,
            RecvError::Timeout(Duration::from_millis(5)),
            RecvError::ProducerGone { pid: 7 },
            RecvError::StreamEnded {
                ring: "r".into(),
                seq: 3,
            },
            RecvError::Corrupt {
                seq: 1,
                slot: 2,
                stamp: 3,
                len: 4,
            },
            RecvError::RetentionStall { seq: 9, held: 2 },
        ];
        same_in_umbrella(recv);
        let send = [
            SendError::Full { slots: 4 },
            SendError::Timeout(Duration::from_millis(5)),
            SendError::Interrupted("ctrl-c".into()),
            SendError::MessageTooLarge { len: 9, max: 8 },
            SendError::Closed,
            SendError::NoConsumers {
                ring: "r".into(),
                seq: 3,
            },
            SendError::ConsumerLost {
                pid: 7,
                lost: 1,
                remaining: 2,
            },
        ];
        same_in_umbrella(send);
        let region = || RegionError::NotFound("r".into());
        let io = || RegionError::Io {
            what: "mmap read-only".into(),
            source: std::io::Error::from_raw_os_error(12),
        };
        let open = [
            OpenError::Region(region()),
            OpenError::Region(io()),
            OpenError::ConfigMismatch {
                field: "slot_count",
                requested: 8,
                actual: 4,
            },
            OpenError::InvalidArgument("anonymous".into()),
        ];
        same_in_umbrella(open);
        let attach = [
            AttachError::ProducerExists { pid: 7 },
            AttachError::StreamEnded {
                ring: "r".into(),
                seq: 3,
            },
            AttachError::TableFull {
                table: "member",
                max: 4,
            },
            AttachError::InvalidArgument("queue group must be >= 1".into()),
            AttachError::Region(io()),
        ];
        same_in_umbrella(attach);
    }

    /// The region's own error stays the source chain's first link, so an
    /// `Io` keeps its OS error (what a caller logging `source()` sees).
    #[test]
    fn region_cause_is_kept() {
        use std::error::Error as _;
        let e = OpenError::from(RegionError::Io {
            what: "opening /dev/shm/r".into(),
            source: std::io::Error::from_raw_os_error(13),
        });
        let source = e.source().expect("the OS error");
        let os = source
            .downcast_ref::<std::io::Error>()
            .expect("an io::Error");
        assert_eq!(os.raw_os_error(), Some(13));
        let u = RingError::from(e);
        assert!(u.source().is_some_and(|s| s.is::<std::io::Error>()));
    }
}
