package crosstest

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ignalina/alloy/go/ring"
)

// benchRing creates a uniquely named ring and removes it at the end.
func benchRing(b *testing.B, tag string, slots, size uint32) (string, *ring.Ring) {
	name := strings.ReplaceAll(fmt.Sprintf("alloy-bench-%d-%s-%s", os.Getpid(), tag, b.Name()), "/", "_")
	ring.Remove(name)
	r, err := ring.Create(name, ring.Config{SlotCount: slots, SlotSize: size, MaxSubscribers: 4, MaxMembers: 4, SchemaCapacity: 64})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close(); ring.Remove(name) })
	return name, r
}

// BenchmarkGoToRustLatency64B: a Go producer sends 64-byte messages to a
// Rust process (`alloy echo`) that republishes each onto a second ring, read
// back by Go. One op is one round trip; one-way latency is reported as half
// of it (p50 and p99 as extra metrics).
func BenchmarkGoToRustLatency64B(b *testing.B) {
	needRust(b)
	for _, mode := range []struct {
		name string
		wait ring.WaitStrategy
		args []string
	}{{"spin", ring.Spin, []string{"--spin"}}, {"blocking", ring.Blocking, nil}} {
		b.Run(mode.name, func(b *testing.B) {
			pingName, ping := benchRing(b, "ping", 64, 64)
			pongName, pong := benchRing(b, "pong", 64, 64)
			back, err := pong.Subscribe(ring.ConsumerOptions{Wait: mode.wait})
			if err != nil {
				b.Fatal(err)
			}
			defer back.Close()
			echo := start(b, context.Background(), rustBin, append([]string{"echo", "--in", pingName, "--out", pongName}, mode.args...)...)
			echo.ready(b)
			p, err := ping.NewProducer(ring.ProducerOptions{})
			if err != nil {
				b.Fatal(err)
			}
			rtt := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				buf, err := p.Reserve(64)
				if err != nil {
					b.Fatal(err)
				}
				binary.LittleEndian.PutUint64(buf, uint64(i))
				if err := p.Publish(64, 0); err != nil {
					b.Fatal(err)
				}
				l, err := back.Recv()
				if err != nil {
					b.Fatal(err)
				}
				if got := binary.LittleEndian.Uint64(l.Bytes()); got != uint64(i) || len(l.Bytes()) != 64 {
					b.Fatalf("echo returned %d (%d bytes), want %d", got, len(l.Bytes()), i)
				}
				l.Release()
				rtt = append(rtt, time.Since(t0))
			}
			b.StopTimer()
			p.Close()
			echo.cmd.Wait()
			sort.Slice(rtt, func(i, j int) bool { return rtt[i] < rtt[j] })
			b.ReportMetric(float64(rtt[len(rtt)/2].Nanoseconds())/2, "p50-one-way-ns")
			b.ReportMetric(float64(rtt[len(rtt)*99/100].Nanoseconds())/2, "p99-one-way-ns")
		})
	}
}

// BenchmarkGoToRustThroughput1MiB: a Go producer copies 1 MiB messages into
// slots; a Rust process (`alloy sink`) reads every byte (sums u64 words).
// The timer stops when the sink has seen them all.
func BenchmarkGoToRustThroughput1MiB(b *testing.B) {
	needRust(b)
	const size = 1 << 20
	name, r := benchRing(b, "tp", 16, size)
	sink := start(b, context.Background(), rustBin, "sink", "--ring", name, "--spin")
	sink.ready(b)
	p, err := r.NewProducer(ring.ProducerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	src := make([]byte, size)
	for i := range src {
		src[i] = byte(i)
	}
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf, err := p.Reserve(size)
		if err != nil {
			b.Fatal(err)
		}
		copy(buf, src)
		if err := p.Publish(size, 0); err != nil {
			b.Fatal(err)
		}
	}
	p.Close()
	got := sink.result(b)
	b.StopTimer()
	if got["messages"] != uint64(b.N) || got["bytes"] != uint64(b.N)*size {
		b.Fatalf("sink saw %v, want %d messages", got, b.N)
	}
}

// BenchmarkMemcpy1MiB is the bandwidth floor for the throughput above,
// measured in the same run: one goroutine copying 1 MiB blocks.
func BenchmarkMemcpy1MiB(b *testing.B) {
	const size = 1 << 20
	src := make([]byte, size)
	dst := make([][]byte, 16)
	for i := range dst {
		dst[i] = make([]byte, size)
	}
	b.SetBytes(size)
	for i := 0; i < b.N; i++ {
		copy(dst[i%16], src)
	}
}
