//go:build linux

package ring

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func recvString(t *testing.T, c *Consumer, want string) {
	t.Helper()
	l, err := c.RecvTimeout(time.Second)
	if err != nil {
		t.Fatalf("want %q: %v", want, err)
	}
	if string(l.Bytes()) != want {
		t.Fatalf("got %q, want %q", l.Bytes(), want)
	}
	l.Release()
}

func mustEOF(t *testing.T, c *Consumer) {
	t.Helper()
	if l, err := c.RecvTimeout(time.Second); err != io.EOF {
		t.Fatalf("want io.EOF, got %v %v", l, err)
	}
}

// A closed ring carries a second stream with another schema; the consumer
// attached across sees the first stream's end once, then the second; a
// consumer joining the ended stream is told so (not a silent io.EOF).
func TestNewStreamOnClosedRing(t *testing.T) {
	r := anonRing(t, small)
	across := mustSubscribe(t, r)
	p := mustProducer(t, r, Backpressure{})
	if err := p.SetSchema([]byte("schema-one")); err != nil {
		t.Fatal(err)
	}
	mustSend(t, p, []byte("a"), 0)
	mustSend(t, p, []byte("b"), 0)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := r.NewProducer(ProducerOptions{})
	var ended *StreamEndedError
	if !errors.Is(err, ErrStreamEnded) || !errors.Is(err, ErrClosed) || !errors.As(err, &ended) || ended.Seq != 2 {
		t.Fatalf("attach to a closed ring: %v", err)
	}
	if !strings.Contains(err.Error(), "ended at sequence 2") || !strings.Contains(err.Error(), "NewStream") {
		t.Fatalf("message: %v", err)
	}
	late := mustSubscribe(t, r)
	for range 2 {
		if _, err := late.RecvTimeout(100 * time.Millisecond); !errors.Is(err, ErrStreamEnded) || errors.Is(err, ErrClosed) {
			t.Fatalf("late joiner of an ended stream: %v", err)
		}
	}
	recvString(t, across, "a")
	recvString(t, across, "b")
	mustEOF(t, across)

	p2, err := r.NewProducer(ProducerOptions{NewStream: true})
	if err != nil {
		t.Fatal(err)
	}
	if p2.StreamGen() != 1 || r.StreamGen() != 1 || r.StreamStart() != 2 || r.IsClosed() {
		t.Fatalf("gen %d/%d start %d closed %v", p2.StreamGen(), r.StreamGen(), r.StreamStart(), r.IsClosed())
	}
	if s, err := r.Schema(); s != nil || err != nil {
		t.Fatalf("schema after a new stream: %q %v", s, err)
	}
	if err := p2.SetSchema([]byte("schema-two-longer")); err != nil {
		t.Fatal(err)
	}
	mustSend(t, p2, []byte("x"), 0)
	if err := p2.Close(); err != nil {
		t.Fatal(err)
	}
	if s, _ := r.Schema(); string(s) != "schema-two-longer" {
		t.Fatalf("schema %q", s)
	}
	l, err := across.RecvTimeout(time.Second)
	if err != nil || string(l.Bytes()) != "x" || l.StreamGen() != 1 || l.Seq() != 2 {
		t.Fatalf("second stream: %v %v", l, err)
	}
	l.Release()
	mustEOF(t, across)
	recvString(t, late, "x")
	mustEOF(t, late)
}

// A consumer that lags behind two stream changes sees each end once, with
// the next stream's first message kept for the call after it.
func TestLaggingConsumerSeesEachEnd(t *testing.T) {
	r := anonRing(t, Config{SlotCount: 8, SlotSize: 64, MaxSubscribers: 2, MaxMembers: 2})
	lag := mustSubscribe(t, r)
	p := mustProducer(t, r, Backpressure{})
	mustSend(t, p, []byte("a"), 0)
	p.Close()
	p2, err := r.NewProducer(ProducerOptions{NewStream: true})
	if err != nil {
		t.Fatal(err)
	}
	mustSend(t, p2, []byte("x"), 0)
	recvString(t, lag, "a")
	mustEOF(t, lag)
	if lag.StreamGen() != 1 {
		t.Fatalf("gen %d", lag.StreamGen())
	}
	recvString(t, lag, "x")
	p2.Detach()
	p3, err := r.NewProducer(ProducerOptions{NewStream: true})
	if err != nil || p3.StreamGen() != 2 {
		t.Fatalf("third stream: %v", err)
	}
	if _, err := lag.TryRecv(); err != io.EOF {
		t.Fatalf("end of the second stream: %v", err)
	}
	if _, err := lag.TryRecv(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("third stream, empty: %v", err)
	}
	mustSend(t, p3, []byte("y"), 0)
	recvString(t, lag, "y")
	// NewStream on an open, empty stream changes nothing.
	fresh := anonRing(t, small)
	p4, err := fresh.NewProducer(ProducerOptions{NewStream: true})
	if err != nil || p4.StreamGen() != 0 {
		t.Fatalf("fresh ring: gen %d, %v", p4.StreamGen(), err)
	}
}

