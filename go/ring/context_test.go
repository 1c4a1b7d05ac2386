//go:build linux

package ring

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// promptly is how soon a blocked call must return after its context is
// cancelled. The futex waits are woken by the cancellation, so this is far
// more than needed; the bounded wait slices alone (50/100 ms) would also
// meet it.
const promptly = 200 * time.Millisecond

// cancelAfter cancels a context once the call under test has had time to
// park on its futex, and returns when it was cancelled.
func cancelAfter(d time.Duration) (context.Context, <-chan time.Time) {
	ctx, cancel := context.WithCancel(context.Background())
	at := make(chan time.Time, 1)
	go func() {
		time.Sleep(d)
		at <- time.Now()
		cancel()
	}()
	return ctx, at
}

func TestRecvContextReturnsPromptlyOnCancel(t *testing.T) {
	for _, wait := range []WaitStrategy{Blocking, Spin} {
		r := anonRing(t, small)
		c, err := r.Subscribe(ConsumerOptions{Wait: wait})
		if err != nil {
			t.Fatal(err)
		}
		p := mustProducer(t, r, Backpressure{})
		ctx, at := cancelAfter(150 * time.Millisecond)
		l, err := c.RecvContext(ctx)
		done := time.Now()
		if l != nil || !errors.Is(err, context.Canceled) {
			t.Fatalf("wait %v: got %v, %v; want context.Canceled", wait, l, err)
		}
		d := done.Sub(<-at)
		if d > promptly {
			t.Errorf("wait %v: returned %v after the cancellation", wait, d)
		}
		t.Logf("wait %v: returned %v after the cancellation", wait, d)
		// The consumer is still usable.
		mustSend(t, p, []byte("after"), 0)
		if l, err := c.RecvTimeout(time.Second); err != nil || string(l.Bytes()) != "after" {
			t.Fatalf("after cancel: %v, %v", l, err)
		} else {
			l.Release()
		}
		p.Close()
		c.Close()
	}
}

func TestReserveContextReturnsPromptlyOnCancel(t *testing.T) {
	r := anonRing(t, small)
	c := mustSubscribe(t, r)
	defer c.Close()
	p := mustProducer(t, r, Backpressure{Kind: Block}) // no timeout: would wait forever
	defer p.Close()
	for range small.SlotCount {
		mustSend(t, p, []byte("fill"), 0)
	}
	ctx, at := cancelAfter(150 * time.Millisecond)
	err := p.SendContext(ctx, []byte("blocked"), 0)
	done := time.Now()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	d := done.Sub(<-at)
	if d > promptly {
		t.Errorf("returned %v after the cancellation", d)
	}
	t.Logf("blocked producer returned %v after the cancellation", d)
	// The producer is still usable once space is freed.
	l, err := c.TryRecv()
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	if _, err := p.ReserveContext(context.Background(), 4); err != nil {
		t.Fatalf("after cancel: %v", err)
	}
	if err := p.Publish(4, 0); err != nil {
		t.Fatal(err)
	}
	// A deadline reports DeadlineExceeded the same way.
	ctx2, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := p.ReserveContext(ctx2, 4); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
}

// Every type that holds resources is an io.Closer.
var (
	_ io.Closer = (*Ring)(nil)
	_ io.Closer = (*Producer)(nil)
	_ io.Closer = (*Consumer)(nil)
)

// A Spin producer waits for space without registering on the space futex
// (no system call), and still honours cancellation, its timeout and the
// consumers' releases.
func TestSpinProducerWaitsWithoutTheFutex(t *testing.T) {
	r := anonRing(t, small)
	c := mustSubscribe(t, r)
	defer c.Close()
	p, err := r.NewProducer(ProducerOptions{Backpressure: Backpressure{Kind: Block, Timeout: 100 * time.Millisecond}, Wait: Spin})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for range small.SlotCount {
		mustSend(t, p, []byte("fill"), 0)
	}
	waiters := u32At(r.mem, offSpaceWaiters)
	registered := make(chan uint32, 1)
	stop := make(chan struct{})
	go func() {
		var seen uint32
		for {
			select {
			case <-stop:
				registered <- seen
				return
			default:
				seen = max(seen, waiters.Load())
			}
		}
	}()
	start := time.Now()
	if err := p.Send([]byte("x"), 0); !errors.Is(err, ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("timed out after %v, before the 100 ms timeout", d)
	}
	ctx, at := cancelAfter(50 * time.Millisecond)
	if err := p.SendContext(ctx, []byte("x"), 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if d := time.Since(<-at); d > promptly {
		t.Errorf("returned %v after the cancellation", d)
	}
	// A release lets the spinning producer through.
	go func() {
		time.Sleep(20 * time.Millisecond)
		l, err := c.Recv()
		if err == nil {
			l.Release()
		}
	}()
	if err := p.Send([]byte("through"), 0); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	close(stop)
	if n := <-registered; n != 0 {
		t.Fatalf("a Spin producer registered %d space waiter(s)", n)
	}
}

// A spinning consumer looks at its deadline only every spinChecks rounds
// (the clock costs more than a poll), yet still times out promptly, and a
// zero timeout polls once and gives up.
func TestSpinRecvTimeoutIsPrompt(t *testing.T) {
	r := anonRing(t, small)
	c, err := r.Subscribe(ConsumerOptions{Wait: Spin})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := mustProducer(t, r, Backpressure{})
	defer p.Close()
	t0 := time.Now()
	if l, err := c.RecvTimeout(0); l != nil || !errors.Is(err, ErrTimeout) {
		t.Fatalf("RecvTimeout(0) on an empty ring: %v, %v; want ErrTimeout", l, err)
	}
	const d = 50 * time.Millisecond
	t1 := time.Now()
	if l, err := c.RecvTimeout(d); l != nil || !errors.Is(err, ErrTimeout) {
		t.Fatalf("RecvTimeout(%v) on an empty ring: %v, %v; want ErrTimeout", d, l, err)
	}
	if late := time.Since(t1) - d; late > promptly {
		t.Errorf("RecvTimeout(%v) returned %v late", d, late)
	}
	if zero := t1.Sub(t0); zero > promptly {
		t.Errorf("RecvTimeout(0) took %v", zero)
	}
	mustSend(t, p, []byte("x"), 0)
	if l, err := c.RecvTimeout(0); err != nil || string(l.Bytes()) != "x" {
		t.Fatalf("RecvTimeout(0) with a message waiting: %v, %v", l, err)
	} else {
		l.Release()
	}
}
