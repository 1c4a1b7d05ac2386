package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/ignalina/alloy/go/arrowshm"
	"github.com/ignalina/alloy/go/flightshm"
	"github.com/ignalina/alloy/go/ring"
)

// flight-localhost: Go sends Arrow record batches with flightshm.Writer
// (arrow-go Flight DoPut over gRPC, loopback TCP) to the Rust gateway
// `alloy serve-flight`, which republishes each batch into a local ring with
// IpcWriter (it decodes the Flight message and re-encodes it 64-byte
// aligned into the slot). The ring's consumer is the same as for
// shm-go-ipc: a Rust `arrow-sink` reading zero-copy and summing the int64
// column (throughput), or, for latency, an arrowshm.Reader (zero-copy) in
// this process, so the send stamp and the receive time use one clock. The
// gateway and the sink wait blocking, as a network service would.

// flightTotal is the bytes streamed per flight-localhost throughput point:
// a quarter of the others' (the transport is about ten times slower, and
// the quick grid must stay within its time).
func (g grid) flightTotal(size int64) int64 { return max(size, g.total(size)/4) }

// flightIters is the number of flight-localhost latency samples at size:
// a quarter of the byte budget of the others, at least latMin.
func (g grid) flightIters(size int64) int {
	return int(max(int64(g.latMin), min(int64(g.latMax), g.latBudget/4/size)))
}

// gatewayBin is the Rust CLI next to the helper: target/release/alloy.
func gatewayBin(helper string) string {
	return filepath.Join(filepath.Dir(filepath.Dir(helper)), "alloy")
}

// gateway is a running `alloy serve-flight`, started through the peers'
// harness (peer.go): its first stdout line names the address it listens on.
type gateway struct {
	*peer
	url string
}

func startGateway(helper string) (*gateway, error) {
	bin := gatewayBin(helper)
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("flight gateway missing (make build): %w", err)
	}
	p, err := startPeer(false, bin, "serve-flight", "--listen", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	line, err := p.line()
	url, ok := strings.CutPrefix(line, "listening on ")
	if !ok {
		p.kill()
		return nil, fmt.Errorf("serve-flight: first line %q, %v: %s", line, err, p.errb.String())
	}
	return &gateway{peer: p, url: url}, nil
}

func (g *gateway) stop() { g.kill() }

// flightRing creates the ring the gateway fills, sized like shm-go-ipc's.
func flightRing(size int64) (string, *ring.Ring, func(), error) {
	ringSeq++
	name := fmt.Sprintf("alloy-bench-flight-%d-%d", os.Getpid(), ringSeq)
	ring.Remove(name)
	rg, err := ring.Create(name, ring.Config{
		SlotCount: streamSlots(size), SlotSize: slotSize(uint32(size) + 8192),
		MaxSubscribers: 2, MaxMembers: 2, SchemaCapacity: 4096,
	})
	if err != nil {
		return "", nil, nil, err
	}
	return name, rg, func() { rg.Close(); ring.Remove(name) }, nil
}

// flightThroughput streams the int64 record total/size times; throughput
// is payload bytes over the time until the sink has read its last batch.
func flightThroughput(helper string, size, total int64) (Result, error) {
	gw, err := startGateway(helper)
	if err != nil {
		return Result{}, err
	}
	defer gw.stop()
	name, _, done, err := flightRing(size)
	if err != nil {
		return Result{}, err
	}
	defer done()
	p, err := startPeer(true, helper, "arrow-sink", "--ring", name)
	if err != nil {
		return Result{}, err
	}
	rec := int64Record(size)
	defer rec.Release()
	rows := rec.NumRows()
	count := max(1, total/size)
	w, err := flightshm.NewWriter(context.Background(), gw.url, name, rec.Schema())
	if err != nil {
		p.kill()
		return Result{}, err
	}
	t0 := nanotime()
	for range count {
		if err = w.Write(rec); err != nil {
			break
		}
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		p.kill()
		return Result{}, fmt.Errorf("%w (gateway: %s)", err, gw.errb.String())
	}
	var s struct {
		sinkResult
		Sum int64 `json:"sum"`
	}
	if err := p.finish(&s); err != nil {
		return Result{}, err
	}
	want := rows * (rows - 1) / 2 * count
	if s.Messages != count || s.Rows != count*rows || s.Sum != want {
		return Result{}, fmt.Errorf("arrow-sink saw %d batches, %d rows, sum %d; want %d, %d, %d",
			s.Messages, s.Rows, s.Sum, count, count*rows, want)
	}
	r := Result{Transport: "flight-localhost", Mode: "blocking", Kind: "throughput", PayloadBytes: size, Consumers: 1, Messages: count}
	setThroughput(&r, count*size, s.LastNS-t0)
	return r, nil
}

// flightLatency sends one batch at a time (value 0 = send stamp, -1 in
// warm-up) and waits until the ring consumer in this process holds it.
func flightLatency(helper string, size int64, iters int) (Result, error) {
	size = max(size, 8)
	gw, err := startGateway(helper)
	if err != nil {
		return Result{}, err
	}
	defer gw.stop()
	name, rg, done, err := flightRing(size)
	if err != nil {
		return Result{}, err
	}
	defer done()
	c, err := rg.Subscribe(ring.ConsumerOptions{})
	if err != nil {
		return Result{}, err
	}
	rd := arrowshm.NewReader(c, arrowshm.WithZeroCopy())
	defer rd.Release()
	rec := int64Record(size)
	defer rec.Release()
	vals := rec.Column(0).(*array.Int64).Int64Values()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := flightshm.NewWriter(ctx, gw.url, name, rec.Schema())
	if err != nil {
		return Result{}, err
	}
	// Waiting for a batch gives up when the gateway ends the call (it
	// refused or failed the stream) instead of waiting for ever.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go func() {
		select {
		case <-w.Done():
			wcancel()
		case <-wctx.Done():
		}
	}()
	warm := max(8, iters/10) // not recorded: first-touch page faults, cold caches
	ns := make([]int64, 0, iters)
	for i := 0; i < iters+warm; i++ {
		t0 := nanotime()
		vals[0] = t0
		if i < warm {
			vals[0] = -1
		}
		if err := w.Write(rec); err != nil {
			return Result{}, fmt.Errorf("%w (gateway: %s)", err, gw.errb.String())
		}
		if !rd.NextContext(wctx) {
			err := orEOF(rd.Err())
			if cerr := w.Close(); cerr != nil {
				err = cerr // the gateway ended the call: its status says why
			}
			return Result{}, fmt.Errorf("ring consumer: %w (gateway: %s)", err, gw.errb.String())
		}
		got := rd.RecordBatch().Column(0).(*array.Int64).Value(0)
		t1 := nanotime()
		if got != vals[0] {
			return Result{}, fmt.Errorf("batch %d: stamp %d, sent %d", i, got, vals[0])
		}
		if i >= warm {
			ns = append(ns, t1-t0)
		}
	}
	if err := w.Close(); err != nil {
		return Result{}, err
	}
	if rd.Next() {
		return Result{}, errors.New("ring consumer: a batch after the last one")
	}
	r := Result{Transport: "flight-localhost", Mode: "blocking", Kind: "latency", PayloadBytes: size, Consumers: 1}
	quantiles(&r, ns)
	return r, nil
}

func orEOF(err error) error {
	if err == nil {
		return errors.New("end of stream")
	}
	return err
}
