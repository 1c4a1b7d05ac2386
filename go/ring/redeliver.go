package ring

// Work-queue claims with holder markers and redelivery of the sequences a
// dead member held (LAYOUT §3.3, §5.1, §11.3); the Rust twin is
// src/ring/redeliver.rs. The done word of a queue subscriber goes, for
// sequence s: previous value (0 or a released s'+1 ≤ s+1−N) → HELD(me, s)
// (the claimer, right after winning the claim CAS) → s+1 (release). A
// reclaimer turns HELD(dead, s), or a previous value below claim (claimed,
// holder not yet recorded), into REDELIVER(s); exactly one member then
// turns that into HELD(itself, s). Every transition is a CAS on the one
// word, so a sequence has at most one live holder at a time.

const (
	doneMarker      = uint64(1) << 63 // bit 63: a marker, not a released s+1
	doneHolderShift = 48
	doneHolderMask  = 0x7FFF
	// doneRedeliverHolder is the holder field of REDELIVER(s); no member
	// index is this large (max_members ≤ 256).
	doneRedeliverHolder = 0x7FFF
	doneSeqMask         = uint64(1)<<48 - 1
)

func doneMark(holder uint32, seq uint64) uint64 {
	return doneMarker | (uint64(holder)&doneHolderMask)<<doneHolderShift | (seq+1)&doneSeqMask
}

// doneHeld is HELD(member, seq).
func doneHeld(member uint32, seq uint64) uint64 { return doneMark(member, seq) }

// doneRedeliver is REDELIVER(seq).
func doneRedeliver(seq uint64) uint64 { return doneMark(doneRedeliverHolder, seq) }

// earlierLap reports whether a done word is left from an earlier lap (0 or
// a released s'+1 with s' < seq): seq is claimed with no recorded holder.
func earlierLap(word, seq uint64) bool { return word&doneMarker == 0 && word < seq+1 }

// queueClaim is LAYOUT §5.1 for member me of queue subscriber k: a
// sequence waiting for redelivery first, else a new one. ok=false with
// ended=false means empty for now.
func (r *Ring) queueClaim(k, me uint32) (seq uint64, redelivered, ok, ended bool) {
	m := r.mem
	off := r.lay.subOff(k)
	claim, redeliver := u64At(m, off+subClaim), u64At(m, off+subRedeliver)
	published, closed := u64At(m, offPublished), u32At(m, offClosed)
	for {
		// Pairs with the reclaimer's increment, made before the CAS that
		// creates the REDELIVER word; the reclaimer wakes parked members.
		if redeliver.Load() != 0 {
			if s, got := r.takeRedelivery(k, me); got {
				return s, true, true, false
			}
		}
		c := claim.Load()
		if c >= published.Load() {
			// Not gated on redeliver: a count left too high by a reclaimer
			// that died mid-step must not hide the end for ever. A
			// REDELIVER made after our scan is caught by checkGroup's scan
			// under the table lock (hasRedelivery).
			if closed.Load() == 1 && published.Load() <= c {
				return 0, false, false, true
			}
			return 0, false, false, false
		}
		if !claim.CompareAndSwap(c, c+1) { // members race for c; one CAS wins
			continue
		}
		if r.markHeld(k, me, c) {
			return c, false, true, false
		}
		// A reclaimer judged c orphaned while we were between the two CASes
		// and another member took it: it is theirs, claim again.
	}
}

// markHeld records me as the holder of seq, which me just won with the
// claim CAS; false when another member holds or held it meanwhile.
func (r *Ring) markHeld(k, me uint32, seq uint64) bool {
	word := u64At(r.mem, r.lay.doneOff(k, seq%uint64(r.lay.SlotCount)))
	for {
		cur := word.Load()
		tookRedeliver := cur == doneRedeliver(seq)
		if !tookRedeliver && !earlierLap(cur, seq) {
			return false // HELD(other, seq), seq+1, or a later lap's value
		}
		// Ordered with the reclaimer's CAS on the same word.
		if word.CompareAndSwap(cur, doneHeld(me, seq)) {
			if tookRedeliver {
				// Ours since the claim CAS, never handed to anyone else: no
				// redelivery, just settle the count.
				u64At(r.mem, r.lay.subOff(k)+subRedeliver).Add(^uint64(0))
			}
			return true
		}
	}
}

