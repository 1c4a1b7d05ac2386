//go:build alloy_ffi

package bridge

import (
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// BenchmarkFromChunks4Values is the per-call overhead: one Int32 array of
// four values through export, cgo, Rust import + validation, the echo
// handler (logging off) and release.
func BenchmarkFromChunks4Values(b *testing.B) {
	br := GoBridge{GoAllocator: memory.NewGoAllocator()}
	arrays := br.BuildInt32s([][]int32{{1, 2, 3, -4}})
	defer arrays[0].Release()
	b.ReportAllocs()
	for b.Loop() {
		if n, err := br.FromChunks(arrays); err != nil || n != 1 {
			b.Fatal(n, err)
		}
	}
}

// int64Record is a one-column Int64 record of size bytes of values.
func int64Record(size int) arrow.RecordBatch {
	bld := array.NewInt64Builder(memory.NewGoAllocator())
	defer bld.Release()
	n := size / 8
	bld.Reserve(n)
	for i := 0; i < n; i++ {
		bld.UnsafeAppend(int64(i))
	}
	col := bld.NewArray()
	defer col.Release()
	schema := arrow.NewSchema([]arrow.Field{{Name: "v", Type: arrow.PrimitiveTypes.Int64}}, nil)
	return array.NewRecordBatch(schema, []arrow.Array{col}, int64(n))
}

var batchSizes = []int{1 << 20, 16 << 20}

// BenchmarkRecordRoundTrip sends a record to Rust's echo handler and
// imports the answer: zero-copy both ways, so the time does not grow with
// the size beyond Rust's validation of the layout.
func BenchmarkRecordRoundTrip(b *testing.B) {
	for _, size := range batchSizes {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			rec := int64Record(size)
			defer rec.Release()
			b.SetBytes(int64(size))
			for b.Loop() {
				out, err := GoBridge{}.SendRecord(rec)
				if err != nil {
					b.Fatal(err)
				}
				out.Release()
			}
		})
	}
}

// BenchmarkRecordSum sends a record to Rust's sum handler, which reads every
// value: the throughput of Rust actually consuming the data in place.
func BenchmarkRecordSum(b *testing.B) {
	for _, size := range batchSizes {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			rec := int64Record(size)
			defer rec.Release()
			n := int64(size / 8)
			want := n * (n - 1) / 2
			b.SetBytes(int64(size))
			for b.Loop() {
				_, out, err := GoBridge{}.CallRecords(Sum, rec)
				if err != nil {
					b.Fatal(err)
				}
				if got := out.Column(0).(*array.Int64).Value(0); got != want {
					b.Fatalf("sum %d, want %d", got, want)
				}
				out.Release()
			}
		})
	}
}
