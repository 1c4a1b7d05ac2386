package ring

import (
	"errors"
	"fmt"
	"time"
)

// The retention rule (doc/README.md "Holding batches"; the Rust twin is
// Consumer::check_retention in src/ring/consumer.rs). The ring's release
// cursor only advances over a contiguous run of released sequences, so a
// consumer that keeps one message (a batch read in place) gates the
// producer once it is slot_count messages ahead of it. A consumer that
// then waits for more would wait for ever: only its own process can
// unblock the stream. After HeldLeaseTimeout of that, its receive fails
// with ErrRetentionStall instead.

// DefaultHeldLeaseTimeout is the HeldLeaseTimeout of a zero
// ConsumerOptions: how long the ring may stay stalled by a consumer's own
// leases before its receive fails with ErrRetentionStall.
const DefaultHeldLeaseTimeout = time.Second

// NoHeldLeaseTimeout (any negative HeldLeaseTimeout) turns the retention
// check off: a consumer stalled by its own leases waits for ever, as
// before the check existed (Rust: held_lease_timeout(None)).
const NoHeldLeaseTimeout time.Duration = -1

// ErrRetentionStall: the ring is full behind a message this very consumer
// handle still holds, so the producer cannot publish and the receive would
// wait for ever (doc/README.md "Holding batches"). The error is a
// *RetentionStallError carrying the facts; errors.Is(err,
// ErrRetentionStall) tells it. The consumer stays usable: the next receive
// waits again (so a pipeline whose other goroutines release later
// recovers).
var ErrRetentionStall = errors.New("alloy: ring stalled by this consumer's own leases")

// RetentionStallError is the error of a retention stall: Seq is the
// oldest unreleased sequence of the consumer's subscriber, which it holds,
// and Held the number of leases the handle held when the error was made.
type RetentionStallError struct {
	Seq  uint64
	Held int64
}

func (e *RetentionStallError) Error() string {
	return fmt.Sprintf("%v: the ring is full behind sequence %d, whose message this consumer still holds "+
		"(%d leases held): the producer cannot publish until it is released; drop the batches you are done "+
		"with, or copy the ones you keep (read without WithZeroCopy)", ErrRetentionStall, e.Seq, e.Held)
}

// Unwrap makes errors.Is(err, ErrRetentionStall) true.
func (e *RetentionStallError) Unwrap() error { return ErrRetentionStall }

// LeasesHeld is the number of leases of this handle not released yet
// (messages it holds; a batch read in place holds one).
func (c *Consumer) LeasesHeld() int64 { return c.outstanding.Load() }

// heldLeaseTimeout is the effective timeout; 0 when the check is off.
func (c *Consumer) heldLeaseTimeout() time.Duration {
	switch d := c.opts.HeldLeaseTimeout; {
	case d == 0:
		return DefaultHeldLeaseTimeout
	case d < 0:
		return 0
	default:
		return d
	}
}

// checkPeers is the periodic check of a waiting receive (every 50 ms while
// the ring is empty for us): the producer's and the group's liveness
// (checkProducer), then the retention rule.
func (c *Consumer) checkPeers() (*Lease, error) {
	if l, err := c.checkProducer(); l != nil || err != nil {
		return l, err
	}
	return nil, c.checkRetention()
}

// checkRetention fails the wait with a *RetentionStallError once the ring
// has been stalled by this handle's own leases for the held lease timeout.
// The stall must hold at every check in between: any progress (our
// release advancing, the stream closing) starts the clock again.
func (c *Consumer) checkRetention() error {
	timeout := c.heldLeaseTimeout()
	if timeout == 0 {
		return nil
	}
	seq, stalled := c.stalledByOwnLease()
	if !stalled {
		c.stalledSince = time.Time{}
		return nil
	}
	now := time.Now()
	if c.stalledSince.IsZero() || c.stalledAt != seq {
		c.stalledSince, c.stalledAt = now, seq
	}
	if now.Sub(c.stalledSince) < timeout {
		return nil
	}
	c.stalledSince = time.Time{}
	return &RetentionStallError{Seq: seq, Held: c.outstanding.Load()}
}

// stalledByOwnLease reports the oldest unreleased sequence r of our
// subscriber when the producer cannot publish until r is released (p − r ≥
// N, the stream still open) and r is held by this handle: for a broadcast
// subscriber (our only member) any unreleased r, for queue member j a done
// word HELD(j, r). Called while the ring is empty for us (we claimed
// everything published), so r is below our claim.
func (c *Consumer) stalledByOwnLease() (uint64, bool) {
	if c.outstanding.Load() == 0 {
		return 0, false
	}
	n := uint64(c.r.lay.SlotCount)
	r := c.release.Load()   // Acquire; release before published, so p − r is never understated
	p := c.published.Load() // Acquire
	if c.closed.Load() != 0 || p < r+n {
		return 0, false
	}
	w := u64At(c.r.mem, c.r.lay.doneOff(c.sub, r%n)).Load()
	if c.kind == kindQueue {
		return r, w == doneHeld(c.mem, r)
	}
	return r, w != r+1
}
