package arrowshm

import (
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// The records the read plans hand out (planRecord) print, marshal, slice
// and replace columns as arrow-go's record of the same columns does, with
// up to planRecordInline columns and more, in both modes.
func TestPlanRecordBehavesAsArrowGos(t *testing.T) {
	for _, mode := range []string{"ipc", "cdata"} {
		for _, kinds := range [][]int{{3, 11, 10}, {3, 11, 10, 0, 9, 13}} {
			t.Run(fmt.Sprintf("%s/%d-columns", mode, len(kinds)), func(t *testing.T) {
				src := randomRecord(memory.DefaultAllocator, 7, kinds, 5, 0, true)
				defer src.Release()
				r := newRing(t, 4, 1<<16)
				rd := NewReader(subscribe(t, r), WithZeroCopy())
				defer rd.Release()
				var err error
				if mode == "ipc" {
					w := NewWriter(producer(t, r), src.Schema())
					err = w.Write(src)
					w.Close()
				} else {
					var w *CDataWriter
					if w, err = NewCDataWriter(producer(t, r), src.Schema()); err == nil {
						err = w.Write(src)
						w.Close()
					}
				}
				if err != nil {
					t.Fatal(err)
				}
				if !rd.Next() {
					t.Fatal(rd.Err())
				}
				got := rd.RecordBatch()
				if _, ok := got.(*planRecord); !ok {
					t.Fatalf("a %T, not a planned record", got)
				}
				want := array.NewRecordBatch(got.Schema(), got.Columns(), got.NumRows())
				defer want.Release()
				checkSameRecord(t, got, want)
			})
		}
	}
}

// checkSameRecord fails unless got behaves as want, arrow-go's record of
// the same columns.
func checkSameRecord(t *testing.T, got, want arrow.RecordBatch) {
	t.Helper()
	if g, w := fmt.Sprint(got), fmt.Sprint(want); g != w {
		t.Errorf("String:\n%s\nwant\n%s", g, w)
	}
	gj, gerr := got.MarshalJSON()
	wj, werr := want.MarshalJSON()
	if string(gj) != string(wj) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
		t.Errorf("MarshalJSON: %s (%v), want %s (%v)", gj, gerr, wj, werr)
	}
	if got.NumCols() != want.NumCols() || got.NumRows() != want.NumRows() || got.ColumnName(1) != want.ColumnName(1) {
		t.Errorf("%d columns, %d rows, column 1 %q; want %d, %d, %q", got.NumCols(), got.NumRows(), got.ColumnName(1), want.NumCols(), want.NumRows(), want.ColumnName(1))
	}
	if m := got.(arrow.RecordBatchWithMetadata).Metadata(); m.Len() != 0 {
		t.Errorf("metadata %v", m)
	}
	gs, ws := got.NewSlice(1, 3), want.NewSlice(1, 3)
	if !array.RecordEqual(gs, ws) || gs.NumRows() != 2 {
		t.Errorf("NewSlice(1, 3): %v, want %v", gs, ws)
	}
	gs.Release()
	ws.Release()
	for _, i := range []int{0, -1, int(got.NumCols())} {
		col := got.Column(0)
		gr, gerr := got.SetColumn(i, col)
		wr, werr := want.SetColumn(i, col)
		if fmt.Sprint(gerr) != fmt.Sprint(werr) || (gr == nil) != (wr == nil) || (gr != nil && !array.RecordEqual(gr, wr)) {
			t.Errorf("SetColumn(%d): %v (%v), want %v (%v)", i, gr, gerr, wr, werr)
		}
		for _, r := range []arrow.RecordBatch{gr, wr} {
			if r != nil {
				r.Release()
			}
		}
	}
	got.Retain()
	got.Release()
	if !array.RecordEqual(got, want) {
		t.Errorf("after Retain and Release: %v, want %v", got, want)
	}
}
