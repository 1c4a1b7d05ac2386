//go:build alloy_ffi

package bridge

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/cdata"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/arrow/memory/mallocator"
)

func TestMain(m *testing.M) {
	// The echo handler logs every array at INFO; keep test output readable.
	SetLogLevel(slog.LevelWarn)
	os.Exit(m.Run())
}

// testRecord builds a record of n rows with an Int32, a nullable Utf8 and a
// Float64 column.
func testRecord(mem memory.Allocator, n int) arrow.RecordBatch {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "i", Type: arrow.PrimitiveTypes.Int32},
		{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "f", Type: arrow.PrimitiveTypes.Float64},
	}, nil)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	for i := 0; i < n; i++ {
		b.Field(0).(*array.Int32Builder).Append(int32(i - 2))
		if i%3 == 1 {
			b.Field(1).(*array.StringBuilder).AppendNull()
		} else {
			b.Field(1).(*array.StringBuilder).Append(strings.Repeat("x", i%5))
		}
		b.Field(2).(*array.Float64Builder).Append(float64(i) / 4)
	}
	return b.NewRecordBatch()
}

// assertNothingLive fails unless Rust holds no Go array and Go holds no
// Rust array.
func assertNothingLive(t *testing.T) {
	t.Helper()
	if c := Live(); c.Imported != 0 || c.Exported != 0 {
		t.Fatalf("arrays still alive across the boundary: %+v", c)
	}
}

func TestFromChunksCountsArrays(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	b := GoBridge{GoAllocator: mem}
	arrays := b.BuildInt32s([][]int32{{1, 2, 3, -4}, {2, 3, 4, 5}, {3, 4, 5, 6}})
	n, err := b.FromChunks(arrays)
	if err != nil || n != 3 {
		t.Fatalf("FromChunks = %d, %v; want 3, nil", n, err)
	}
	for _, a := range arrays {
		a.Release()
	}
	// Rust released its references: every Go buffer is freed.
	mem.AssertSize(t, 0)
	assertNothingLive(t)
}

func TestSendRecordRoundTrip(t *testing.T) {
	for name, mem := range map[string]memory.Allocator{
		"go":     memory.NewGoAllocator(),
		"malloc": mallocator.NewMallocator(),
	} {
		t.Run(name, func(t *testing.T) {
			checked := memory.NewCheckedAllocator(mem)
			rec := testRecord(checked, 100)
			out, err := GoBridge{GoAllocator: checked}.SendRecord(rec)
			if err != nil {
				t.Fatal(err)
			}
			if !array.RecordEqual(rec, out) {
				t.Fatalf("echo changed the record:\nsent %v\ngot  %v", rec, out)
			}
			// Zero copy both ways: the answer reads the very buffer Go sent.
			sent := rec.Column(0).Data().Buffers()[1].Bytes()
			got := out.Column(0).Data().Buffers()[1].Bytes()
			if &sent[0] != &got[0] {
				t.Error("the echoed column was copied")
			}
			if c := Live(); c.Exported != 1 || c.Imported != 1 {
				t.Fatalf("while the answer is held: %+v, want 1 imported and 1 exported", c)
			}
			out.Release()
			rec.Release()
			assertNothingLive(t)
			checked.AssertSize(t, 0)
		})
	}
}

func TestCallRecordsConcatenatesAndSums(t *testing.T) {
	mem := memory.NewGoAllocator()
	r1, r2 := testRecord(mem, 3), testRecord(mem, 4)
	defer r1.Release()
	defer r2.Release()
	n, out, err := GoBridge{}.CallRecords(Echo, r1, r2)
	if err != nil || n != 6 || out.NumRows() != 7 {
		t.Fatalf("echo of two records = %d, %v, %v", n, out, err)
	}
	out.Release()

	ints := GoBridge{}.BuildInt32s([][]int32{{1, 2, 3, -4}, {10, 20}})
	defer ints[0].Release()
	defer ints[1].Release()
	n, sum, err := GoBridge{}.CallArrays(Sum, ints)
	if err != nil || n != 2 {
		t.Fatalf("sum = %d, %v", n, err)
	}
	defer sum.Release()
	got := []int64{sum.Column(0).(*array.Int64).Value(0), sum.Column(1).(*array.Int64).Value(0)}
	if sum.NumRows() != 1 || got[0] != 2 || got[1] != 30 {
		t.Fatalf("sum answered %v", sum)
	}
}

