package arrowshm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"pgregory.net/rapid"

	"github.com/ignalina/alloy/go/internal/ipcframe"
	"github.com/ignalina/alloy/go/ring"
)

// slotMsg is one message as a producer publishes it.
type slotMsg struct {
	b     []byte
	flags uint32
}

// ipcMessages returns the messages a Writer publishes for recs: the
// schema, then dictionary and record batches.
func ipcMessages(t vtb, recs ...arrow.RecordBatch) []slotMsg {
	t.Helper()
	r := newRing(t, 16, 1<<16)
	c := subscribe(t, r)
	w := NewWriter(producer(t, r), recs[0].Schema())
	for _, rec := range recs {
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	return drained(c)
}

// drained returns copies of the messages left on c, up to the end of its
// stream.
func drained(c *ring.Consumer) []slotMsg {
	var out []slotMsg
	for {
		l, err := c.Recv()
		if err != nil {
			return out
		}
		out = append(out, slotMsg{append([]byte(nil), l.Bytes()...), l.Flags()})
		l.Release()
	}
}

// vtb is what these helpers need of *testing.T and *rapid.T.
type vtb interface {
	tb
	Helper()
	Fatalf(format string, args ...any)
}

// readMsgs publishes msgs on a new ring and reads them with a Reader made
// with opts: the records (retained) and the Reader's error. When reading
// fails, it checks that the Reader gave every slot back (the message that
// failed included, however far arrow-go got with it).
func readMsgs(t vtb, msgs []slotMsg, opts ...ReaderOption) ([]arrow.RecordBatch, error) {
	t.Helper()
	r := newRing(t, 16, 1<<16)
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
	if err != nil {
		release(got)
		if held := r.Stat().Consumers[0].LeasesHeld; held != 0 {
			t.Fatalf("%d leases held after the error %v", held, err)
		}
		return nil, err
	}
	return got, nil
}

// body returns the body of an IPC slot message and the offset and length
// of each of its buffers within it.
func body(t vtb, msg []byte) ([]byte, [][2]int64) {
	t.Helper()
	metaLen := int(binary.LittleEndian.Uint32(msg[4:]))
	meta := msg[8 : 8+metaLen]
	info, err := ipcframe.Parse(meta)
	if err != nil {
		t.Fatal(err)
	}
	bufs := make([][2]int64, info.NBufs)
	for i := range bufs {
		bufs[i][0], bufs[i][1] = info.Buffer(meta, i)
	}
	return msg[8+metaLen : 8+int64(metaLen)+info.BodyLen], bufs
}

// damaged returns a copy of msgs with message i changed by f(body, buffers).
func damaged(t vtb, msgs []slotMsg, i int, f func(body []byte, bufs [][2]int64)) []slotMsg {
	out := append([]slotMsg(nil), msgs...)
	out[i].b = append([]byte(nil), msgs[i].b...)
	b, bufs := body(t, out[i].b)
	f(b, bufs)
	return out
}

// bothModes runs f reading copied and in place.
func bothModes(t *testing.T, f func(t *testing.T, opts ...ReaderOption)) {
	t.Run("copied", func(t *testing.T) { f(t) })
	t.Run("in place", func(t *testing.T) { f(t, WithZeroCopy()) })
}

func stringsRecord(n int) arrow.RecordBatch {
	mem := memory.DefaultAllocator
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "s", Type: arrow.BinaryTypes.String},
		{Name: "l", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32)},
		{Name: "i", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "d", Type: &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}},
		{Name: "u", Type: arrow.DenseUnionOf([]arrow.Field{{Name: "a", Type: arrow.PrimitiveTypes.Int32}}, []arrow.UnionTypeCode{5})},
	}, nil)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	for i := range n {
		b.Field(0).(*array.StringBuilder).Append(words[i%len(words)])
		lb := b.Field(1).(*array.ListBuilder)
		lb.Append(true)
		for j := range i % 3 {
			lb.ValueBuilder().(*array.Int32Builder).Append(int32(j))
		}
		if i%4 == 1 {
			b.Field(2).AppendNull()
		} else {
			b.Field(2).(*array.Int64Builder).Append(int64(i))
		}
		if err := b.Field(3).(*array.BinaryDictionaryBuilder).AppendString(words[i%3]); err != nil {
			panic(err)
		}
		ub := b.Field(4).(*array.DenseUnionBuilder)
		ub.Append(5)
		ub.Child(0).(*array.Int32Builder).Append(int32(i))
	}
	return b.NewRecordBatch()
}

