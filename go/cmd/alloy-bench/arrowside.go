package main

import (
	"fmt"
	"os"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/arrowshm"
	"github.com/ignalina/alloy/go/ring"
)

// Arrow over the ring, Go producer → one Rust `arrow-sink` process that
// decodes every batch zero-copy (checking its buffers lie in the mapping)
// and sums its int64 column: the same record and the same work as the
// uds-ipc transport, so the two compare directly.
//
//	shm-go-ipc:   arrowshm.Writer, Arrow IPC written into the slot (the
//	              record's buffers are copied once, into the slot)
//	shm-go-ipc-python: shm-go-ipc read by Python instead (python_sink.py,
//	              pythonsink.go)
//	shm-go-cdata: arrowshm.CDataWriter.Build, the int64 builder allocates
//	              inside the slot and takes the same values from a Go slice
//	              (AppendValues, one copy, as the IPC row copies its
//	              pre-built record): the values are written once, in place,
//	              and nothing is copied after building (LAYOUT.md §8.3).
//	              (Appending value by value, UnsafeAppend, cost about 5 ns a
//	              row, 11× the IPC row at 1 MiB: the builder, not the ring.)
//
// Throughput is payload bytes (the int64 values) over the time until the
// sink has read its last batch.
func shmGoArrow(helper, transport string, size, total int64, busy bool) (Result, error) {
	ringSeq++
	name := fmt.Sprintf("alloy-bench-arrow-%d-%d", os.Getpid(), ringSeq)
	ring.Remove(name)
	// Next to the values: the builder's validity bitmap (one bit a row,
	// allocated even without nulls), metadata, descriptor and alignment.
	rg, err := ring.Create(name, ring.Config{
		SlotCount: streamSlots(size), SlotSize: slotSize(uint32(size + size/64 + 16384)),
		MaxSubscribers: 2, MaxMembers: 2, SchemaCapacity: 4096,
	})
	if err != nil {
		return Result{}, err
	}
	defer func() { rg.Close(); ring.Remove(name) }()
	argv := append([]string{helper, "arrow-sink", "--ring", name}, spinArg(busy)...)
	if transport == pythonTransport {
		argv = pythonPeerArgv(name)
	}
	p, err := startPeer(true, argv...)
	if err != nil {
		return Result{}, err
	}
	wait := ring.Blocking
	if busy {
		wait = ring.Spin
	}
	prod, err := rg.NewProducer(ring.ProducerOptions{Wait: wait})
	if err != nil {
		p.kill()
		return Result{}, err
	}
	rows := int(max(1, size/8))
	count := max(1, total/size)
	schema := arrow.NewSchema([]arrow.Field{{Name: "v", Type: arrow.PrimitiveTypes.Int64}}, nil)
	var t0 int64
	switch transport {
	case "shm-go-ipc", pythonTransport:
		rec := int64Record(size)
		defer rec.Release()
		w := arrowshm.NewWriter(prod, schema)
		t0 = nanotime()
		for range count {
			if err = w.Write(rec); err != nil {
				break
			}
		}
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	case "shm-go-cdata":
		var w *arrowshm.CDataWriter
		if w, err = arrowshm.NewCDataWriter(prod, schema); err != nil {
			break
		}
		vals := make([]int64, rows)
		for i := range vals {
			vals[i] = int64(i)
		}
		build := func(mem memory.Allocator) (arrow.RecordBatch, error) {
			b := array.NewInt64Builder(mem)
			defer b.Release()
			b.Resize(rows) // exactly rows elements, in the slot
			b.AppendValues(vals, nil)
			col := b.NewArray()
			defer col.Release()
			return array.NewRecordBatch(schema, []arrow.Array{col}, int64(rows)), nil
		}
		t0 = nanotime()
		for range count {
			if err = w.Build(build); err != nil {
				break
			}
		}
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err == nil && w.CopiedBytes() != 0 {
			err = fmt.Errorf("cdata build copied %d bytes", w.CopiedBytes())
		}
	default:
		err = fmt.Errorf("unknown arrow transport %q", transport)
	}
	if err != nil {
		p.kill()
		return Result{}, err
	}
	var s struct {
		sinkResult
		Sum int64 `json:"sum"`
	}
	if err := p.finish(&s); err != nil {
		return Result{}, err
	}
	// Every batch holds 0..rows-1: the sink must have read all of them.
	want := int64(rows) * int64(rows-1) / 2 * count
	if s.Messages != count || s.Rows != count*int64(rows) || s.Sum != want {
		return Result{}, fmt.Errorf("arrow-sink saw %d batches, %d rows, sum %d; want %d, %d, %d",
			s.Messages, s.Rows, s.Sum, count, count*int64(rows), want)
	}
	r := Result{Transport: transport, Mode: modeName(busy), Kind: "throughput", PayloadBytes: size, Consumers: 1, Messages: count}
	setThroughput(&r, count*size, s.LastNS-t0)
	return r, nil
}
