package arrowshm

import (
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/internal/ipcframe"
	"github.com/ignalina/alloy/go/ring"
)

// The writer and reader benchmarks use the batch shapes of alloy-bench's
// Arrow rows (cmd/alloy-bench/arrowlat.go): 1 row, 1,024 rows and 1 MiB of
// int64, and 1,024 mixed rows (int64, utf8, dictionary of utf8). They report
// allocs/op, so an allocation creeping back onto the hot path shows; the
// writers publish into a ring with no consumer (nothing waits), which is
// the per-batch cost of the writer alone.

type benchShape struct {
	name  string
	rows  int
	mixed bool
}

var benchShapes = []benchShape{{"1-row", 1, false}, {"1024-rows", 1024, false}, {"1-mib", 131072, false}, {"mixed", 1024, true}}

var benchDictType = &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}

// schema is the shape's schema, made once: like a caller's, it is not
// per-batch work (arrow.NewSchema costs a few allocations and a map).
func (s benchShape) schema() *arrow.Schema {
	if s.mixed {
		return benchSchemas[1]
	}
	return benchSchemas[0]
}

var benchSchemas = func() [2]*arrow.Schema {
	f := []arrow.Field{{Name: "v", Type: arrow.PrimitiveTypes.Int64}}
	mixed := append(f, arrow.Field{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: "d", Type: benchDictType, Nullable: true})
	return [2]*arrow.Schema{arrow.NewSchema(f, nil), arrow.NewSchema(mixed, nil)}
}()

// benchValues are the int64 values a batch is built from (the caller's
// data, as a pre-built record is for Write).
var benchValues = func() []int64 {
	v := make([]int64, 131072)
	for i := range v {
		v[i] = int64(i)
	}
	return v
}()

var benchStrings = func() []string {
	v := make([]string, 1024)
	for i := range v {
		v[i] = fmt.Sprintf("row-%08d", i)
	}
	return v
}()

// build builds the shape with mem, its builders sized exactly (so a slot
// allocator is not outgrown).
func (s benchShape) build(mem memory.Allocator) (arrow.RecordBatch, error) {
	vb := array.NewInt64Builder(mem)
	defer vb.Release()
	vb.Resize(s.rows)
	vb.AppendValues(benchValues[:s.rows], nil)
	cols := []arrow.Array{vb.NewArray()}
	defer func() {
		for _, c := range cols {
			c.Release()
		}
	}()
	if s.mixed {
		sb := array.NewStringBuilder(mem)
		defer sb.Release()
		sb.Resize(s.rows)
		sb.ReserveData(s.rows * 12)
		for _, v := range benchStrings[:s.rows] {
			sb.Append(v)
		}
		cols = append(cols, sb.NewArray())
		db := array.NewDictionaryBuilder(mem, benchDictType).(*array.BinaryDictionaryBuilder)
		defer db.Release()
		for i := range s.rows {
			if err := db.AppendString([]string{"red", "green", "blue", "cyan"}[i%4]); err != nil {
				return nil, err
			}
		}
		cols = append(cols, db.NewArray())
	}
	return array.NewRecordBatch(s.schema(), cols, int64(s.rows)), nil
}

