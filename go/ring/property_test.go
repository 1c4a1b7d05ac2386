//go:build linux

package ring

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// modelConsumer is the reference behaviour of one broadcast subscriber.
type modelConsumer struct {
	c     *Consumer
	claim uint64
	held  []*Lease
}

// lowest is the model's release cursor: the oldest unreleased sequence.
func (m *modelConsumer) lowest() uint64 {
	low := m.claim
	for _, l := range m.held {
		low = min(low, l.Seq())
	}
	return low
}

// TestPropertyAgainstModel drives one producer and late-joining broadcast
// consumers with random operations and compares every outcome (Full or not,
// which message, the release cursor in memory) with a simple model.
func TestPropertyAgainstModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := uint32(1) << rapid.IntRange(1, 3).Draw(rt, "log2 slots")
		r := anonRing(t, Config{SlotCount: n, SlotSize: 64, MaxSubscribers: 3, MaxMembers: 3})
		p := mustProducer(t, r, failBP)
		var sent [][]byte
		var cons []*modelConsumer
		msg := func(j int) []byte { return bytes.Repeat([]byte{byte(j)}, j%65) }

		rt.Repeat(map[string]func(*rapid.T){
			"join": func(rt *rapid.T) {
				if len(cons) == 3 {
					rt.Skip("table full")
				}
				c := mustSubscribe(t, r)
				cons = append(cons, &modelConsumer{c: c, claim: uint64(len(sent))})
			},
			"send": func(rt *rapid.T) {
				j := len(sent)
				full := false
				for _, m := range cons {
					full = full || uint64(j) >= m.lowest()+uint64(n)
				}
				err := p.Send(msg(j), uint32(j))
				if full != errors.Is(err, ErrFull) || (!full && err != nil) {
					rt.Fatalf("send %d: full=%v in model, err %v", j, full, err)
				}
				if err == nil {
					sent = append(sent, msg(j))
				}
			},
			"recv": func(rt *rapid.T) {
				if len(cons) == 0 {
					rt.Skip("no consumer")
				}
				m := cons[rapid.IntRange(0, len(cons)-1).Draw(rt, "consumer")]
				l, err := m.c.TryRecv()
				if m.claim == uint64(len(sent)) {
					if !errors.Is(err, ErrEmpty) {
						rt.Fatalf("recv on empty: %v", err)
					}
					return
				}
				if err != nil || l.Seq() != m.claim || !bytes.Equal(l.Bytes(), sent[m.claim]) || l.Flags() != uint32(m.claim) {
					rt.Fatalf("recv: want seq %d, got %v, %v", m.claim, l, err)
				}
				m.claim++
				m.held = append(m.held, l)
			},
			"release": func(rt *rapid.T) {
				if len(cons) == 0 {
					rt.Skip("no consumer")
				}
				m := cons[rapid.IntRange(0, len(cons)-1).Draw(rt, "consumer")]
				if len(m.held) == 0 {
					rt.Skip("nothing held")
				}
				i := rapid.IntRange(0, len(m.held)-1).Draw(rt, "lease")
				m.held[i].Release()
				m.held = slices.Delete(m.held, i, i+1)
			},
			"": func(rt *rapid.T) {
				for _, m := range cons {
					got := m.c.release.Load()
					if got != m.lowest() {
						rt.Fatalf("release cursor %d, model %d", got, m.lowest())
					}
				}
			},
		})
	})
}

// TestPropertyLayout checks, for random valid configurations, that the
// areas of §3 are ordered without overlap, every payload is 64-byte
// aligned, and a written header reads back as the same layout.
func TestPropertyLayout(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		cfg := Config{
			SlotCount:      1 << rapid.IntRange(1, 20).Draw(rt, "log2 slots"),
			SlotSize:       64 * rapid.Uint32Range(1, 1<<24).Draw(rt, "slot size/64"),
			MaxSubscribers: rapid.Uint32Range(1, 64).Draw(rt, "subscribers"),
			MaxMembers:     rapid.Uint32Range(1, 256).Draw(rt, "members"),
			SchemaCapacity: 64 * rapid.Uint32Range(0, 1<<18).Draw(rt, "schema/64"),
		}
		l, err := cfg.Layout()
		if err != nil {
			rt.Fatalf("valid config refused: %v", err)
		}
		s, m, n := uint64(cfg.MaxSubscribers), uint64(cfg.MaxMembers), uint64(cfg.SlotCount)
		if l.MembersOff < l.SubsOff+s*128 || l.DoneOff < l.MembersOff+m*64 || l.SchemaOff < l.DoneOff+s*n*8 ||
			l.SlotsOff < l.SchemaOff+uint64(cfg.SchemaCapacity) || l.TotalSize != l.SlotsOff+n*l.SlotStride {
			rt.Fatalf("areas overlap: %+v", l)
		}
		if l.SlotsOff%4096 != 0 || l.SchemaOff%64 != 0 || l.SlotStride%64 != 0 || l.SlotsOff-l.SchemaOff-uint64(cfg.SchemaCapacity) >= 4096 {
			rt.Fatalf("misaligned or padded too much: %+v", l)
		}
		last := n - 1
		if p := l.slotOff(last) + SlotHeaderSize; p%64 != 0 || p+uint64(cfg.SlotSize) != l.TotalSize {
			rt.Fatalf("last payload at %d", p)
		}
		hdr := alignedBytes(HeaderSize)
		writeHeader(hdr, l, 1, 2)
		got, err := ReadLayout(hdr, l.TotalSize)
		if err != nil || got != l {
			rt.Fatalf("header round trip: %+v, %v", got, err)
		}
	})
}
