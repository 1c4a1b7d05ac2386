package arrowshm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"pgregory.net/rapid"

	"github.com/ignalina/alloy/go/ring"
)

// inRingAll reports whether every buffer of d, children and dictionary
// values included, lies inside r's mapping (in C-Data-offsets mode the
// dictionaries travel in the slot too).
func inRingAll(r *ring.Ring, d arrow.ArrayData) bool {
	if !inRing(r, d) {
		return false
	}
	for _, c := range d.Children() {
		if !inRingAll(r, c) {
			return false
		}
	}
	if dict, ok := d.Dictionary().(*array.Data); ok && dict != nil {
		return inRingAll(r, dict)
	}
	return true
}

// hasBytesAll is hasBytes counting dictionary values too.
func hasBytesAll(d arrow.ArrayData) bool {
	if hasBytes(d) {
		return true
	}
	for _, c := range d.Children() {
		if hasBytesAll(c) {
			return true
		}
	}
	dict, ok := d.Dictionary().(*array.Data)
	return ok && dict != nil && hasBytesAll(dict)
}

// outsideRing reports whether no buffer of d (recursively) is in r.
func outsideRing(r *ring.Ring, d arrow.ArrayData) bool {
	for _, b := range d.Buffers() {
		if b != nil && b.Len() > 0 && r.Contains(b.Bytes()) {
			return false
		}
	}
	for _, c := range d.Children() {
		if !outsideRing(r, c) {
			return false
		}
	}
	if dict, ok := d.Dictionary().(*array.Data); ok && dict != nil {
		return outsideRing(r, dict)
	}
	return true
}

// TestCDataGoToGo: random records built in the slot by CDataWriter (or
// copied there by Write) come back equal from Reader, in place with
// WithZeroCopy (every buffer in the mapping, each slot held until its
// record is released) and as one copy otherwise (no buffer in the mapping,
// no slot held).
func TestCDataGoToGo(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		kinds := rapid.SliceOfN(rapid.IntRange(0, len(columnTypes)-1), 0, 6).Draw(rt, "kinds")
		n := rapid.IntRange(0, 4).Draw(rt, "records")
		nulls := rapid.Bool().Draw(rt, "nulls")
		zeroCopy := rapid.Bool().Draw(rt, "zeroCopy")
		build := rapid.Bool().Draw(rt, "build")
		seed := rapid.Uint64().Draw(rt, "seed")
		mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
		type spec struct{ rows, offset int }
		specs := make([]spec, n)
		want := make([]arrow.RecordBatch, n)
		for i := range specs {
			specs[i] = spec{rapid.IntRange(0, 300).Draw(rt, "rows"), rapid.IntRange(0, 20).Draw(rt, "offset")}
			want[i] = randomRecord(mem, seed+uint64(i), kinds, specs[i].rows, specs[i].offset, nulls)
		}
		schema := randomRecord(memory.DefaultAllocator, 0, kinds, 0, 0, nulls)
		defer schema.Release()

		r := newRing(rt, 16, 1<<20) // holds every record at once
		var opts []ReaderOption
		if zeroCopy {
			opts = append(opts, WithZeroCopy())
		}
		rd := NewReader(subscribe(rt, r), opts...)
		w, err := NewCDataWriter(producer(rt, r), schema.Schema())
		if err != nil {
			rt.Fatal(err)
		}
		for i, s := range specs {
			if build {
				err = w.Build(func(m memory.Allocator) (arrow.RecordBatch, error) {
					return randomRecord(m, seed+uint64(i), kinds, s.rows, s.offset, nulls), nil
				})
			} else {
				err = w.Write(want[i])
			}
			if err != nil {
				rt.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			rt.Fatal(err)
		}
		got, err := receiveAll(rd)
		if err != nil {
			rt.Fatal(err)
		}
		if err := sameRecords(want, got); err != nil {
			rt.Fatal(err)
		}
		if !rd.Schema().Equal(schema.Schema()) {
			rt.Fatalf("schema %v", rd.Schema())
		}
		var holding uint64
		for i, rec := range got {
			data := false
			for j, col := range rec.Columns() {
				data = data || hasBytesAll(col.Data())
				if zeroCopy && !inRingAll(r, col.Data()) {
					rt.Fatalf("record %d column %d (%s) was copied", i, j, col.DataType())
				}
				if !zeroCopy && !outsideRing(r, col.Data()) {
					rt.Fatalf("record %d column %d (%s) points into the ring without WithZeroCopy", i, j, col.DataType())
				}
			}
			if data && zeroCopy {
				holding++
			}
		}
		releaseChecked(rt, r, rd, holding, got, want, mem)
	})
}

