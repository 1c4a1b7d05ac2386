//go:build linux

package ring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"
)

// stallTimeout is the HeldLeaseTimeout of these tests: short, so they run
// fast, and long against the 50 ms check period.
const stallTimeout = 200 * time.Millisecond

// fillAndBlock starts a producer that publishes n messages "m0", "m1", …
// and then closes the stream; with a consumer holding leases it blocks.
// The returned channel reports its end.
func fillAndBlock(t *testing.T, r *Ring, n int) <-chan error {
	return sendThen(t, r, n, true)
}

// sendThen is fillAndBlock, closing the stream at the end only if end.
func sendThen(t *testing.T, r *Ring, n int, end bool) <-chan error {
	t.Helper()
	p := mustProducer(t, r, Backpressure{Kind: Block})
	done := make(chan error, 1)
	if !end {
		t.Cleanup(func() { p.Close() })
	}
	go func() {
		for i := range n {
			if err := p.Send(fmt.Appendf(nil, "m%d", i), 0); err != nil {
				done <- err
				return
			}
		}
		if end {
			done <- p.Close()
		} else {
			done <- nil
		}
	}()
	return done
}

// takeAll receives n messages and keeps them.
func takeAll(t *testing.T, c *Consumer, n int) []*Lease {
	t.Helper()
	var held []*Lease
	for range n {
		l, err := c.RecvTimeout(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
	}
	return held
}

// checkStall waits on c and checks that the wait ends with the retention
// error for sequence seq (held leases) after about stallTimeout.
func checkStall(t *testing.T, recv func() (*Lease, error), seq uint64, held int64) {
	t.Helper()
	start := time.Now()
	l, err := recv()
	took := time.Since(start)
	if l != nil || !errors.Is(err, ErrRetentionStall) {
		t.Fatalf("got %v, %v; want ErrRetentionStall", l, err)
	}
	var se *RetentionStallError
	if !errors.As(err, &se) || se.Seq != seq || se.Held != held {
		t.Fatalf("got %#v, want sequence %d with %d held", se, seq, held)
	}
	if took < stallTimeout || took > stallTimeout+2*time.Second {
		t.Fatalf("the stall was reported after %v, timeout %v", took, stallTimeout)
	}
	t.Logf("reported after %v: %v", took, err)
}

func TestRetentionStallBroadcast(t *testing.T) {
	for _, wait := range []WaitStrategy{Blocking, Spin} {
		t.Run(fmt.Sprint(wait), func(t *testing.T) {
			r := anonRing(t, small)
			c, err := r.Subscribe(ConsumerOptions{Wait: wait, HeldLeaseTimeout: stallTimeout})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			n := int(small.SlotCount)
			done := fillAndBlock(t, r, n+2)
			held := takeAll(t, c, n) // the producer now waits for sequence 0
			checkStall(t, c.Recv, 0, int64(n))
			// Still stalled, still reported; through RecvContext too.
			checkStall(t, func() (*Lease, error) { return c.RecvContext(context.Background()) }, 0, int64(n))
			// Releasing a later lease does not help: 0 still gates.
			held[2].Release()
			checkStall(t, c.Recv, 0, int64(n-1))
			// Releasing 0 lets the producer go on; the consumer recovers.
			held[0].Release()
			l, err := c.RecvTimeout(5 * time.Second)
			if err != nil || string(l.Bytes()) != fmt.Sprintf("m%d", n) {
				t.Fatalf("after the release: %v, %v", l, err)
			}
			held = append(held, l)
			for _, l := range held {
				l.Release()
			}
			l, err = c.RecvTimeout(5 * time.Second)
			if err != nil || string(l.Bytes()) != fmt.Sprintf("m%d", n+1) {
				t.Fatalf("after the release: %v, %v", l, err)
			}
			l.Release()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A queue member is stalled by its own leases only: another member of the
// group, waiting while the first one holds the gating sequence, waits on
// (its release may come from the holder at any time).
func TestRetentionStallQueueMember(t *testing.T) {
	r := anonRing(t, small)
	opts := ConsumerOptions{HeldLeaseTimeout: stallTimeout}
	a, err := r.JoinQueue(1, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := r.JoinQueue(1, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	n := int(small.SlotCount)
	done := fillAndBlock(t, r, n+1)
	held := takeAll(t, a, n)
	if l, err := b.RecvTimeout(3 * stallTimeout); !errors.Is(err, ErrTimeout) {
		t.Fatalf("the member holding nothing got %v, %v; want ErrTimeout", l, err)
	}
	checkStall(t, a.Recv, 0, int64(n))
	// Handing sequence 0 back lets the last message through to one of them.
	held[0].Release()
	var got *Lease
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the producer stayed blocked after the release")
	}
	if got, err = b.RecvTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if string(got.Bytes()) != fmt.Sprintf("m%d", n) {
		t.Fatalf("got %q", got.Bytes())
	}
	got.Release()
	for _, l := range held[1:] {
		l.Release()
	}
	if l, err := a.RecvTimeout(5 * time.Second); !errors.Is(err, io.EOF) {
		t.Fatalf("at the end: %v, %v; want io.EOF", l, err)
	}
}

// No error while the ring is not full behind the held lease, nor with the
// check turned off.
func TestRetentionNoStall(t *testing.T) {
	n := int(small.SlotCount)
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		publish int
	}{
		{"ring not full", stallTimeout, n - 1},
		{"check off", NoHeldLeaseTimeout, n + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := anonRing(t, small)
			c, err := r.Subscribe(ConsumerOptions{HeldLeaseTimeout: tc.timeout})
			if err != nil {
				t.Fatal(err)
			}
			// The stream stays open while the ring is not full: the
			// consumer must wait, not see the end.
			done := sendThen(t, r, tc.publish, tc.publish > n)
			held := takeAll(t, c, min(n, tc.publish))
			if l, err := c.RecvTimeout(4 * stallTimeout); l != nil || !errors.Is(err, ErrTimeout) {
				t.Fatalf("got %v, %v; want ErrTimeout", l, err)
			}
			for _, l := range held {
				l.Release()
			}
			for range tc.publish - len(held) {
				l, err := c.RecvTimeout(5 * time.Second)
				if err != nil {
					t.Fatal(err)
				}
				l.Release()
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			c.Close()
		})
	}
}

func TestHeldLeaseTimeoutDefault(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{
		{0, DefaultHeldLeaseTimeout}, {NoHeldLeaseTimeout, 0}, {-5, 0}, {time.Minute, time.Minute},
	} {
		c := &Consumer{opts: ConsumerOptions{HeldLeaseTimeout: tc.in}}
		if got := c.heldLeaseTimeout(); got != tc.want {
			t.Errorf("HeldLeaseTimeout %v: effective %v, want %v", tc.in, got, tc.want)
		}
	}
}
