package ring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"
)

// BackpressureKind selects what a producer does when the ring is full.
type BackpressureKind int

const (
	// Block makes Reserve wait for the slowest subscriber to release a slot.
	// It is the zero value, as Rust's Backpressure::default() is Block.
	Block BackpressureKind = iota
	// Fail makes Reserve return ErrFull at once.
	Fail
)

// Backpressure is the producer's policy for a full ring.
type Backpressure struct {
	// Kind is Fail or Block.
	Kind BackpressureKind
	// Timeout bounds a Block wait; Reserve then returns ErrTimeout. Zero
	// means wait forever.
	Timeout time.Duration
}

// ProducerOptions configures NewProducer.
type ProducerOptions struct {
	// Backpressure applies when the slowest subscriber is N messages behind.
	Backpressure Backpressure
	// ReclaimAfter is how long Reserve may find the ring full before the
	// producer looks for dead consumers and detaches them (LAYOUT §11.3),
	// and then how often it looks again while the ring stays full. Zero
	// means one second.
	ReclaimAfter time.Duration
	// Wait selects how a Block producer waits for space: Blocking (the zero
	// value) spins briefly then parks on the space futex; Spin never makes
	// a system call, polling the gate and yielding the goroutine (as Rust's
	// WaitStrategy::Spin), for the lowest latency at the cost of a core.
	Wait WaitStrategy
	// NewStream starts a new stream on the ring (LAYOUT §4.1): a ring whose
	// stream was closed can then carry another. The stream generation goes
	// up by one, the new stream starts at the current sequence, and the
	// schema area is emptied (the new stream may have another schema).
	// Consumers attached across the change drain the old stream, get io.EOF
	// once, then receive the new stream. On an open ring with messages it
	// ends that stream too (its producer died or detached); on an open,
	// empty stream it changes nothing. Without it, NewProducer on a closed
	// ring fails with ErrStreamEnded.
	NewStream bool
	// RequireConsumers makes Reserve and Send fail with ErrNoConsumers,
	// writing nothing, while no subscriber is attached, instead of
	// publishing messages nobody will read (LAYOUT §4.2). Combine with
	// WaitForConsumers at start-up. Such a producer also looks for dead
	// consumers every ReclaimAfter while it publishes, so a consumer killed
	// mid-stream is noticed even when the ring is not full.
	RequireConsumers bool
	// ReportLostConsumers makes the first Reserve/Send after a consumer
	// process was found dead and detached fail once with a
	// *ConsumerLostError (ErrConsumerLost); nothing is published, send
	// again to go on. Deaths are always logged (Logger) and counted
	// (ConsumersLost); like RequireConsumers, this makes the producer look
	// for dead consumers every ReclaimAfter.
	ReportLostConsumers bool
	// Logger receives the warning logged when a consumer died; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Producer is the single writer of a ring (LAYOUT §4). It is not safe for
// concurrent use: one goroutine reserves and publishes.
type Producer struct {
	r    *Ring
	opts ProducerOptions
	pid  uint32
	id   uint64 // identity word: pid and start time (LAYOUT §11.1)

	next        uint64 // sequence of the next message
	limit       uint64 // cached gate: sequences < limit are free to write
	cachedEpoch uint64
	scanned     bool // limit and cachedEpoch are valid
	reserved    bool
	closed      bool

	// Dead-consumer reclaim (LAYOUT §11.3): when the ring was first found
	// full (zero while it is not) and when to look for dead consumers next.
	fullSince   time.Time
	nextReclaim time.Time
	hb          *heartbeat

	gen uint32 // generation of the stream we write, stored in every slot (LAYOUT §4.1)

	// What the producer knows about its consumers (watch.go, LAYOUT §4.2).
	receivers    Receivers // attached at the last count
	countEpoch   uint64    // table_epoch of that count
	counted      bool
	last         Receivers // what the last published message was published to
	lostAtAttach uint64    // lost_count at attach
	lostSeen     uint64    // lost_count last seen and reported
	nextWatch    time.Time // when a watching producer next looks for dead consumers

	// Hot-path words, resolved once.
	published   *atomic.Uint64
	tableEpoch  *atomic.Uint64
	dataWaiters *atomic.Uint32
	dataFutex   *atomic.Uint32
	spaceWaiter *atomic.Uint32
	spaceFutex  *atomic.Uint32
	heartbeat   *atomic.Uint64
	idWord      *atomic.Uint64 // producer_pid and producer_start (LAYOUT §11.1)
}

// NewProducer attaches the ring's one producer. It fails with
// ErrProducerExists if another live producer is attached and ErrClosed if
// the stream was already closed (no message may follow end-of-stream). A
// producer that detached without closing, or died (LAYOUT §11.2), left
// `published` behind; this one continues there. While attached, a
// goroutine refreshes producer_heartbeat every 100 ms (a hint for Stat;
// liveness is the pid and start time, LAYOUT §11.1).
func (r *Ring) NewProducer(opts ProducerOptions) (*Producer, error) {
	if opts.ReclaimAfter <= 0 {
		opts.ReclaimAfter = defaultReclaimAfter
	}
	if err := r.acquire(); err != nil {
		return nil, err
	}
	m := r.mem
	p := &Producer{
		r: r, opts: opts, pid: r.env.pid(), id: r.env.id(),
		published:   u64At(m, offPublished),
		tableEpoch:  u64At(m, offTableEpoch),
		dataWaiters: u32At(m, offDataWaiters),
		dataFutex:   u32At(m, offDataFutex),
		spaceWaiter: u32At(m, offSpaceWaiters),
		spaceFutex:  u32At(m, offSpaceFutex),
		heartbeat:   u64At(m, offProducerHeartbeat),
		idWord:      u64At(m, offProducerPid),
	}
	if err := p.takeSeat(); err != nil {
		r.release()
		return nil, err
	}
	switch {
	case opts.NewStream:
		p.gen = r.startStream()
	case u32At(m, offClosed).Load() == 1:
		p.idWord.CompareAndSwap(p.id, 0)
		r.release()
		return nil, r.streamEnded(p.published.Load(), true)
	default:
		p.gen = u32At(m, offStreamGen).Load() // we are now its only writer
	}
	p.lostAtAttach = u64At(m, offLostCount).Load()
	p.lostSeen = p.lostAtAttach
	p.next = p.published.Load() // we are now its only writer
	p.hb = startHeartbeat(r.env.monoNs, func() bool { return p.idWord.Load() == p.id }, p.heartbeat)
	return p, nil
}

// takeSeat is the attach of LAYOUT §4 with the takeover of §11.2: CAS the
// identity word at 80 (producer_pid, producer_start) 0 → ours, or P → ours
// when holder P is dead (§11.1: gone, or its pid reused).
//
// Pid and start time change in one u64 CAS: with two words, a reader could
// find our pid beside the dead holder's start time, take us for a reused
// pid and declare us dead. The heartbeat (a hint) is stored before the
// CAS, and only when we saw the seat free or dead.
func (p *Producer) takeSeat() error {
	for {
		holder := p.idWord.Load()
		if pid := identityPid(holder); pid != 0 && (holder == p.id || !identityDead(holder)) {
			return fmt.Errorf("%w: pid %d", ErrProducerExists, pid)
		}
		p.heartbeat.Store(p.r.env.monoNs())
		// SeqCst, as §4 and §11.2 ask: the one attach point for producers.
		if p.idWord.CompareAndSwap(holder, p.id) {
			return nil
		}
		// Another producer attached or took over first: judge it afresh.
	}
}

// MaxMessageSize is the largest message the ring accepts (slot_size).
func (p *Producer) MaxMessageSize() int { return int(p.r.lay.SlotSize) }

// scan computes the gate of LAYOUT §4: the slowest live subscriber's release
// cursor plus N, or "unlimited" when nobody subscribes.
func (p *Producer) scan() uint64 {
	l := &p.r.lay
	lowest := uint64(math.MaxUint64)
	for k := uint32(0); k < l.MaxSubscribers; k++ {
		off := l.subOff(k)
		st := u32At(p.r.mem, off+subState).Load() // SeqCst, §4
		if st != stateJoining && st != stateActive {
			continue
		}
		// Pairs with the releasing CAS in Lease.Release: the subscriber's
		// reads of the slot happen before we overwrite it.
		if rel := u64At(p.r.mem, off+subRelease).Load(); rel < lowest {
			lowest = rel
		}
	}
	if lowest == math.MaxUint64 {
		return math.MaxUint64
	}
	return lowest + uint64(l.SlotCount)
}

// hasSpace is steps 2 of reserve: rescan when the table changed or the
// cached gate is exhausted.
func (p *Producer) hasSpace() bool {
	// SeqCst; §5.3 explains why this load, made after publishing next-1,
	// keeps a concurrently joining subscriber safe.
	e := p.tableEpoch.Load()
	if !p.scanned || e != p.cachedEpoch || p.next >= p.limit {
		p.cachedEpoch, p.limit, p.scanned = e, p.scan(), true
	}
	return p.next < p.limit
}

// Reserve claims the next slot for a message of n bytes and returns its
// payload, to be filled in place and then made visible with Publish. The
// slice is valid until Publish or the next Reserve. With Block back-pressure
// Reserve waits for space (ErrTimeout after the timeout); with Fail it
// returns ErrFull. A message longer than the slot is refused with
// ErrMessageTooLarge before anything is written.
func (p *Producer) Reserve(n int) ([]byte, error) {
	return p.ReserveContext(context.Background(), n)
}

// ReserveContext is Reserve giving up with ctx.Err() when ctx is done
// while it waits for space (Block back-pressure); cancellation wakes the
// futex wait at once. A context done before the call fails it only if the
// ring is full.
func (p *Producer) ReserveContext(ctx context.Context, n int) ([]byte, error) {
	if p.closed {
		return nil, ErrClosed
	}
	if n < 0 || uint64(n) > uint64(p.r.lay.SlotSize) {
		return nil, fmt.Errorf("%w: len %d, max %d", ErrMessageTooLarge, n, p.r.lay.SlotSize)
	}
	p.reserved = false
	p.watchDue()
	if !p.hasSpace() {
		p.markFull()
		if p.opts.Backpressure.Kind != Block {
			// A Fail producer whose caller keeps retrying is as stuck on a
			// dead consumer as a blocked one, so it reclaims too.
			if !p.reclaimIfDue() {
				p.bump(offFullRefusals, 1)
				return nil, fmt.Errorf("%w: message %d waits for sequence %d to be released", ErrFull, p.next, p.next-uint64(p.r.lay.SlotCount))
			}
		} else if err := p.countedWaitSpace(ctx); err != nil {
			return nil, err
		}
	}
	p.fullSince = time.Time{}
	if err := p.checkConsumers(); err != nil {
		return nil, err
	}
	p.reserved = true
	off := p.r.lay.slotOff(p.next) + SlotHeaderSize
	return p.r.mem[off : off+uint64(n) : off+uint64(p.r.lay.SlotSize)], nil
}

// markFull notes when the ring was first found full, which starts the
// reclaim clock of LAYOUT §11.3.
func (p *Producer) markFull() {
	if p.fullSince.IsZero() {
		p.fullSince = time.Now()
		p.nextReclaim = p.fullSince.Add(p.opts.ReclaimAfter)
	}
}

// reclaimIfDue detaches dead consumers once the ring has been full for
// ReclaimAfter, then at most every ReclaimAfter (LAYOUT §11.3), and reports
// whether there is space now.
func (p *Producer) reclaimIfDue() bool {
	now := time.Now()
	if now.Before(p.nextReclaim) {
		return false
	}
	p.nextReclaim = now.Add(p.opts.ReclaimAfter)
	if p.r.reclaim() == 0 {
		return false
	}
	// A freed subscriber does not bump table_epoch, but the exhausted gate
	// forces the rescan that drops it.
	return p.hasSpace()
}

// spinSpace is waitSpace for WaitStrategy Spin: the same checks (context,
// deadline, dead-consumer reclaim), no futex. The clock is read only every
// 64 polls.
func (p *Producer) spinSpace(ctx context.Context, deadline time.Time, b *backoff) error {
	for i := 0; ; i++ {
		if p.hasSpace() {
			return nil
		}
		if i%64 == 63 {
			if err := ctx.Err(); err != nil {
				return err
			}
			if p.reclaimIfDue() {
				return nil
			}
			if !deadline.IsZero() && !time.Now().Before(deadline) {
				return fmt.Errorf("%w: no free slot for message %d", ErrTimeout, p.next)
			}
		}
		b.spin()
	}
}

// waitSpace is LAYOUT §6.2: spin on the gate, then park on space_futex in
// bounded slices, detaching dead consumers when the wait lasts (§11.3),
// until there is space, the timeout passes or ctx is done.
func (p *Producer) waitSpace(ctx context.Context) (err error) {
	// Where a producer sits when its file is truncated under it: the fault
	// is an error (fault.go). The per-message paths are not guarded, which
	// costs ~30 ns a call; see fault.go.
	defer p.CatchFault(TrapFaults(), &err)
	var deadline time.Time
	if t := p.opts.Backpressure.Timeout; t > 0 {
		deadline = time.Now().Add(t)
	}
	var b backoff
	if p.opts.Wait == Spin {
		return p.spinSpace(ctx, deadline, &b)
	}
	for b.snooze() {
		if p.hasSpace() {
			return nil
		}
	}
	if ctx.Done() != nil {
		// Cancellation interrupts the futex wait. Bumping the word first
		// also stops a wait that starts just after the cancellation (its
		// expected value is stale). The spurious wake-up another waiter on
		// the word may get is harmless: waiters always re-check.
		defer wakeOnDone(ctx, p.spaceFutex)()
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if p.reclaimIfDue() {
			return nil
		}
		// Wake up in time for the next reclaim as well as for the deadline.
		slice := min(waitSlice, time.Until(p.nextReclaim))
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return fmt.Errorf("%w: no free slot for message %d", ErrTimeout, p.next)
			}
			slice = min(slice, left)
		}
		p.spaceWaiter.Add(1)
		f := p.spaceFutex.Load()
		// The rescan after registering is what makes a release between our
		// last check and the wait impossible to miss (§6.2).
		if p.hasSpace() {
			p.spaceWaiter.Add(^uint32(0))
			return nil
		}
		if ctx.Err() == nil {
			futexWaitOn(p.spaceFutex, f, slice)
		}
		p.spaceWaiter.Add(^uint32(0))
		if p.hasSpace() {
			return nil
		}
	}
}

