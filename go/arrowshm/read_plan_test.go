package arrowshm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"pgregory.net/rapid"
)

// withoutReadPlan makes a Reader decode every IPC record batch through
// arrow-go's ipc.Reader (the general path), to compare with the plan.
func withoutReadPlan() ReaderOption { return func(m *slotMessages) { m.noPlan = true } }

// readPlanKinds are the columnTypes the read plan decodes.
var readPlanKinds = func() (k []int) {
	for i, dt := range columnTypes {
		if newReadPlan(arrow.NewSchema([]arrow.Field{{Name: "c", Type: dt}}, nil)) != nil {
			k = append(k, i)
		}
	}
	return k
}()

// readPlanned publishes msgs on a new ring and reads them with a Reader
// made with opts, as readMsgs does (every slot given back after an
// error); it also returns how many records the read plans (IPC and
// C-Data-offsets flat) decoded.
func readPlanned(t vtb, msgs []slotMsg, opts ...ReaderOption) ([]arrow.RecordBatch, uint64, error) {
	t.Helper()
	r := newRing(t, 16, 1<<16)
	defer r.Close()
	rd := NewReader(subscribe(t, r), opts...)
	defer rd.Release()
	p := producer(t, r)
	for _, m := range msgs {
		if err := p.Send(m.b, m.flags); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	got, err := receiveAll(rd)
	var planned uint64
	if rd.msgs.rplan != nil {
		planned = rd.msgs.rplan.batches
	}
	if rd.msgs.cplan != nil && rd.msgs.cplan.flat != nil {
		planned += rd.msgs.cplan.flat.batches
	}
	if err != nil {
		release(got)
		if held := r.Stat().Consumers[0].LeasesHeld; held != 0 {
			t.Fatalf("%d leases held after the error %v", held, err)
		}
		return nil, planned, err
	}
	if r.Stat().Consumers[0].LeasesHeld != 0 && !rd.msgs.zeroCopy {
		t.Fatalf("copied records hold slots")
	}
	return got, planned, nil
}

// sameData reports how the array data a and b differ: type, length, null
// count, offset, and each buffer (nil or not, bytes), dictionaries
// included.
func sameData(a, b arrow.ArrayData) error {
	if !arrow.TypeEqual(a.DataType(), b.DataType()) || a.Len() != b.Len() || a.NullN() != b.NullN() || a.Offset() != b.Offset() {
		return fmt.Errorf("%s len %d nulls %d offset %d, want %s len %d nulls %d offset %d",
			a.DataType(), a.Len(), a.NullN(), a.Offset(), b.DataType(), b.Len(), b.NullN(), b.Offset())
	}
	ab, bb := a.Buffers(), b.Buffers()
	if len(ab) != len(bb) {
		return fmt.Errorf("%d buffers, want %d", len(ab), len(bb))
	}
	for i := range ab {
		if (ab[i] == nil) != (bb[i] == nil) {
			return fmt.Errorf("buffer %d: nil %v, want nil %v", i, ab[i] == nil, bb[i] == nil)
		}
		if ab[i] != nil && !bytes.Equal(ab[i].Bytes(), bb[i].Bytes()) {
			return fmt.Errorf("buffer %d: % x, want % x", i, ab[i].Bytes(), bb[i].Bytes())
		}
	}
	if len(a.Children()) != 0 || len(b.Children()) != 0 {
		return fmt.Errorf("children in a flat column")
	}
	da, db := dictOf(a), dictOf(b)
	if (da == nil) != (db == nil) {
		return fmt.Errorf("dictionary %v, want %v", da != nil, db != nil)
	}
	if da != nil {
		if err := sameData(da, db); err != nil {
			return fmt.Errorf("dictionary: %w", err)
		}
	}
	return nil
}

// The read plan decodes every batch of a flat schema (each plannable type,
// nulls or not, sliced or not, dictionaries kept or replaced) into the
// very arrays arrow-go's ipc.Reader builds (same buffers, nil where it
// leaves them nil), in place and copied, validating or trusted; and with
// random bytes changed in any dictionary or record batch, it gives the
// same error (text and all) or the same records as the general path.
func TestReadPlanMatchesTheGeneralPath(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		kinds := rapid.SliceOfN(rapid.SampledFrom(readPlanKinds), 1, 5).Draw(rt, "kinds")
		nulls := rapid.Bool().Draw(rt, "nulls")
		seed := rapid.Uint64().Draw(rt, "seed")
		mem := memory.DefaultAllocator
		var recs []arrow.RecordBatch
		for i := range rapid.IntRange(1, 3).Draw(rt, "records") {
			rows := rapid.IntRange(0, 60).Draw(rt, "rows")
			off := rapid.IntRange(0, 9).Draw(rt, "offset")
			rec := randomRecord(mem, seed+uint64(i), kinds, rows, off, nulls)
			recs = append(recs, rec, rec) // the second keeps its dictionaries
			rec.Retain()
		}
		defer release(recs)
		msgs := ipcMessages(rt, recs...)
		damage := rapid.Bool().Draw(rt, "damage")
		if damage {
			i := rapid.IntRange(1, len(msgs)-1).Draw(rt, "message")
			b := append([]byte(nil), msgs[i].b...)
			for range rapid.IntRange(1, 6).Draw(rt, "flips") {
				at := rapid.IntRange(0, len(b)-1).Draw(rt, "at")
				b[at] ^= rapid.Byte().Draw(rt, "xor") | 1
			}
			msgs = append([]slotMsg(nil), msgs...)
			msgs[i].b = b
		}
		got, planned := readBothWays(rt, msgs, "the general path")
		defer release(got)
		if !damage {
			if err := sameRecords(recs, got); err != nil {
				rt.Fatal(err)
			}
			// Each record with rows is the plan's unless a dictionary
			// batch comes right before it: the general path reads that
			// one, and the plan takes the dictionaries from it. (A writer
			// sends no dictionary batch for a dictionary equal to the one
			// it sent last, so the first record of a new dictionary may
			// be the plan's too.)
			var want uint64
			ri, afterDict := 0, false
			for _, m := range msgs {
				switch m.flags {
				case FlagIPCDictionaryBatch:
					afterDict = true
				case FlagIPCRecordBatch:
					if recs[ri].NumRows() > 0 && !afterDict {
						want++
					}
					ri, afterDict = ri+1, false
				}
			}
			if planned != want {
				rt.Fatalf("the plan decoded %d records, want %d", planned, want)
			}
		}
	})
}

