package ring_test

import (
	"errors"
	"fmt"
	"io"
	"log"

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
	p.Close() // end of stream

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
