package arrowshm_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/arrowshm"
	"github.com/ignalina/alloy/go/ring"
)

// Records go through a ring as Arrow IPC messages: the consumer joins
// first, the Writer publishes, the Reader decodes. Every error is checked;
// SchemaContext and NextContext bound the waits.
func Example() {
	cfg := ring.DefaultConfig()
	cfg.SlotCount, cfg.SlotSize = 8, 1<<16
	r, err := ring.CreateAnonymous("example", cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	c, err := r.Subscribe(ring.ConsumerOptions{})
	if err != nil {
		log.Fatal(err)
	}
	p, err := r.NewProducer(ring.ProducerOptions{})
	if err != nil {
		log.Fatal(err)
	}

	schema := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	b.Field(0).(*array.Int64Builder).AppendValues([]int64{1, 2, 3}, nil)
	rec := b.NewRecordBatch()
	defer rec.Release()
	w := arrowshm.NewWriter(p, schema)
	if err := w.Write(rec); err != nil {
		log.Fatal(err)
	}
	if err := w.Close(); err != nil { // end of stream
		log.Fatal(err)
	}

	rd := arrowshm.NewReader(c)
	defer rd.Close() // closes the consumer too
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := rd.SchemaContext(ctx) // no producer in 5 s: DeadlineExceeded
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.Field(0).Name)
	for rd.NextContext(ctx) {
		fmt.Println(rd.RecordBatch().Column(0))
	}
	if err := rd.Err(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// x
	// [1 2 3]
}

// With WithZeroCopy a string read from the record is a view of the slot:
// it changes once the record is released and the slot reused. Keep a copy
// (strings.Clone), or read with WithCopiedStrings.
func ExampleWithCopiedStrings() {
	cfg := ring.DefaultConfig()
	cfg.SlotCount, cfg.SlotSize = 4, 1<<14
	r, err := ring.CreateAnonymous("example-strings", cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	c, err := r.Subscribe(ring.ConsumerOptions{})
	if err != nil {
		log.Fatal(err)
	}
	p, err := r.NewProducer(ring.ProducerOptions{})
	if err != nil {
		log.Fatal(err)
	}
	schema := arrow.NewSchema([]arrow.Field{{Name: "region", Type: arrow.BinaryTypes.String}}, nil)
	w := arrowshm.NewWriter(p, schema)
	done := make(chan error, 1)
	go func() { // the producer: 20 records, reusing every slot
		for i := range 20 {
			b := array.NewStringBuilder(memory.DefaultAllocator)
			b.AppendValues([]string{fmt.Sprintf("r%03d", i)}, nil)
			col := b.NewArray()
			rec := array.NewRecordBatch(schema, []arrow.Array{col}, 1)
			err := w.Write(rec)
			rec.Release()
			col.Release()
			b.Release()
			if err != nil {
				w.Close()
				done <- err
				return
			}
		}
		done <- w.Close()
	}()

	rd := arrowshm.NewReader(c, arrowshm.WithCopiedStrings())
	defer rd.Close()
	seen := map[string]bool{} // keys stay valid after the records go
	for rd.Next() {
		col := rd.RecordBatch().Column(0).(*array.String)
		seen[col.Value(0)] = true // with WithZeroCopy: strings.Clone(col.Value(0))
	}
	if err := rd.Err(); err != nil {
		log.Fatal(err)
	}
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(seen), seen["r000"], seen["r019"])
	// Output: 20 true true
}
