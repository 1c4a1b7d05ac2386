package arrowshm

import (
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"pgregory.net/rapid"

	"github.com/ignalina/alloy/go/ring"
)

// inRing reports whether every buffer of d (children included; dictionary
// values are copied by design) lies inside r's mapping.
func inRing(r *ring.Ring, d arrow.ArrayData) bool {
	for _, b := range d.Buffers() {
		if b != nil && !r.Contains(b.Bytes()) {
			return false
		}
	}
	for _, c := range d.Children() {
		if !inRing(r, c) {
			return false
		}
	}
	return true
}

func hasBytes(d arrow.ArrayData) bool {
	for _, b := range d.Buffers() {
		if b != nil && b.Len() > 0 {
			return true
		}
	}
	for _, c := range d.Children() {
		if hasBytes(c) {
			return true
		}
	}
	return false
}

func TestZeroCopyReaderDecodesInPlace(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		kinds := rapid.SliceOfN(rapid.IntRange(0, len(columnTypes)-1), 1, 6).Draw(t, "kinds")
		n := rapid.IntRange(1, 4).Draw(t, "records")
		nulls := rapid.Bool().Draw(t, "nulls")
		seed := rapid.Uint64().Draw(t, "seed")
		mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
		var want []arrow.RecordBatch
		for i := range n {
			rows := rapid.IntRange(0, 300).Draw(t, "rows")
			off := rapid.IntRange(0, 20).Draw(t, "offset")
			want = append(want, randomRecord(mem, seed+uint64(i), kinds, rows, off, nulls))
		}
		// Every retained record holds its slot: the ring holds them all.
		r := newRing(t, 16, 1<<20)
		c := subscribe(t, r)
		rd := NewReader(c, WithZeroCopy())
		done := sendAll(NewWriter(producer(t, r), want[0].Schema()), want)
		got, err := receiveAll(rd)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err := sameRecords(want, got); err != nil {
			t.Fatal(err)
		}
		for i, rec := range got {
			for j, col := range rec.Columns() {
				if col.DataType().ID() != arrow.DICTIONARY && !inRing(r, col.Data()) {
					t.Fatalf("record %d column %d (%s) was copied", i, j, col.DataType())
				}
			}
		}
		// A record holds its slot through its buffers; one without any
		// bytes (no rows) references nothing and holds nothing.
		var holding uint64
		for _, rec := range got {
			for _, col := range rec.Columns() {
				if hasBytes(col.Data()) {
					holding++
					break
				}
			}
		}
		releaseChecked(t, r, rd, holding, got, want, mem)
	})
}

// releaseChecked checks that the first consumer of r holds exactly
// holding leases for the retained records got, releases got, rd and want,
// and checks that no lease and no byte of mem is left.
func releaseChecked(t interface{ Fatalf(string, ...any) }, r *ring.Ring, rd *Reader, holding uint64, got, want []arrow.RecordBatch, mem *memory.CheckedAllocator) {
	if held := r.Stat().Consumers[0].LeasesHeld; held != holding {
		t.Fatalf("%d leases held by %d retained records with data", held, holding)
	}
	release(got)
	rd.Release()
	if held := r.Stat().Consumers[0].LeasesHeld; held != 0 {
		t.Fatalf("%d leases still held after every record was released", held)
	}
	release(want)
	if n := mem.CurrentAlloc(); n != 0 {
		t.Fatalf("%d bytes still allocated", n)
	}
}

// A record's slot is released when the record, and every array taken from
// it, is released, in any order.
func TestZeroCopySlotOutlivesTheRecordThroughItsArrays(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	want := []arrow.RecordBatch{
		randomRecord(mem, 1, []int{0, 1}, 50, 0, true),
		randomRecord(mem, 2, []int{0, 1}, 50, 0, true),
	}
	defer release(want)
	r := newRing(t, 4, 1<<16)
	rd := NewReader(subscribe(t, r), WithZeroCopy())
	defer rd.Release()
	if err := <-sendAll(NewWriter(producer(t, r), want[0].Schema()), want); err != nil {
		t.Fatal(err)
	}
	held := func() uint64 { return r.Stat().Consumers[0].LeasesHeld }
	if !rd.Next() {
		t.Fatal(rd.Err())
	}
	col := rd.RecordBatch().Column(1)
	col.Retain() // outlives the record
	if held() != 1 {
		t.Fatalf("held %d, want 1", held())
	}
	if !rd.Next() { // releases the first record, not its retained column
		t.Fatal(rd.Err())
	}
	if held() != 2 {
		t.Fatalf("held %d with the column of record 0 retained, want 2", held())
	}
	col.Release()
	if held() != 1 {
		t.Fatalf("held %d after the column's release, want 1", held())
	}
	if rd.Next() || rd.Err() != nil {
		t.Fatalf("end of stream expected, got %v", rd.Err())
	}
	if held() != 0 {
		t.Fatalf("held %d at the end, want 0", held())
	}
}
