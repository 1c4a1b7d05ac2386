//! Errors per operation, as iceoryx2 has them (`SendError`, `ReceiveError`,
//! …): each enum holds only what its operation can return, so a `match` on
//! a receive's error does not list `Full` or `TableFull`. [`RingError`]
//! stays the umbrella: every per-operation error converts into it (`?` in a
//! function returning `RingError` keeps working), variant to the variant of
//! the same name and text, so code matching on `RingError` sees what it saw
//! before.

use std::time::Duration;

use thiserror::Error;

use super::RingError;

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
        for e in recv {
            let text = e.to_string();
            let name = format!("{e:?}");
            let u = RingError::from(e);
            assert_eq!(u.to_string(), text);
            assert_eq!(format!("{u:?}"), name);
        }
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
        for e in send {
            let text = e.to_string();
            let name = format!("{e:?}");
            let u = RingError::from(e);
            assert_eq!(u.to_string(), text);
            assert_eq!(format!("{u:?}"), name);
        }
    }
}
