package arrowshm_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/arrowshm"
	"github.com/ignalina/alloy/go/ring"
)

// A record built straight into its slot: the builders get the slot
// allocator, and publishing copies nothing. (The Rust IpcReader decodes
// such messages; here we only look at the header of LAYOUT.md §8.3.)
func ExampleCDataWriter_Build() {
	cfg := ring.DefaultConfig()
	cfg.SlotCount, cfg.SlotSize = 4, 1<<16
	r, err := ring.CreateAnonymous("example-cdata", cfg)
	if err != nil {
		panic(err)
	}
	defer r.Close()
	c, err := r.Subscribe(ring.ConsumerOptions{})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	p, err := r.NewProducer(ring.ProducerOptions{})
	if err != nil {
		panic(err)
	}
	schema := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64}}, nil)
	w, err := arrowshm.NewCDataWriter(p, schema)
	if err != nil {
		panic(err)
	}
	err = w.Build(func(mem memory.Allocator) (arrow.RecordBatch, error) {
		b := array.NewInt64Builder(mem) // allocates inside the slot
		defer b.Release()
		b.Reserve(1000)
		for i := range 1000 {
			b.Append(int64(i))
		}
		col := b.NewArray()
		defer col.Release()
		return array.NewRecordBatch(schema, []arrow.Array{col}, 1000), nil
	})
	if err != nil {
		panic(err)
	}
	if err := w.Close(); err != nil { // end of stream
		panic(err)
	}
	for {
		l, err := c.Recv()
		if errors.Is(err, io.EOF) {
			break // end of stream
		}
		if err != nil {
			panic(err)
		}
		if l.Flags() == arrowshm.FlagCDataOffsets {
			fmt.Printf("%s, %d rows\n", l.Bytes()[:4], binary.LittleEndian.Uint64(l.Bytes()[8:]))
		}
		l.Release()
	}
	fmt.Println("copied bytes:", w.CopiedBytes())
	// Output:
	// ALCD, 1000 rows
	// copied bytes: 0
}
