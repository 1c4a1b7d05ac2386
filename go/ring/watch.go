package ring

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Receivers counts the subscribers a message is published to: broadcast
// consumers (each gets every message) and work-queue groups (each gets
// every message once, delivered to one of its members). As iceoryx2's send
// returns its number of receivers, it is a snapshot: a consumer joining or
// leaving at the same moment may or may not be counted (LAYOUT §4.2).
type Receivers struct {
	Broadcast int // broadcast consumers
	Groups    int // work-queue groups, however many members each has
}

// Total is Broadcast plus Groups.
func (r Receivers) Total() int { return r.Broadcast + r.Groups }

// ConsumerLostError is the error a producer with ReportLostConsumers returns
// once after consumer processes died and were detached (LAYOUT §11.3). It
// matches ErrConsumerLost with errors.Is. The message was not published.
type ConsumerLostError struct {
	Pid       uint32 // the last consumer process found dead
	Lost      uint64 // consumer members detached since the last report
	Remaining int    // subscribers still attached
}

func (e *ConsumerLostError) Error() string {
	return fmt.Sprintf("alloy: %d consumer(s) of the ring died and were detached (last: pid %d); %d subscriber(s) remain; the message was not published",
		e.Lost, e.Pid, e.Remaining)
}

// Is makes errors.Is(err, ErrConsumerLost) true.
func (e *ConsumerLostError) Is(target error) bool { return target == ErrConsumerLost }

// countReceivers counts the ACTIVE subscriber entries by kind; a JOINING one
// is not counted (it may start after the message being published).
func (r *Ring) countReceivers() Receivers {
	var n Receivers
	for k := uint32(0); k < r.lay.MaxSubscribers; k++ {
		off := r.lay.subOff(k)
		if u32At(r.mem, off+subState).Load() != stateActive {
			continue
		}
		if u32At(r.mem, off+subKind).Load() == kindQueue {
			n.Groups++
		} else {
			n.Broadcast++
		}
	}
	return n
}

// noteLost records that the consumer member of process pid was reclaimed as
// dead (LAYOUT §11.3); the caller holds the table lock and bumps
// table_epoch.
func (r *Ring) noteLost(pid uint32) {
	u32At(r.mem, offLostPid).Store(pid)
	// After lost_pid: a producer that sees the new count reads this pid (or
	// a later one).
	u64At(r.mem, offLostCount).Add(1)
}

// ConsumersLost returns how many consumer processes were found dead and
// detached from the ring since it was created (LAYOUT §11.3).
func (r *Ring) ConsumersLost() uint64 { return u64At(r.mem, offLostCount).Load() }

// refreshReceivers recounts the subscribers when the table changed since the
// last count: every change that matters bumps table_epoch (LAYOUT §5.3).
func (p *Producer) refreshReceivers() {
	if e := p.tableEpoch.Load(); !p.counted || e != p.countEpoch {
		p.countEpoch, p.counted = e, true
		p.receivers = p.r.countReceivers()
	}
}

// Receivers returns the subscribers attached now (LAYOUT §4.2).
func (p *Producer) Receivers() Receivers {
	p.refreshReceivers()
	return p.receivers
}

// LastReceivers returns how many subscribers the last published message was
// published to (counted when its slot was reserved; zero before the first).
// A message published to nobody was overwritten unread.
func (p *Producer) LastReceivers() Receivers { return p.last }

// ConsumersLost returns how many consumer processes were found dead and
// detached since this producer attached, by its own reclaim or by a
// surviving queue member (LAYOUT §11.3).
func (p *Producer) ConsumersLost() uint64 {
	return u64At(p.r.mem, offLostCount).Load() - p.lostAtAttach
}

// WaitForConsumers waits until at least n subscribers (broadcast consumers
// plus work-queue groups) are attached and returns who is attached. When ctx
// is done first it returns an error wrapping ErrTooFewConsumers and the
// context's error, saying how many came. Broadcast consumers see only what is
// published after they join, so a producer that must not lose its first
// messages waits here first. It parks on the space futex, which every joiner
// bumps (LAYOUT §5.3 step 5), in slices of at most 50 ms.
func (p *Producer) WaitForConsumers(ctx context.Context, n int) (Receivers, error) {
	if ctx.Done() != nil {
		defer wakeOnDone(ctx, p.spaceFutex)()
	}
	for {
		// Registered before counting, so a join after the count bumps the
		// word we wait on (as §6.2).
		p.spaceWaiter.Add(1)
		f := p.spaceFutex.Load()
		got := p.r.countReceivers()
		if got.Total() >= n {
			p.spaceWaiter.Add(^uint32(0))
			return got, nil
		}
		if err := ctx.Err(); err != nil {
			p.spaceWaiter.Add(^uint32(0))
			return got, fmt.Errorf("%w: %d of the %d consumers awaited attached: %w", ErrTooFewConsumers, got.Total(), n, err)
		}
		futexWaitOn(p.spaceFutex, f, consumerWaitSlice)
		p.spaceWaiter.Add(^uint32(0))
	}
}

// watching reports whether the producer looks for dead consumers while it
// publishes, not only when the ring is full.
func (p *Producer) watching() bool {
	return p.opts.RequireConsumers || p.opts.ReportLostConsumers
}

// watchDue is the periodic dead-consumer look of a watching producer, every
// ReclaimAfter (LAYOUT §4.2).
func (p *Producer) watchDue() {
	if !p.watching() {
		return
	}
	now := time.Now()
	if now.Before(p.nextWatch) {
		return
	}
	p.nextWatch = now.Add(p.opts.ReclaimAfter)
	if p.r.reclaim() > 0 {
		p.scanned = false
	}
}

// checkConsumers runs after a slot was found: it reports consumers that died
// (ReportLostConsumers; always a log line) and refuses to publish into the
// void (RequireConsumers). Nothing was written, so the caller may retry.
func (p *Producer) checkConsumers() error {
	p.refreshReceivers()
	if lost := u64At(p.r.mem, offLostCount).Load(); lost != p.lostSeen {
		n := lost - p.lostSeen
		p.lostSeen = lost
		pid := u32At(p.r.mem, offLostPid).Load()
		p.logger().Warn("alloy: a consumer of the ring died and was detached",
			"ring", p.r.displayName(), "pid", pid, "lost", n, "receivers", p.receivers.Total())
		if p.opts.ReportLostConsumers {
			return &ConsumerLostError{Pid: pid, Lost: n, Remaining: p.receivers.Total()}
		}
	}
	if p.opts.RequireConsumers && p.receivers.Total() == 0 {
		return fmt.Errorf("%w to ring %s: message %d was not published (WaitForConsumers first, or drop RequireConsumers)",
			ErrNoConsumers, p.r.displayName(), p.next)
	}
	return nil
}

func (p *Producer) logger() *slog.Logger {
	if p.opts.Logger != nil {
		return p.opts.Logger
	}
	return slog.Default()
}

// displayName is the ring's name, or "(anonymous)".
func (r *Ring) displayName() string {
	if n := r.Name(); n != "" {
		return n
	}
	return "(anonymous)"
}
