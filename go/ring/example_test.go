//go:build linux

package ring_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/ignalina/alloy/go/ring"
)

// A producer and a broadcast consumer on one anonymous region. In real use
// they live in different processes: one creates the region and passes its
// fd (or name) to the other, which opens it.
func Example() {
	r, err := ring.CreateAnonymous("example", ring.Config{
		SlotCount: 8, SlotSize: 256, MaxSubscribers: 2, MaxMembers: 2,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	// Consumers join before the messages they want: late joiners start at
	// the head of the stream.
	c, err := r.Subscribe(ring.ConsumerOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	p, err := r.NewProducer(ring.ProducerOptions{Backpressure: ring.Backpressure{Kind: ring.Fail}})
	if err != nil {
		log.Fatal(err)
	}
	for _, word := range []string{"hello", "shared", "memory"} {
		buf, err := p.Reserve(len(word)) // the slot itself: write in place
		if err != nil {
			log.Fatal(err)
		}
		copy(buf, word)
		if err := p.Publish(len(word), 0); err != nil {
			log.Fatal(err)
		}
	}
	if err := p.Close(); err != nil { // end of stream
		log.Fatal(err)
	}

	for {
		l, err := c.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d: %s\n", l.Seq(), l.Bytes())
		l.Release()
	}
	// Output:
	// 0: hello
	// 1: shared
	// 2: memory
}

// Stat shows who is attached and how far behind each consumer is, as
// `alloy-go stat` prints it.
func ExampleRing_Stat() {
	r, err := ring.CreateAnonymous("stat-example", ring.Config{
		SlotCount: 8, SlotSize: 64, MaxSubscribers: 2, MaxMembers: 2,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	c, err := r.Subscribe(ring.ConsumerOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	p, err := r.NewProducer(ring.ProducerOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	for range 3 {
		if err := p.Send([]byte("msg"), 0); err != nil {
			log.Fatal(err)
		}
	}
	l, err := c.Recv() // received, not yet released
	if err != nil {
		log.Fatal(err)
	}
	s := r.Stat()
	fmt.Printf("published %d, %d/%d slots in use\n", s.Published, s.SlotsInUse, s.SlotCount)
	cs := s.Consumers[0]
	fmt.Printf("%s consumer: cursor %d, lag %d, leases held %d\n", cs.Kind, cs.Cursor, cs.Lag, cs.LeasesHeld)
	l.Release()
	// Output:
	// published 3, 3/8 slots in use
	// broadcast consumer: cursor 1, lag 2, leases held 1
}

// A blocked Recv returns as soon as its context is done.
func ExampleConsumer_RecvContext() {
	r, err := ring.CreateAnonymous("ctx-example", ring.Config{
		SlotCount: 4, SlotSize: 64, MaxSubscribers: 1, MaxMembers: 1,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	c, err := r.Subscribe(ring.ConsumerOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err = c.RecvContext(ctx) // nothing is ever published
	fmt.Println(errors.Is(err, context.DeadlineExceeded))
	// Output: true
}
