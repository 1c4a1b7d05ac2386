package ring

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// ConsumerOptions configures Subscribe and JoinQueue.
type ConsumerOptions struct {
	// Wait selects how Recv waits for data; the zero value is Blocking.
	Wait WaitStrategy
	// HeldLeaseTimeout is how long the ring may stay stalled by this
	// consumer's own leases before a receive fails with ErrRetentionStall
	// (doc/README.md "Holding batches"): 0 means DefaultHeldLeaseTimeout
	// (1 s), NoHeldLeaseTimeout (any negative value) waits for ever. Set it
	// longer, or off, when other goroutines release held messages later.
	HeldLeaseTimeout time.Duration
	// History, for a late joiner (as iceoryx2's history_size): a new
	// broadcast subscriber or queue group starts up to History messages
	// before the head, so it also receives the last History messages
	// published before it joined — at most SlotCount-1, and only messages
	// of the current stream (LAYOUT §5.3). A producer that starts before
	// its consumers then loses none of its first History messages as long
	// as it is no more than that ahead. Joining an existing queue group
	// ignores it (the group's cursor is shared). Zero: start at the head.
	History int
}

// Consumer is one attached reader handle: a broadcast subscriber, which sees
// every message published after it joined, or a member of a work-queue
// group, whose members share the messages so each is delivered to exactly
// one of them. Recv, TryRecv and their variants must be called from one
// goroutine at a time; leases may be released from any goroutine.
type Consumer struct {
	r    *Ring
	opts ConsumerOptions
	kind uint32
	sub  uint32 // subscriber entry k
	mem  uint32 // member entry j
	// payload is the mapping leases point into: the region's read-only
	// mapping (the read-write one for in-memory test rings).
	payload []byte

	claim, release *atomic.Uint64
	published      *atomic.Uint64
	closed         *atomic.Uint32
	dataWaiters    *atomic.Uint32
	dataFutex      *atomic.Uint32
	producerID     *atomic.Uint64 // producer_pid and producer_start (LAYOUT §11.1)

	nextCheck    time.Time // when a waiting Recv next looks at the producer (§11.2)
	groupChecked time.Time // when this queue member last looked for dead members of its group (§11.3)
	stalledSince time.Time // since when the ring is stalled by our own leases (retention.go); zero: not stalled
	stalledAt    uint64    // the sequence it is stalled at

	// Stream generations (LAYOUT §4.1): the stream this consumer reads,
	// whether its end was reported, the end of the stream it joined after
	// it had ended (then Recv fails with ErrStreamEnded, not io.EOF), and
	// the next stream's first message, claimed when the end of ours was
	// found and handed out by the next receive.
	gen         uint32
	endReported bool
	joinedEnded bool
	endedAt     uint64
	pending     *Lease

	hb          *heartbeat
	outstanding atomic.Int64 // leases not yet released
	closing     atomic.Bool
	detachOnce  sync.Once
}

// Ring is the ring this consumer reads (what readers built from the consumer
// alone, such as arrowshm.NewReader, map their messages from).
func (c *Consumer) Ring() *Ring { return c.r }

// Subscribe joins as a new broadcast subscriber. It starts at the current
// head: messages published before the join are not delivered.
func (r *Ring) Subscribe(opts ConsumerOptions) (*Consumer, error) {
	return r.attach(kindBroadcast, 0, opts)
}

// JoinQueue joins work-queue group `group` (≥ 1), creating it at the current
// head if it has no member yet. Each message is delivered to exactly one
// member of the group.
func (r *Ring) JoinQueue(group uint32, opts ConsumerOptions) (*Consumer, error) {
	if group == 0 {
		return nil, errBadGroup
	}
	return r.attach(kindQueue, group, opts)
}