// readBothWays reads msgs with the read plans and without them (general:
// what the test calls the path without), in place or copied, validating or
// trusted as drawn, and fails unless both give the same error text and the
// same records, buffer for buffer. It returns the planned records (the
// caller releases them) and how many of them the plans decoded.
func readBothWays(rt *rapid.T, msgs []slotMsg, general string) ([]arrow.RecordBatch, uint64) {
	var opts []ReaderOption
	if rapid.Bool().Draw(rt, "in place") {
		opts = append(opts, WithZeroCopy())
	}
	if rapid.Bool().Draw(rt, "trusted") {
		opts = append(opts, WithTrustedProducer())
	}
	want, _, wantErr := readPlanned(rt, msgs, append(opts, withoutReadPlan())...)
	defer release(want)
	got, planned, err := readPlanned(rt, msgs, opts...)
	ok := false
	defer func() { // a failed check stops the test here: release what was read
		if !ok {
			release(got)
		}
	}()
	if fmt.Sprint(err) != fmt.Sprint(wantErr) {
		rt.Fatalf("planned: error %v, %s's %v", err, general, wantErr)
	}
	if len(got) != len(want) {
		rt.Fatalf("planned: %d records, %s %d", len(got), general, len(want))
	}
	for i := range got {
		if !got[i].Schema().Equal(want[i].Schema()) || got[i].NumRows() != want[i].NumRows() {
			rt.Fatalf("record %d: %v, want %v", i, got[i], want[i])
		}
		for j := range got[i].Columns() {
			if err := sameData(got[i].Column(j).Data(), want[i].Column(j).Data()); err != nil {
				rt.Fatalf("record %d column %d: %v", i, j, err)
			}
		}
	}
	ok = true
	return got, planned
}

