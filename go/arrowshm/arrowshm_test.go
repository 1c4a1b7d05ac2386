package arrowshm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"pgregory.net/rapid"

	"github.com/ignalina/alloy/go/internal/ipcframe"
	"github.com/ignalina/alloy/go/ring"
)

// tb is what the helpers need of *testing.T and *rapid.T.
type tb interface {
	Fatal(args ...any)
	Cleanup(func())
}

func newRing(t tb, slots, size uint32) *ring.Ring {
	cfg := ring.DefaultConfig()
	cfg.SlotCount, cfg.SlotSize, cfg.SchemaCapacity = slots, size, 1<<14
	r, err := ring.CreateAnonymous("arrowshm-test", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// The ring's mapping (and its memfd) goes only when the ring and every
// producer and consumer made from it are closed (ring.Ring.Close), so the
// helpers close what they make at t's cleanup too: for a *rapid.T that is
// the end of the check, not of the test, and a property test holds one
// check's rings at a time (Close after the code under test closed it
// already is ErrClosed, ignored).

func producer(t tb, r *ring.Ring) *ring.Producer {
	p, err := r.NewProducer(ring.ProducerOptions{Backpressure: ring.Backpressure{Kind: ring.Block}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func subscribe(t tb, r *ring.Ring) *ring.Consumer {
	c, err := r.Subscribe(ring.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sendAll writes recs (and closes) on a goroutine; the error arrives on the
// returned channel.
func sendAll(w *Writer, recs []arrow.RecordBatch) chan error {
	done := make(chan error, 1)
	go func() {
		for _, rec := range recs {
			if err := w.Write(rec); err != nil {
				w.Close()
				done <- err
				return
			}
		}
		done <- w.Close()
	}()
	return done
}

// receiveAll reads every record (retained) until end of stream.
func receiveAll(rd *Reader) ([]arrow.RecordBatch, error) {
	var got []arrow.RecordBatch
	for rd.Next() {
		rec := rd.RecordBatch()
		rec.Retain()
		got = append(got, rec)
	}
	return got, rd.Err()
}

func sameRecords(want, got []arrow.RecordBatch) error {
	if len(want) != len(got) {
		return fmt.Errorf("%d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !want[i].Schema().Equal(got[i].Schema()) {
			return fmt.Errorf("record %d: schema %v, want %v", i, got[i].Schema(), want[i].Schema())
		}
		if !array.RecordEqual(want[i], got[i]) {
			return fmt.Errorf("record %d differs:\n got %v\nwant %v", i, got[i], want[i])
		}
	}
	return nil
}

func release(recs []arrow.RecordBatch) {
	for _, r := range recs {
		r.Release()
	}
}

func TestRoundTripRandomRecords(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		kinds := rapid.SliceOfN(rapid.IntRange(0, len(columnTypes)-1), 1, 6).Draw(t, "kinds")
		n := rapid.IntRange(1, 4).Draw(t, "records")
		nulls := rapid.Bool().Draw(t, "nulls")
		seed := rapid.Uint64().Draw(t, "seed")
		mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
		var want []arrow.RecordBatch
		for i := range n {
			rows := rapid.IntRange(0, 300).Draw(t, "rows")
			off := rapid.IntRange(0, 20).Draw(t, "offset")
			want = append(want, randomRecord(mem, seed+uint64(i), kinds, rows, off, nulls))
		}
		r := newRing(t, 8, 1<<20)
		rd := NewReader(subscribe(t, r))
		done := sendAll(NewWriter(producer(t, r), want[0].Schema()), want)
		got, err := receiveAll(rd)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err := sameRecords(want, got); err != nil {
			t.Fatal(err)
		}
		release(got)
		rd.Release()
		release(want)
		if n := mem.CurrentAlloc(); n != 0 {
			t.Fatalf("%d bytes still allocated", n)
		}
	})
}

// TestWriterAlignsEveryBuffer checks LAYOUT.md §8.1 on the raw slots.
func TestWriterAlignsEveryBuffer(t *testing.T) {
	all := make([]int, len(columnTypes))
	for i := range all {
		all[i] = i
	}
	rec := randomRecord(memory.DefaultAllocator, 7, all, 333, 5, true)
	defer rec.Release()
	r := newRing(t, 16, 1<<20)
	c := subscribe(t, r)
	done := sendAll(NewWriter(producer(t, r), rec.Schema()), []arrow.RecordBatch{rec, rec})
	flags := map[uint32]int{}
	for {
		l, err := c.Recv()
		if err != nil {
			break
		}
		b := l.Bytes()
		flags[l.Flags()]++
		hdr := 8 + int(int32(binary.LittleEndian.Uint32(b[4:])))
		if hdr%64 != 0 {
			t.Errorf("seq %d: body starts at %d", l.Seq(), hdr)
		}
		info, err := ipcframe.Parse(b[8:hdr])
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) != int64(hdr)+info.BodyLen {
			t.Errorf("seq %d: len %d, header %d + body %d", l.Seq(), len(b), hdr, info.BodyLen)
		}
		for i := range info.NBufs {
			if off, _ := info.Buffer(b[8:hdr], i); off%64 != 0 {
				t.Errorf("seq %d: buffer %d at body offset %d", l.Seq(), i, off)
			}
		}
		if _, _, err := decodeFrame(b, l.Flags()); err != nil {
			t.Errorf("seq %d: %v", l.Seq(), err)
		}
		l.Release()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Schema, one dictionary (the same dictionary is not resent), two batches.
	want := map[uint32]int{FlagIPCSchema: 1, FlagIPCDictionaryBatch: 1, FlagIPCRecordBatch: 2}
	if fmt.Sprint(flags) != fmt.Sprint(want) {
		t.Errorf("flags %v, want %v", flags, want)
	}
	if b, _ := r.Schema(); len(b) == 0 {
		t.Error("schema area is empty")
	}
}

func TestOversizedRecordIsSplit(t *testing.T) {
	rec := randomRecord(memory.DefaultAllocator, 1, []int{3, 11}, 5000, 0, true)
	defer rec.Release()
	r := newRing(t, 8, 16<<10)
	rd := NewReader(subscribe(t, r))
	w := NewWriter(producer(t, r), rec.Schema())
	done := sendAll(w, []arrow.RecordBatch{rec})
	got, err := receiveAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(got) < 4 {
		t.Fatalf("%d records: a 5000-row record should not fit in a 16 KiB slot", len(got))
	}
	joined, err := array.Concatenate(columns(got, 0), memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	if !array.Equal(joined, rec.Column(0)) {
		t.Error("split parts do not add up to the record")
	}
}

func columns(recs []arrow.RecordBatch, i int) []arrow.Array {
	out := make([]arrow.Array, len(recs))
	for k, r := range recs {
		out[k] = r.Column(i)
	}
	return out
}

func TestLateJoinerReadsTheSchemaArea(t *testing.T) {
	rec := randomRecord(memory.DefaultAllocator, 3, []int{2, 11}, 10, 0, true)
	defer rec.Release()
	r := newRing(t, 8, 1<<16)
	w := NewWriter(producer(t, r), rec.Schema())
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	rd := NewReader(subscribe(t, r))
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	w.Close()
	got, err := receiveAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameRecords([]arrow.RecordBatch{rec}, got); err != nil {
		t.Fatal(err)
	}
}

// damagedStream sends a valid schema then `bytes` with `flags` on a raw
// producer and returns the reader's error.
func damagedStream(t *testing.T, schemaMsg, bytes []byte, flags uint32) error {
	r := newRing(t, 8, 1<<16)
	rd := NewReader(subscribe(t, r))
	p := producer(t, r)
	if err := p.Send(schemaMsg, FlagIPCSchema); err != nil {
		t.Fatal(err)
	}
	if err := p.Send(bytes, flags); err != nil {
		t.Fatal(err)
	}
	p.Close()
	got, err := receiveAll(rd)
	release(got)
	return err
}

// encodedMessages returns the raw slots a Writer produces for rec.
func encodedMessages(t *testing.T, rec arrow.RecordBatch) [][]byte {
	r := newRing(t, 8, 1<<16)
	c := subscribe(t, r)
	w := NewWriter(producer(t, r), rec.Schema())
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var out [][]byte
	for {
		l, err := c.Recv()
		if err != nil {
			return out
		}
		out = append(out, append([]byte(nil), l.Bytes()...))
		l.Release()
	}
}

func TestDamagedMessagesAreErrors(t *testing.T) {
	rec := randomRecord(memory.DefaultAllocator, 5, []int{3, 11, 21}, 50, 0, true)
	defer rec.Release()
	msgs := encodedMessages(t, rec)
	schema, batch := msgs[0], msgs[1]
	if err := damagedStream(t, schema, batch, FlagIPCRecordBatch); err != nil {
		t.Fatalf("the undamaged message fails: %v", err)
	}
	cases := []struct {
		name  string
		bytes []byte
		flags uint32
		want  error
	}{
		{"empty", nil, FlagIPCRecordBatch, ErrCorrupt},
		{"truncated", batch[:len(batch)/2], FlagIPCRecordBatch, ErrCorrupt},
		{"no marker", append([]byte{0, 0, 0, 0}, batch[4:]...), FlagIPCRecordBatch, ErrCorrupt},
		{"huge metadata", append(append([]byte(nil), batch[:4]...), append([]byte{0xff, 0xff, 0xff, 0x7f}, batch[8:]...)...), FlagIPCRecordBatch, ErrCorrupt},
		{"wrong flag", batch, FlagIPCDictionaryBatch, ErrCorrupt},
		{"cdata", batch, FlagCDataOffsets, ErrCorrupt},
		{"raw", batch, FlagRaw, ErrUnknownFlags},
		{"high bits", batch, 0x101, ErrUnknownFlags},
	}
	for _, c := range cases {
		if err := damagedStream(t, schema, c.bytes, c.flags); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	// Random damage: an error or a record, never a panic.
	rapid.Check(t, func(rt *rapid.T) {
		b := append([]byte(nil), batch...)
		for range rapid.IntRange(1, 6).Draw(rt, "flips") {
			i := rapid.IntRange(0, len(b)-1).Draw(rt, "at")
			b[i] ^= rapid.Byte().Draw(rt, "xor") | 1
		}
		_ = damagedStream(t, schema, b, FlagIPCRecordBatch)
	})
}

func TestSchemaChangeIsRejected(t *testing.T) {
	a := randomRecord(memory.DefaultAllocator, 1, []int{2}, 5, 0, false)
	b := randomRecord(memory.DefaultAllocator, 1, []int{3}, 5, 0, false)
	defer a.Release()
	defer b.Release()
	w := NewWriter(producer(t, newRing(t, 8, 1<<16)), a.Schema())
	if err := w.Write(b); err == nil {
		t.Error("a record with another schema was accepted")
	}
	w.Close()
	other := encodedMessages(t, b)[0]
	if err := damagedStream(t, encodedMessages(t, a)[0], other, FlagIPCSchema); !errors.Is(err, ErrSchemaChanged) {
		t.Errorf("got %v, want ErrSchemaChanged", err)
	}
	same := encodedMessages(t, a)[0]
	if err := damagedStream(t, same, same, FlagIPCSchema); err != nil {
		t.Errorf("a repeated identical schema: %v", err)
	}
}

// Both writers remember the last record schema found equal to the stream's
// (so a schema made per batch is compared once); that shortcut must not let
// another schema through after an equal one, planned write or not.
func TestSchemaShortcutStillRejects(t *testing.T) {
	a := randomRecord(memory.DefaultAllocator, 1, []int{3}, 5, 0, false)
	a2 := randomRecord(memory.DefaultAllocator, 2, []int{3}, 5, 0, false) // equal schema, another object
	b := randomRecord(memory.DefaultAllocator, 1, []int{2}, 5, 0, false)
	defer release([]arrow.RecordBatch{a, a2, b})
	if a.Schema() == a2.Schema() || !a.Schema().Equal(a2.Schema()) {
		t.Fatal("the test needs equal schemas in distinct objects")
	}
	w := NewWriter(producer(t, newRing(t, 8, 1<<16)), a.Schema())
	for _, rec := range []arrow.RecordBatch{a, a2, a2, a} { // the last three planned
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Write(b); err == nil {
		t.Error("Writer accepted a record with another schema after equal ones")
	}
	w.Close()
	cw, err := NewCDataWriter(producer(t, newRing(t, 8, 1<<16)), a.Schema())
	if err != nil {
		t.Fatal(err)
	}
	defer cw.Close()
	for _, rec := range []arrow.RecordBatch{a, a2, a2, a} {
		if err := cw.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := cw.Write(b); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Errorf("CDataWriter accepted a record with another schema after equal ones: %v", err)
	}
}