// A consumer that joins after the schema message reads the schema area and
// decodes C-Data-offsets records; a stream may mix both modes.
func TestCDataLateJoinerAndMixedStream(t *testing.T) {
	kinds := []int{3, 11, 21, 22, 23}
	recs := []arrow.RecordBatch{
		randomRecord(memory.DefaultAllocator, 1, kinds, 40, 0, true),
		randomRecord(memory.DefaultAllocator, 2, kinds, 30, 5, true),
		randomRecord(memory.DefaultAllocator, 3, kinds, 20, 0, false),
		randomRecord(memory.DefaultAllocator, 4, kinds, 10, 1, true),
	}
	defer release(recs)
	r := newRing(t, 16, 1<<16)
	early := NewReader(subscribe(t, r))
	defer early.Release()
	p := producer(t, r)
	cw, err := NewCDataWriter(p, recs[0].Schema())
	if err != nil {
		t.Fatal(err)
	}
	if err := cw.Write(recs[0]); err != nil {
		t.Fatal(err)
	}
	late := NewReader(subscribe(t, r), WithZeroCopy())
	defer late.Release()
	iw := NewWriter(p, recs[0].Schema())
	// IPC, C-Data-offsets, IPC: the readers switch back and forth.
	for i, rec := range recs[1:] {
		if i == 1 {
			err = cw.Write(rec)
		} else {
			err = iw.Write(rec)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := iw.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := receiveAll(early)
	if err != nil {
		t.Fatal(err)
	}
	defer release(got)
	if err := sameRecords(recs, got); err != nil {
		t.Fatal(err)
	}
	gotLate, err := receiveAll(late)
	if err != nil {
		t.Fatal(err)
	}
	defer release(gotLate)
	if err := sameRecords(recs[1:], gotLate); err != nil {
		t.Fatal(err)
	}
}

// The LAYOUT.md §8.3 test vectors decode to the batch they describe, and
// every damaged variant is refused with ErrCorrupt (the Go reader has one
// kind for descriptor and content errors); random damage is an error or a
// record, never a panic.
func TestCDataReaderVectors(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "cdata")
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	schema, msg := read("schema.bin"), read("small.bin")
	var vf vectorFile
	if err := json.Unmarshal(read("small.json"), &vf); err != nil {
		t.Fatal(err)
	}
	want, err := buildVectorBatch(memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Release()
	got, err := cdataStream(t, schema, msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameRecords([]arrow.RecordBatch{want}, got); err != nil {
		t.Fatal(err)
	}
	release(got)
	if len(vf.Bad) < 10 {
		t.Fatalf("only %d damaged variants in small.json", len(vf.Bad))
	}
	for _, c := range vf.Bad {
		b := bytes.Clone(msg)
		var v [8]byte
		binary.LittleEndian.PutUint64(v[:], c.Value)
		copy(b[c.At:c.At+c.Width], v[:c.Width])
		got, err := cdataStream(t, schema, b)
		release(got)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", c.Name, err)
		}
	}
	// A trusted producer's contents are not validated: invalid UTF-8 goes
	// through; a descriptor that leaves the payload still does not.
	for _, c := range vf.Bad {
		if c.Name != "invalid utf-8" && c.Name != "buffer past data area" {
			continue
		}
		b := bytes.Clone(msg)
		var v [8]byte
		binary.LittleEndian.PutUint64(v[:], c.Value)
		copy(b[c.At:c.At+c.Width], v[:c.Width])
		got, err := cdataStream(t, schema, b, WithTrustedProducer())
		release(got)
		if c.Name == "invalid utf-8" && err != nil {
			t.Errorf("trusted producer, %s: %v", c.Name, err)
		}
		if c.Name == "buffer past data area" && !errors.Is(err, ErrCorrupt) {
			t.Errorf("trusted producer, %s: got %v, want ErrCorrupt", c.Name, err)
		}
	}
	rapid.Check(t, func(rt *rapid.T) {
		b := bytes.Clone(msg)
		if rapid.Bool().Draw(rt, "truncate") {
			b = b[:rapid.IntRange(0, len(b)-1).Draw(rt, "len")]
		}
		for range rapid.IntRange(1, 6).Draw(rt, "flips") {
			if len(b) == 0 {
				break
			}
			i := rapid.IntRange(0, len(b)-1).Draw(rt, "at")
			b[i] ^= rapid.Byte().Draw(rt, "xor") | 1
		}
		got, err := cdataStream(t, schema, b)
		if err == nil {
			// Whatever was accepted passed full validation: every value
			// can be read.
			for _, rec := range got {
				for _, col := range rec.Columns() {
					for i := 0; i < col.Len(); i++ {
						_ = col.ValueStr(i)
					}
				}
			}
		}
		release(got)
	})
}

// cdataStream sends one schema message and one flag-3 payload through a
// ring and reads them with a zero-copy Reader.
func cdataStream(t *testing.T, schemaMsg, payload []byte, opts ...ReaderOption) ([]arrow.RecordBatch, error) {
	r := newRing(t, 8, 1<<16)
	rd := NewReader(subscribe(t, r), append([]ReaderOption{WithZeroCopy()}, opts...)...)
	defer rd.Release()
	p := producer(t, r)
	if err := p.Send(schemaMsg, FlagIPCSchema); err != nil {
		t.Fatal(err)
	}
	if err := p.Send(payload, FlagCDataOffsets); err != nil {
		t.Fatal(err)
	}
	p.Close()
	return receiveAll(rd)
}

// TestCDataRustToGo: random records go through an IPC stream file to
// `alloy send --mode cdata` (the Rust CDataWriter) and come back equal
// from Reader, in place (every buffer, dictionaries included, inside the
// mapping) or copied.
func TestCDataRustToGo(t *testing.T) { checkRustToGo(t, "cdata") }

// Unions have no validity buffer in the Arrow format but a nil slot for it
// in arrow-go: sparse and dense unions, whole and sliced, come back equal.
func TestCDataUnions(t *testing.T) {
	fields := []arrow.Field{
		{Name: "i", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
	}
	codes := []arrow.UnionTypeCode{3, 7}
	build := func(b array.UnionBuilder, sparse bool, n int) arrow.Array {
		ib := b.Child(0).(*array.Int32Builder)
		sb := b.Child(1).(*array.StringBuilder)
		for i := range n {
			b.Append(codes[i%2])
			switch {
			case i%2 == 0:
				ib.Append(int32(i))
				if sparse {
					sb.AppendEmptyValue()
				}
			case i%5 == 0:
				sb.AppendNull()
				if sparse {
					ib.AppendEmptyValue()
				}
			default:
				sb.Append(words[i%len(words)])
				if sparse {
					ib.AppendEmptyValue()
				}
			}
		}
		return b.NewArray()
	}
	mem := memory.DefaultAllocator
	record := func(n int) arrow.RecordBatch {
		sparse := build(array.NewSparseUnionBuilder(mem, arrow.SparseUnionOf(fields, codes)), true, n)
		defer sparse.Release()
		dense := build(array.NewDenseUnionBuilder(mem, arrow.DenseUnionOf(fields, codes)), false, n)
		defer dense.Release()
		schema := arrow.NewSchema([]arrow.Field{{Name: "sparse", Type: sparse.DataType()}, {Name: "dense", Type: dense.DataType()}}, nil)
		return array.NewRecordBatch(schema, []arrow.Array{sparse, dense}, int64(n))
	}
	rec := record(20)
	schema := rec.Schema()
	// Whole, sliced, sliced to nothing, and built empty (absent buffers).
	want := []arrow.RecordBatch{rec, rec.NewSlice(3, 17), rec.NewSlice(20, 20), record(0)}
	defer release(want)
	cdataRoundTrip(t, schema, want, func(w *CDataWriter, _ int, rec arrow.RecordBatch) error { return w.Write(rec) })
}

// cdataRoundTrip sends want through a CDataWriter (each record with send)
// and checks that Reader returns them equal, copied and in place.
func cdataRoundTrip(t *testing.T, schema *arrow.Schema, want []arrow.RecordBatch, send func(w *CDataWriter, i int, rec arrow.RecordBatch) error) {
	t.Helper()
	for _, zeroCopy := range []bool{false, true} {
		r := newRing(t, 8, 1<<16)
		var opts []ReaderOption
		if zeroCopy {
			opts = append(opts, WithZeroCopy())
		}
		rd := NewReader(subscribe(t, r), opts...)
		w, err := NewCDataWriter(producer(t, r), schema)
		if err != nil {
			t.Fatal(err)
		}
		for i, rec := range want {
			if err := send(w, i, rec); err != nil {
				t.Fatal(err)
			}
		}
		w.Close()
		got, err := receiveAll(rd)
		if err != nil {
			t.Fatalf("zero copy %v: %v", zeroCopy, err)
		}
		if err := sameRecords(want, got); err != nil {
			t.Fatalf("zero copy %v: %v", zeroCopy, err)
		}
		release(got)
		rd.Release()
	}
}

// List views point anywhere into their child, in any order: whole,
// sliced and empty records come back equal, built in the slot or copied.
func TestCDataListViews(t *testing.T) {
	mem := memory.DefaultAllocator
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "lv", Type: arrow.ListViewOf(arrow.PrimitiveTypes.Int32), Nullable: true},
		{Name: "llv", Type: arrow.LargeListViewOf(arrow.BinaryTypes.String), Nullable: true},
	}, nil)
	build := func(mem memory.Allocator, n int) arrow.RecordBatch {
		b := array.NewRecordBuilder(mem, schema)
		defer b.Release()
		lv := b.Field(0).(*array.ListViewBuilder)
		llv := b.Field(1).(*array.LargeListViewBuilder)
		for i := range n {
			if i%7 == 3 {
				lv.AppendNull()
				llv.AppendNull()
				continue
			}
			lv.AppendWithSize(true, i%4)
			for j := range i % 4 {
				lv.ValueBuilder().(*array.Int32Builder).Append(int32(i*10 + j))
			}
			llv.AppendWithSize(true, i%3)
			for j := range i % 3 {
				llv.ValueBuilder().(*array.StringBuilder).Append(words[(i+j)%len(words)])
			}
		}
		return b.NewRecordBatch()
	}
	whole := build(mem, 30)
	defer whole.Release()
	want := []arrow.RecordBatch{whole, whole.NewSlice(4, 25), build(mem, 0)}
	defer release(want[1:])
	cdataRoundTrip(t, schema, want, func(w *CDataWriter, i int, rec arrow.RecordBatch) error {
		if i == 0 { // built in the slot
			return w.Build(func(m memory.Allocator) (arrow.RecordBatch, error) { return build(m, 30), nil })
		}
		return w.Write(rec)
	})
}

