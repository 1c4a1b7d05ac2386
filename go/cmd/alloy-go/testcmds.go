package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/ignalina/alloy/go/internal/checkmsg"
	"github.com/ignalina/alloy/go/ring"
)

// specFlags registers the checked-message flags of doc/TESTING.md.
func specFlags(fs interface {
	Uint64(string, uint64, string) *uint64
	Int(string, int, string) *int
}) (*uint64, *int, *int) {
	return fs.Uint64("seed", 1, "checked-message seed"),
		fs.Int("min-size", 16, "smallest message (≥ 16)"),
		fs.Int("max-size", 4096, "largest message")
}

// msDuration is a flag.Value for a duration given as a Go duration
// ("500ms", "2s") or, like the Rust CLI's flag, a bare number of
// milliseconds.
type msDuration time.Duration

func (d *msDuration) String() string { return time.Duration(*d).String() }

func (d *msDuration) Set(s string) error {
	if ms, err := strconv.ParseUint(s, 10, 63); err == nil {
		*d = msDuration(time.Duration(ms) * time.Millisecond)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("want a duration such as 500ms or a number of milliseconds, got %q", s)
	}
	*d = msDuration(v)
	return nil
}

func printJSON(v any) error {
	return json.NewEncoder(os.Stdout).Encode(v)
}

// printJSONTo is printJSON onto w (recv --out - keeps stdout for the data).
func printJSONTo(w io.Writer) func(any) error {
	return func(v any) error { return json.NewEncoder(w).Encode(v) }
}

// testProduce sends --count checked messages with blocking back-pressure,
// then closes the stream. Blocked for longer than --reclaim-after, it
// detaches consumers that died (LAYOUT §11.3).
func testProduce(args []string) error {
	fs := newFlags("test-produce")
	name := fs.String("ring", "", "ring name")
	count := fs.Uint64("count", 0, "messages to send")
	var reclaimAfter msDuration
	fs.Var(&reclaimAfter, "reclaim-after", "detach dead consumers after being blocked this `DURATION` (e.g. 500ms; a bare number is milliseconds; default 1s)")
	seed, minSize, maxSize := specFlags(fs)
	fs.Parse(args)
	if err := requireRing(*name); err != nil {
		return err
	}
	spec := checkmsg.Spec{Seed: *seed, MinSize: *minSize, MaxSize: *maxSize}
	if err := spec.Check(); err != nil {
		return err
	}
	r, err := ring.Open(*name)
	if err != nil {
		return err
	}
	defer r.Close()
	p, err := r.NewProducer(ring.ProducerOptions{
		Backpressure: ring.Backpressure{Kind: ring.Block},
		ReclaimAfter: time.Duration(reclaimAfter),
	})
	if err != nil {
		return err
	}
	var total uint64
	for j := uint64(0); j < *count; j++ {
		n := spec.Len(j)
		buf, err := p.Reserve(n)
		if err != nil {
			p.Detach()
			return err
		}
		checkmsg.Fill(buf, j)
		if err := p.Publish(n, 0); err != nil {
			p.Detach()
			return err
		}
		total += uint64(n)
	}
	if err := p.Close(); err != nil {
		return err
	}
	return printJSON(struct {
		Sent  uint64 `json:"sent"`
		Bytes uint64 `json:"bytes"`
	}{*count, total})
}

// testConsume joins, says "ready", then verifies every message until
// end-of-stream. With --hold N it keeps the leases of the N most recent
// messages and releases older ones, so a consumer killed meanwhile dies
// holding leases (the ring needs more than N slots to make progress).
func testConsume(args []string) error {
	fs := newFlags("test-consume")
	name := fs.String("ring", "", "ring name")
	broadcast := fs.Bool("broadcast", false, "join as a broadcast subscriber")
	group := fs.Uint("queue", 0, "join work-queue group GROUP (≥ 1)")
	out := fs.String("out", "", "write the received message numbers (LE u64) to FILE")
	hold := fs.Int("hold", 0, "keep the leases of the `N` most recent messages unreleased")
	seed, minSize, maxSize := specFlags(fs)
	fs.Parse(args)
	if err := requireRing(*name); err != nil {
		return err
	}
	if *hold < 0 {
		return errors.New("--hold must be ≥ 0")
	}
	if *broadcast == (*group != 0) {
		return errors.New("exactly one of --broadcast and --queue GROUP is required")
	}
	spec := checkmsg.Spec{Seed: *seed, MinSize: *minSize, MaxSize: *maxSize}
	if err := spec.Check(); err != nil {
		return err
	}
	var w *bufio.Writer
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = bufio.NewWriter(f)
	}
	r, err := ring.Open(*name)
	if err != nil {
		return err
	}
	defer r.Close()
	var c *ring.Consumer
	if *broadcast {
		c, err = r.Subscribe(ring.ConsumerOptions{})
	} else {
		c, err = r.JoinQueue(uint32(*group), ring.ConsumerOptions{})
	}
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Println("ready") // stdout is unbuffered in Go

	var received, total uint64
	var next uint64
	first := true
	var rec [8]byte
	held := make([]*ring.Lease, 0, *hold+1) // oldest first
	defer func() {
		for _, l := range held {
			l.Release()
		}
	}()
	for {
		l, err := c.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		m := l.Bytes()
		j, err := spec.Verify(m)
		if err == nil && *broadcast && !first && j != next {
			err = fmt.Errorf("message %d follows %d", j, next-1)
		}
		n := len(m)
		if *hold > 0 {
			held = append(held, l)
			if len(held) > *hold {
				held[0].Release()
				held = append(held[:0], held[1:]...)
			}
		} else {
			l.Release()
		}
		if err != nil {
			return fmt.Errorf("seq %d: %w", l.Seq(), err)
		}
		first, next = false, j+1
		received++
		total += uint64(n)
		if w != nil {
			binary.LittleEndian.PutUint64(rec[:], j)
			w.Write(rec[:])
		}
	}
	if w != nil {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return printJSON(struct {
		Received uint64 `json:"received"`
		Bytes    uint64 `json:"bytes"`
	}{received, total})
}
