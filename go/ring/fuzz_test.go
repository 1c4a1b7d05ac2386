//go:build linux

// Fuzz targets for the reader side against hostile memory.
//
// `go test ./ring` (and so `make test`) runs both targets over their seed
// corpus only: the seeds added with f.Add below plus the files under
// testdata/fuzz/<FuzzName>/ (crashers the fuzzer once found, kept as
// regression inputs). To actually fuzz, run one target at a time from go/:
//
//	go test -run '^$' -fuzz '^FuzzReadLayout$' -fuzztime 60s ./ring
//	go test -run '^$' -fuzz '^FuzzConsumeDamagedRing$' -fuzztime 60s ./ring
//
// Each new interesting input is first minimized (up to 60 s by default, during
// which the exec counter stands still); -fuzzminimizetime 5s keeps more of a
// short run for fuzzing. For a longer run raise -fuzztime (e.g. 30m, or 1000000x for a count of
// inputs) and, on a machine with cores to spare, -parallel (default
// GOMAXPROCS). The generated corpus is cached under $(go env GOCACHE)/fuzz
// and reused by later runs; a failing input is written to
// testdata/fuzz/<FuzzName>/ — commit it with the fix so the seed run keeps
// checking it.
package ring

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"unsafe"
)

// layoutSentinels are the only errors ReadLayout may report (LAYOUT §7).
var layoutSentinels = []error{ErrBadMagic, ErrVersionMismatch, ErrTruncated, ErrInvalidLayout, ErrNotInitialized}

func FuzzReadLayout(f *testing.F) {
	le := binary.LittleEndian
	files, err := filepath.Glob(filepath.Join(vectorDir, "*.bin"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files in %s: %v", vectorDir, err)
	}
	var valid []byte
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint64(len(b)))
		if filepath.Base(name) == "small.bin" {
			valid = b
		}
	}
	if valid == nil {
		f.Fatalf("%s/small.bin missing", vectorDir)
	}
	// Mutations of a valid header: each field pushed to an edge.
	mutate := func(off int, width int, v uint64, size uint64) {
		b := append([]byte(nil), valid[:HeaderSize]...)
		if width == 4 {
			le.PutUint32(b[off:], uint32(v))
		} else {
			le.PutUint64(b[off:], v)
		}
		f.Add(b, size)
	}
	full := uint64(len(valid))
	mutate(offSlotCount, 4, 1<<20, full)
	mutate(offSlotCount, 4, 1<<31, full)
	mutate(offSlotSize, 4, 1<<30, full)
	mutate(offSlotSize, 4, 0xFFFFFFC0, full)
	mutate(offMaxSubscribers, 4, 65, full)
	mutate(offMaxMembers, 4, 0, full)
	mutate(offSchemaCapacity, 4, 1<<24, full)
	mutate(offTotalSize, 8, ^uint64(0), ^uint64(0))
	mutate(offAlign, 4, 32, full)
	mutate(offFlags, 4, 1, full)
	mutate(offHeaderSize, 4, 512, full)
	mutate(offVersion, 4, 2, full)
	mutate(offMagic, 8, 0, full)
	f.Add(valid, full-1)                           // one byte short of total_size
	f.Add(valid[:HeaderSize], uint64(HeaderSize))  // size below total_size
	f.Add(valid[:HeaderSize-1], full)              // short image
	f.Add(valid[:HeaderSize], ^uint64(0))          // absurd size
	f.Add([]byte("ALLOYSHM"), uint64(8))           // magic only
	f.Add(make([]byte, HeaderSize), uint64(1<<40)) // all zero

	f.Fuzz(func(t *testing.T, data []byte, size uint64) {
		// One aligned copy (the atomic magic load) and one misaligned copy
		// (the plain load): both paths must agree.
		aligned := alignedBytes(uint64(len(data)) + 1)[:len(data)]
		copy(aligned, data)
		buf := alignedBytes(uint64(len(data)) + 1)
		odd := buf[1 : 1+len(data)]
		copy(odd, data)

		l, err := ReadLayout(aligned, size)
		l2, err2 := ReadLayout(odd, size)
		if l != l2 || (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("aligned and misaligned reads differ: %+v, %v vs %+v, %v", l, err, l2, err2)
		}
		if err != nil {
			for _, s := range layoutSentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error %v wraps none of the layout sentinels", err)
		}
		checkAcceptedLayout(t, l, size)
		// What was accepted must be exactly what the header says.
		if want, err := l.Config.Layout(); err != nil || want != l {
			t.Fatalf("accepted %+v, but its config gives %+v, %v", l, want, err)
		}
		if got := le.Uint64(data[offTotalSize:]); got != l.TotalSize {
			t.Fatalf("accepted total_size %d, header says %d", l.TotalSize, got)
		}
	})
}

