//! The subscriber and member tables (LAYOUT.md §5.3), as `go/ring/table.go`
//! has them: the table lock, join and leave, both reclaims of dead consumers
//! (the producer's over the whole table and a queue member's over its group,
//! §11.3) and freeing an entry. Entries are read and written through the
//! typed views [`SubscriberEntry`] and [`MemberEntry`], which name the atomic
//! words at their LAYOUT offsets; nothing here changes a byte of the layout.
//!
//! Every table word is accessed SeqCst, as the protocol's scans of it are
//! (LAYOUT.md §5.3): the producer reads `state` without the lock.

use std::time::Duration;

use crossbeam_utils::Backoff;

use super::proto::{self, Words};
use super::{counters, liveness, redeliver, watch, AttachError, ConsumerKind, Shared};
use crate::layout::{kind, off, state};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Subscriber entry `k` (LAYOUT.md §5.3 "Subscriber entry"): its words by
/// name.
#[derive(Clone, Copy)]
pub(crate) struct SubscriberEntry<'a> {
    sh: &'a Shared,
    at: usize,
}

impl<'a> SubscriberEntry<'a> {
    /// FREE, JOINING or ACTIVE.
    pub(crate) fn state(&self) -> &'a AtomicU32 {
        self.sh.hdr32(self.at + off::SUB_STATE)
    }
    /// Broadcast or queue (`layout::kind`).
    pub(crate) fn kind(&self) -> &'a AtomicU32 {
        self.sh.hdr32(self.at + off::SUB_KIND)
    }
    /// The queue group (0 for broadcast).
    pub(crate) fn group(&self) -> &'a AtomicU32 {
        self.sh.hdr32(self.at + off::SUB_GROUP)
    }
    /// Attached member entries; changed only under the table lock.
    pub(crate) fn members(&self) -> &'a AtomicU32 {
        self.sh.hdr32(self.at + off::SUB_MEMBERS)
    }
    /// The identity word (pid and start, §11.1) of the process that created
    /// the entry.
    pub(crate) fn owner(&self) -> &'a AtomicU64 {
        self.sh.hdr64(self.at + off::SUB_OWNER_PID)
    }
    /// Offset of the heartbeat word (the heartbeat thread writes it).
    pub(crate) fn heartbeat_at(&self) -> usize {
        self.at + off::SUB_HEARTBEAT
    }
    /// The heartbeat word.
    pub(crate) fn heartbeat(&self) -> &'a AtomicU64 {
        self.sh.hdr64(self.heartbeat_at())
    }
    /// Next sequence to hand out.
    pub(crate) fn claim(&self) -> &'a AtomicU64 {
        self.sh.hdr64(self.at + off::SUB_CLAIM)
    }
    /// Every sequence below it is released.
    pub(crate) fn release(&self) -> &'a AtomicU64 {
        self.sh.hdr64(self.at + off::SUB_RELEASE)
    }
    /// Whether the entry is in state `s`.
    fn is(&self, s: u32) -> bool {
        self.state().load(Ordering::SeqCst) == s
    }
}

/// Member entry `j` (LAYOUT.md §5.3 "Member entry"): its words by name.
#[derive(Clone, Copy)]
pub(crate) struct MemberEntry<'a> {
    sh: &'a Shared,
    at: usize,
}

impl<'a> MemberEntry<'a> {
    /// FREE or ACTIVE.
    pub(crate) fn state(&self) -> &'a AtomicU32 {
        self.sh.hdr32(self.at + off::MEM_STATE)
    }
    /// The subscriber entry this member belongs to.
    pub(crate) fn subscriber(&self) -> &'a AtomicU32 {
        self.sh.hdr32(self.at + off::MEM_SUBSCRIBER)
    }
    /// The member's pid (the low half of [`MemberEntry::identity`]).
    pub(crate) fn pid(&self) -> &'a AtomicU32 {
        self.sh.hdr32(self.at + off::MEM_PID)
    }
    /// The member's identity word: pid and start time (§11.1) in one u64.
    pub(crate) fn identity(&self) -> &'a AtomicU64 {
        self.sh.hdr64(self.at + off::MEM_PID)
    }
    /// Offset of the heartbeat word (the heartbeat thread writes it).
    pub(crate) fn heartbeat_at(&self) -> usize {
        self.at + off::MEM_HEARTBEAT
    }
    /// The heartbeat word.
    pub(crate) fn heartbeat(&self) -> &'a AtomicU64 {
        self.sh.hdr64(self.heartbeat_at())
    }
    /// One of the informational counters (`off::MEM_PARKS`,
    /// `off::MEM_PARK_NS`, `off::MEM_SPACE_WAKES`; LAYOUT.md §2.1).
    pub(crate) fn counter(&self, field: usize) -> &'a AtomicU64 {
        debug_assert!(matches!(
            field,
            off::MEM_PARKS | off::MEM_PARK_NS | off::MEM_SPACE_WAKES
        ));
        self.sh.hdr64(self.at + field)
    }
    /// Whether the entry is ACTIVE.
    fn active(&self) -> bool {
        self.state().load(Ordering::SeqCst) == state::ACTIVE
    }
}

