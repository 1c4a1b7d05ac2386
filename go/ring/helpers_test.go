//go:build linux

package ring

import (
	"testing"
	"unsafe"
)

// fixedEnv returns the injected pid, start time and clocks of the LAYOUT
// §10 vectors.
func fixedEnv(pid, start uint32, mono uint64) env {
	return env{
		pid:    func() uint32 { return pid },
		start:  func() uint32 { return start },
		monoNs: func() uint64 { return mono },
		realNs: func() uint64 { return 1700000000000000000 },
	}
}

// alignedBytes returns n zero bytes that start on an 8-byte boundary (the
// atomics need natural alignment, as they have in a page-aligned mapping).
func alignedBytes(n uint64) []byte {
	words := make([]uint64, (n+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), n)
}

// memRing creates a region image in ordinary memory, as a creator with env e
// would. Vector tests use it to reproduce files byte for byte.
func memRing(t testing.TB, cfg Config, e env) *Ring {
	t.Helper()
	l, err := cfg.Layout()
	if err != nil {
		t.Fatal(err)
	}
	mem := alignedBytes(l.TotalSize)
	writeHeader(mem, l, e.pid(), e.realNs())
	return newRing(mem, l, e, nil)
}

// view opens the same memory as another "process" with its own pid/clock.
func (r *Ring) view(e env) *Ring { return newRing(r.mem, r.lay, e, nil) }

// anonRing creates a memfd ring that disappears with the test.
func anonRing(t testing.TB, cfg Config) *Ring {
	t.Helper()
	r, err := CreateAnonymous(t.Name(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func mustProducer(t testing.TB, r *Ring, bp Backpressure) *Producer {
	t.Helper()
	p, err := r.NewProducer(ProducerOptions{Backpressure: bp})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustSubscribe(t testing.TB, r *Ring) *Consumer {
	t.Helper()
	c, err := r.Subscribe(ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustSend(t testing.TB, p *Producer, b []byte, flags uint32) {
	t.Helper()
	if err := p.Send(b, flags); err != nil {
		t.Fatal(err)
	}
}

// small is the LAYOUT §10 "small" configuration.
var small = Config{SlotCount: 4, SlotSize: 64, MaxSubscribers: 2, MaxMembers: 4, SchemaCapacity: 64}