// Damage inside a planned batch that only the full checks see is refused
// with the general path's error, naming the slot: null counts, offsets,
// UTF-8, dictionary keys, buffer sizes.
func TestReadPlanRefusesDamage(t *testing.T) {
	mem := memory.DefaultAllocator
	// int64 (nulls), string, bool, dictionary<int32, string>
	kinds := []int{3, 11, 10, len(columnTypes) - 1}
	rec := randomRecord(mem, 7, kinds, 40, 0, true)
	defer rec.Release()
	msgs := ipcMessages(t, rec, rec)
	last := len(msgs) - 1
	if msgs[last].flags != FlagIPCRecordBatch || msgs[last-1].flags != FlagIPCRecordBatch {
		t.Fatalf("unexpected messages %v", msgs)
	}
	_, bufs := body(t, msgs[last].b)
	// Buffers: 0–1 int64, 2–4 string, 5–6 bool, 7–8 dictionary keys.
	cases := []struct {
		name string
		f    func(b []byte, bufs [][2]int64)
	}{
		{"null count disagrees with the bitmap", func(b []byte, bufs [][2]int64) {
			for i := range bufs[0][1] {
				b[bufs[0][0]+i] = 0xff
			}
		}},
		{"string offset past the values", func(b []byte, bufs [][2]int64) { put32le(b, bufs[3], 40, 1<<20) }},
		{"decreasing string offsets", func(b []byte, bufs [][2]int64) { put32le(b, bufs[3], 20, 0) }},
		{"negative first offset", func(b []byte, bufs [][2]int64) { put32le(b, bufs[3], 0, 0xffffffff) }},
		{"invalid utf-8", func(b []byte, bufs [][2]int64) { b[bufs[4][0]] = 0xff }},
		{"dictionary key out of range", func(b []byte, bufs [][2]int64) {
			for i := range 40 {
				put32le(b, bufs[8], i, 100)
			}
		}},
		{"negative dictionary key", func(b []byte, bufs [][2]int64) {
			for i := range 40 {
				put32le(b, bufs[8], i, 0x80000000)
			}
		}},
	}
	if len(bufs) != 9 {
		t.Fatalf("%d buffers", len(bufs))
	}
	for _, trusted := range []bool{false, true} {
		for _, inPlace := range []bool{false, true} {
			var opts []ReaderOption
			if inPlace {
				opts = append(opts, WithZeroCopy())
			}
			if trusted {
				opts = append(opts, WithTrustedProducer())
			}
			got, planned, err := readPlanned(t, msgs, opts...)
			release(got)
			if err != nil || planned != 1 {
				t.Fatalf("undamaged: %v, %d planned", err, planned)
			}
			for _, c := range cases {
				bad := damaged(t, msgs, last, c.f)
				want, _, wantErr := readPlanned(t, bad, append(opts, withoutReadPlan())...)
				release(want)
				got, _, err := readPlanned(t, bad, opts...)
				release(got)
				if fmt.Sprint(err) != fmt.Sprint(wantErr) || len(got) != len(want) {
					t.Errorf("trusted %v, in place %v, %s: %v (%d records), the general path %v (%d)", trusted, inPlace, c.name, err, len(got), wantErr, len(want))
				}
				if !trusted && !errors.Is(err, ErrCorrupt) {
					t.Errorf("%s: %v, want ErrCorrupt", c.name, err)
				}
			}
		}
	}
}

func put32le(b []byte, buf [2]int64, at int, v uint32) {
	b[buf[0]+int64(at)*4] = byte(v)
	b[buf[0]+int64(at)*4+1] = byte(v >> 8)
	b[buf[0]+int64(at)*4+2] = byte(v >> 16)
	b[buf[0]+int64(at)*4+3] = byte(v >> 24)
}

// A planned record read in place allocates a handful of objects (the
// record, its arrays, their data and buffers), not arrow-go's loader's.
func TestReadPlanAllocations(t *testing.T) {
	rec := randomRecord(memory.DefaultAllocator, 1, []int{3}, 1, 0, false)
	defer rec.Release()
	r := newRing(t, 4, 1<<16)
	defer r.Close()
	rd := NewReader(subscribe(t, r), WithZeroCopy())
	defer rd.Release()
	w := NewWriter(producer(t, r), rec.Schema())
	defer w.Close()
	step := func() {
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		if !rd.Next() {
			t.Fatal(rd.Err())
		}
	}
	step()
	// 6: the record (its column slice inline), the array, its data and
	// buffer slots, the buffer (which releases the slot itself: the only
	// one in it), the ring's lease.
	if n := testing.AllocsPerRun(100, step); n > 6 {
		t.Errorf("%.0f allocations per 1-row int64 batch written and read", n)
	}
	if rd.msgs.rplan == nil || rd.msgs.rplan.batches < 100 {
		t.Fatalf("the plan was not used")
	}
}

