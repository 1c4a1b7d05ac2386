package ring

import (
	"errors"
	"fmt"
	"runtime"
	"time"
)

// lockTable takes table_lock (LAYOUT §5.3): CAS its identity word 0 → id
// (pid and start time, §11.1), spinning briefly, then sleeping 50 µs
// between tries. Goroutines of one process share an identity, which is
// fine: the CAS only ever succeeds on 0.
func (r *Ring) lockTable(id uint64) {
	lock := u64At(r.mem, offTableLock)
	// Acquire: pairs with the Release store in unlockTable, so the previous
	// holder's table writes are visible.
	for i := 0; !lock.CompareAndSwap(0, id); i++ {
		// A holder that died with the lock would block every join forever:
		// take the lock over from a dead holder (gone, or its pid reused).
		if holder := lock.Load(); holder != 0 && holder != id && identityDead(holder) &&
			lock.CompareAndSwap(holder, id) {
			return
		}
		if i < 64 {
			runtime.Gosched()
		} else {
			time.Sleep(50 * time.Microsecond)
		}
	}
}

func (r *Ring) unlockTable() {
	u64At(r.mem, offTableLock).Store(0) // Release, pairs with lockTable's CAS; the whole identity word
}

// wakeSpace is §5.2 step 3: wake a producer parked on a full ring, paying a
// system call only when one is parked.
// It reports whether it issued a wake-up.
func (r *Ring) wakeSpace() bool {
	if u32At(r.mem, offSpaceWaiters).Load() != 0 { // SeqCst; pairs with the producer's increment
		f := u32At(r.mem, offSpaceFutex)
		f.Add(1)
		futexWakeAll(f)
		return true
	}
	return false
}

// join attaches one consumer handle: a new broadcast subscriber, or a member
// of queue group `group` (creating the group's subscriber entry if it is
// the first member). It returns the subscriber and member indices.
func (r *Ring) join(kind, group uint32, history int) (k, j uint32, err error) {
	l := &r.lay
	m := r.mem
	id := r.env.id()
	r.lockTable(id)
	defer r.unlockTable()

	j, ok := findEntry(l.MaxMembers, func(j uint32) bool {
		return u32At(m, l.memberOff(j)+memState).Load() == stateFree
	})
	if !ok {
		return 0, 0, fmt.Errorf("%w: all %d member entries are in use", ErrTableFull, l.MaxMembers)
	}
	joined := false
	if kind == kindQueue {
		k, joined = findEntry(l.MaxSubscribers, func(k uint32) bool {
			off := l.subOff(k)
			return u32At(m, off+subState).Load() == stateActive &&
				u32At(m, off+subKind).Load() == kindQueue &&
				u32At(m, off+subGroup).Load() == group
		})
	}
	if joined {
		// Members share the group's cursors: this one gets whatever is
		// still unclaimed. Counted before the member entry exists, so a
		// joiner dying in between leaves the group alive rather than
		// letting a reclaim (§11.3) free it under its live members.
		u32At(m, l.subOff(k)+subMembers).Add(1)
		r.newMember(j, k, id)
		return k, j, nil
	}
	k, ok = findEntry(l.MaxSubscribers, func(k uint32) bool {
		return u32At(m, l.subOff(k)+subState).Load() == stateFree
	})
	if !ok {
		return 0, 0, fmt.Errorf("%w: all %d subscriber entries are in use", ErrTableFull, l.MaxSubscribers)
	}
	r.newSubscriber(k, kind, group, id, history, func() { r.newMember(j, k, id) })
	return k, j, nil
}

// newMember fills member entry j for subscriber k (LAYOUT §5.3 "Member
// entry"); id is the member's identity word (§11.1).
func (r *Ring) newMember(j, k uint32, id uint64) {
	m := r.mem
	off := r.lay.memberOff(j)
	u32At(m, off+memSubscriber).Store(k)
	u64At(m, off+memPid).Store(id) // pid and start time in one store
	u64At(m, off+memHeartbeat).Store(r.env.monoNs())
	r.resetMemberCounters(j) // an earlier member's counts are not ours (§2.1)
	u32At(m, off+memState).Store(stateActive)
}

// newSubscriber is the late-joiner protocol of LAYOUT §5.3 steps 1–5; the
// comment there explains why a producer on a stale gate can never
// overwrite a sequence this subscriber will want.
//
// beforeActive runs between steps 4 and 5 and writes the member entry: a
// joiner dying before it leaves a JOINING entry, after it a dead member,
// and a reclaim (§11.3) frees the subscriber either way. (With the member
// written after step 5, a death in between would leave an ACTIVE entry
// with no member gating the ring for good.)
func (r *Ring) newSubscriber(k, kind, group uint32, id uint64, history int, beforeActive func()) {
	m := r.mem
	off := r.lay.subOff(k)
	u32At(m, off+subState).Store(stateJoining) // SeqCst: the producer's scan now gates on us
	if kind == kindQueue || history > 0 {
		// No marker of an earlier occupant may look like ours, nor, when we
		// start before the head, an earlier occupant's released value like
		// a release of ours.
		r.clearDone(k)
	}
	u32At(m, off+subKind).Store(kind)
	u32At(m, off+subGroup).Store(group)
	u32At(m, off+subMembers).Store(1)
	u64At(m, off+subOwnerPid).Store(id) // owner_pid and owner_start in one store
	u64At(m, off+subHeartbeat).Store(r.env.monoNs())

	published := u64At(m, offPublished)
	claim, release := u64At(m, off+subClaim), u64At(m, off+subRelease)
	// Where we start for head p: p, or with history up to `history`
	// messages of the current stream before it, at most N-1 — a producer
	// on a stale gate writes at most sequence p2 (below), whose slot is
	// that of p2-N, below where we start.
	n := uint64(r.lay.SlotCount)
	back := uint64(min(max(history, 0), int(n-1)))
	at := func(p uint64) uint64 {
		s := max(p-min(p, back), p+1-min(p+1, n), u64At(m, offStreamStart).Load())
		return min(s, p)
	}
	// at reads stream_start, which a producer starting a new stream stores
	// without the table lock: compute it once per head, so release and
	// claim never differ (sequences between them would never be claimed,
	// never released, and stall the ring for good).
	p := published.Load() // SeqCst
	s := at(p)
	release.Store(s) // SeqCst
	claim.Store(s)
	u64At(m, offTableEpoch).Add(1) // SeqCst: the producer rescans before its next write
	if p2 := published.Load(); p2 != p {
		// The producer may have written on a gate that predates us; skip
		// what it published meanwhile (moving an unread cursor forward only
		// releases).
		s2 := at(p2)
		release.Store(s2)
		claim.Store(s2)
	}
	beforeActive()
	u32At(m, off+subState).Store(stateActive)
	// The producer may have parked on the JOINING entry's gate.
	r.wakeSpace()
}

