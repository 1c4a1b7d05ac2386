package arrowshm_test

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/arrowshm"
	"github.com/ignalina/alloy/go/ring"
)

// Records go through a ring as Arrow IPC messages: the consumer joins
// first, the Writer publishes, the Reader decodes.
func Example() {
	cfg := ring.DefaultConfig()
	cfg.SlotCount, cfg.SlotSize = 8, 1<<16
	r, err := ring.CreateAnonymous("example", cfg)
	if err != nil {
		panic(err)
	}
	defer r.Close()
	c, _ := r.Subscribe(ring.ConsumerOptions{})
	defer c.Close()
	p, _ := r.NewProducer(ring.ProducerOptions{})

	schema := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	b.Field(0).(*array.Int64Builder).AppendValues([]int64{1, 2, 3}, nil)
	rec := b.NewRecordBatch()
	w := arrowshm.NewWriter(p, schema)
	if err := w.Write(rec); err != nil {
		panic(err)
	}
	w.Close() // end of stream

	rd := arrowshm.NewReader(r, c)
	defer rd.Release()
	for rd.Next() {
		fmt.Println(rd.RecordBatch().Column(0))
	}
	fmt.Println("err:", rd.Err())
	// Output:
	// [1 2 3]
	// err: <nil>
}