// Publish makes the reserved message visible with its first n bytes (n ≤
// the reserved length's slot capacity) and the application flags.
func (p *Producer) Publish(n int, flags uint32) error {
	if !p.reserved {
		return errors.New("alloy: Publish without a successful Reserve")
	}
	if n < 0 || uint64(n) > uint64(p.r.lay.SlotSize) {
		return fmt.Errorf("%w: len %d, max %d", ErrMessageTooLarge, n, p.r.lay.SlotSize)
	}
	p.reserved = false
	slot := p.r.lay.slotOff(p.next)
	m := p.r.mem
	storeRelaxed32(m, slot+slotLen, uint32(n)) // Relaxed in §4; ordered by the stamp
	storeRelaxed32(m, slot+slotFlags, flags)
	storeRelaxed32(m, slot+slotGen, p.gen) // LAYOUT §4.1; ordered by the stamp
	p.last = p.receivers
	// Release: pairs with the consumer's Acquire load of the stamp, which
	// then sees the payload, len and flags.
	u64At(m, slot+slotStamp).Store(p.next + 1)
	p.next++
	// SeqCst: pairs with the consumers' loads of `published` (§5.1) and,
	// with the data_waiters load below, forms the Dekker pair of §6.1.
	p.published.Store(p.next)
	if p.dataWaiters.Load() != 0 {
		p.dataFutex.Add(1)
		futexWakeAll(p.dataFutex)
		p.bump(offDataWakes, 1) // the slow path only: a consumer was parked (§2.1)
	}
	return nil
}

