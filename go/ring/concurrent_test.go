//go:build linux

package ring

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/ignalina/alloy/go/internal/checkmsg"
)

// The race detector cannot see other processes, so these tests run the
// protocol between goroutines on one mapping, where it can.

var spec = checkmsg.Spec{Seed: 3, MinSize: 16, MaxSize: 200}

func produceChecked(p *Producer, count int) error {
	for j := 0; j < count; j++ {
		n := spec.Len(uint64(j))
		buf, err := p.Reserve(n)
		if err != nil {
			return err
		}
		checkmsg.Fill(buf, uint64(j))
		if err := p.Publish(n, 0); err != nil {
			return err
		}
	}
	return p.Close()
}

// consumeChecked receives until EOF and returns the message numbers. Leases
// are held in a small window and released out of order, so the release
// cursor logic of §5.2 runs concurrently with the producer and, for a queue
// group, with the other members' releases.
func consumeChecked(c *Consumer, seed uint64) ([]uint64, error) {
	rng := rand.New(rand.NewPCG(seed, 0))
	var got []uint64
	var held []*Lease
	for {
		l, err := c.TryRecv()
		if errors.Is(err, ErrEmpty) {
			// Held leases gate the producer: release them all before
			// waiting, or a window as wide as the ring would deadlock.
			for _, h := range held {
				h.Release()
			}
			held = held[:0]
			l, err = c.Recv()
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return got, err
		}
		j, err := spec.Verify(l.Bytes())
		if err != nil {
			return got, fmt.Errorf("seq %d: %w", l.Seq(), err)
		}
		got = append(got, j)
		held = append(held, l)
		if len(held) == 3 || rng.IntN(2) == 0 {
			i := rng.IntN(len(held))
			held[i].Release()
			held = append(held[:i], held[i+1:]...)
		}
	}
	for _, l := range held {
		l.Release()
	}
	return got, c.Close()
}

func TestConcurrentBroadcast(t *testing.T) {
	const count = 20000
	for _, wait := range []WaitStrategy{Blocking, Spin} {
		r := anonRing(t, Config{SlotCount: 8, SlotSize: 256, MaxSubscribers: 4, MaxMembers: 4})
		cs := make([]*Consumer, 2)
		for i := range cs {
			var err error
			if cs[i], err = r.Subscribe(ConsumerOptions{Wait: wait}); err != nil {
				t.Fatal(err)
			}
		}
		p := mustProducer(t, r, Backpressure{Kind: Block})
		var wg sync.WaitGroup
		errs := make([]error, len(cs))
		for i, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := consumeChecked(c, uint64(i))
				if err == nil {
					for k, j := range got {
						if j != uint64(k) {
							err = fmt.Errorf("position %d holds message %d", k, j)
							break
						}
					}
					if len(got) != count {
						err = fmt.Errorf("received %d of %d", len(got), count)
					}
				}
				errs[i] = err
			}()
		}
		if err := produceChecked(p, count); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("wait %d: %v", wait, err)
		}
	}
}

func TestConcurrentQueueExactlyOnce(t *testing.T) {
	const count = 20000
	r := anonRing(t, Config{SlotCount: 8, SlotSize: 256, MaxSubscribers: 2, MaxMembers: 4})
	members := make([]*Consumer, 3)
	for i := range members {
		var err error
		if members[i], err = r.JoinQueue(7, ConsumerOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if members[0].sub != members[2].sub {
		t.Fatal("members of one group got different subscriber entries")
	}
	p := mustProducer(t, r, Backpressure{Kind: Block})
	var wg sync.WaitGroup
	got := make([][]uint64, len(members))
	errs := make([]error, len(members))
	for i, c := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = consumeChecked(c, uint64(i))
		}()
	}
	if err := produceChecked(p, count); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	seen := make([]int, count)
	for _, g := range got {
		for _, j := range g {
			if j >= count {
				t.Fatalf("message %d out of range", j)
			}
			seen[j]++
		}
	}
	for j, n := range seen {
		if n != 1 {
			t.Fatalf("message %d delivered %d times", j, n)
		}
	}
}

// Subscribers join and leave while the producer runs: each must see a
// contiguous run starting where it joined, and the producer must never
// overwrite a slot a joining subscriber still wants (§5.3).
func TestConcurrentJoinLeave(t *testing.T) {
	const count = 20000
	r := anonRing(t, Config{SlotCount: 4, SlotSize: 256, MaxSubscribers: 2, MaxMembers: 2})
	p := mustProducer(t, r, Backpressure{Kind: Block})
	done := make(chan error, 1)
	go func() { done <- produceChecked(p, count) }()
	for round := 0; ; round++ {
		c, err := r.Subscribe(ConsumerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var last uint64
		eof := false
		for k := 0; k < 50; k++ {
			l, err := c.Recv()
			// A consumer that joined after the close is told the stream
			// ended (LAYOUT §4.1) rather than given io.EOF.
			if err == io.EOF || errors.Is(err, ErrStreamEnded) {
				eof = true
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			j, err := spec.Verify(l.Bytes())
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if k > 0 && j != last+1 {
				t.Fatalf("round %d: message %d after %d", round, j, last)
			}
			if j != l.Seq() {
				t.Fatalf("message %d in sequence %d", j, l.Seq())
			}
			last = j
			l.Release()
		}
		c.Close()
		if eof {
			break
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentSchemaReads(t *testing.T) {
	r := anonRing(t, Config{SlotCount: 4, SlotSize: 64, MaxSubscribers: 1, MaxMembers: 1, SchemaCapacity: 256})
	p := mustProducer(t, r, failBP)
	versions := [][]byte{make([]byte, 200), make([]byte, 17)}
	for i := range versions[0] {
		versions[0][i] = 'a'
	}
	for i := range versions[1] {
		versions[1][i] = 'b'
	}
	stop := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		for {
			select {
			case <-stop:
				return
			default:
			}
			s, err := r.Schema()
			if err != nil {
				errc <- err
				return
			}
			if s != nil && string(s) != string(versions[0]) && string(s) != string(versions[1]) {
				errc <- fmt.Errorf("torn schema read: %q", s)
				return
			}
		}
	}()
	for i := 0; i < 5000; i++ {
		if err := p.SetSchema(versions[i%2]); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
