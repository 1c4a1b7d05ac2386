// Command reqrep is a Go service calling a Rust worker over an Alloy
// request/reply channel (doc/LAYOUT.md §12). It sends several record
// batches concurrently, each with an int64 column "x", and prints the
// worker's answers: x, x*x and the sum of x.
//
//	target/release/examples/reqrep_worker --name squares &   # the Rust worker
//	bin/alloy-reqrep --name squares
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/reqrep"
)

func main() {
	name := flag.String("name", "", "channel name served by reqrep_worker")
	calls := flag.Int("calls", 8, "concurrent calls")
	flag.Parse()
	if *name == "" {
		fmt.Fprintln(os.Stderr, "usage: alloy-reqrep --name NAME [--calls N]")
		os.Exit(2)
	}
	if err := run(context.Background(), *name, *calls, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "reqrep:", err)
		os.Exit(1)
	}
}

// run connects to the channel and makes `calls` concurrent calls, printing
// one line per answer in request order.
func run(ctx context.Context, name string, calls int, out io.Writer) error {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	client, err := reqrep.Dial(dctx, name)
	if err != nil {
		return err
	}
	defer client.Close()

	lines := make([]string, calls)
	errs := make([]error, calls)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lines[i], errs[i] = call(ctx, client, i)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for i := range calls {
		if errs[i] != nil {
			return fmt.Errorf("call %d: %w", i, errs[i])
		}
		fmt.Fprintln(out, lines[i])
	}
	fmt.Fprintf(out, "%d concurrent calls answered by the Rust worker in %v\n", calls, elapsed.Round(time.Microsecond))
	return nil
}

// call sends x = [10i, 10i+1, …] (i%4+2 values) with a 2 s deadline.
func call(ctx context.Context, client *reqrep.Client, i int) (string, error) {
	xs := make([]int64, i%4+2)
	for k := range xs {
		xs[k] = int64(10*i + k)
	}
	b := array.NewInt64Builder(memory.DefaultAllocator)
	b.AppendValues(xs, nil)
	col := b.NewArray()
	b.Release()
	schema := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64}}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{col}, int64(len(xs)))
	col.Release()
	defer rec.Release()

	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	res, err := client.Call(ctx, rec)
	if err != nil {
		return "", err
	}
	defer res.Release()
	sum, ok := res.Schema().Metadata().GetValue("sum")
	if !ok {
		return "", fmt.Errorf("unexpected answer %v: no sum in its metadata", res)
	}
	if res.NumCols() < 2 {
		return "", fmt.Errorf("unexpected answer %v: want columns x and x2", res)
	}
	x2c, ok := res.Column(1).(*array.Int64)
	if !ok || x2c.Len() != len(xs) {
		return "", fmt.Errorf("unexpected answer %v: no int64 column x2 of %d values", res, len(xs))
	}
	x2 := x2c.Int64Values()
	s, err := strconv.ParseInt(sum, 10, 64)
	if err != nil {
		return "", fmt.Errorf("unexpected answer %v: sum %q: %w", res, sum, err)
	}
	return fmt.Sprintf("call %d: x=%v -> x*x=%v sum=%d", i, xs, x2, s), nil
}