// benchProducer is a producer on a 4-slot ring big enough for the shape,
// with no consumer.
func benchProducer(b *testing.B, s benchShape) *ring.Producer {
	r := newRing(b, 4, uint32(ipcframe.AlignUp(int64(s.rows*48+128<<10), 64)))
	p, err := r.NewProducer(ring.ProducerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func benchRecord(b *testing.B, s benchShape) arrow.RecordBatch {
	rec, err := s.build(memory.DefaultAllocator)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(rec.Release)
	return rec
}

// BenchmarkWriterIPC is arrowshm.Writer (IPC mode) writing one pre-built
// record per op.
func BenchmarkWriterIPC(b *testing.B) {
	for _, s := range benchShapes {
		b.Run(s.name, func(b *testing.B) {
			rec := benchRecord(b, s)
			w := NewWriter(benchProducer(b, s), s.schema())
			defer w.Close()
			if err := w.Write(rec); err != nil { // schema, dictionary
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(s.rows) * 8)
			for b.Loop() {
				if err := w.Write(rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWriterCDataWrite is CDataWriter.Write of one pre-built record
// per op (its buffers copied into the slot).
func BenchmarkWriterCDataWrite(b *testing.B) {
	for _, s := range benchShapes {
		b.Run(s.name, func(b *testing.B) {
			rec := benchRecord(b, s)
			w, err := NewCDataWriter(benchProducer(b, s), s.schema())
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			b.ReportAllocs()
			b.SetBytes(int64(s.rows) * 8)
			for b.Loop() {
				if err := w.Write(rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWriterCDataBuild is CDataWriter.Build of the shape per op, the
// builders allocating in the slot (the builders' own allocations count).
func BenchmarkWriterCDataBuild(b *testing.B) {
	for _, s := range benchShapes {
		b.Run(s.name, func(b *testing.B) {
			w, err := NewCDataWriter(benchProducer(b, s), s.schema())
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			b.ReportAllocs()
			b.SetBytes(int64(s.rows) * 8)
			for b.Loop() {
				if err := w.Build(s.build); err != nil {
					b.Fatal(err)
				}
			}
			if !s.mixed && w.CopiedBytes() != 0 {
				b.Fatalf("Build copied %d bytes", w.CopiedBytes())
			}
		})
	}
}

// BenchmarkReader is one batch written (CDataWriter.Write or Writer) and
// read by a Reader, in place and copied: the Go end of a Rust → Go stream.
// The write is timed too (stopping the timer per batch costs more than a
// batch); BenchmarkWriterCDataWrite and BenchmarkWriterIPC time it alone.
// ipc-general reads IPC batches through arrow-go's ipc.Reader instead of
// the read plan (read_plan.go), cdata-general C-Data-offsets batches
// through the general walk instead of the flat plan (cdata_plan.go), each
// right after the planned mode for a same-run ratio.
func BenchmarkReader(b *testing.B) {
	for _, mode := range []string{"ipc", "ipc-general", "cdata", "cdata-general"} {
		for _, place := range []string{"in-place", "copied"} {
			for _, s := range benchShapes {
				b.Run(mode+"/"+place+"/"+s.name, func(b *testing.B) {
					benchReader(b, s, mode, place == "in-place")
				})
			}
		}
	}
}

func benchReader(b *testing.B, s benchShape, mode string, inPlace bool) {
	rec := benchRecord(b, s)
	r := newRing(b, 4, uint32(ipcframe.AlignUp(int64(s.rows*48+128<<10), 64)))
	var opts []ReaderOption
	if inPlace {
		opts = append(opts, WithZeroCopy())
	}
	if mode == "ipc-general" || mode == "cdata-general" {
		opts = append(opts, withoutReadPlan())
	}
	rd := NewReader(subscribe(b, r), opts...)
	defer rd.Release()
	p := producer(b, r)
	var write func() error
	if mode == "ipc" || mode == "ipc-general" {
		w := NewWriter(p, s.schema())
		defer w.Close()
		write = func() error { return w.Write(rec) }
	} else {
		w, err := NewCDataWriter(p, s.schema())
		if err != nil {
			b.Fatal(err)
		}
		defer w.Close()
		write = func() error { return w.Write(rec) }
	}
	b.ReportAllocs()
	b.SetBytes(int64(s.rows) * 8)
	for b.Loop() {
		if err := write(); err != nil {
			b.Fatal(err)
		}
		if !rd.Next() {
			b.Fatal(rd.Err())
		}
		if rd.RecordBatch().NumRows() != int64(s.rows) {
			b.Fatalf("%d rows", rd.RecordBatch().NumRows())
		}
	}
}