// checkAcceptedLayout asserts the guarantees a reader builds on: the region
// fits in size and every offset it indexes with is in range and aligned.
func checkAcceptedLayout(t *testing.T, l Layout, size uint64) {
	t.Helper()
	if l.TotalSize > size {
		t.Fatalf("accepted TotalSize %d > size %d", l.TotalSize, size)
	}
	if l.SlotCount < 2 || l.SlotCount&(l.SlotCount-1) != 0 || l.SlotSize == 0 || l.MaxSubscribers == 0 || l.MaxMembers == 0 {
		t.Fatalf("accepted degenerate config %+v", l.Config)
	}
	for name, off := range map[string]uint64{
		"subs": l.SubsOff, "members": l.MembersOff, "done": l.DoneOff,
		"schema": l.SchemaOff, "slots": l.SlotsOff, "stride": l.SlotStride,
	} {
		if off%Align != 0 {
			t.Fatalf("%s offset %d is not %d-aligned (%+v)", name, off, Align, l)
		}
	}
	if l.SlotsOff%4096 != 0 {
		t.Fatalf("slots offset %d is not page-aligned", l.SlotsOff)
	}
	// Payload offsets are SlotsOff + i*stride + 64, aligned by the above;
	// check the first and last explicitly, and that the regions are ordered
	// and in bounds.
	n := uint64(l.SlotCount)
	for _, i := range []uint64{0, n - 1} {
		p := l.SlotsOff + i*l.SlotStride + SlotHeaderSize
		if p%Align != 0 || p+uint64(l.SlotSize) > l.TotalSize {
			t.Fatalf("payload of slot %d at %d (len %d) misaligned or past %d", i, p, l.SlotSize, l.TotalSize)
		}
	}
	if !(HeaderSize <= l.SubsOff && l.SubsOff < l.MembersOff && l.MembersOff < l.DoneOff &&
		l.DoneOff+uint64(l.MaxSubscribers)*n*8 <= l.SchemaOff &&
		l.SchemaOff+uint64(l.SchemaCapacity) <= l.SlotsOff && l.SlotsOff+n*l.SlotStride == l.TotalSize) {
		t.Fatalf("areas overlap or are out of order: %+v", l)
	}
}

// Damage script of FuzzConsumeDamagedRing: a sequence of ops, each one
// opcode byte followed by its operands (missing trailing bytes read as 0).
const (
	opPoke    = iota // off u16 (mod region size), value u8: one byte anywhere
	opField          // field u8, value u64: one protocol word (see field)
	opRecv           // TryRecv once
	opRelease        // release the oldest outstanding lease
	opCount
)

// Fields opField can overwrite, selected by the operand's low bits. Slot
// and subscriber indices come from the selector's high bits.
const (
	fPublished = iota
	fClosed
	fClaim
	fRelease
	fSubState
	fStamp
	fLen
	fFlags
	fDone
	fCount
)

// putField overwrites one protocol word the way a hostile peer would:
// atomically, as the protocol accesses it.
func putField(m []byte, l *Layout, sel uint8, v uint64) {
	k := uint32(sel>>4) % l.MaxSubscribers
	i := uint64(sel >> 4) // slot index, masked by slotOff / doneOff below
	switch (sel & 15) % fCount {
	case fPublished:
		u64At(m, offPublished).Store(v)
	case fClosed:
		u32At(m, offClosed).Store(uint32(v))
	case fClaim:
		u64At(m, l.subOff(k)+subClaim).Store(v)
	case fRelease:
		u64At(m, l.subOff(k)+subRelease).Store(v)
	case fSubState:
		u32At(m, l.subOff(k)+subState).Store(uint32(v))
	case fStamp:
		u64At(m, l.slotOff(i)+slotStamp).Store(v)
	case fLen:
		u32At(m, l.slotOff(i)+slotLen).Store(uint32(v))
	case fFlags:
		u32At(m, l.slotOff(i)+slotFlags).Store(uint32(v))
	case fDone:
		u64At(m, l.doneOff(k, i%uint64(l.SlotCount))).Store(v)
	}
}

// maxRecvs bounds the TryRecv calls of one input (script plus drain).
const maxRecvs = 32

