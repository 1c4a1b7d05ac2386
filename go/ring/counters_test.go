//go:build linux

package ring

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

var counterCfg = Config{SlotCount: 2, SlotSize: 64, MaxSubscribers: 4, MaxMembers: 4, SchemaCapacity: 64}

// A busy producer and a consumer that never waits touch no counter (LAYOUT
// §2.1); the same scenario as the Rust busy_path_counts_nothing.
func TestCountersBusyPathCountsNothing(t *testing.T) {
	r := anonRing(t, counterCfg)
	c := mustSubscribe(t, r)
	p := mustProducer(t, r, Backpressure{Kind: Fail})
	defer p.Close()
	var b [4]byte
	for i := range 1000 {
		binary.LittleEndian.PutUint32(b[:], uint32(i))
		mustSend(t, p, b[:], 0)
		mustRecv(t, c).Release()
	}
	s := r.Stat()
	if s.Published != 1000 || s.DataWakes != 0 || s.FullRefusals != 0 || s.BackpressureWaits != 0 || s.BackpressureNs != 0 {
		t.Fatalf("busy path counted: %+v", s)
	}
	if m := s.Consumers[0].Members[0]; m.Parks != 0 || m.ParkNs != 0 || m.SpaceWakes != 0 {
		t.Fatalf("busy consumer counted: %+v", m)
	}
}

// Each slow-path event is counted once, by the endpoint that had it; the
// same scenario as the Rust slow_paths_are_counted.
func TestCountersSlowPathsAreCounted(t *testing.T) {
	r := anonRing(t, counterCfg)
	c := mustSubscribe(t, r)
	p := mustProducer(t, r, Backpressure{Kind: Fail})
	mustSend(t, p, []byte("a"), 0)
	mustSend(t, p, []byte("b"), 0)
	if err := p.Send([]byte("c"), 0); !errors.Is(err, ErrFull) {
		t.Fatalf("want ErrFull, got %v", err)
	}
	if s := r.Stat(); s.FullRefusals != 1 {
		t.Fatalf("full refusals %d", s.FullRefusals)
	}
	if err := p.Detach(); err != nil {
		t.Fatal(err)
	}

	// Block: a wait that times out is one wait of at least its timeout.
	wait := 30 * time.Millisecond
	p = mustProducer(t, r, Backpressure{Kind: Block, Timeout: wait})
	if err := p.Send([]byte("c"), 0); !errors.Is(err, ErrTimeout) {
		t.Fatalf("want ErrTimeout, got %v", err)
	}
	if s := r.Stat(); s.BackpressureWaits != 1 || s.BackpressureNs < uint64(wait) {
		t.Fatalf("waits %d, %d ns", s.BackpressureWaits, s.BackpressureNs)
	}
	if err := p.Detach(); err != nil {
		t.Fatal(err)
	}

	// A release while the producer is parked for space wakes it: one
	// wake-up issued by the consumer, one more wait.
	p = mustProducer(t, r, Backpressure{Kind: Block})
	defer p.Close()
	sent := make(chan error)
	go func() { sent <- p.Send([]byte("c"), 0) }()
	waitFor(t, "the producer parks", func() bool { return u32At(r.mem, offSpaceWaiters).Load() != 0 })
	mustRecv(t, c).Release()
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	s := r.Stat()
	if s.BackpressureWaits != 2 || s.Consumers[0].Members[0].SpaceWakes != 1 {
		t.Fatalf("waits %d, consumer wakes %d", s.BackpressureWaits, s.Consumers[0].Members[0].SpaceWakes)
	}

	// A consumer parked on an empty ring is woken by a publish.
	mustRecv(t, c).Release()
	mustRecv(t, c).Release()
	got := make(chan string)
	go func() {
		l, err := c.Recv()
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(l.Bytes())
		l.Release()
	}()
	waitFor(t, "the consumer parks", func() bool { return u32At(r.mem, offDataWaiters).Load() != 0 })
	time.Sleep(20 * time.Millisecond)
	mustSend(t, p, []byte("d"), 0)
	if g := <-got; g != "d" {
		t.Fatalf("received %q", g)
	}
	s = r.Stat()
	if m := s.Consumers[0].Members[0]; s.DataWakes != 1 || m.Parks < 1 || m.ParkNs == 0 {
		t.Fatalf("data wakes %d, member %+v", s.DataWakes, m)
	}
}

// waitFor polls cond every millisecond; fails the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for t0 := time.Now(); !cond(); time.Sleep(time.Millisecond) {
		if time.Since(t0) > 10*time.Second {
			t.Fatalf("timed out: %s", what)
		}
	}
}
