//go:build cgo && linux

package cstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/cdata"

	"github.com/ignalina/alloy/go/arrowshm"
	"github.com/ignalina/alloy/go/ring"
)

// exportRecords makes a C stream of recs (arrow-go's in-memory reader
// exported), as another engine would hand one over; after the first
// failAfter batches (if ≥ 0) its get_next fails.
func exportRecords(t *testing.T, recs []arrow.RecordBatch, failAfter int) *cdata.CArrowArrayStream {
	t.Helper()
	rr, err := array.NewRecordReader(schema, recs)
	if err != nil {
		t.Fatal(err)
	}
	var src array.RecordReader = rr
	if failAfter >= 0 {
		src = &failing{RecordReader: rr, left: failAfter}
	}
	s := new(cdata.CArrowArrayStream)
	cdata.ExportRecordReader(src, s) // the stream owns rr now
	return s
}

// failing is a RecordReader that breaks after left batches.
type failing struct {
	array.RecordReader
	left int
	err  error
}

func (f *failing) Next() bool {
	if f.left == 0 {
		f.err = errors.New("the source broke down")
		return false
	}
	f.left--
	return f.RecordReader.Next()
}

func (f *failing) Err() error { return f.err }

// readAll reads every batch of r's first consumer reader rd (retained).
func readAll(rd *arrowshm.Reader) ([]arrow.RecordBatch, error) {
	var got []arrow.RecordBatch
	for rd.Next() {
		rec := rd.RecordBatch()
		rec.Retain()
		got = append(got, rec)
	}
	return got, rd.Err()
}

// A C stream made by another engine (here arrow-go's in-memory reader
// exported) is published into a ring in both slot encodings and read back
// equal, more batches than the ring has slots.
func TestPublishRoundTrip(t *testing.T) {
	for _, mode := range []Mode{IPC, CData} {
		t.Run(fmt.Sprintf("mode=%d", mode), func(t *testing.T) {
			want := makeBatches(11+uint64(mode), 24, 200)
			defer release(want)
			var rows int64
			for _, rec := range want {
				rows += rec.NumRows()
			}
			r := newRing(t, 4, 1<<18)
			rd := arrowshm.NewReader(subscribe(t, r, ring.ConsumerOptions{}))
			defer rd.Close()
			type result struct {
				n   Counts
				err error
			}
			done := make(chan result, 1)
			p := producer(t, r)
			s := exportRecords(t, want, -1)
			go func() {
				n, err := Publish(p, s, PublishOptions{Mode: mode})
				done <- result{n, err}
			}()
			got, err := readAll(rd)
			defer release(got)
			if err != nil {
				t.Fatal(err)
			}
			res := <-done
			if res.err != nil {
				t.Fatal(res.err)
			}
			if res.n.Batches != int64(len(want)) || res.n.Rows != rows || res.n.Messages != uint64(len(want)) || res.n.Bytes != rd.BytesReceived() {
				t.Fatalf("counts %+v, want %d batches, %d rows, %d bytes", res.n, len(want), rows, rd.BytesReceived())
			}
			if len(got) != len(want) {
				t.Fatalf("%d batches read back, want %d", len(got), len(want))
			}
			for i := range want {
				if !array.RecordEqual(got[i], want[i]) {
					t.Fatalf("batch %d differs:\n got %v\nwant %v", i, got[i], want[i])
				}
			}
		})
	}
}

// A C stream whose get_next fails: Publish returns the stream's error
// (EIO and its get_last_error text) after publishing the batches before
// it, and the ring's stream ends after them.
func TestPublishSourceError(t *testing.T) {
	want := makeBatches(13, 5, 50)
	defer release(want)
	r := newRing(t, 16, 1<<18)
	rd := arrowshm.NewReader(subscribe(t, r, ring.ConsumerOptions{}))
	defer rd.Close()
	n, err := Publish(producer(t, r), exportRecords(t, want, 2), PublishOptions{})
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "the source broke down") {
		t.Fatalf("Publish of a failing stream: %v, want EIO with the stream's error", err)
	}
	if n.Batches != 2 {
		t.Fatalf("%d batches published, want 2", n.Batches)
	}
	got, err := readAll(rd)
	defer release(got)
	if err != nil || len(got) != 2 {
		t.Fatalf("read back %d batches (%v), want 2 and the end of stream", len(got), err)
	}
}

// Publish through a producer that was already closed fails with
// ring.ErrClosed and publishes nothing.
func TestPublishClosedProducer(t *testing.T) {
	want := makeBatches(17, 2, 10)
	defer release(want)
	r := newRing(t, 4, 1<<16)
	p := producer(t, r)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	n, err := Publish(p, exportRecords(t, want, -1), PublishOptions{})
	if !errors.Is(err, ring.ErrClosed) || n.Batches != 0 {
		t.Fatalf("Publish through a closed producer: %+v, %v, want ring.ErrClosed", n, err)
	}
}

// Publish in C-Data mode whose context ends while the ring is full (a
// consumer that does not read) returns the context's error: closing the
// writer does not wait again, for ever, for a slot for the schema.
func TestPublishCDataCancelledOnAFullRing(t *testing.T) {
	want := makeBatches(19, 2, 10)
	defer release(want)
	r := newRing(t, 4, 1<<16)
	c := subscribe(t, r, ring.ConsumerOptions{}) // never reads
	defer c.Close()
	p := producer(t, r)
	for i := 0; i < 4; i++ {
		if err := p.Send([]byte{byte(i)}, 0); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Publish(p, exportRecords(t, want, -1), PublishOptions{Mode: CData, Context: ctx})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Publish on a full ring: %v, want context.DeadlineExceeded", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Publish hung after its context ended (Close waited for a slot)")
	}
}