func FuzzConsumeDamagedRing(f *testing.F) {
	le := binary.LittleEndian
	field := func(sel uint8, v uint64) []byte {
		b := []byte{opField, sel, 0, 0, 0, 0, 0, 0, 0, 0}
		le.PutUint64(b[2:], v)
		return b
	}
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	recv, rel := []byte{opRecv}, []byte{opRelease}
	f.Add(uint8(3), false, []byte{})                                             // undamaged
	f.Add(uint8(3), true, cat(recv, recv, rel, recv, rel, rel, recv))            // undamaged, closed
	f.Add(uint8(2), false, cat(field(fStamp, 99), recv, recv))                   // bad stamp
	f.Add(uint8(2), false, cat(field(fLen|1<<4, 65), recv, recv))                // len > slot_size
	f.Add(uint8(2), false, cat(field(fLen|1<<4, 0xFFFFFFFF), recv, recv))        // len huge
	f.Add(uint8(4), false, cat(field(fPublished, 1<<62), recv, recv, rel, recv)) // published far ahead
	f.Add(uint8(4), false, cat(field(fPublished, ^uint64(0))))                   // published at the top
	f.Add(uint8(1), false, cat(field(fClaim, ^uint64(0)-1), field(fPublished, ^uint64(0)), field(fStamp|15<<4, ^uint64(0)), recv, rel))
	f.Add(uint8(1), false, cat(field(fClaim, 1<<63), recv))                       // claim far ahead
	f.Add(uint8(3), false, cat(recv, field(fRelease, 1<<40), rel, recv, rel))     // release far ahead
	f.Add(uint8(3), false, cat(recv, field(fDone, 1), field(fDone|1<<4, 2), rel)) // forged done marks
	f.Add(uint8(2), true, cat(field(fClosed, 7), recv, recv, recv))
	f.Add(uint8(2), false, cat(field(fSubState, 0), recv, []byte{opPoke, 0x00, 0x10, 0xFF}, recv))
	f.Add(uint8(3), false, []byte{opPoke, 0x40, 0x00, 0x80, opRecv, opPoke, 0x48, 0x02, 0x01, opRecv})

	f.Fuzz(func(t *testing.T, nmsg uint8, closeStream bool, script []byte) {
		r, err := CreateAnonymous("fuzz", small)
		if err != nil {
			t.Fatal(err)
		}
		c, err := r.Subscribe(ConsumerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.NewProducer(ProducerOptions{Backpressure: Backpressure{Kind: Fail}})
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < int(nmsg%5); j++ { // at most SlotCount messages fit, each < 64 B
			if err := p.Send(opsMessage(j+2), uint32(j)); err != nil {
				t.Fatal(err)
			}
		}
		// The producer leaves before the damage: what is under test is the
		// reader. (Its heartbeat goroutine is stopped by then.)
		if closeStream {
			err = p.Close()
		} else {
			err = p.Detach()
		}
		if err != nil {
			t.Fatal(err)
		}

		m, l := r.mem, &r.lay
		// Leases point into the consumer's read-only mapping (LAYOUT §1).
		base := uintptr(unsafe.Pointer(&c.payload[0]))
		var leases []*Lease
		recvs := 0
		tryRecv := func() {
			recvs++
			lease, err := c.TryRecv()
			if err != nil {
				if lease != nil {
					t.Fatalf("TryRecv returned a lease and %v", err)
				}
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrEmpty) && err != io.EOF {
					t.Fatalf("TryRecv: untyped error %v", err)
				}
				return
			}
			if lease == nil {
				t.Fatal("TryRecv returned neither a lease nor an error")
			}
			b := lease.Bytes()
			if uint64(len(b)) > uint64(l.SlotSize) || uint64(cap(b)) > uint64(l.SlotSize) {
				t.Fatalf("lease seq %d: len %d cap %d > slot size %d", lease.Seq(), len(b), cap(b), l.SlotSize)
			}
			payload := l.slotOff(lease.Seq()) + SlotHeaderSize
			if len(b) > 0 {
				start := uint64(uintptr(unsafe.Pointer(&b[0])) - base)
				if uintptr(unsafe.Pointer(&b[0])) < base || start != payload ||
					start+uint64(cap(b)) > payload+uint64(l.SlotSize) || start+uint64(len(b)) > uint64(len(m)) {
					t.Fatalf("lease seq %d: bytes at %d+%d, slot payload at %d", lease.Seq(), start, len(b), payload)
				}
			}
			leases = append(leases, lease)
		}

		for len(script) > 0 && recvs < maxRecvs {
			op := script[0] % opCount
			script = script[1:]
			arg := func(n int) []byte {
				var b [9]byte
				k := copy(b[:n], script)
				script = script[k:]
				return b[:n]
			}
			switch op {
			case opPoke:
				a := arg(3)
				m[uint64(le.Uint16(a))%uint64(len(m))] = a[2]
			case opField:
				a := arg(9)
				putField(m, l, a[0], le.Uint64(a[1:]))
			case opRecv:
				tryRecv()
			case opRelease:
				if len(leases) > 0 {
					leases[0].Release()
					leases = leases[1:]
				}
			}
		}
		// Drain: whatever state the damage left, the reader must keep
		// answering with typed errors or valid leases.
		for recvs < maxRecvs {
			tryRecv()
			for _, lease := range leases {
				lease.Release()
				lease.Release() // a second release is a no-op
			}
			leases = leases[:0]
		}

		for _, lease := range leases {
			lease.Release()
		}
		// Undo damage to the table lock only (a forged live holder would
		// make the detach below wait forever, as it should), then detach.
		// With every lease released the consumer detaches at once and the
		// Ring's Close unmaps the region.
		u64At(m, offTableLock).Store(0)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil || r.reg.mem != nil {
			t.Fatalf("region still mapped after every handle closed: %v", err)
		}
	})
}
