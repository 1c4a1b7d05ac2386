//! The one ring-in-model-checked-memory that every loom model of the ring
//! protocol runs on (`proto.rs`'s models and the redelivery models of
//! `proto_redeliver_loom.rs`): `N` slots, `S` subscriber entries, their done
//! arrays, and the payloads as loom `UnsafeCell`s so loom flags any payload
//! access that the protocol does not order.
//!
//! Compiled only under `--cfg loom` for tests (`make loom`).

use super::Words;
use crate::layout::state;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use loom::cell::UnsafeCell;

/// A ring held in ordinary (model-checked) memory: `n` slots, `subs`
/// subscriber entries (all FREE until [`Heap::activate`]).
pub(crate) struct Heap {
    pub n: u64,
    pub published: AtomicU64,
    pub closed: AtomicU32,
    pub epoch: AtomicU64,
    pub sub_state: Vec<AtomicU32>,
    pub claim: Vec<AtomicU64>,
    pub release: Vec<AtomicU64>,
    /// Queue subscribers only: the redelivery hint (LAYOUT §3.1).
    pub redeliver: Vec<AtomicU64>,
    /// `done[k * n + i]`: subscriber `k`'s done word for slot `i`.
    pub done: Vec<AtomicU64>,
    pub stamp: Vec<AtomicU64>,
    pub len: Vec<AtomicU32>,
    pub flags: Vec<AtomicU32>,
    /// The payloads: loom flags any unsynchronised access to these.
    pub payload: Vec<UnsafeCell<u64>>,
}

impl Heap {
    pub fn new(n: usize, subs: usize) -> Heap {
        let v64 = |c| (0..c).map(|_| AtomicU64::new(0)).collect();
        let v32 = |c| (0..c).map(|_| AtomicU32::new(0)).collect();
        Heap {
            n: n as u64,
            published: AtomicU64::new(0),
            closed: AtomicU32::new(0),
            epoch: AtomicU64::new(0),
            sub_state: v32(subs),
            claim: v64(subs),
            release: v64(subs),
            redeliver: v64(subs),
            done: v64(subs * n),
            stamp: v64(n),
            len: v32(n),
            flags: v32(n),
            payload: (0..n).map(|_| UnsafeCell::new(0)).collect(),
        }
    }

    /// Subscriber `k` joins at the head (LAYOUT §5.3) and becomes ACTIVE.
    pub fn activate(&self, k: usize) {
        self.sub_state[k].store(state::JOINING, Ordering::SeqCst);
        super::join_cursors(self, k);
        self.sub_state[k].store(state::ACTIVE, Ordering::SeqCst);
    }
}

impl Words for Heap {
    fn slot_count(&self) -> u64 {
        self.n
    }
    fn subscribers(&self) -> usize {
        self.sub_state.len()
    }
    fn published(&self) -> &AtomicU64 {
        &self.published
    }
    fn closed(&self) -> &AtomicU32 {
        &self.closed
    }
    fn table_epoch(&self) -> &AtomicU64 {
        &self.epoch
    }
    fn sub_state(&self, k: usize) -> &AtomicU32 {
        &self.sub_state[k]
    }
    fn sub_claim(&self, k: usize) -> &AtomicU64 {
        &self.claim[k]
    }
    fn sub_release(&self, k: usize) -> &AtomicU64 {
        &self.release[k]
    }
    fn done(&self, k: usize, i: usize) -> &AtomicU64 {
        &self.done[k * self.n as usize + i]
    }
    fn stamp(&self, i: usize) -> &AtomicU64 {
        &self.stamp[i]
    }
    fn slot_len(&self, i: usize) -> &AtomicU32 {
        &self.len[i]
    }
    fn slot_flags(&self, i: usize) -> &AtomicU32 {
        &self.flags[i]
    }
}