// cdataMsgs returns the messages a CDataWriter publishes for recs.
func cdataMsgs(t vtb, recs ...arrow.RecordBatch) []slotMsg {
	t.Helper()
	r := newRing(t, 16, 1<<16)
	defer r.Close()
	c := subscribe(t, r)
	w, err := NewCDataWriter(producer(t, r), recs[0].Schema())
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	return drained(c)
}

// The C-Data-offsets flat plan decodes every batch of a flat schema
// (sliced arrays keep their offsets) into the very arrays the general walk
// builds, in place and copied, validating or trusted; with random bytes
// changed anywhere in a batch (header, data, descriptor) it gives the same
// error text or the same records as the general walk.
func TestCDataFlatPlanMatchesTheGeneralWalk(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		kinds := rapid.SliceOfN(rapid.SampledFrom(readPlanKinds), 1, 5).Draw(rt, "kinds")
		nulls := rapid.Bool().Draw(rt, "nulls")
		seed := rapid.Uint64().Draw(rt, "seed")
		var recs []arrow.RecordBatch
		for i := range rapid.IntRange(1, 3).Draw(rt, "records") {
			rows := rapid.IntRange(0, 60).Draw(rt, "rows")
			off := rapid.IntRange(0, 9).Draw(rt, "offset")
			recs = append(recs, randomRecord(memory.DefaultAllocator, seed+uint64(i), kinds, rows, off, nulls))
		}
		defer release(recs)
		msgs := cdataMsgs(rt, recs...)
		damage := rapid.Bool().Draw(rt, "damage")
		if damage {
			i := rapid.IntRange(1, len(msgs)-1).Draw(rt, "message")
			b := append([]byte(nil), msgs[i].b...)
			for range rapid.IntRange(1, 6).Draw(rt, "flips") {
				// Half the flips in the header and descriptor (its end).
				at := rapid.IntRange(0, len(b)-1).Draw(rt, "at")
				if rapid.Bool().Draw(rt, "descriptor") {
					at = len(b) - 1 - rapid.IntRange(0, min(len(b)-1, 400)).Draw(rt, "from end")
				}
				b[at] ^= rapid.Byte().Draw(rt, "xor") | 1
			}
			msgs = append([]slotMsg(nil), msgs...)
			msgs[i].b = b
		}
		got, planned := readBothWays(rt, msgs, "the general walk")
		defer release(got)
		if !damage {
			if err := sameRecords(recs, got); err != nil {
				rt.Fatal(err)
			}
			if planned != uint64(len(recs)) {
				rt.Fatalf("the flat plan decoded %d records, want %d", planned, len(recs))
			}
		}
	})
}

// cdataBuffers returns the payload offset and length of every buffer of a
// C-Data-offsets message, in descriptor order.
func cdataBuffers(t vtb, msg []byte) [][2]int64 {
	h, err := parseCDataHeader(msg)
	if err != nil {
		t.Fatalf("%v", err)
	}
	var out [][2]int64
	pos := int(h.descOff)
	for range h.nodes {
		nbuf := int(binary.LittleEndian.Uint32(msg[pos+24:]))
		pos += cdataNodeSize
		for range nbuf {
			out = append(out, [2]int64{int64(binary.LittleEndian.Uint64(msg[pos:])), int64(binary.LittleEndian.Uint64(msg[pos+8:]))})
			pos += cdataBufferSize
		}
	}
	return out
}

