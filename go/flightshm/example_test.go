package flightshm_test

import (
	"context"
	"fmt"
	"log"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/flightshm"
)

// Sending a record to ring "events" on the machine running
// `alloy serve-flight --listen 0.0.0.0:50051`. (Compiled, not run: it needs
// that gateway; internal/crosstest runs the same steps against bin/alloy.)
func ExampleWriter() {
	schema := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	b.Field(0).(*array.Int64Builder).AppendValues([]int64{1, 2, 3}, nil)
	rec := b.NewRecordBatch()
	defer rec.Release()

	w, err := flightshm.NewWriter(context.Background(), "grpc://gateway-host:50051", "events", schema)
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		log.Fatal(err) // status.Code(err) says why the gateway refused
	}
	if err := w.Close(); err != nil { // the ring's stream is closed now
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", w.Summary())
}