// Damage inside a record batch's or a dictionary batch's body, which the
// framing checks cannot see, is ErrCorrupt naming the slot and sequence;
// the undamaged stream reads back equal. Buffer order of stringsRecord's
// batch: 0–2 s (validity, offsets, values), 3–5 l (validity, offsets,
// item validity), 6 l's items, 7–8 i, 9–10 d's keys, 11–12 u (type ids,
// offsets) then u.a (validity, values).
func TestIPCContentDamageIsRefused(t *testing.T) {
	rec := stringsRecord(40)
	defer rec.Release()
	msgs := ipcMessages(t, rec)
	if len(msgs) != 3 || msgs[1].flags != FlagIPCDictionaryBatch || msgs[2].flags != FlagIPCRecordBatch {
		t.Fatalf("unexpected messages %v", msgs)
	}
	le := binary.LittleEndian
	put32 := func(body []byte, buf [2]int64, at int, v uint32) { le.PutUint32(body[buf[0]+int64(at)*4:], v) }
	cases := []struct {
		name string
		msg  int
		f    func(body []byte, bufs [][2]int64)
		want string
	}{
		{"string offset past the values", 2, func(b []byte, bufs [][2]int64) { put32(b, bufs[1], 40, 1<<20) }, ""},
		{"decreasing string offsets", 2, func(b []byte, bufs [][2]int64) { put32(b, bufs[1], 20, 0) }, ""},
		{"invalid utf-8", 2, func(b []byte, bufs [][2]int64) { b[bufs[2][0]] = 0xff }, "utf"},
		{"list offset past the items", 2, func(b []byte, bufs [][2]int64) { put32(b, bufs[4], 7, 1<<30) }, ""},
		{"negative list offset", 2, func(b []byte, bufs [][2]int64) { put32(b, bufs[4], 0, 0xffffffff) }, ""},
		{"null count disagrees with the bitmap", 2, func(b []byte, bufs [][2]int64) {
			for i := range bufs[7][1] {
				b[bufs[7][0]+i] = 0xff
			}
		}, "null count"},
		{"dictionary key out of range", 2, func(b []byte, bufs [][2]int64) { put32(b, bufs[10], 3, 100) }, "dictionary keys"},
		{"negative dictionary key", 2, func(b []byte, bufs [][2]int64) { put32(b, bufs[10], 0, 0x80000000) }, "dictionary keys"},
		{"union type id", 2, func(b []byte, bufs [][2]int64) { b[bufs[11][0]+2] = 9 }, "type id"},
		{"union offset", 2, func(b []byte, bufs [][2]int64) { put32(b, bufs[12], 5, 1000) }, ""},
		{"dictionary value offsets", 1, func(b []byte, bufs [][2]int64) { put32(b, bufs[1], 1, 1<<20) }, "dictionary batches before it (sequences [1])"},
		{"dictionary value utf-8", 1, func(b []byte, bufs [][2]int64) { b[bufs[2][0]] = 0xc0 }, "dictionary batches before it (sequences [1])"},
		{"random bytes over the body", 2, func(b []byte, _ [][2]int64) {
			r := rand.New(rand.NewPCG(1, 2))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
		}, ""},
	}
	bothModes(t, func(t *testing.T, opts ...ReaderOption) {
		got, err := readMsgs(t, msgs, opts...)
		if err != nil {
			t.Fatalf("undamaged: %v", err)
		}
		if err := sameRecords([]arrow.RecordBatch{rec}, got); err != nil {
			t.Fatal(err)
		}
		release(got)
		for _, c := range cases {
			got, err := readMsgs(t, damaged(t, msgs, c.msg, c.f), opts...)
			release(got)
			switch {
			case !errors.Is(err, ErrCorrupt):
				t.Errorf("%s: got %v (%d records), want ErrCorrupt", c.name, err, len(got))
			case !strings.Contains(err.Error(), "slot 2 (sequence 2)") || !strings.Contains(err.Error(), c.want):
				t.Errorf("%s: %q does not name slot 2 (sequence 2) and %q", c.name, err, c.want)
			}
		}
	})
}

