//go:build linux

package ring

import (
	"testing"
)

// pingPong bounces one message between two goroutines over two rings and
// reports the one-way latency (half the round trip).
func benchPingPong(b *testing.B, size int, wait WaitStrategy) {
	cfg := Config{SlotCount: 64, SlotSize: 64, MaxSubscribers: 1, MaxMembers: 1}
	there, back := anonRing(b, cfg), anonRing(b, cfg)
	thereC, err := there.Subscribe(ConsumerOptions{Wait: wait})
	if err != nil {
		b.Fatal(err)
	}
	backC, err := back.Subscribe(ConsumerOptions{Wait: wait})
	if err != nil {
		b.Fatal(err)
	}
	thereP := mustProducer(b, there, Backpressure{Kind: Block})
	backP := mustProducer(b, back, Backpressure{Kind: Block})
	msg := make([]byte, size)

	done := make(chan error, 1)
	go func() { // the echo side
		for {
			l, err := thereC.Recv()
			if err != nil {
				backP.Close()
				done <- nil
				return
			}
			err = backP.Send(l.Bytes(), 0)
			l.Release()
			if err != nil {
				done <- err
				return
			}
		}
	}()
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := thereP.Send(msg, 0); err != nil {
			b.Fatal(err)
		}
		l, err := backC.Recv()
		if err != nil {
			b.Fatal(err)
		}
		l.Release()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/2, "ns/one-way")
	thereP.Close()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkLatency64B is the one-way latency of a 64-byte message between
// goroutines, with spinning and with futex-parking consumers.
func BenchmarkLatency64B(b *testing.B) {
	b.Run("spin", func(b *testing.B) { benchPingPong(b, 64, Spin) })
	b.Run("blocking", func(b *testing.B) { benchPingPong(b, 64, Blocking) })
}

// BenchmarkThroughput1MiB streams 1 MiB messages from a producer goroutine
// (which copies each into its slot) to a consumer that reads them in place.
func BenchmarkThroughput1MiB(b *testing.B) {
	const size = 1 << 20
	r := anonRing(b, Config{SlotCount: 8, SlotSize: size, MaxSubscribers: 1, MaxMembers: 1})
	c := mustSubscribe(b, r)
	p := mustProducer(b, r, Backpressure{Kind: Block})
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i)
	}
	done := make(chan error, 1)
	go func() {
		var sum byte
		for {
			l, err := c.Recv()
			if err != nil {
				done <- nil
				return
			}
			m := l.Bytes()
			sum += m[0] + m[len(m)-1] // touch it, without copying
			l.Release()
		}
	}()
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := p.Send(msg, 0); err != nil {
			b.Fatal(err)
		}
	}
	p.Close()
	<-done
}