// Damage inside a C-Data-offsets batch that only the full checks see is
// refused by the flat plan's checks and reported by the general walk, with
// its error: null counts, offsets, UTF-8, dictionary keys and values.
func TestCDataFlatPlanRefusesDamage(t *testing.T) {
	// int64 (nulls), string, bool, dictionary<int32, string>
	kinds := []int{3, 11, 10, len(columnTypes) - 1}
	rec := randomRecord(memory.DefaultAllocator, 7, kinds, 40, 3, true)
	defer rec.Release()
	msgs := cdataMsgs(t, rec)
	last := len(msgs) - 1
	bufs := cdataBuffers(t, msgs[last].b)
	if len(bufs) != 12 || msgs[last].flags != FlagCDataOffsets {
		t.Fatalf("%d buffers, flags %d", len(bufs), msgs[last].flags)
	}
	// Buffers: 0–1 int64, 2–4 string, 5–6 bool, 7–8 dictionary keys,
	// 9–11 dictionary values; the arrays are sliced at 3.
	put := func(b []byte, buf [2]int64, at int, v uint32) {
		binary.LittleEndian.PutUint32(b[buf[0]+int64(at)*4:], v)
	}
	cases := []struct {
		name string
		f    func(b []byte)
	}{
		{"null count disagrees with the bitmap", func(b []byte) {
			for i := range bufs[0][1] {
				b[bufs[0][0]+i] = 0xff
			}
		}},
		{"string offset past the values", func(b []byte) { put(b, bufs[3], 43, 1<<20) }},
		{"decreasing string offsets", func(b []byte) { put(b, bufs[3], 20, 0) }},
		{"negative first offset", func(b []byte) { put(b, bufs[3], 3, 0xffffffff) }},
		{"invalid utf-8", func(b []byte) {
			for i := range bufs[4][1] {
				b[bufs[4][0]+i] = 0xff
			}
		}},
		{"dictionary key out of range", func(b []byte) {
			for i := range 43 {
				put(b, bufs[8], i, 100)
			}
		}},
		{"negative dictionary key", func(b []byte) {
			for i := range 43 {
				put(b, bufs[8], i, 0x80000000)
			}
		}},
		{"dictionary value utf-8", func(b []byte) {
			for i := range bufs[11][1] {
				b[bufs[11][0]+i] = 0xc0
			}
		}},
	}
	for _, trusted := range []bool{false, true} {
		for _, inPlace := range []bool{false, true} {
			var opts []ReaderOption
			if inPlace {
				opts = append(opts, WithZeroCopy())
			}
			if trusted {
				opts = append(opts, WithTrustedProducer())
			}
			got, planned, err := readPlanned(t, msgs, opts...)
			release(got)
			if err != nil || planned != 1 {
				t.Fatalf("undamaged: %v, %d planned", err, planned)
			}
			for _, c := range cases {
				bad := append([]slotMsg(nil), msgs...)
				bad[last].b = bytes.Clone(msgs[last].b)
				c.f(bad[last].b)
				want, _, wantErr := readPlanned(t, bad, append(opts, withoutReadPlan())...)
				release(want)
				got, _, err := readPlanned(t, bad, opts...)
				release(got)
				if fmt.Sprint(err) != fmt.Sprint(wantErr) || len(got) != len(want) {
					t.Errorf("trusted %v, in place %v, %s: %v (%d records), the general walk %v (%d)", trusted, inPlace, c.name, err, len(got), wantErr, len(want))
				}
				if !trusted && !errors.Is(err, ErrCorrupt) {
					t.Errorf("%s: %v, want ErrCorrupt", c.name, err)
				}
			}
		}
	}
}

// Batches the Rust writers write (alloy send, both modes) take the read
// plans: a flat stream of int64 with nulls, utf8, bool and a dictionary,
// read in place and copied, comes back equal with every batch but the
// first of each dictionary decoded by a plan.
func TestRustWrittenBatchesTakeTheReadPlans(t *testing.T) {
	bin := alloyBin(t)
	kinds := []int{3, 11, 10, len(columnTypes) - 1}
	rec := randomRecord(memory.DefaultAllocator, 5, kinds, 50, 0, true)
	defer rec.Release()
	want := []arrow.RecordBatch{rec, rec, rec}
	in := filepath.Join(t.TempDir(), "in.arrows")
	writeStreamFile(t, in, want)
	for _, mode := range []string{"ipc", "cdata"} {
		for _, zeroCopy := range []bool{false, true} {
			r := namedRing(t)
			var opts []ReaderOption
			if zeroCopy {
				opts = append(opts, WithZeroCopy())
			}
			rd := NewReader(subscribe(t, r), opts...)
			out, err := exec.Command(bin, "send", "--ring", r.Name(), "--mode", mode, in).CombinedOutput()
			if err != nil {
				t.Fatalf("alloy send --mode %s: %v: %s", mode, err, out)
			}
			got, err := receiveAll(rd)
			if err == nil {
				err = sameRecords(want, got)
			}
			release(got)
			var planned uint64
			if p := rd.msgs.rplan; p != nil {
				planned += p.batches
			}
			if p := rd.msgs.cplan; p != nil && p.flat != nil {
				planned += p.flat.batches
			}
			rd.Release()
			wantPlanned := map[string]uint64{"ipc": 2, "cdata": 3}[mode]
			if err != nil || planned != wantPlanned {
				t.Errorf("--mode %s, in place %v: %v; %d batches planned, want %d", mode, zeroCopy, err, planned, wantPlanned)
			}
		}
	}
}