impl Shared {
    /// The view of subscriber entry `k` (`k` < `max_subscribers`).
    pub(crate) fn subscriber(&self, k: usize) -> SubscriberEntry<'_> {
        debug_assert!(k < self.layout.config.max_subscribers as usize);
        SubscriberEntry {
            sh: self,
            at: self.layout.sub(k),
        }
    }

    /// The view of member entry `j` (`j` < `max_members`).
    pub(crate) fn member(&self, j: usize) -> MemberEntry<'_> {
        debug_assert!(j < self.layout.config.max_members as usize);
        MemberEntry {
            sh: self,
            at: self.layout.member(j),
        }
    }

    /// Takes the table lock (LAYOUT.md §5.3): CAS its identity word 0 →
    /// ours. A holder that is dead (§11.1: gone, or its pid reused) is
    /// replaced.
    pub(crate) fn lock_table(&self) -> TableGuard<'_> {
        let lock = self.hdr64(off::TABLE_LOCK);
        let me = self.ident.word();
        let backoff = Backoff::new();
        loop {
            // Acquire: pairs with the Release store in `TableGuard::drop`.
            match lock.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return TableGuard { shared: self },
                // Another thread of ours holds it when the word is ours.
                Err(holder) if holder != me && liveness::identity_dead(holder) => {
                    if lock
                        .compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        tracing::warn!(
                            dead_pid = liveness::identity_pid(holder),
                            "took over the table lock of a dead process"
                        );
                        return TableGuard { shared: self };
                    }
                }
                Err(_) => {}
            }
            if backoff.is_completed() {
                std::thread::sleep(Duration::from_micros(50));
            } else {
                backoff.snooze();
            }
        }
    }
}

/// Holds the table lock; releases it on drop.
pub(crate) struct TableGuard<'a> {
    shared: &'a Shared,
}

impl Drop for TableGuard<'_> {
    fn drop(&mut self) {
        // Release: table changes made under the lock are visible to the next
        // holder's Acquire CAS. The whole identity word is cleared.
        self.shared
            .hdr64(off::TABLE_LOCK)
            .store(0, Ordering::Release);
    }
}

/// Where [`join`] attached a consumer, and the stream it found.
pub(crate) struct Joined {
    /// Subscriber entry index.
    pub sub: usize,
    /// Member entry index.
    pub member: usize,
    /// Generation of the stream joined (LAYOUT.md §4.1).
    pub gen: u32,
    /// `published`, if the stream had already ended when we joined.
    pub joined_ended: Option<u64>,
}