// Send copies b into the next slot and publishes it with flags: Reserve,
// copy, Publish.
func (p *Producer) Send(b []byte, flags uint32) error {
	return p.SendContext(context.Background(), b, flags)
}

// SendContext is Send giving up with ctx.Err() when ctx is done while it
// waits for space (see ReserveContext).
func (p *Producer) SendContext(ctx context.Context, b []byte, flags uint32) error {
	buf, err := p.ReserveContext(ctx, len(b))
	if err != nil {
		return err
	}
	copy(buf, b)
	return p.Publish(len(b), flags)
}

// StreamGen returns the generation of the stream this producer writes (0
// for a ring's first stream; see NewStream).
func (p *Producer) StreamGen() uint32 { return p.gen }

// Published returns the number of messages published so far.
func (p *Producer) Published() uint64 { return p.next }

// SetSchema publishes the stream's schema bytes for late joiners (LAYOUT
// §9); ErrSchemaTooLarge if they exceed schema_capacity.
func (p *Producer) SetSchema(b []byte) (err error) {
	defer p.CatchFault(TrapFaults(), &err)
	if p.closed {
		return ErrClosed
	}
	return p.r.setSchema(b)
}

// Close ends the stream: consumers drain what was published and then get
// io.EOF. The producer is detached afterwards.
func (p *Producer) Close() (err error) {
	defer p.CatchFault(TrapFaults(), &err)
	if p.closed {
		return ErrClosed
	}
	m := p.r.mem
	u32At(m, offClosed).Store(1) // SeqCst; pairs with the consumers' Acquire load
	p.dataFutex.Add(1)
	futexWakeAll(p.dataFutex)
	return p.detach()
}

// Detach leaves the stream open: a later producer may attach and continue.
func (p *Producer) Detach() (err error) {
	defer p.CatchFault(TrapFaults(), &err)
	if p.closed {
		return ErrClosed
	}
	return p.detach()
}

func (p *Producer) detach() error {
	p.closed = true
	p.hb.stop() // before the seat is free and the mapping may go away
	// A CAS, not a store: should we have been declared dead and taken over
	// (LAYOUT §11.2), the seat is no longer ours to free.
	p.idWord.CompareAndSwap(p.id, 0) // the whole identity word, if still ours
	return p.r.release()
}