func (r *Ring) attach(kind, group uint32, opts ConsumerOptions) (*Consumer, error) {
	if err := r.acquire(); err != nil {
		return nil, err
	}
	m := r.mem
	payload := m
	if r.reg != nil {
		ro, err := r.reg.mapReadOnly()
		if err != nil {
			r.release()
			return nil, err
		}
		payload = ro[:len(m)]
	}
	k, j, err := r.join(kind, group, opts.History)
	if err != nil {
		r.release()
		return nil, err
	}
	off := r.lay.subOff(k)
	c := &Consumer{
		r: r, opts: opts, kind: kind, sub: k, mem: j, payload: payload,
		claim:       u64At(m, off+subClaim),
		release:     u64At(m, off+subRelease),
		published:   u64At(m, offPublished),
		closed:      u32At(m, offClosed),
		dataWaiters: u32At(m, offDataWaiters),
		dataFutex:   u32At(m, offDataFutex),
		producerID:  u64At(m, offProducerPid),
	}
	// Which stream we joined (LAYOUT §4.1): read after our cursor is placed,
	// so an older stream's messages past it are skipped.
	c.gen = u32At(m, offStreamGen).Load()
	if c.closed.Load() == 1 {
		c.joinedEnded, c.endReported, c.endedAt = true, true, c.published.Load()
	}
	// LAYOUT §11.1: the member's and the subscriber's heartbeats, for as
	// long as the entry is ours (a reclaim by a producer that wrongly
	// judged us dead may have handed it to someone else).
	memOff := r.lay.memberOff(j)
	pid := r.env.pid()
	c.hb = startHeartbeat(r.env.monoNs, func() bool {
		return u32At(m, memOff+memState).Load() == stateActive && u32At(m, memOff+memPid).Load() == pid
	}, u64At(m, memOff+memHeartbeat), u64At(m, off+subHeartbeat))
	return c, nil
}

// Lease is one received message, read in place in the shared mapping. The
// producer cannot reuse its slot until the lease is released, so hold it
// only as long as needed: the slowest lease gates the whole ring.
type Lease struct {
	c           *Consumer
	seq         uint64
	gen         uint32
	data        []byte
	flags       uint32
	redelivered bool
	done        atomic.Bool
}

// Bytes returns the message: a slice of the shared mapping, not a copy.
// It must not be used after Release, and must not be written.
func (l *Lease) Bytes() []byte { return l.data }

// Seq returns the message's sequence number (0 for the first message ever
// published on the ring).
func (l *Lease) Seq() uint64 { return l.seq }

// StreamGen returns the generation of the stream the message belongs to
// (LAYOUT §4.1).
func (l *Lease) StreamGen() uint32 { return l.gen }

// Flags returns the application flags the producer published with.
func (l *Lease) Flags() uint32 { return l.flags }

// Redelivered reports whether this message was handed to another member of
// the work-queue group before, which died holding it (LAYOUT §11.3): it may
// have been processed already, so deduplicate if that matters. Always
// false for broadcast subscribers.
func (l *Lease) Redelivered() bool { return l.redelivered }

// Release gives the slot back (LAYOUT §5.2). Leases may be released in any
// order, from any goroutine; releasing twice is a no-op.
func (l *Lease) Release() {
	if l.done.Swap(true) {
		return
	}
	c := l.c
	n := uint64(c.r.lay.SlotCount)
	m := c.r.mem
	// AcqRel RMW: our reads of the slot happen before this mark, and the
	// mark is totally ordered with the fetch_or checks below.
	word := u64At(m, c.r.lay.doneOff(c.sub, l.seq%n))
	if c.kind == kindQueue {
		// Only while we still hold it: had we been judged dead and the
		// message gone to another member, its release is the one that counts.
		word.CompareAndSwap(doneHeld(c.mem, l.seq), l.seq+1)
	} else {
		word.Swap(l.seq + 1)
	}
	for {
		r := c.release.Load() // Acquire
		// An RMW rather than a load, so that of two concurrent releasers of
		// r and r+1 at least one sees the other's mark (§5.2).
		if u64At(m, c.r.lay.doneOff(c.sub, r%n)).Or(0) != r+1 {
			break
		}
		// AcqRel; pairs with the producer's Acquire load in scan. Failure
		// means another releaser advanced it: look again.
		c.release.CompareAndSwap(r, r+1)
	}
	if c.r.wakeSpace() {
		c.r.bumpMember(c.mem, memSpaceWakes, 1) // counters (§2.1)
	}
	l.data = nil
	if c.outstanding.Add(-1) == 0 && c.closing.Load() {
		c.detach()
	}
}

