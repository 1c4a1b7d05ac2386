package reqrep_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/reqrep"
)

// A Go service calling a worker (for example the Rust
// examples/reqrep_worker.rs, started with --name squares): Dial with a
// deadline, one Call per record, every error handled. The worker answers
// x with (x, x*x) and the sum of x in the reply's metadata.
//
// (Not run by go test: it needs the worker process. The same code runs
// against it in go/examples/reqrep.)
func Example() {
	ctx := context.Background()

	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	client, err := reqrep.Dial(dctx, "squares")
	switch {
	case errors.Is(err, reqrep.ErrPeerGone):
		log.Fatalf("the worker died and left its rings; restart it: %v", err)
	case errors.Is(err, reqrep.ErrNotServed):
		log.Fatalf("no worker within 5 s: %v", err)
	case err != nil:
		log.Fatal(err) // e.g. ErrBusy: another client process holds the channel
	}
	defer client.Close()

	b := array.NewInt64Builder(memory.DefaultAllocator)
	defer b.Release()
	b.AppendValues([]int64{1, 2, 3}, nil)
	col := b.NewArray()
	defer col.Release()
	schema := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64}}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{col}, 3)
	defer rec.Release()

	cctx, cancelCall := context.WithTimeout(ctx, time.Second) // sent to the worker too
	defer cancelCall()
	out, err := client.Call(cctx, rec)
	var remote *reqrep.RemoteError
	switch {
	case errors.As(err, &remote):
		log.Fatalf("the worker refused the request (status %d): %s", remote.Status, remote.Text)
	case errors.Is(err, context.DeadlineExceeded):
		log.Fatal("no answer within 1 s")
	case errors.Is(err, reqrep.ErrPeerGone):
		log.Fatalf("the worker stopped or died: Dial again once it is back: %v", err)
	case err != nil:
		log.Fatal(err)
	}
	defer out.Release() // the reply is a copy: it lives independently of the channel
	sum, ok := out.Schema().Metadata().GetValue("sum")
	if !ok {
		log.Fatal("the reply has no sum")
	}
	fmt.Println(out.Column(1), "sum", sum)
}
