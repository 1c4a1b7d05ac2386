package arrowshm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"pgregory.net/rapid"

	"github.com/ignalina/alloy/go/ring"
)

// planKinds are the columnTypes the IPC plan carries; the others send a
// record the general way.
var planKinds = func() (k []int) {
	for i, dt := range columnTypes {
		if _, ok := planColumnOf(dt); ok {
			k = append(k, i)
		}
	}
	return k
}()

// planned counts, per kind of column, the batches the plan wrote in
// writtenMessages calls (a column of that kind in the batch).
var plannedBatches map[planKind]uint64

// writtenMessages writes recs with a Writer, planned or not, and returns
// every message it published.
func writtenMessages(t tb, recs []arrow.RecordBatch, planned bool) [][]byte {
	// Every message stays in the ring until the end (nothing reads before
	// Close): room for the schema and 6 batches of 5 dictionaries each.
	// The ring is closed on return, not at the end of the test: rapid runs
	// hundreds of cases (thousands while shrinking) in one test.
	cfg := ring.DefaultConfig()
	cfg.SlotCount, cfg.SlotSize, cfg.SchemaCapacity = 64, 64<<10, 1<<14
	r, err := ring.CreateAnonymous("arrowshm-plan-test", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := subscribe(t, r)
	defer c.Close()
	w := NewWriter(producer(t, r), recs[0].Schema())
	if !planned {
		w.planned = true // and no plan: arrow-go's encoder for every batch
	}
	for _, rec := range recs {
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	if planned && w.plan != nil && w.plan.batches > 0 {
		for _, c := range w.plan.cols {
			plannedBatches[c.kind] += w.plan.batches
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var msgs [][]byte
	for {
		l, err := c.Recv()
		if err != nil {
			break
		}
		msgs = append(msgs, bytes.Clone(l.Bytes()))
		l.Release()
	}
	return msgs
}

// allNull replaces column i of rec by an all-null column of its type.
func allNull(rec arrow.RecordBatch, i int) arrow.RecordBatch {
	b := array.NewBuilder(memory.DefaultAllocator, rec.Schema().Field(i).Type)
	defer b.Release()
	b.AppendNulls(int(rec.NumRows()))
	col := b.NewArray()
	defer col.Release()
	cols := append([]arrow.Array(nil), rec.Columns()...)
	cols[i] = col
	return array.NewRecordBatch(rec.Schema(), cols, rec.NumRows())
}

// The plan writes the very bytes arrow-go's encoder and ipcframe.Write
// produce (the wire format of LAYOUT.md §8.1), for every type it carries
// (fixed-width, binary and utf8 of both offset widths, dictionaries), with
// and without nulls, all-null columns, sliced records and zero rows (which
// go the general way), batches the plan does not carry, and batches that
// share their dictionaries (slices of one or two records: planned while
// the dictionary is the one last sent, the general way with the dictionary
// message when it changes).
func TestIPCPlanMatchesArrowGo(t *testing.T) {
	plannedBatches = map[planKind]uint64{}
	defer func() {
		for _, k := range []planKind{planFixed, planBinary, planDict} {
			if !t.Failed() && plannedBatches[k] == 0 {
				t.Fatalf("the plan never wrote a batch with a column of kind %d", k)
			}
		}
	}()
	rapid.Check(t, func(rt *rapid.T) {
		kinds := rapid.SliceOfN(rapid.SampledFrom(planKinds), 1, 5).Draw(rt, "kinds")
		if rapid.IntRange(0, 9).Draw(rt, "other") == 0 {
			kinds = append(kinds, rapid.IntRange(0, len(columnTypes)-1).Draw(rt, "kind"))
		}
		var recs []arrow.RecordBatch
		if rapid.Bool().Draw(rt, "shared") {
			// Slices of one or two records: their dictionaries are shared.
			var srcs []arrow.RecordBatch
			nulls := rapid.Bool().Draw(rt, "nulls")
			for j := range rapid.IntRange(1, 2).Draw(rt, "sources") {
				srcs = append(srcs, randomRecord(memory.DefaultAllocator, uint64(j)*31+7, kinds, 320, 0, nulls))
			}
			defer release(srcs)
			for range rapid.IntRange(1, 6).Draw(rt, "batches") {
				src := srcs[rapid.IntRange(0, len(srcs)-1).Draw(rt, "source")]
				start := rapid.SampledFrom([]int64{0, 0, 0, 5, 17}).Draw(rt, "start")
				end := rapid.Int64Range(start, 320).Draw(rt, "end")
				recs = append(recs, src.NewSlice(start, end))
			}
		} else {
			for i := range rapid.IntRange(1, 4).Draw(rt, "batches") {
				rows := rapid.IntRange(0, 300).Draw(rt, "rows")
				offset := rapid.SampledFrom([]int{0, 0, 3, 8, 17}).Draw(rt, "offset")
				nulls := rapid.Bool().Draw(rt, "nulls")
				rec := randomRecord(memory.DefaultAllocator, uint64(i)*7919+uint64(rows), kinds, rows, offset, nulls)
				if rapid.IntRange(0, 3).Draw(rt, "all-null") == 0 {
					nr := allNull(rec, 0)
					rec.Release()
					rec = nr
				}
				recs = append(recs, rec)
			}
		}
		defer release(recs)
		want := writtenMessages(rt, recs, false)
		got := writtenMessages(rt, recs, true)
		if len(got) != len(want) {
			rt.Fatalf("%d messages, arrow-go's encoder %d", len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				rt.Fatalf("message %d differs from arrow-go's encoding:\n got %x\nwant %x", i, got[i], want[i])
			}
		}
	})
}

// Once the schema and the dictionaries are sent, Writer.Write of a record
// of every type the plan carries (fixed-width, binary, utf8, dictionary)
// allocates nothing (the plan's hot path), and so does the mixed shape of
// the benchmarks (int64, utf8, dictionary of utf8).
func TestWriterPlanAllocatesNothing(t *testing.T) {
	all := randomRecord(memory.DefaultAllocator, 1, planKinds, 1024, 0, true)
	defer all.Release()
	mixed, err := benchShape{"mixed", 1024, true}.build(memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	defer mixed.Release()
	for _, rec := range []arrow.RecordBatch{all, mixed} {
		r := newRing(t, 4, 1<<20)
		p, err := r.NewProducer(ring.ProducerOptions{}) // no consumer: nothing waits
		if err != nil {
			t.Fatal(err)
		}
		w := NewWriter(p, rec.Schema())
		defer w.Close()
		for range 2 { // the schema, dictionaries and a batch the general way, then one planned
			if err := w.Write(rec); err != nil {
				t.Fatal(err)
			}
		}
		if w.plan == nil || w.plan.batches == 0 {
			t.Fatalf("no planned batch for %s", rec.Schema())
		}
		allocs := testing.AllocsPerRun(100, func() {
			if err := w.Write(rec); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Fatalf("Writer.Write allocates %.1f times per batch of %s", allocs, rec.Schema())
		}
	}
}

// CDataWriter.Write of a record allocates nothing per batch either.
func TestCDataWriteAllocatesNothing(t *testing.T) {
	rec := randomRecord(memory.DefaultAllocator, 2, []int{3, 11, 21, 22}, 1024, 0, true)
	defer rec.Release()
	r := newRing(t, 4, 1<<20)
	p, err := r.NewProducer(ring.ProducerOptions{}) // no consumer: nothing waits
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewCDataWriter(p, rec.Schema())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Write(rec); err != nil { // and the schema
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("CDataWriter.Write allocates %.1f times per batch", allocs)
	}
}

// A Write after Close fails with ring.ErrClosed (not a ring error of the
// planned path, nor arrow-go's recovered nil dereference on the general
// path) and publishes nothing after the end of the stream.
func TestWriteAfterCloseOnThePlannedPath(t *testing.T) {
	rec := randomRecord(memory.DefaultAllocator, 1, planKinds, 16, 0, true)
	defer rec.Release()
	r := newRing(t, 8, 1<<16)
	p, err := r.NewProducer(ring.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := NewWriter(p, rec.Schema())
	for range 2 { // the second Write is planned
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	if w.plan == nil {
		t.Fatal("no plan for a fixed-width schema")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	published := p.Published()
	err = w.Write(rec)
	if !errors.Is(err, ring.ErrClosed) {
		t.Fatalf("Write after Close: %v, want ring.ErrClosed", err)
	}
	if p.Published() != published {
		t.Fatalf("a Write after Close published: %d -> %d", published, p.Published())
	}
}