// StreamGen returns the generation of the stream this consumer is reading
// (LAYOUT §4.1).
func (c *Consumer) StreamGen() uint32 { return c.gen }

// poll is one receive attempt with the stream generations of LAYOUT §4.1:
// a lease, io.EOF, or (nil, nil) when the ring is empty for now. A message
// of a newer stream ends ours first (io.EOF once; the message is kept for
// the next call); messages of an older stream (published while we joined)
// are skipped; a consumer that joined an ended stream gets ErrStreamEnded.
func (c *Consumer) poll() (*Lease, error) {
	if l := c.pending; l != nil {
		c.pending = nil
		return l, nil
	}
	for {
		l, err := c.pollRing()
		switch {
		case l != nil && l.gen == c.gen:
			c.endReported, c.joinedEnded = false, false
			return l, nil
		case l != nil && int32(l.gen-c.gen) > 0:
			c.gen, c.joinedEnded = l.gen, false
			if c.endReported {
				c.endReported = false
				return l, nil
			}
			c.pending = l
			return nil, io.EOF
		case l != nil:
			l.Release() // an older stream's message: not ours
			continue
		case err == io.EOF:
			return c.atEnd()
		case err != nil:
			return nil, err
		}
		if g := u32At(c.r.mem, offStreamGen).Load(); g != c.gen {
			// A new stream started and we read everything before it: our
			// stream has ended.
			c.gen, c.joinedEnded = g, false
			if !c.endReported {
				return nil, io.EOF
			}
			c.endReported = false
		}
		return nil, nil
	}
}

// atEnd: the ring reports the end of its current stream and we read all
// of it.
func (c *Consumer) atEnd() (*Lease, error) {
	if g := u32At(c.r.mem, offStreamGen).Load(); g != c.gen {
		c.gen, c.joinedEnded = g, false
	} else if c.joinedEnded {
		return nil, c.r.streamEnded(c.endedAt, false)
	}
	c.endReported = true
	return nil, io.EOF
}

// pollRing is one attempt of LAYOUT §5.1: a lease, io.EOF, or (nil, nil)
// when the ring is empty for now.
func (c *Consumer) pollRing() (*Lease, error) {
	if c.kind == kindQueue {
		seq, again, ok, ended := c.r.queueClaim(c.sub, c.mem)
		if ended && c.checkGroup(true) {
			// Before reporting the end, a dead member's messages are
			// redelivered (§11.3).
			seq, again, ok, ended = c.r.queueClaim(c.sub, c.mem)
		}
		switch {
		case ended:
			return nil, io.EOF
		case !ok:
			return nil, nil
		}
		l, err := c.lease(seq)
		if l != nil {
			l.redelivered = again
		}
		return l, err
	}
	for {
		cl := c.claim.Load() // Acquire
		if c.kind == kindBroadcast {
			// Touch the stamp line of the sequence we wait for before
			// loading published: the two cache misses a new message causes
			// (header line, slot header line) then overlap instead of
			// following each other. The value is not used (the stamp that
			// decides is loaded in lease, after published), so this changes
			// no ordering, only timing (LAYOUT §5.1).
			_ = u64At(c.r.mem, c.r.lay.slotOff(cl)+slotStamp).Load()
		}
		p := c.published.Load() // Acquire; pairs with Publish's store
		if cl >= p {
			// closed is stored after the last publish, so re-reading
			// published after seeing closed tells whether more will come.
			if c.closed.Load() == 1 && c.published.Load() <= cl {
				return nil, io.EOF
			}
			return nil, nil
		}
		if c.kind == kindBroadcast {
			c.claim.Store(cl + 1) // sole writer of this claim
		} else if !c.claim.CompareAndSwap(cl, cl+1) { // AcqRel; another member won cl
			continue
		}
		return c.lease(cl)
	}
}