// hasRedelivery reports whether a sequence of queue subscriber k waits for
// redelivery: the count, confirmed by a scan.
func (r *Ring) hasRedelivery(k uint32) bool {
	m := r.mem
	off := r.lay.subOff(k)
	if u64At(m, off+subRedeliver).Load() == 0 {
		return false
	}
	n := uint64(r.lay.SlotCount)
	rel, c := u64At(m, off+subRelease).Load(), u64At(m, off+subClaim).Load()
	for s := rel; s < c && s < rel+n; s++ {
		if u64At(m, r.lay.doneOff(k, s%n)).Load() == doneRedeliver(s) {
			return true
		}
	}
	return false
}

// takeRedelivery takes one sequence of subscriber k waiting for
// redelivery, if any (LAYOUT §11.3).
func (r *Ring) takeRedelivery(k, me uint32) (uint64, bool) {
	m := r.mem
	off := r.lay.subOff(k)
	n := uint64(r.lay.SlotCount)
	rel, c := u64At(m, off+subRelease).Load(), u64At(m, off+subClaim).Load()
	// At most one lap: damaged cursors must not make us loop for ages.
	for s := rel; s < c && s < rel+n; s++ {
		word := u64At(m, r.lay.doneOff(k, s%n))
		// Exactly one member turns REDELIVER(s) into its HELD.
		if want := doneRedeliver(s); word.Load() == want && word.CompareAndSwap(want, doneHeld(me, s)) {
			u64At(m, off+subRedeliver).Add(^uint64(0))
			return s, true
		}
	}
	return 0, false
}

// reclaimMember turns the sequences dead member `dead` of queue subscriber
// k held (and those claimed with no holder recorded yet) into REDELIVER
// words and returns how many. The caller holds the table lock and frees
// the member entry afterwards, so a reclaimer dying half-way leaves the
// member to the next reclaim.
func (r *Ring) reclaimMember(k, dead uint32) uint64 {
	m := r.mem
	off := r.lay.subOff(k)
	n := uint64(r.lay.SlotCount)
	redeliver := u64At(m, off+subRedeliver)
	rel, c := u64At(m, off+subRelease).Load(), u64At(m, off+subClaim).Load()
	var moved uint64
	for s := rel; s < c && s < rel+n; s++ {
		word := u64At(m, r.lay.doneOff(k, s%n))
		for cur := word.Load(); cur == doneHeld(dead, s) || earlierLap(cur, s); cur = word.Load() {
			// Counted before the word changes, so a member taking it never
			// decrements below zero.
			redeliver.Add(1)
			if word.CompareAndSwap(cur, doneRedeliver(s)) {
				moved++
				break
			}
			redeliver.Add(^uint64(0))
		}
	}
	return moved
}

// clearDone zeroes the done words and redeliver count of a JOINING queue
// subscriber entry, so no marker of an earlier occupant is mistaken for
// one of the new group's (LAYOUT §5.3). Caller holds the table lock.
func (r *Ring) clearDone(k uint32) {
	for i := uint64(0); i < uint64(r.lay.SlotCount); i++ {
		u64At(r.mem, r.lay.doneOff(k, i)).Store(0)
	}
	u64At(r.mem, r.lay.subOff(k)+subRedeliver).Store(0)
}

// reclaimGroup redelivers the messages that dead members of queue
// subscriber k hold and detaches them (LAYOUT §11.3, as the producer's
// reclaim does for the whole table), on behalf of a live member of k. It
// returns how many sequences now wait for redelivery.
func (r *Ring) reclaimGroup(k uint32) uint64 {
	l := &r.lay
	m := r.mem
	r.lockTable(r.env.id())
	var moved uint64
	freed := false
	members := u32At(m, l.subOff(k)+subMembers)
	for j := uint32(0); j < l.MaxMembers; j++ {
		off := l.memberOff(j)
		// The caller is a live member, so the group survives (> 1).
		if u32At(m, off+memState).Load() != stateActive || u32At(m, off+memSubscriber).Load() != k ||
			members.Load() < 2 || !identityDead(u64At(m, off+memPid).Load()) {
			continue
		}
		moved += r.reclaimMember(k, j)
		freed = true
		u32At(m, off+memState).Store(stateFree)
		members.Add(^uint32(0))
		r.noteLost(identityPid(u64At(m, off+memPid).Load()))
		u64At(m, offTableEpoch).Add(1) // SeqCst; the producer notices the loss
	}
	if freed {
		r.noteReclaim()
	}
	r.unlockTable()
	if moved > 0 {
		f := u32At(m, offDataFutex)
		f.Add(1)
		futexWakeAll(f)
	}
	return moved
}
