package arrowshm

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/ring"
)

func int64Record(t *testing.T, vals ...int64) arrow.RecordBatch {
	t.Helper()
	schema := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	b.Field(0).(*array.Int64Builder).AppendValues(vals, nil)
	return b.NewRecordBatch()
}

// cancelLater cancels the returned context after d and reports when.
func cancelLater(d time.Duration) (context.Context, <-chan time.Time) {
	ctx, cancel := context.WithCancel(context.Background())
	at := make(chan time.Time, 1)
	go func() {
		time.Sleep(d)
		at <- time.Now()
		cancel()
	}()
	return ctx, at
}

func TestNextContextReturnsPromptlyOnCancel(t *testing.T) {
	r := newRing(t, 8, 1<<16)
	c := subscribe(t, r)
	p := producer(t, r)
	defer p.Close()
	rd := NewReader(c)
	defer rd.Close()
	// Blocked before the schema, then (in a second reader) between records.
	ctx, at := cancelLater(100 * time.Millisecond)
	if rd.NextContext(ctx) {
		t.Fatal("Next returned a record from an empty ring")
	}
	if d := time.Since(<-at); d > 200*time.Millisecond {
		t.Errorf("returned %v after the cancellation", d)
	}
	if !errors.Is(rd.Err(), context.Canceled) {
		t.Fatalf("Err %v, want context.Canceled", rd.Err())
	}
	if rd.Next() {
		t.Fatal("Next after cancellation")
	}

	c2 := subscribe(t, r)
	rd2 := NewReader(c2)
	defer rd2.Close()
	w := NewWriter(p, int64Record(t).Schema())
	rec := int64Record(t, 1, 2, 3)
	defer rec.Release()
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if !rd2.NextContext(context.Background()) || rd2.RecordBatch().NumRows() != 3 {
		t.Fatalf("first record: %v", rd2.Err())
	}
	ctx, at = cancelLater(100 * time.Millisecond)
	if rd2.NextContext(ctx) {
		t.Fatal("Next returned a record that was never sent")
	}
	d := time.Since(<-at)
	if d > 200*time.Millisecond || !errors.Is(rd2.Err(), context.Canceled) {
		t.Fatalf("after %v: Err %v, want context.Canceled", d, rd2.Err())
	}
	t.Logf("blocked NextContext returned %v after the cancellation", d)
}

func TestWriteContextReturnsPromptlyOnCancel(t *testing.T) {
	r := newRing(t, 2, 1<<12)
	c := subscribe(t, r) // never reads: the ring fills up
	defer c.Close()
	p := producer(t, r) // Block without timeout
	w := NewWriter(p, int64Record(t).Schema())
	defer w.Close()
	rec := int64Record(t, 1)
	defer rec.Release()
	// Schema + one record fill both slots; the next record blocks.
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	ctx, at := cancelLater(100 * time.Millisecond)
	err := w.WriteContext(ctx, rec)
	d := time.Since(<-at)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if d > 200*time.Millisecond {
		t.Errorf("returned %v after the cancellation", d)
	}
	t.Logf("blocked WriteContext returned %v after the cancellation", d)
}

// Reader as an array.RecordReader: Retain/Release reference counting, the
// deprecated Record alias, Schema before the first Next, and Close, which
// also detaches the consumer from the ring.
func TestReaderIsARecordReader(t *testing.T) {
	r := newRing(t, 8, 1<<16)
	c := subscribe(t, r)
	p := producer(t, r)
	rec := int64Record(t, 4, 5)
	defer rec.Release()
	w := NewWriter(p, rec.Schema())
	done := sendAll(w, []arrow.RecordBatch{rec, rec})

	var rr array.RecordReader = NewReader(c)
	if !rr.Schema().Equal(rec.Schema()) {
		t.Fatalf("schema %v", rr.Schema())
	}
	rr.Retain()
	n := 0
	for rr.Next() {
		if rr.Record() != rr.RecordBatch() || rr.RecordBatch().NumRows() != 2 {
			t.Fatal("Record and RecordBatch disagree")
		}
		n++
	}
	if err := rr.Err(); err != nil || n != 2 {
		t.Fatalf("%d records, %v", n, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rr.Release() // one reference left: still usable
	if rr.Schema() == nil {
		t.Fatal("schema gone while a reference remains")
	}
	rr.Release() // the last: frees the reader's state
	if rr.RecordBatch() != nil {
		t.Fatal("record still there after the last Release")
	}
	if got := len(r.Stat().Consumers); got != 1 {
		t.Fatalf("%d consumers before Close, want 1 (Release does not close it)", got)
	}
	if err := rr.(*Reader).Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(r.Stat().Consumers); got != 0 {
		t.Fatalf("%d consumers after Close, want 0", got)
	}
	if rr.Next() || !errors.Is(rr.Err(), ring.ErrClosed) {
		t.Fatalf("Next after Close: %v", rr.Err())
	}
}

// Reader and Writer hold resources (a consumer entry, the producer) and
// are io.Closers.
var (
	_ io.Closer = (*Reader)(nil)
	_ io.Closer = (*Writer)(nil)
)