/// Attaches one consumer handle: a new broadcast subscriber, or a member of
/// queue group `group` (creating the group's subscriber entry if it is the
/// first member), starting up to `history` messages before the head
/// (LAYOUT.md §5.3 steps 1–5).
pub(crate) fn join(sh: &Shared, kind: ConsumerKind, history: u32) -> Result<Joined, AttachError> {
    let (kind_, group) = (kind.word(), kind.group());
    let cfg = sh.layout.config;
    let now = sh.ident.now_ns();
    // Our identity word (LAYOUT.md §11.1): pid and start time in one u64.
    let me = sh.ident.word();
    let guard = sh.lock_table();
    let member = free_entry("member", cfg.max_members, |j| sh.member(j).state())?;
    let existing = (kind_ == kind::QUEUE)
        .then(|| {
            (0..cfg.max_subscribers as usize).find(|&k| {
                let s = sh.subscriber(k);
                s.is(state::ACTIVE)
                    && s.kind().load(Ordering::SeqCst) == kind::QUEUE
                    && s.group().load(Ordering::SeqCst) == group
            })
        })
        .flatten();
    let m = sh.member(member);
    // The member entry is complete before the subscriber turns ACTIVE, so a
    // joiner dying at any point leaves either a JOINING subscriber or a dead
    // member, both reclaimable (LAYOUT.md §11.3).
    let write_member = |sub: usize| {
        m.subscriber().store(sub as u32, Ordering::SeqCst);
        m.identity().store(me, Ordering::SeqCst);
        m.heartbeat().store(now, Ordering::SeqCst);
        // An earlier member's counts are not ours (LAYOUT.md §2.1).
        counters::reset_member(sh, member);
        m.state().store(state::ACTIVE, Ordering::SeqCst);
    };
    let sub = match existing {
        Some(k) => {
            sh.subscriber(k).members().fetch_add(1, Ordering::SeqCst);
            write_member(k);
            k
        }
        None => {
            let k = free_entry("subscriber", cfg.max_subscribers, |k| {
                sh.subscriber(k).state()
            })?;
            let s = sh.subscriber(k);
            s.state().store(state::JOINING, Ordering::SeqCst);
            if kind_ == kind::QUEUE || history > 0 {
                // No marker of an earlier occupant may look like ours, nor,
                // when we start before the head, an earlier occupant's
                // released value like a release of ours (LAYOUT.md §5.3).
                redeliver::clear_done(sh, k);
            }
            s.kind().store(kind_, Ordering::SeqCst);
            s.group().store(group, Ordering::SeqCst);
            s.members().store(1, Ordering::SeqCst);
            s.owner().store(me, Ordering::SeqCst);
            s.heartbeat().store(now, Ordering::SeqCst);
            // History (LAYOUT.md §5.3): up to `history` messages of the
            // current stream before the head, at most N − 1.
            let back = u64::from(history.min(cfg.slot_count - 1));
            let n = u64::from(cfg.slot_count);
            proto::join_cursors_at(sh, k, |p| {
                let start = sh.hdr64(off::STREAM_START).load(Ordering::SeqCst);
                p.saturating_sub(back)
                    .max((p + 1).saturating_sub(n))
                    .max(start)
                    .min(p)
            });
            write_member(k);
            s.state().store(state::ACTIVE, Ordering::SeqCst);
            k
        }
    };
    // Which stream we joined (LAYOUT.md §4.1): read after our cursor is
    // placed, so an older stream's messages past it are skipped.
    let gen = sh.hdr32(off::STREAM_GEN).load(Ordering::SeqCst);
    let joined_ended =
        (sh.closed().load(Ordering::SeqCst) == 1).then(|| sh.published().load(Ordering::SeqCst));
    drop(guard);
    Ok(Joined {
        sub,
        member,
        gen,
        joined_ended,
    })
}

/// Detaches member `j` of subscriber `k` as the consumer handle goes away.
/// Only what is still ours is undone: a producer may have reclaimed the
/// entry (judging us dead) and handed it to someone else (§11.3), and
/// decrementing its subscriber would detach a stranger.
pub(crate) fn leave(sh: &Shared, k: usize, j: usize) {
    let g = sh.lock_table();
    let m = sh.member(j);
    let ours = m.active()
        && m.pid().load(Ordering::SeqCst) == sh.ident.pid
        && m.subscriber().load(Ordering::SeqCst) as usize == k;
    if ours && free_member(sh, m, Some(k)) {
        // The producer recounts its receivers (LAYOUT.md §5.3).
        sh.hdr64(off::TABLE_EPOCH).fetch_add(1, Ordering::SeqCst);
    }
    drop(g);
    sh.wake_space();
}

/// Frees member entry `m` of subscriber `k` (`None`: a damaged entry naming
/// no valid subscriber) and, with its last member, the subscriber entry.
/// Returns whether the subscriber entry was freed. The caller holds the
/// table lock and bumps `table_epoch` when the table changed as it needs.
fn free_member(sh: &Shared, m: MemberEntry<'_>, k: Option<usize>) -> bool {
    m.state().store(state::FREE, Ordering::SeqCst);
    let Some(k) = k else { return false };
    let s = sh.subscriber(k);
    let members = s.members();
    // Saturating: damaged memory must not make us panic (`members` is only
    // changed under the lock, so load and store do not race).
    let left = members.load(Ordering::SeqCst).saturating_sub(1);
    members.store(left, Ordering::SeqCst);
    if left == 0 {
        // SeqCst: the producer's scan stops gating on this entry.
        s.state().store(state::FREE, Ordering::SeqCst);
    }
    left == 0
}