// leave frees member j and, with its last member, subscriber k. A member
// entry that is no longer ours (a producer judged us dead and reclaimed it,
// LAYOUT §11.3, and someone else may have joined since) is left alone:
// decrementing its subscriber would detach a stranger.
func (r *Ring) leave(k, j uint32) {
	l := &r.lay
	m := r.mem
	pid := r.env.pid()
	r.lockTable(r.env.id())
	mem := l.memberOff(j)
	if u32At(m, mem+memState).Load() == stateActive && u32At(m, mem+memPid).Load() == pid &&
		u32At(m, mem+memSubscriber).Load() == k {
		u32At(m, mem+memState).Store(stateFree)
		off := l.subOff(k)
		if u32At(m, off+subMembers).Add(^uint32(0)) == 0 {
			// The producer stops gating on us at its next rescan.
			u32At(m, off+subState).Store(stateFree)
			// SeqCst; the producer recounts its receivers (LAYOUT §5.3).
			u64At(m, offTableEpoch).Add(1)
		}
	}
	r.unlockTable()
	r.wakeSpace()
}

// reclaim detaches dead consumers (LAYOUT §11.3): under the table lock,
// every ACTIVE member whose identity (pid, start time) is dead — gone, or
// its pid reused; never merely stopped (§11.1) — leaves as in leave, and
// every JOINING subscriber whose owner died while joining becomes FREE. It
// returns the number of member and subscriber entries freed. The producer
// calls it when it has been blocked on a full ring for a while.
func (r *Ring) reclaim() int {
	l := &r.lay
	m := r.mem
	r.lockTable(r.env.id())
	defer r.unlockTable()
	freed := 0
	var redelivered uint64
	defer func() {
		if redelivered > 0 {
			// Members parked on an empty ring must look at the redeliveries.
			f := u32At(m, offDataFutex)
			f.Add(1)
			futexWakeAll(f)
		}
	}()
	defer func() {
		if freed > 0 {
			// SeqCst; counts and gates are recomputed (LAYOUT §5.3).
			u64At(m, offTableEpoch).Add(1)
		}
	}()
	defer func() {
		if freed > 0 {
			r.noteReclaim() // under the table lock: deferred before the unlock runs
		}
	}()
	for j := uint32(0); j < l.MaxMembers; j++ {
		off := l.memberOff(j)
		who := u64At(m, off+memPid).Load()
		if u32At(m, off+memState).Load() != stateActive || !identityDead(who) {
			continue
		}
		r.noteLost(identityPid(who))
		k := u32At(m, off+memSubscriber).Load()
		// A queue group that survives its member gets the member's
		// sequences back, before the entry is freed: a reclaimer dying
		// half-way leaves the member to the next reclaim.
		if k < l.MaxSubscribers && u32At(m, l.subOff(k)+subKind).Load() == kindQueue &&
			u32At(m, l.subOff(k)+subMembers).Load() > 1 {
			redelivered += r.reclaimMember(k, j)
		}
		u32At(m, off+memState).Store(stateFree)
		freed++
		if k >= l.MaxSubscribers {
			continue // a damaged entry: freeing the member is all we can do
		}
		sub := l.subOff(k)
		// members is only changed under the lock; never wrap below zero
		// on a damaged entry.
		if n := u32At(m, sub+subMembers).Load(); n > 1 {
			u32At(m, sub+subMembers).Store(n - 1)
		} else {
			u32At(m, sub+subMembers).Store(0)
			// The producer stops gating on it at its next scan.
			u32At(m, sub+subState).Store(stateFree)
			freed++
		}
	}
	for k := uint32(0); k < l.MaxSubscribers; k++ {
		off := l.subOff(k)
		// Joins happen under the lock we hold, so a JOINING entry can only
		// be left by a joiner that died holding it; test the owner anyway,
		// as §11.3 says.
		if u32At(m, off+subState).Load() == stateJoining && identityDead(u64At(m, off+subOwnerPid).Load()) {
			u32At(m, off+subState).Store(stateFree)
			freed++
		}
	}
	return freed
}

func findEntry(n uint32, match func(uint32) bool) (uint32, bool) {
	for i := uint32(0); i < n; i++ {
		if match(i) {
			return i, true
		}
	}
	return 0, false
}

// errBadGroup is returned for queue group 0, which LAYOUT §3.1 reserves for
// broadcast subscribers.
var errBadGroup = errors.New("alloy: work-queue group ids start at 1")