// lease builds the lease for claimed sequence seq after checking its slot.
func (c *Consumer) lease(seq uint64) (*Lease, error) {
	l := &c.r.lay
	m := c.r.mem
	slot := l.slotOff(seq)
	// Acquire: pairs with the Release store of the stamp in Publish, after
	// which len, flags and the payload are complete.
	stamp := u64At(m, slot+slotStamp).Load()
	n := u32At(m, slot+slotLen).Load()
	if stamp != seq+1 || n > l.SlotSize {
		// Release the damaged sequence so the ring keeps flowing, then
		// report it (LAYOUT §5.1 step 4).
		c.outstanding.Add(1)
		(&Lease{c: c, seq: seq}).Release()
		return nil, fmt.Errorf("%w: seq %d in slot %d has stamp %d, len %d", ErrCorrupt, seq, seq%uint64(l.SlotCount), stamp, n)
	}
	c.outstanding.Add(1)
	p := slot + SlotHeaderSize
	d := c.payload[p : p+uint64(n) : p+uint64(n)]
	return &Lease{c: c, seq: seq, gen: u32At(m, slot+slotGen).Load(), data: d, flags: u32At(m, slot+slotFlags).Load()}, nil
}

// TryRecv returns the next message without waiting: ErrEmpty when there is
// none yet, io.EOF once the stream has ended and everything was delivered.
func (c *Consumer) TryRecv() (*Lease, error) {
	if c.closing.Load() {
		return nil, ErrClosed
	}
	l, err := c.poll()
	if l == nil && err == nil {
		return nil, ErrEmpty
	}
	return l, err
}

// Recv waits for the next message. It returns io.EOF once the producer
// closed the stream and every message was delivered (to this subscriber,
// or for a queue member, to some member of the group). While it waits it
// checks the producer every 50 ms: should the attached producer be dead
// (LAYOUT §11.2), Recv returns an error wrapping ErrProducerGone, after
// everything it published was delivered. The consumer stays usable: a later
// Recv waits for a new producer to attach and continue the stream.
func (c *Consumer) Recv() (*Lease, error) {
	return c.recv(context.Background(), time.Time{})
}

// RecvTimeout is Recv giving up with ErrTimeout after d.
func (c *Consumer) RecvTimeout(d time.Duration) (*Lease, error) {
	return c.recv(context.Background(), time.Now().Add(d))
}

// RecvContext is Recv giving up with ctx.Err() when ctx is done.
func (c *Consumer) RecvContext(ctx context.Context) (*Lease, error) {
	return c.recv(ctx, time.Time{})
}

// spinChecks is how many Spin rounds pass between two looks at the clock,
// which keep the busy loop free of clock reads without delaying the
// producer check of §11.2 noticeably.
const spinChecks = 64

// recv is LAYOUT §6.1: spin, then register as a waiter, re-check, and park
// on data_futex in bounded slices, checking the producer's liveness (§11.2)
// in between.
func (c *Consumer) recv(ctx context.Context, deadline time.Time) (*Lease, error) {
	if c.closing.Load() {
		return nil, ErrClosed
	}
	var b backoff
	var stopWake func()
	defer func() {
		if stopWake != nil {
			stopWake()
		}
	}()
	for rounds := 0; ; rounds++ {
		if l, err := c.poll(); l != nil || err != nil {
			return l, err
		}
		if c.opts.Wait == Spin {
			// The cancellation, the deadline and the peers are looked at
			// on the first round and then every spinChecks rounds: a
			// context's Err and the clock cost more than a poll.
			if rounds%spinChecks == 0 {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				if !deadline.IsZero() && !time.Now().Before(deadline) {
					return nil, ErrTimeout
				}
				if rounds > 0 {
					if l, err := c.checkPeers(); l != nil || err != nil {
						return l, err
					}
				}
			}
			b.spin()
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		slice := consumerWaitSlice
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return nil, ErrTimeout
			}
			slice = min(slice, left)
		}
		if b.snooze() {
			continue
		}
		if l, err := c.checkPeers(); l != nil || err != nil {
			return l, err
		}
		if stopWake == nil && ctx.Done() != nil {
			// Cancellation interrupts the futex wait. Bumping the word
			// first also stops a wait that starts just after the
			// cancellation (its expected value is stale). The spurious
			// wake-up it may give other waiters is harmless: they re-check.
			stopWake = wakeOnDone(ctx, c.dataFutex)
		}
		c.dataWaiters.Add(1) // SeqCst; the Dekker pair with Publish (§6.1)
		f := c.dataFutex.Load()
		l, err := c.poll()
		if l == nil && err == nil && ctx.Err() == nil {
			t := time.Now()
			futexWaitOn(c.dataFutex, f, slice)
			c.r.notePark(c.mem, time.Since(t)) // counters (§2.1)
		}
		c.dataWaiters.Add(^uint32(0))
		if l != nil || err != nil {
			return l, err
		}
		b = backoff{}
	}
}