// WithTrustedProducer skips the O(n) checks of IPC records (invalid UTF-8
// goes through) but keeps the O(1) ones: buffer sizes against lengths,
// and the first and last offsets against the values.
func TestIPCTrustedProducerSkipsOnlyTheFullChecks(t *testing.T) {
	rec := stringsRecord(40)
	defer rec.Release()
	msgs := ipcMessages(t, rec)
	_, bufs := body(t, msgs[2].b)
	badUTF8 := damaged(t, msgs, 2, func(b []byte, _ [][2]int64) { b[bufs[2][0]] = 0xff })
	pastEnd := damaged(t, msgs, 2, func(b []byte, _ [][2]int64) {
		binary.LittleEndian.PutUint32(b[bufs[1][0]+40*4:], 1<<20)
	})
	got, err := readMsgs(t, badUTF8, WithTrustedProducer())
	release(got)
	if err != nil || len(got) != 1 {
		t.Errorf("trusted, invalid UTF-8: %v, %d records; want the record", err, len(got))
	}
	if _, err := readMsgs(t, badUTF8); !errors.Is(err, ErrCorrupt) {
		t.Errorf("validating, invalid UTF-8: %v, want ErrCorrupt", err)
	}
	if _, err := readMsgs(t, pastEnd, WithTrustedProducer()); !errors.Is(err, ErrCorrupt) {
		t.Errorf("trusted, last offset past the values: %v, want ErrCorrupt", err)
	}
}

// Random byte flips anywhere in a dictionary or record batch: an error,
// or records that arrow-go's full validation accepts; never a panic. Each
// run also checks that every slot is given back (readMsgs).
func TestIPCRandomDamageIsAnErrorOrValid(t *testing.T) {
	recs := []arrow.RecordBatch{
		randomRecord(memory.DefaultAllocator, 3, []int{3, 11, 12, 14, 21, 22, 23}, 30, 2, true),
		randomRecord(memory.DefaultAllocator, 4, []int{3, 11, 12, 14, 21, 22, 23}, 20, 0, true),
	}
	defer release(recs)
	msgs := ipcMessages(t, recs...)
	rapid.Check(t, func(rt *rapid.T) {
		i := rapid.IntRange(1, len(msgs)-1).Draw(rt, "message")
		out := append([]slotMsg(nil), msgs...)
		b := append([]byte(nil), msgs[i].b...)
		for range rapid.IntRange(1, 8).Draw(rt, "flips") {
			at := rapid.IntRange(0, len(b)-1).Draw(rt, "at")
			b[at] ^= rapid.Byte().Draw(rt, "xor") | 1
		}
		out[i].b = b
		var opts []ReaderOption
		if rapid.Bool().Draw(rt, "in place") {
			opts = append(opts, WithZeroCopy())
		}
		got, err := readMsgs(rt, out, opts...)
		defer release(got)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				rt.Fatalf("an error that is not ErrCorrupt: %v", err)
			}
			return
		}
		for j, rec := range got {
			if err := array.ValidateRecordFull(rec); err != nil {
				rt.Fatalf("record %d was handed out invalid: %v", j, err)
			}
		}
	})
}