// RequireConsumers refuses to publish into the void, counts broadcast
// consumers and queue groups, and notices the last consumer leaving.
func TestRequireConsumers(t *testing.T) {
	r := anonRing(t, small)
	p, err := r.NewProducer(ProducerOptions{RequireConsumers: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Send([]byte("a"), 0); !errors.Is(err, ErrNoConsumers) || !strings.Contains(err.Error(), "message 0 was not published") {
		t.Fatalf("no consumer: %v", err)
	}
	if p.Published() != 0 {
		t.Fatal("published into the void")
	}
	c := mustSubscribe(t, r)
	q1, err := r.JoinQueue(3, ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	q2, err := r.JoinQueue(3, ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustSend(t, p, []byte("a"), 0)
	if got := p.LastReceivers(); got != (Receivers{Broadcast: 1, Groups: 1}) {
		t.Fatalf("receivers %+v", got)
	}
	c.Close()
	mustSend(t, p, []byte("b"), 0)
	if got := p.LastReceivers(); got != (Receivers{Groups: 1}) || got.Total() != 1 {
		t.Fatalf("receivers %+v", got)
	}
	recvString(t, q1, "a")
	q1.Close()
	q2.Close()
	if err := p.Send([]byte("c"), 0); !errors.Is(err, ErrNoConsumers) {
		t.Fatalf("after the last consumer left: %v", err)
	}
	if p.Receivers().Total() != 0 {
		t.Fatal("count")
	}
}

// WaitForConsumers ends with its context, saying how many came, and is
// woken by a join.
func TestWaitForConsumers(t *testing.T) {
	r := anonRing(t, small)
	p := mustProducer(t, r, Backpressure{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	got, err := p.WaitForConsumers(ctx, 1)
	if !errors.Is(err, ErrTooFewConsumers) || !errors.Is(err, context.DeadlineExceeded) || got.Total() != 0 {
		t.Fatalf("no consumer: %+v %v", got, err)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > time.Second {
		t.Fatalf("waited %v", d)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		mustSubscribe(t, r)
		if _, err := r.JoinQueue(1, ConsumerOptions{}); err != nil {
			t.Error(err)
		}
	}()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	start = time.Now()
	got, err = p.WaitForConsumers(ctx2, 2)
	if err != nil || got != (Receivers{Broadcast: 1, Groups: 1}) {
		t.Fatalf("%+v %v", got, err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Fatalf("woken after %v", d)
	}
}

// OpenOrCreate creates, then opens with the geometry checked.
func TestOpenOrCreate(t *testing.T) {
	name := uniqueName(t)
	r, err := OpenOrCreate(name, small)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer Remove(name)
	again, err := OpenOrCreate(name, Config{SlotCount: 4, SlotSize: 64, MaxSubscribers: 2, MaxMembers: 4, SchemaCapacity: 64})
	if err != nil {
		t.Fatal(err)
	}
	again.Close()
	if _, err := OpenOrCreate(name, Config{SlotCount: 8, SlotSize: 64, MaxSubscribers: 2, MaxMembers: 4}); !errors.Is(err, ErrConfigMismatch) ||
		!strings.Contains(err.Error(), "SlotCount 4") {
		t.Fatalf("mismatch: %v", err)
	}
}

// A consumer process SIGKILLed mid-stream is reported to a producer that
// watches its consumers: once as a ConsumerLostError naming the pid, then
// ErrNoConsumers — never a silent publish into the void. The ring is not
// full when it dies, so this is the producer's periodic look, not the
// full-ring reclaim.
func TestConsumerKilledMidStreamIsReported(t *testing.T) {
	name := uniqueName(t)
	r, err := Create(name, Config{SlotCount: 64, SlotSize: 4096, MaxSubscribers: 2, MaxMembers: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); Remove(name) })
	p, err := r.NewProducer(ProducerOptions{
		Backpressure:     Backpressure{Kind: Block, Timeout: 5 * time.Second},
		ReclaimAfter:     50 * time.Millisecond,
		RequireConsumers: true, ReportLostConsumers: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	child := spawnStopped(t, name, "broadcast", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.WaitForConsumers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for j := uint64(0); j < 2; j++ {
		if err := stoppedSend(p, j); err != nil {
			t.Fatal(err)
		}
	}
	child.expect("holding")
	pid := child.cmd.Process.Pid
	if err := child.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.cmd.Wait()
	killed := time.Now()
	var lost *ConsumerLostError
	sent := 2
	for j := uint64(2); ; j++ {
		err := stoppedSend(p, j)
		if err == nil {
			sent++
			if time.Since(killed) > 3*time.Second {
				t.Fatalf("still publishing %v after the consumer was killed", time.Since(killed))
			}
			time.Sleep(time.Millisecond)
			continue
		}
		if !errors.As(err, &lost) || !errors.Is(err, ErrConsumerLost) {
			t.Fatalf("want ConsumerLostError, got %v", err)
		}
		break
	}
	if lost.Pid != uint32(pid) || lost.Lost != 1 || lost.Remaining != 0 || p.ConsumersLost() != 1 {
		t.Fatalf("%+v, lost %d", lost, p.ConsumersLost())
	}
	if err := stoppedSend(p, 99); !errors.Is(err, ErrNoConsumers) {
		t.Fatalf("after the loss: %v", err)
	}
	t.Logf("consumer pid %d killed; reported after %v (%d messages sent in all, reclaim every 50 ms)", pid, time.Since(killed), sent)
}

func drainSeqs(c *Consumer) []uint64 {
	var out []uint64
	for {
		l, err := c.TryRecv()
		if err != nil {
			return out
		}
		out = append(out, l.Seq())
		l.Release()
	}
}

// History gives a late joiner the last messages of the current stream, at
// most N-1.
func TestHistoryForLateJoiners(t *testing.T) {
	r := anonRing(t, Config{SlotCount: 8, SlotSize: 64, MaxSubscribers: 4, MaxMembers: 4})
	p := mustProducer(t, r, Backpressure{})
	for j := range 20 {
		mustSend(t, p, []byte{byte(j)}, 0)
	}
	join := func(o ConsumerOptions, queue bool) *Consumer {
		var c *Consumer
		var err error
		if queue {
			c, err = r.JoinQueue(2, o)
		} else {
			c, err = r.Subscribe(o)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	if got := fmt.Sprint(drainSeqs(join(ConsumerOptions{History: 3}, false))); got != "[17 18 19]" {
		t.Fatalf("history 3: %s", got)
	}
	if got := fmt.Sprint(drainSeqs(join(ConsumerOptions{History: 100}, false))); got != "[13 14 15 16 17 18 19]" {
		t.Fatalf("history 100: %s", got)
	}
	if got := fmt.Sprint(drainSeqs(join(ConsumerOptions{History: 2}, true))); got != "[18 19]" {
		t.Fatalf("queue history 2: %s", got)
	}
	p.Close()
	p2, err := r.NewProducer(ProducerOptions{NewStream: true})
	if err != nil {
		t.Fatal(err)
	}
	mustSend(t, p2, []byte("x"), 0)
	if got := fmt.Sprint(drainSeqs(join(ConsumerOptions{History: 5}, false))); got != "[20]" {
		t.Fatalf("history across a new stream: %s", got)
	}
}

// Late joiners with the largest history while the producer runs flat out:
// every message they get is intact.
func TestHistoryJoinsRaceARunningProducer(t *testing.T) {
	r := anonRing(t, Config{SlotCount: 4, SlotSize: 64, MaxSubscribers: 2, MaxMembers: 2})
	stop := make(chan struct{})
	sent := make(chan uint64)
	var published atomic.Uint64
	go func() {
		p := mustProducer(t, r, Backpressure{})
		var j uint64
		var b [8]byte
		for {
			select {
			case <-stop:
				p.Detach()
				sent <- j
				return
			default:
			}
			binary.LittleEndian.PutUint64(b[:], j)
			if err := p.Send(b[:], 0); err != nil {
				t.Error(err)
			}
			j++
			published.Store(j)
		}
	}()
	// Enough joins against enough traffic, counted, not timed: a loaded
	// machine only makes it take longer (the deadline is a hang guard).
	joins, got := 0, 0
	for deadline := time.Now().Add(60 * time.Second); (joins < 200 || published.Load() < 2000) && time.Now().Before(deadline); joins++ {
		c, err := r.Subscribe(ConsumerOptions{History: 3})
		if err != nil {
			t.Fatal(err)
		}
		for range 4 {
			l, err := c.RecvTimeout(time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if v := binary.LittleEndian.Uint64(l.Bytes()); v != l.Seq() {
				t.Fatalf("seq %d holds message %d", l.Seq(), v)
			}
			l.Release()
			got++
		}
		c.Close()
	}
	close(stop)
	n := <-sent
	if joins < 200 || n < 2000 {
		t.Fatalf("%d joins, %d sent", joins, n)
	}
	t.Logf("%d joins with history 3 on 4 slots, %d messages checked, %d sent", joins, got, n)
}