func TestAnswerIsReleasedExactlyOnce(t *testing.T) {
	rec := testRecord(memory.NewGoAllocator(), 10)
	defer rec.Release()
	out, err := GoBridge{}.SendRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	out.Retain()
	out.Release()
	if Live().Exported != 1 {
		t.Fatal("Rust's answer was released while still referenced")
	}
	out.Release()
	assertNothingLive(t)
}

func TestErrors(t *testing.T) {
	rec := testRecord(memory.NewGoAllocator(), 5)
	defer rec.Release()
	ints := GoBridge{}.BuildInt32s([][]int32{{1}})
	defer ints[0].Release()
	text := rec.Column(1)

	cases := []struct {
		name string
		call func() (int, arrow.RecordBatch, error)
		want error
		text string
	}{
		{"unknown handler", func() (int, arrow.RecordBatch, error) { return GoBridge{}.CallRecords("no.such", rec) },
			ErrUnknownHandler, `"no.such"`},
		{"panic", func() (int, arrow.RecordBatch, error) { return GoBridge{}.CallArrays(Panic, ints) },
			ErrPanic, "panics on purpose"},
		{"handler error", func() (int, arrow.RecordBatch, error) { return GoBridge{}.CallArrays(Sum, []arrow.Array{text}) },
			ErrHandler, "not a number"},
		{"nil array", func() (int, arrow.RecordBatch, error) { return GoBridge{}.CallArrays(Echo, []arrow.Array{nil}) },
			ErrNilInput, "#1"},
		{"nil record", func() (int, arrow.RecordBatch, error) { return GoBridge{}.CallRecords(Echo, rec, nil) },
			ErrNilInput, "#2"},
		{"NUL in name", func() (int, arrow.RecordBatch, error) { return GoBridge{}.CallRecords("echo\x00x", rec) },
			ErrInvalidInput, "NUL"},
		{"invalid schema", func() (int, arrow.RecordBatch, error) {
			return call(false, Echo, 1, func(i int, a *cdata.CArrowArray, s *cdata.CArrowSchema) {
				cdata.ExportArrowArray(ints[0], a, s)
				// format is the first field of struct ArrowSchema; "!" is no
				// Arrow type.
				*(*(**byte)(unsafe.Pointer(s))) = '!'
			})
		}, ErrInvalidInput, "invalid input #0"},
		{"array where a record is expected", func() (int, arrow.RecordBatch, error) {
			return call(true, Echo, 1, func(i int, a *cdata.CArrowArray, s *cdata.CArrowSchema) {
				cdata.ExportArrowArray(ints[0], a, s)
			})
		}, ErrInvalidInput, "struct"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, out, err := tc.call()
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("err = %v; want %v containing %q", err, tc.want, tc.text)
			}
			if n != 0 || out != nil {
				t.Fatalf("a failed call answered %d, %v", n, out)
			}
			assertNothingLive(t)
		})
	}

	if ok, err := HasHandler(Echo); !ok || err != nil {
		t.Errorf("HasHandler(echo) = %v, %v", ok, err)
	}
	if ok, err := HasHandler("no.such"); ok || err != nil {
		t.Errorf("HasHandler(no.such) = %v, %v", ok, err)
	}
}

func TestConcurrentCalls(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := testRecord(mem, 20+g)
			defer rec.Release()
			for i := 0; i < 200; i++ {
				out, err := GoBridge{}.SendRecord(rec)
				if err != nil {
					t.Error(err)
					return
				}
				if out.NumRows() != rec.NumRows() {
					t.Errorf("rows %d != %d", out.NumRows(), rec.NumRows())
				}
				out.Release()
			}
		}()
	}
	wg.Wait()
	assertNothingLive(t)
	mem.AssertSize(t, 0)
}

// rssBytes reads the resident set size from /proc/self/statm.
func rssBytes(t *testing.T) int64 {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skipf("no /proc/self/statm: %v", err)
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(raw), &size, &resident); err != nil {
		t.Fatal(err)
	}
	return resident * int64(os.Getpagesize())
}