// Damage that gets past the descriptor checks and makes arrow-go panic
// (a dictionary's values offset far past its buffers) or that overflows
// int64 (offset + length) is ErrCorrupt, and a zero-copy Reader releases
// the slot even though arrow-go abandoned arrays referencing it.
func TestCDataCorruptMessageReleasesItsSlot(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "cdata")
	schema, err := os.ReadFile(filepath.Join(dir, "schema.bin"))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := os.ReadFile(filepath.Join(dir, "small.bin"))
	if err != nil {
		t.Fatal(err)
	}
	nodes := parseNodes(msg)
	for _, c := range []struct {
		name  string
		at    int
		value uint64
	}{
		{"dictionary values offset", nodes[8].at + 16, 1 << 40},
		{"offset + length overflows int64", nodes[0].at + 16, 1<<63 - 1},
	} {
		b := bytes.Clone(msg)
		binary.LittleEndian.PutUint64(b[c.at:], c.value)
		r := newRing(t, 8, 1<<16)
		rd := NewReader(subscribe(t, r), WithZeroCopy())
		p := producer(t, r)
		if err := p.Send(schema, FlagIPCSchema); err != nil {
			t.Fatal(err)
		}
		if err := p.Send(b, FlagCDataOffsets); err != nil {
			t.Fatal(err)
		}
		p.Close()
		got, err := receiveAll(rd)
		release(got)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", c.name, err)
		}
		if held := r.Stat().Consumers[0].LeasesHeld; held != 0 {
			t.Errorf("%s: %d leases held after the error", c.name, held)
		}
		rd.Release()
	}
}
