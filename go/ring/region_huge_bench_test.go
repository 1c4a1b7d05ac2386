//go:build linux

package ring

import (
	"fmt"
	"testing"
)

// BenchmarkHugePages compares a ring in normal pages with one in 2 MiB
// huge pages (issue #14 §5), at 16 and 64 MiB, in one run so the ratio
// means something on a shared machine: each op sends a 1 MiB message (a
// copy into the slot) and the consumer reads one word of every 4 KiB page
// of it, so every op walks 256 pages of a ring larger than the L2 TLB's
// reach in normal pages. Huge rows skip when no huge pages are reserved
// (echo 80 > /proc/sys/vm/nr_hugepages covers both sizes). -count runs
// one row's repetitions back to back, so interleave by running the binary
// several times and compare rows of the same run:
//
//	go test -c -o /tmp/ring.test ./ring
//	for i in 1 2 3 4 5; do /tmp/ring.test -test.run '^$' -test.bench HugePages -test.benchtime 1000x; done
func BenchmarkHugePages(b *testing.B) {
	const msgSize = 1 << 20
	for _, mib := range []int{16, 64} {
		for _, h := range []struct {
			name string
			opt  HugePages
		}{{"normal", HugePagesOff}, {"huge", HugePagesRequire}} {
			b.Run(fmt.Sprintf("%dMiB/%s", mib, h.name), func(b *testing.B) {
				cfg := Config{SlotCount: uint32(mib), SlotSize: msgSize, MaxSubscribers: 1, MaxMembers: 1, SchemaCapacity: 64}
				r, err := CreateAnonymousWith("bench", cfg, Options{HugePages: h.opt, Prefault: true})
				if err != nil {
					b.Skip(err)
				}
				defer r.Close()
				c := mustSubscribe(b, r)
				p := mustProducer(b, r, Backpressure{Kind: Block})
				msg := make([]byte, msgSize)
				for i := range msg {
					msg[i] = byte(i)
				}
				var sum byte
				b.SetBytes(msgSize)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := p.Send(msg, 0); err != nil {
						b.Fatal(err)
					}
					l, err := c.TryRecv()
					if err != nil || l == nil {
						b.Fatal("no message", err)
					}
					m := l.Bytes()
					for j := 0; j < len(m); j += 4096 {
						sum += m[j]
					}
					l.Release()
				}
				b.StopTimer()
				prefaultSink += sum
				// The endpoints hold the mapping: close them so the huge
				// pages go back to the pool before the next row.
				p.Close()
				c.Close()
			})
		}
	}
}
