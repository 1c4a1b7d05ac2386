//go:build cgo && linux

package cstream_test

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/cdata"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/arrowshm"
	"github.com/ignalina/alloy/go/cstream"
	"github.com/ignalina/alloy/go/ring"
)

// A ring subscription handed to a C consumer as an ArrowArrayStream (here
// arrow-go's own importer stands in for DuckDB or pyarrow), read in place.
func Example() {
	cfg := ring.DefaultConfig()
	cfg.SlotCount, cfg.SlotSize = 8, 1<<16
	r, err := ring.CreateAnonymous("example", cfg)
	if err != nil {
		panic(err)
	}
	defer r.Close()
	c, err := r.Subscribe(ring.ConsumerOptions{})
	if err != nil {
		panic(err)
	}
	rd := arrowshm.NewReader(c, arrowshm.WithZeroCopy())

	// A producer (any process) writes a batch and ends the stream.
	schema := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64}}, nil)
	b := array.NewInt64Builder(memory.DefaultAllocator)
	b.AppendValues([]int64{1, 2, 3}, nil)
	col := b.NewArray()
	rec := array.NewRecordBatch(schema, []arrow.Array{col}, 3)
	col.Release()
	b.Release()
	defer rec.Release()
	p, err := r.NewProducer(ring.ProducerOptions{})
	if err != nil {
		panic(err)
	}
	w := arrowshm.NewWriter(p, schema)
	if err := w.Write(rec); err != nil {
		panic(err)
	}
	w.Close()

	var stream cdata.CArrowArrayStream // zero initialized
	if err := cstream.Export(rd, &stream, cstream.Options{}); err != nil {
		panic(err)
	}
	// The C side: get_schema, get_next until the end, release.
	imported, err := cdata.ImportCRecordReader(&stream, nil)
	if err != nil {
		panic(err)
	}
	rr := imported.(array.RecordReader)
	for rr.Next() {
		got := rr.RecordBatch()
		fmt.Println(got.Column(0), "in the ring:", r.Contains(got.Column(0).Data().Buffers()[1].Bytes()))
	}
	fmt.Println("error:", rr.Err())
	rr.Release() // the stream's release closes the Reader and its consumer
	// Output:
	// [1 2 3] in the ring: true
	// error: <nil>
}
