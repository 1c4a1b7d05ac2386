package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/arrowshm"
	"github.com/ignalina/alloy/go/ring"
)

// summary is the one-line result of send and recv (the same fields, in
// the same order, as the Rust tool's).
type summary struct {
	// Batches: record batches read from the input (send; a batch split to
	// fit the slots is still one) or received and written out (recv).
	Batches uint64 `json:"batches"`
	Rows    uint64 `json:"rows"`
	// Messages: ring messages; the schema, dictionary batches and every
	// piece of a split batch count one each.
	Messages uint64 `json:"messages"`
	Bytes    uint64 `json:"bytes"`
}

func checkMode(mode string) error {
	switch mode {
	case "ipc", "cdata":
		return nil
	default:
		return fmt.Errorf("unknown --mode %q (expected ipc or cdata)", mode)
	}
}

// recordWriter is what send needs of arrowshm.Writer and CDataWriter.
type recordWriter interface {
	Write(arrow.RecordBatch) error
	Close() error
	Batches() uint64
	BytesSent() uint64
}

// newRecordWriter returns the writer of the --mode: IPC, or C-Data-offsets
// (which copies each record read from the file into its slot once).
func newRecordWriter(mode string, p *ring.Producer, schema *arrow.Schema) (recordWriter, error) {
	if mode == "cdata" {
		w, err := arrowshm.NewCDataWriter(p, schema)
		if err != nil { // not a typed nil in the interface
			return nil, err
		}
		return w, nil
	}
	return arrowshm.NewWriter(p, schema, arrowshm.WithDictionaryDeltas(dictionaryDeltas)), nil
}

// dictionaryDeltas is send's --dictionary-deltas.
var dictionaryDeltas bool

