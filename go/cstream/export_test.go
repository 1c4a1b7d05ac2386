//go:build cgo && linux

package cstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/cdata"

	"github.com/ignalina/alloy/go/arrowshm"
	"github.com/ignalina/alloy/go/ring"
)

// importStream exports rd and imports the C stream back with arrow-go's
// cdata.ImportCRecordReader, as any C consumer of the stream would. The
// stream is released when the test ends if the test has not released it
// (a failed test must not leave a producer blocked behind its consumer).
func importStream(t *testing.T, rd *arrowshm.Reader, opts Options) array.RecordReader {
	t.Helper()
	var s cdata.CArrowArrayStream
	if err := Export(rd, &s, opts); err != nil {
		t.Fatal(err)
	}
	rr, err := cdata.ImportCRecordReader(&s, nil)
	if err != nil {
		t.Fatal(err)
	}
	imp := &importedOnce{RecordReader: rr.(array.RecordReader)}
	t.Cleanup(imp.Release)
	return imp
}

// importedOnce is a stream whose Release runs once.
type importedOnce struct {
	array.RecordReader
	once sync.Once
}

func (i *importedOnce) Release() { i.once.Do(i.RecordReader.Release) }

// Go Writer → ring → Reader exported as a C stream → imported back: the
// batches equal the source, in both slot encodings, in place or copied.
// Four times as many batches as slots go through while the consumer keeps
// a window of the last two imported batches (with the current one and the
// dictionary batches between them, up to six messages): the leases are
// given back by the C release callbacks, or the producer would stall.
func TestExportRoundTrip(t *testing.T) {
	const slots, batches, window = 8, 32, 2
	for _, mode := range []Mode{IPC, CData} {
		for _, zeroCopy := range []bool{true, false} {
			t.Run(fmt.Sprintf("mode=%d/zeroCopy=%v", mode, zeroCopy), func(t *testing.T) {
				want := makeBatches(uint64(mode)*2+1, batches, 300)
				defer release(want)
				r := newRing(t, slots, 1<<18)
				var opts []arrowshm.ReaderOption
				if zeroCopy {
					opts = append(opts, arrowshm.WithZeroCopy())
				}
				rd := arrowshm.NewReader(subscribe(t, r, ring.ConsumerOptions{}), opts...)
				done := sendAll(producer(t, r), mode, want)
				rr := importStream(t, rd, Options{Timeout: 30 * time.Second})
				if !rr.Schema().Equal(schema) {
					t.Fatalf("schema %v, want %v", rr.Schema(), schema)
				}
				var kept []arrow.RecordBatch
				i := 0
				for ; rr.Next(); i++ {
					rec := rr.RecordBatch()
					if i >= len(want) {
						t.Fatalf("more than %d batches", len(want))
					}
					if !array.RecordEqual(rec, want[i]) {
						t.Fatalf("batch %d differs:\n got %v\nwant %v", i, rec, want[i])
					}
					for j, col := range rec.Columns() {
						// IPC mode's reader copies dictionaries by design;
						// C-Data-offsets batches carry theirs in the slot.
						in := inRing(r, col.Data(), mode == CData)
						if in != zeroCopy {
							t.Fatalf("batch %d column %d (%s): in the ring %v, zero-copy %v", i, j, col.DataType(), in, zeroCopy)
						}
					}
					// Leases: the kept window and the current batch, each
					// held by the exported arrays alone in place; none
					// when copied.
					wantHeld := uint64(0)
					if zeroCopy {
						wantHeld = uint64(len(kept) + 1)
					}
					if held := leasesHeld(r); held != wantHeld {
						t.Fatalf("batch %d: %d leases held, want %d", i, held, wantHeld)
					}
					rec.Retain()
					kept = append(kept, rec)
					if len(kept) > window {
						kept[0].Release() // the C release callback gives the slot back
						kept = kept[1:]
					}
				}
				if err := rr.Err(); err != nil {
					t.Fatal(err)
				}
				if i != len(want) {
					t.Fatalf("%d batches, want %d", i, len(want))
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				release(kept)
				if held := leasesHeld(r); held != 0 {
					t.Fatalf("%d leases held after every batch was released", held)
				}
				rr.Release() // the stream's release closes the Reader and its consumer
				if n := len(r.Stat().Consumers); n != 0 {
					t.Fatalf("%d consumers left after the stream's release", n)
				}
			})
		}
	}
}

// An array handed out in place outlives the stream: its slot stays leased
// after the stream's release closed the consumer, until the array's own
// release callback.
func TestExportedArrayOutlivesTheStream(t *testing.T) {
	want := makeBatches(7, 2, 50)
	defer release(want)
	r := newRing(t, 16, 1<<18) // the whole stream fits
	rd := arrowshm.NewReader(subscribe(t, r, ring.ConsumerOptions{}), arrowshm.WithZeroCopy())
	if err := <-sendAll(producer(t, r), IPC, want); err != nil {
		t.Fatal(err)
	}
	rr := importStream(t, rd, Options{})
	if !rr.Next() {
		t.Fatal(rr.Err())
	}
	rec := rr.RecordBatch()
	rec.Retain()
	rr.Release()
	if held := leasesHeld(r); held != 1 {
		t.Fatalf("%d leases held by the array kept past the stream, want 1", held)
	}
	if !array.RecordEqual(rec, want[0]) {
		t.Fatalf("batch kept past the stream changed: %v", rec)
	}
	rec.Release()
	if n := len(r.Stat().Consumers); n != 0 {
		t.Fatalf("%d consumers left after the last array's release", n)
	}
}

// A consumer that keeps as many batches in place as the ring has slots
// stalls the producer: get_next fails with EIO and get_last_error names the
// retention stall; releasing the kept arrays (through their C release
// callbacks) frees every slot.
func TestExportRetentionStall(t *testing.T) {
	const slots = 4
	want := makeBatches(3, 3*slots, 50)
	defer release(want)
	r := newRing(t, slots, 1<<18)
	c := subscribe(t, r, ring.ConsumerOptions{HeldLeaseTimeout: 200 * time.Millisecond})
	rd := arrowshm.NewReader(c, arrowshm.WithZeroCopy())
	done := sendAll(producer(t, r), CData, want)
	rr := importStream(t, rd, Options{})
	var kept []arrow.RecordBatch
	for rr.Next() {
		rec := rr.RecordBatch()
		rec.Retain()
		kept = append(kept, rec)
	}
	err := rr.Err()
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "still holds") {
		t.Fatalf("get_next with every slot kept: %v, want EIO naming the retention stall", err)
	}
	if len(kept) != slots {
		t.Fatalf("%d batches before the stall, want %d", len(kept), slots)
	}
	release(kept)
	if held := leasesHeld(r); held != 0 {
		t.Fatalf("%d leases held after the kept batches were released", held)
	}
	rr.Release() // the consumer leaves: the producer finishes
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A ring whose stream ended before a schema: Export fails (and closes the
// Reader); a stream with no producer times out within Options.Timeout.
func TestExportWithoutSchema(t *testing.T) {
	r := newRing(t, 4, 1<<16)
	rd := arrowshm.NewReader(subscribe(t, r, ring.ConsumerOptions{}))
	p := producer(t, r)
	if err := p.Close(); err != nil { // ends the stream with nothing sent
		t.Fatal(err)
	}
	var s cdata.CArrowArrayStream
	err := Export(rd, &s, Options{})
	if !errors.Is(err, arrowshm.ErrNoSchema) {
		t.Fatalf("Export of an ended stream: %v, want ErrNoSchema", err)
	}
	if n := len(r.Stat().Consumers); n != 0 {
		t.Fatalf("a failed Export left %d consumers", n)
	}

	r = newRing(t, 4, 1<<16)
	rd = arrowshm.NewReader(subscribe(t, r, ring.ConsumerOptions{}))
	start := time.Now()
	err = Export(rd, &s, Options{Timeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Export with no producer: %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the 100 ms timeout took %v", d)
	}
}

// A get_next that waits longer than Options.Timeout, or whose context is
// cancelled, fails with EIO naming the cause.
func TestExportNextTimeoutAndCancel(t *testing.T) {
	for _, cancelled := range []bool{false, true} {
		t.Run(fmt.Sprintf("cancel=%v", cancelled), func(t *testing.T) {
			want := makeBatches(5, 1, 10)
			defer release(want)
			r := newRing(t, 4, 1<<16)
			rd := arrowshm.NewReader(subscribe(t, r, ring.ConsumerOptions{}), arrowshm.WithZeroCopy())
			p := producer(t, r)
			w := arrowshm.NewWriter(p, schema)
			defer w.Close()
			if err := w.Write(want[0]); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			opts := Options{Context: ctx, Timeout: 100 * time.Millisecond}
			if cancelled {
				opts.Timeout = 0
				time.AfterFunc(100*time.Millisecond, cancel)
			}
			rr := importStream(t, rd, opts)
			defer rr.Release()
			if !rr.Next() {
				t.Fatal(rr.Err())
			}
			if rr.Next() {
				t.Fatal("a second batch that was never sent")
			}
			err := rr.Err()
			cause := "cstream: wait timed out"
			if cancelled {
				cause = context.Canceled.Error()
			}
			if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), cause) {
				t.Fatalf("get_next: %v, want EIO naming %q", err, cause)
			}
		})
	}
}
