//go:build alloy_ffi

// Command latency measures the round trip of one record batch Go → Rust →
// Go over a request/reply channel (package reqrep, the Rust worker's echo
// operation) and over the one-shot cgo bridge (bridge.SendRecord, Rust's
// echo handler), for a 1-row batch and a 1 MiB batch, and prints p50/p99 of
// both and their ratio (doc/BENCHMARKS.md, "Request/reply round trip").
//
// It links the Rust static library through package bridge, so build the
// library first (make build), then run it with the build tag alloy_ffi:
//
//	cd go && go run -tags alloy_ffi ./examples/reqrep/latency --worker ../target/release/examples/reqrep_worker
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/bridge"
	"github.com/ignalina/alloy/go/reqrep"
	"github.com/ignalina/alloy/go/ring"
)

func main() {
	worker := flag.String("worker", "../target/release/examples/reqrep_worker", "path of the Rust reqrep_worker")
	small := flag.Int("small-iters", 20000, "round trips of the 1-row batch")
	big := flag.Int("big-iters", 2000, "round trips of the 1 MiB batch")
	zeroCopy := flag.Bool("zero-copy", false, "read replies in place (reqrep.Options.ZeroCopy)")
	spin := flag.Bool("spin", false, "busy-wait on both ends (reqrep.Options.Wait = ring.Spin, reqrep_worker --spin)")
	flag.Parse()
	opts := reqrep.Options{ZeroCopy: *zeroCopy}
	if *spin {
		opts.Wait = ring.Spin
	}
	if err := run(*worker, *small, *big, opts); err != nil {
		fmt.Fprintln(os.Stderr, "latency:", err)
		os.Exit(1)
	}
}

// record is an int64 column "x" of rows values, tagged for the worker's echo.
func record(rows int) arrow.RecordBatch {
	b := array.NewInt64Builder(memory.DefaultAllocator)
	defer b.Release()
	for i := range rows {
		b.Append(int64(i))
	}
	col := b.NewArray()
	defer col.Release()
	md := arrow.MetadataFrom(map[string]string{"op": "echo"})
	schema := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64}}, &md)
	return array.NewRecordBatch(schema, []arrow.Array{col}, int64(rows))
}

// measure times iters calls of f after a warm-up; returns p50 and p99.
func measure(iters int, f func() error) (time.Duration, time.Duration, error) {
	for range min(iters/10, 200) {
		if err := f(); err != nil {
			return 0, 0, err
		}
	}
	d := make([]time.Duration, iters)
	for i := range d {
		t0 := time.Now()
		if err := f(); err != nil {
			return 0, 0, err
		}
		d[i] = time.Since(t0)
	}
	slices.Sort(d)
	return d[len(d)/2], d[len(d)*99/100], nil
}

func run(workerBin string, small, big int, opts reqrep.Options) error {
	bridge.SetLogLevel(slog.LevelWarn) // the echo handler logs at INFO
	name := fmt.Sprintf("alloy-rr-latency-%d", os.Getpid())
	args := []string{"--name", name, "--threads", "1", "--slot-size", fmt.Sprint(4 << 20)}
	if opts.Wait == ring.Spin {
		args = append(args, "--spin")
	}
	cmd := exec.Command(workerBin, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		ring.Remove(reqrep.RequestRing(name))
		ring.Remove(reqrep.ReplyRing(name))
	}()
	if line, _ := bufio.NewReader(out).ReadString('\n'); strings.TrimSpace(line) != "ready" {
		return fmt.Errorf("worker said %q", line)
	}
	ctx := context.Background()
	client, err := reqrep.DialWith(ctx, name, opts)
	if err != nil {
		return err
	}
	defer client.Close()

	fmt.Printf("reqrep options: zero-copy replies %v, spin %v\n\n", opts.ZeroCopy, opts.Wait == ring.Spin)
	fmt.Println("| batch | reqrep p50 | reqrep p99 | cgo bridge p50 | cgo bridge p99 | reqrep/bridge p50 | reqrep/bridge p99 |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	for _, c := range []struct {
		label       string
		rows, iters int
	}{{"1 row", 1, small}, {"1 MiB (131072 int64)", 1 << 17, big}} {
		rec := record(c.rows)
		rp50, rp99, err := measure(c.iters, func() error {
			res, err := client.Call(ctx, rec)
			if err == nil {
				if res.NumRows() != int64(c.rows) {
					err = fmt.Errorf("echo returned %d rows", res.NumRows())
				}
				res.Release()
			}
			return err
		})
		if err != nil {
			return err
		}
		bp50, bp99, err := measure(c.iters, func() error {
			res, err := bridge.GoBridge{}.SendRecord(rec)
			if err == nil {
				res.Release()
			}
			return err
		})
		if err != nil {
			return err
		}
		rec.Release()
		fmt.Printf("| %s | %v | %v | %v | %v | %.1f× | %.1f× |\n", c.label, rp50, rp99, bp50, bp99,
			float64(rp50)/float64(bp50), float64(rp99)/float64(bp99))
	}
	return nil
}