/// The producer's reclaim, LAYOUT.md §11.3: detaches members (and
/// half-joined subscribers) whose process is dead (§11.1: gone, or its pid
/// reused — never merely stopped). Returns how many entries were freed.
pub(crate) fn reclaim_dead(sh: &Shared) -> usize {
    let cfg = sh.layout.config;
    let g = sh.lock_table();
    let mut freed = 0;
    let mut redelivered = 0u64;
    for j in 0..cfg.max_members as usize {
        let m = sh.member(j);
        if !m.active() {
            continue;
        }
        let who = m.identity().load(Ordering::SeqCst);
        if !liveness::identity_dead(who) {
            continue;
        }
        let pid = liveness::identity_pid(who);
        let k = m.subscriber().load(Ordering::SeqCst) as usize;
        let valid = (k < cfg.max_subscribers as usize).then_some(k);
        if let Some(k) = valid {
            let s = sh.subscriber(k);
            // A queue group that survives its member gets the member's
            // sequences back, before the entry is freed: a reclaimer dying
            // half-way leaves the member to the next reclaim.
            if s.kind().load(Ordering::SeqCst) == kind::QUEUE
                && s.members().load(Ordering::SeqCst) > 1
            {
                let n = redeliver::reclaim_member(sh, k, j as u32);
                if n > 0 {
                    tracing::warn!(
                        pid,
                        member = j,
                        subscriber = k,
                        sequences = n,
                        "redelivering a dead queue member's messages"
                    );
                    redelivered += n;
                }
            }
        }
        free_member(sh, m, valid);
        watch::note_lost(sh, pid);
        tracing::warn!(pid, member = j, subscriber = k, "detached a dead consumer");
        freed += 1;
    }
    for k in 0..cfg.max_subscribers as usize {
        let s = sh.subscriber(k);
        if s.is(state::JOINING) && liveness::identity_dead(s.owner().load(Ordering::SeqCst)) {
            s.state().store(state::FREE, Ordering::SeqCst);
            freed += 1;
        }
    }
    if freed > 0 {
        // SeqCst: the table changed; counts and gates are recomputed
        // (LAYOUT.md §5.3).
        sh.hdr64(off::TABLE_EPOCH).fetch_add(1, Ordering::SeqCst);
        counters::note_reclaim(sh);
    }
    drop(g);
    if redelivered > 0 {
        // Members parked on an empty ring must look at the redeliveries.
        sh.wake_data_always();
    }
    freed
}

/// A queue member's reclaim of its own group: redelivers the messages dead
/// members of queue subscriber `k` hold and detaches them (LAYOUT.md §11.3,
/// as [`reclaim_dead`] does for the whole table). Returns how many
/// sequences now wait for redelivery.
pub(crate) fn reclaim_dead_members(sh: &Shared, k: usize) -> u64 {
    let g = sh.lock_table();
    let s = sh.subscriber(k);
    let mut moved = 0;
    let mut freed = false;
    for j in 0..sh.layout.config.max_members as usize {
        let m = sh.member(j);
        if !m.active() || m.subscriber().load(Ordering::SeqCst) as usize != k {
            continue;
        }
        let who = m.identity().load(Ordering::SeqCst);
        let pid = liveness::identity_pid(who);
        // The caller is a live member, so the group survives (`> 1`).
        // Dead means gone (§11.1), never merely stopped.
        if !liveness::identity_dead(who) || s.members().load(Ordering::SeqCst) < 2 {
            continue;
        }
        moved += redeliver::reclaim_member(sh, k, j as u32);
        freed = true;
        // At least two members: the subscriber entry stays.
        free_member(sh, m, Some(k));
        watch::note_lost(sh, pid);
        // SeqCst: the producer notices the loss at its next reservation.
        sh.hdr64(off::TABLE_EPOCH).fetch_add(1, Ordering::SeqCst);
        tracing::warn!(
            pid,
            member = j,
            subscriber = k,
            "a queue member detached a dead member of its group"
        );
    }
    if freed {
        counters::note_reclaim(sh);
    }
    drop(g);
    if moved > 0 {
        sh.wake_data_always();
    }
    moved
}

/// The first FREE entry of a table of `max` entries (caller holds the table
/// lock); `state(i)` is entry `i`'s state word.
fn free_entry<'a>(
    table: &'static str,
    max: u32,
    state_of: impl Fn(usize) -> &'a AtomicU32,
) -> Result<usize, AttachError> {
    (0..max as usize)
        .find(|&i| state_of(i).load(Ordering::SeqCst) == state::FREE)
        .ok_or(AttachError::TableFull { table, max })
}
