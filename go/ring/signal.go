package ring

import (
	"context"
	"runtime"
	"sync/atomic"
	"time"
)

// waitSlice bounds every futex wait (LAYOUT §6): a lost wake-up can only
// delay a waiter, never hang it. A variable only so that tests can tell a
// wake-up from the end of a slice.
var waitSlice = 100 * time.Millisecond

// consumerWaitSlice bounds a consumer's futex wait more tightly, so that
// it checks the producer's liveness every 50 ms (LAYOUT §11.2). A variable
// for the same reason as waitSlice.
var consumerWaitSlice = producerCheckPeriod

// WaitStrategy says how a consumer waits for data.
type WaitStrategy int

const (
	// Blocking spins briefly, then parks on the data futex (LAYOUT §6.1).
	Blocking WaitStrategy = iota
	// Spin never parks: it polls, yielding the goroutine between polls.
	// Lowest latency, one busy core per consumer.
	Spin
)

// backoff is the spin phase of LAYOUT §6: busy-wait rounds that double, then
// yields, about 1–20 µs in total before the caller parks.
type backoff struct{ step int }

const (
	spinRounds  = 6  // busy rounds of 1, 2, … 32 iterations of spinPause
	yieldRounds = 10 // then this many yields
)

// spinSink keeps the compiler from deleting the busy loop.
var spinSink atomic.Uint32

func spinPause(n int) {
	for i := 0; i < n; i++ {
		spinSink.Load()
	}
}

// snooze waits one round. It returns false once the spin budget is spent
// and the caller should park; spin-forever callers ignore the result.
func (b *backoff) snooze() bool {
	switch {
	case b.step < spinRounds:
		spinPause(4 << b.step)
	default:
		runtime.Gosched()
	}
	if b.step < spinRounds+yieldRounds {
		b.step++
		return true
	}
	return false
}

// spin is the endless wait of WaitStrategy Spin: poll, yield the goroutine
// (no system call), poll again. Yielding every round measured fastest on a
// loaded 2-core machine (ping-pong 64 B: ~0.6 µs one-way, against 2.5 µs
// yielding every 16 rounds and 30+ µs every 256): the goroutine being
// waited for may be queued behind the spinner on the same P.
func (b *backoff) spin() {
	runtime.Gosched()
}

// wakeOnDone bumps and wakes the futex word w when ctx is done, so a wait on
// w returns promptly on cancellation (and a wait that starts just after the
// cancellation fails its expected-value check). The returned stop must be
// called before the mapping holding w can go away: once it returns, the
// wake-up is neither running nor going to run.
func wakeOnDone(ctx context.Context, w *atomic.Uint32) (stop func()) {
	ran := make(chan struct{})
	stopAfter := context.AfterFunc(ctx, func() {
		defer close(ran)
		w.Add(1)
		futexWakeAll(w)
	})
	return func() {
		if !stopAfter() {
			<-ran // it started: let it finish touching w
		}
	}
}
