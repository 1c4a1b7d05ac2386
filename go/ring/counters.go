package ring

import (
	"context"
	"errors"
	"time"
)

// The informational counters of LAYOUT §2.1 — futex wake-ups, parks,
// back-pressure waits, ErrFull refusals, reclaims — live in bytes of the
// region that were reserved (zero), so that Stat in another process reads
// them. Each is bumped only on a slow path (a wake-up actually issued, a
// park, a wait for space, a refusal, a reclaim); a busy producer and busy
// consumers never touch them. A counter with one writer (the producer's
// words; reclaims, written under the table lock) is a load and a store, no
// read-modify-write; a member's words may be bumped by several goroutines
// (leases are released from any of them), so they use Add.

// bump adds n to the producer's u64 counter at off (single writer).
func (p *Producer) bump(off uint64, n uint64) {
	w := u64At(p.r.mem, off)
	w.Store(w.Load() + n)
}

// countedWaitSpace is waitSpace counted as one back-pressure wait.
// A wait that ended in a fault (the file was truncated, fault.go) is not
// counted: the mapping can no longer be written.
func (p *Producer) countedWaitSpace(ctx context.Context) error {
	t := time.Now()
	err := p.waitSpace(ctx)
	if !errors.Is(err, ErrTruncated) {
		p.bump(offBackpressureWaits, 1)
		p.bump(offBackpressureNs, uint64(time.Since(t)))
	}
	return err
}

// bumpMember adds n to member entry j's u64 counter at field.
func (r *Ring) bumpMember(j uint32, field, n uint64) {
	u64At(r.mem, r.lay.memberOff(j)+field).Add(n)
}

// notePark counts one futex wait for data of member j that lasted d.
func (r *Ring) notePark(j uint32, d time.Duration) {
	r.bumpMember(j, memParks, 1)
	r.bumpMember(j, memParkNs, uint64(d))
}

// resetMemberCounters zeroes member entry j's counters before the entry
// turns ACTIVE: they may hold an earlier member's.
func (r *Ring) resetMemberCounters(j uint32) {
	o := r.lay.memberOff(j)
	for _, f := range []uint64{memParks, memParkNs, memSpaceWakes} {
		u64At(r.mem, o+f).Store(0)
	}
}

// noteReclaim counts a reclaim that freed an entry; the caller holds the
// table lock, which makes it the only writer.
func (r *Ring) noteReclaim() {
	w := u32At(r.mem, offReclaims)
	w.Store(w.Load() + 1)
}