// arrowGen (hidden, for benches/arrow_ipc.rs) builds one record of about
// --bytes bytes (an int64 column and a utf8 column with every 10th value
// null), writes it --count times to the ring in IPC mode, closes the stream
// and prints the producer's elapsed time.
func arrowGen(args []string) error {
	fs := newFlags("arrow-gen")
	name := fs.String("ring", "", "ring name")
	size := fs.Int("bytes", 1<<20, "approximate record batch size in bytes")
	count := fs.Int("count", 100, "number of batches to send")
	mode := fs.String("mode", "ipc", "ipc, ipc-build (build each batch on the Go heap, then ipc), cdata (build each batch in its slot with the slot allocator) or cdata-write (copy the built record into each slot)")
	fs.Parse(args)
	if err := requireRing(*name); err != nil {
		return err
	}
	if *mode != "ipc" && *mode != "ipc-build" && *mode != "cdata" && *mode != "cdata-write" {
		return fmt.Errorf("unknown --mode %q (expected ipc, ipc-build, cdata or cdata-write)", *mode)
	}
	// 8 (int64) + 4 (offset) + 12 (string) bytes per row.
	rows := max(1, *size/24)
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	ids := b.Field(0).(*array.Int64Builder)
	names := b.Field(1).(*array.StringBuilder)
	for i := range rows {
		ids.Append(int64(i))
		if i%10 == 0 {
			names.AppendNull()
		} else {
			names.Append(fmt.Sprintf("name-%07d", i%10_000_000))
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	r, p, err := openProducer(*name)
	if err != nil {
		return err
	}
	defer r.Close()
	var w recordWriter
	send := func() error { return w.Write(rec) }
	if strings.HasPrefix(*mode, "ipc") {
		w = arrowshm.NewWriter(p, schema)
		if *mode == "ipc-build" {
			build := genBuild(schema, rec)
			send = func() error {
				built, err := build(memory.DefaultAllocator)
				if err != nil {
					return err
				}
				defer built.Release()
				return w.Write(built)
			}
		}
	} else {
		cw, err := arrowshm.NewCDataWriter(p, schema)
		if err != nil {
			return err
		}
		w = cw
		if *mode == "cdata" {
			send = func() error { return cw.Build(genBuild(schema, rec)) }
		}
	}
	start := time.Now()
	for range *count {
		if err := send(); err != nil {
			w.Close()
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return printJSON(struct {
		Batches int     `json:"batches"`
		Rows    int64   `json:"rows_per_batch"`
		Bytes   uint64  `json:"bytes"`
		Seconds float64 `json:"seconds"`
	}{*count, rec.NumRows(), w.BytesSent(), time.Since(start).Seconds()})
}

// genBuild returns a CDataWriter.Build callback that builds a copy of rec
// (arrow-gen's int64 + utf8 record) straight into the slot: builders
// sized exactly up front, values appended from rec's columns.
func genBuild(schema *arrow.Schema, rec arrow.RecordBatch) func(memory.Allocator) (arrow.RecordBatch, error) {
	ids := rec.Column(0).(*array.Int64).Int64Values()
	names := rec.Column(1).(*array.String)
	offs := names.ValueOffsets()
	data := names.ValueBytes()
	return func(mem memory.Allocator) (arrow.RecordBatch, error) {
		n := int(rec.NumRows())
		ib := array.NewInt64Builder(mem)
		defer ib.Release()
		ib.Resize(n) // exact capacity (Reserve rounds up to a power of two)
		ib.AppendValues(ids, nil)
		sb := array.NewStringBuilder(mem)
		defer sb.Release()
		sb.Resize(n)
		sb.ReserveData(len(data))
		for i := range n {
			if names.IsNull(i) {
				sb.AppendNull()
			} else {
				sb.BinaryBuilder.Append(data[offs[i]:offs[i+1]])
			}
		}
		a, b := ib.NewArray(), sb.NewArray()
		defer a.Release()
		defer b.Release()
		return array.NewRecordBatch(schema, []arrow.Array{a, b}, int64(n)), nil
	}
}

// openProducer opens the named ring and attaches its producer with blocking
// back-pressure; the caller closes the ring (and the producer, by closing
// the stream).
func openProducer(name string) (*ring.Ring, *ring.Producer, error) {
	r, err := ring.Open(name)
	if err != nil {
		return nil, nil, err
	}
	p, err := r.NewProducer(ring.ProducerOptions{Backpressure: ring.Backpressure{Kind: ring.Block}})
	if err != nil {
		r.Close()
		return nil, nil, err
	}
	return r, p, nil
}

// arrowSink (hidden, for benches/arrow_ipc.rs) is the Go consumer of the
// Rust → Go direction: it joins --ring, says "ready", reads records of
// arrow-gen's shape (int64, utf8) with arrowshm.Reader (in place with
// --zero-copy, cdata validation skipped with --trusted), sums the int64 column and counts the nulls of the utf8
// column of each, and at end of stream prints the totals and its wall
// time from the first record.
func arrowSink(args []string) error {
	fs := newFlags("arrow-sink")
	name := fs.String("ring", "", "ring name")
	zeroCopy := fs.Bool("zero-copy", false, "read record batches in place (arrowshm.WithZeroCopy)")
	trusted := fs.Bool("trusted", false, "skip the O(n) validation of records, IPC and C-Data-offsets (arrowshm.WithTrustedProducer)")
	fs.Parse(args)
	if err := requireRing(*name); err != nil {
		return err
	}
	r, err := ring.Open(*name)
	if err != nil {
		return err
	}
	defer r.Close()
	c, err := r.Subscribe(ring.ConsumerOptions{})
	if err != nil {
		return err
	}
	var opts []arrowshm.ReaderOption
	if *zeroCopy {
		opts = append(opts, arrowshm.WithZeroCopy())
	}
	if *trusted {
		opts = append(opts, arrowshm.WithTrustedProducer())
	}
	rd := arrowshm.NewReader(c, opts...)
	defer rd.Close()
	fmt.Println("ready")
	var start time.Time
	var batches, rows, nulls uint64
	var sum int64
	for rd.Next() {
		if batches == 0 {
			start = time.Now()
		}
		rec := rd.RecordBatch()
		if rec.NumCols() != 2 {
			return fmt.Errorf("arrow-sink: record %v is not (int64, utf8)", rec.Schema())
		}
		ids, ok := rec.Column(0).(*array.Int64)
		if !ok {
			return fmt.Errorf("arrow-sink: record %v is not (int64, utf8)", rec.Schema())
		}
		for _, v := range ids.Int64Values() {
			sum += v
		}
		nulls += uint64(rec.Column(1).NullN())
		rows += uint64(rec.NumRows())
		batches++
	}
	if err := rd.Err(); err != nil {
		return err
	}
	secs := 0.0
	if batches > 0 {
		secs = time.Since(start).Seconds()
	}
	return printJSON(struct {
		Batches uint64  `json:"batches"`
		Rows    uint64  `json:"rows"`
		Bytes   uint64  `json:"bytes"`
		Sum     int64   `json:"sum"`
		Nulls   uint64  `json:"nulls"`
		Seconds float64 `json:"seconds"`
	}{batches, rows, rd.BytesReceived(), sum, nulls, secs})
}