// checkProducer is the wait-side check of LAYOUT §11.2, done at most every
// producerCheckPeriod: with the stream open and a producer recorded, a dead
// producer ends the wait with ErrProducerGone. A message (or end-of-stream)
// that turns up meanwhile is returned instead: everything published before
// the death is delivered first.
func (c *Consumer) checkProducer() (*Lease, error) {
	now := time.Now()
	if now.Before(c.nextCheck) {
		return nil, nil
	}
	c.nextCheck = now.Add(producerCheckPeriod)
	if c.checkGroup(false) {
		if l, err := c.poll(); l != nil || err != nil {
			return l, err
		}
	}
	if c.closed.Load() != 0 {
		return nil, nil // poll reports end-of-stream once drained
	}
	// Pid and start time in one load (LAYOUT §11.1): a stopped producer
	// is alive, a reused pid is not.
	id := c.producerID.Load()
	pid := identityPid(id)
	if pid == 0 || !identityDead(id) {
		return nil, nil
	}
	if l, err := c.poll(); l != nil || err != nil {
		return l, err
	}
	return nil, fmt.Errorf("%w: pid %d", ErrProducerGone, pid)
}

// groupCheckPeriod is how often a queue member waiting for data looks for
// dead members of its group holding messages (LAYOUT §11.3).
const groupCheckPeriod = time.Second

// checkGroup is LAYOUT §11.3 done by a surviving queue member: while it
// finds nothing to claim (at most every groupCheckPeriod, or always atEnd)
// and its group has claimed, unreleased sequences, it redelivers those of
// dead members — the producer only reclaims when the ring is full, which
// it may never be again. It reports whether anything now waits for
// redelivery.
func (c *Consumer) checkGroup(atEnd bool) bool {
	if c.kind != kindQueue || c.release.Load() >= c.claim.Load() {
		return false
	}
	now := time.Now()
	if !atEnd && now.Sub(c.groupChecked) < groupCheckPeriod {
		return false
	}
	c.groupChecked = now
	// After the lock (taken by reclaimGroup) no reclaimer is half-way, so
	// the scan is authoritative: it also catches a REDELIVER made just after
	// our claim attempt found none.
	return c.r.reclaimGroup(c.sub) > 0 || c.r.hasRedelivery(c.sub)
}

// Close detaches the consumer once its outstanding leases are released
// (leases keep their subscriber alive, LAYOUT §5.3). Messages claimed and
// never released stay unreleased; unclaimed ones go to the other members of
// a queue group.
func (c *Consumer) Close() (err error) {
	defer c.CatchFault(TrapFaults(), &err)
	if c.closing.Swap(true) {
		return ErrClosed
	}
	if l := c.pending; l != nil {
		// The next stream's first message, claimed but never handed out.
		c.pending = nil
		l.Release()
	}
	if c.outstanding.Load() == 0 {
		c.detach()
	}
	return nil
}

func (c *Consumer) detach() {
	c.detachOnce.Do(func() {
		// No heartbeat may land in the entry once it is free for others.
		c.hb.stop()
		c.r.leave(c.sub, c.mem)
		c.r.release()
	})
}
