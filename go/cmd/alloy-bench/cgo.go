//go:build alloy_ffi

package main

// The cgo-oneshot transport: calls through package bridge, which links the
// Rust library and so is built only with -tags alloy_ffi (make bench-tools
// passes it). cgo_none.go stands in without the tag.

import (
	"fmt"
	"log/slog"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/bridge"
)

// bridgeBuilt: the cgo-oneshot transport is in this binary.
const bridgeBuilt = true

// cgoLatency times one bridge call with the Echo handler (logging off),
// which imports the array in Rust without copying and answers nothing: the
// time until Go knows Rust holds the data, a round trip through cgo.
func cgoLatency(size int64, iters int) (Result, error) {
	// Echo logs every array at INFO; the measurement is of the call alone.
	if bridge.LogLevel() < slog.LevelWarn {
		bridge.SetLogLevel(slog.LevelWarn)
	}
	rec := int64Record(size)
	defer rec.Release()
	arrays := []arrow.Array{rec.Column(0)}
	warm := max(8, iters/10) // not recorded: first-touch page faults, cold caches
	ns := make([]int64, 0, iters)
	for i := 0; i < iters+warm; i++ {
		t0 := nanotime()
		if _, _, err := (bridge.GoBridge{}).CallArrays(bridge.Echo, arrays); err != nil {
			return Result{}, err
		}
		if i >= warm {
			ns = append(ns, nanotime()-t0)
		}
	}
	r := Result{Transport: "cgo-oneshot", Mode: "call", Kind: "latency", PayloadBytes: max(8, size), Consumers: 1}
	quantiles(&r, ns)
	return r, nil
}

// cgoThroughput sends batches to Rust's Sum handler, which reads every
// value, total/size times. It rotates over batches as large in all as a
// streaming ring's slots, so Rust reads them from the same cache level a
// ring consumer would rather than from a hot 1-batch working set.
func cgoThroughput(size, total int64) (Result, error) {
	recs := make([]arrow.RecordBatch, streamSlots(size))
	for i := range recs {
		recs[i] = int64Record(size)
		defer recs[i].Release()
	}
	count := max(1, total/size)
	n := recs[0].NumRows()
	want := n * (n - 1) / 2 // every batch holds 0..n-1
	t0 := nanotime()
	for i := range count {
		_, out, err := (bridge.GoBridge{}).CallRecords(bridge.Sum, recs[i%int64(len(recs))])
		if err != nil {
			return Result{}, err
		}
		got := out.Column(0).(*array.Int64).Value(0)
		out.Release()
		if got != want {
			return Result{}, fmt.Errorf("sum handler answered %d, want %d", got, want)
		}
	}
	r := Result{Transport: "cgo-oneshot", Mode: "call", Kind: "throughput", PayloadBytes: size, Consumers: 1, Messages: count}
	setThroughput(&r, count*size, nanotime()-t0)
	return r, nil
}

// cgoRoundTrip times bridge.SendRecord (Rust's echo handler imports the
// batch and returns it; Go imports the answer): a whole cgo call with a
// batch each way, like ringRoundTrip.
func cgoRoundTrip(sh arrowShape, iters int) (Result, error) {
	if bridge.LogLevel() < slog.LevelWarn {
		bridge.SetLogLevel(slog.LevelWarn)
	}
	rec, err := sh.build(memory.NewGoAllocator(), 1)
	if err != nil {
		return Result{}, err
	}
	defer rec.Release()
	warm := warmOf(iters)
	ns := make([]int64, 0, iters)
	for i := 0; i < iters+warm; i++ {
		t0 := nanotime()
		out, err := (bridge.GoBridge{}).SendRecord(rec)
		if err != nil {
			return Result{}, err
		}
		rows := out.NumRows()
		out.Release()
		if rows != int64(sh.rows) {
			return Result{}, fmt.Errorf("echo of %d rows, want %d", rows, sh.rows)
		}
		if i >= warm {
			ns = append(ns, nanotime()-t0)
		}
	}
	r := Result{Transport: "cgo-oneshot", Mode: "call", Kind: "roundtrip", PayloadBytes: sh.payload(), Consumers: 1, Shape: sh.name, Variant: "echo"}
	quantiles(&r, ns)
	return r, nil
}
