//go:build linux

package ring

import (
	"errors"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// A named ring truncated under a producer and a consumer (LAYOUT §1: only
// its owner can): guarded operations return an error wrapping ErrTruncated
// that names the ring and both sizes, instead of a SIGBUS crash; the
// heartbeat goroutines stop quietly; the goroutine's fault setting is
// restored. A producer waiting for space (guarded by the ring itself) is
// covered by TestWaitingProducerSeesTruncation.
func TestTruncatedRingIsAnError(t *testing.T) {
	name := uniqueName(t)
	r, err := Create(name, small)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, err := r.Subscribe(ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.NewProducer(ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Send([]byte("before"), 0); err != nil {
		t.Fatal(err)
	}
	held, err := c.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated() != nil {
		t.Fatal("Truncated reports an intact ring")
	}
	if err := os.Truncate(NamedPath(name), 0); err != nil {
		t.Fatal(err)
	}
	// The heartbeats (every 100 ms) fault too, in their own goroutines.
	time.Sleep(3 * heartbeatPeriod)
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "was truncated under this process (file now 0 bytes, mapping") || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v, want ErrTruncated naming the ring and the sizes", what, err)
		}
	}
	check("Truncated", r.Truncated())
	// The per-message calls, guarded by the caller as fault.go shows.
	guarded := func(f func() error) (err error) {
		defer r.CatchFault(TrapFaults(), &err)
		return f()
	}
	check("Send", guarded(func() error { return p.Send([]byte("after"), 0) }))
	check("Reserve", guarded(func() error { _, err := p.Reserve(8); return err }))
	check("TryRecv", guarded(func() error { _, err := c.TryRecv(); return err }))
	check("RecvTimeout", guarded(func() error { _, err := c.RecvTimeout(time.Second); return err }))
	check("Release", guarded(func() error { held.Release(); return nil }))
	check("a read of a lease", guarded(func() error { faultSink = held.Bytes()[0]; return nil }))
	if debug.SetPanicOnFault(false) {
		t.Error("the goroutine's fault setting was left on")
	}
	check("Close", p.Close())
}

// A producer blocked on a full ring when the file is truncated returns
// the truncation from Send (its wait is guarded), not a crash.
func TestWaitingProducerSeesTruncation(t *testing.T) {
	name := uniqueName(t)
	r, err := Create(name, small)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Subscribe(ConsumerOptions{}); err != nil { // never receives
		t.Fatal(err)
	}
	p, err := r.NewProducer(ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for range r.Layout().SlotCount {
		if err := p.Send([]byte("x"), 0); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- p.Send([]byte("blocked"), 0) }()
	// Truncating before the Send waits would fault in its unguarded fast
	// path: wait until it has registered as a waiter (inside waitSpace).
	for deadline := time.Now().Add(10 * time.Second); p.spaceWaiter.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the Send into a full ring never waited")
		}
	}
	if err := os.Truncate(NamedPath(name), 0); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "was truncated under this process") {
			t.Fatalf("blocked Send: %v, want ErrTruncated", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the blocked Send did not notice the truncation")
	}
}

var faultSink byte