// Null columns (no buffers in arrow-go's IPC loader), dense and sparse
// unions (empty ones with absent buffers), run-end encoded, views, maps,
// nested dictionaries and the rest come back equal through the default
// (validating) Reader: validation refuses nothing it should accept.
func TestIPCValidationAcceptsEveryShape(t *testing.T) {
	mem := memory.DefaultAllocator
	mk := func(dt arrow.DataType, js string) arrow.Array {
		a, _, err := array.FromJSON(mem, dt, strings.NewReader(js))
		if err != nil {
			t.Fatalf("%s: %v", dt, err)
		}
		return a
	}
	uf := []arrow.Field{{Name: "i", Type: arrow.PrimitiveTypes.Int32, Nullable: true}, {Name: "s", Type: arrow.BinaryTypes.String, Nullable: true}}
	codes := []arrow.UnionTypeCode{2, 9}
	dictType := &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int16, ValueType: arrow.BinaryTypes.String}
	dict := func(n int) arrow.Array {
		b := array.NewDictionaryBuilder(mem, dictType).(*array.BinaryDictionaryBuilder)
		defer b.Release()
		for i := range n {
			if i%5 == 2 {
				b.AppendNull()
				continue
			}
			if err := b.AppendString(words[i%len(words)]); err != nil {
				t.Fatal(err)
			}
		}
		return b.NewArray()
	}
	// sliceable: leave out the columns arrow-go's IPC writer cannot write
	// sliced (it fails on dense unions and list views with an offset).
	record := func(n int, sliceable bool) arrow.RecordBatch {
		var cols []arrow.Array
		var fields []arrow.Field
		add := func(name string, a arrow.Array) {
			if a.Len() != n {
				t.Fatalf("%s: %d rows, want %d", name, a.Len(), n)
			}
			if sliceable && (name == "dense" || name == "list_view") {
				a.Release()
				return
			}
			fields = append(fields, arrow.Field{Name: name, Type: a.DataType(), Nullable: true})
			cols = append(cols, a)
		}
		rows := func(f func(i int) string) string {
			parts := make([]string, n)
			for i := range parts {
				parts[i] = f(i)
			}
			return "[" + strings.Join(parts, ",") + "]"
		}
		add("null", array.NewNull(n))
		add("struct_null", mk(arrow.StructOf(arrow.Field{Name: "n", Type: arrow.Null, Nullable: true}, arrow.Field{Name: "x", Type: arrow.PrimitiveTypes.Int8}),
			rows(func(i int) string { return fmt.Sprintf(`{"n": null, "x": %d}`, i%100) })))
		add("list_null", mk(arrow.ListOf(arrow.Null), rows(func(i int) string { return `[` + strings.Repeat("null,", i%3) + `null]` })))
		add("dense", mk(arrow.DenseUnionOf(uf, codes), rows(func(i int) string {
			if i%2 == 0 {
				return fmt.Sprintf(`[2, %d]`, i)
			}
			return `[9, "s"]`
		})))
		add("sparse", mk(arrow.SparseUnionOf(uf, codes), rows(func(i int) string {
			if i%3 == 0 {
				return `[9, null]`
			}
			return fmt.Sprintf(`[2, %d]`, i)
		})))
		add("list_view", mk(arrow.ListViewOf(arrow.PrimitiveTypes.Int64), rows(func(i int) string { return fmt.Sprintf(`[%d, %d]`, i, -i) })))
		add("string_view", mk(arrow.BinaryTypes.StringView, rows(func(i int) string { return `"` + strings.Repeat("view-", i%6) + `"` })))
		add("map", mk(arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Int32), rows(func(i int) string {
			return fmt.Sprintf(`[{"key": "k%d", "value": %d}]`, i, i)
		})))
		add("fixed_list", mk(arrow.FixedSizeListOf(2, arrow.PrimitiveTypes.Float32), rows(func(i int) string { return fmt.Sprintf(`[%d, 0.5]`, i) })))
		add("large_list", mk(arrow.LargeListOf(arrow.BinaryTypes.LargeString), rows(func(i int) string { return `["a", "bc"]` })))
		add("interval", mk(arrow.FixedWidthTypes.MonthDayNanoInterval, rows(func(i int) string {
			return fmt.Sprintf(`{"months": %d, "days": 1, "nanoseconds": 2}`, i)
		})))
		add("float16", mk(arrow.FixedWidthTypes.Float16, rows(func(i int) string { return fmt.Sprint(i % 7) })))
		add("decimal256", mk(&arrow.Decimal256Type{Precision: 40, Scale: 2}, rows(func(i int) string { return fmt.Sprintf(`"%d.25"`, i) })))
		d := dict(n)
		add("dict", d)
		ld := array.NewListData(array.NewData(arrow.ListOf(dictType), n, []*memory.Buffer{nil, memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(evenOffsets(n)))}, []arrow.ArrayData{d.Data()}, 0, 0))
		add("list_dict", ld)
		runEnds := mk(arrow.PrimitiveTypes.Int32, rows(func(i int) string { return fmt.Sprint(i + 1) }))
		values := mk(arrow.BinaryTypes.String, rows(func(i int) string { return fmt.Sprintf(`"r%d"`, i/2) }))
		add("ree", array.NewRunEndEncodedArray(runEnds, values, n, 0))
		runEnds.Release()
		values.Release()
		rec := array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, int64(n))
		for _, c := range cols {
			c.Release()
		}
		return rec
	}
	sliceable := record(30, true)
	defer sliceable.Release()
	for _, want := range [][]arrow.RecordBatch{
		{record(30, false), record(0, false), record(1, false)},
		{sliceable.NewSlice(0, 30), sliceable.NewSlice(5, 19), sliceable.NewSlice(30, 30)},
	} {
		msgs := ipcMessages(t, want...)
		bothModes(t, func(t *testing.T, opts ...ReaderOption) {
			got, err := readMsgs(t, msgs, opts...)
			defer release(got)
			if err != nil {
				t.Fatal(err)
			}
			if err := sameRecords(want, got); err != nil {
				t.Fatal(err)
			}
		})
		release(want)
	}
}

// evenOffsets are the offsets of n lists of one element each.
func evenOffsets(n int) []int32 {
	o := make([]int32, n+1)
	for i := range o {
		o[i] = int32(i)
	}
	return o
}
