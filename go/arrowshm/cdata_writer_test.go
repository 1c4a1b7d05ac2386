package arrowshm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"pgregory.net/rapid"

	"github.com/ignalina/alloy/go/ring"
)

func TestSlotAllocator(t *testing.T) {
	buf := make([]byte, 1024)
	for i := range buf {
		buf[i] = 0xAA // stale slot contents
	}
	a := newSlotAllocator(buf)
	x := a.Allocate(10)
	if off, ok := a.offsetOf(x); !ok || off != 64 || len(x) != 10 {
		t.Fatalf("first allocation at %d (%v), len %d", off, ok, len(x))
	}
	for _, b := range buf[64:128] {
		if b != 0 {
			t.Fatal("allocation (and its padding) not zeroed")
		}
	}
	// The last allocation grows in place.
	x[0] = 7
	x2 := a.Reallocate(100, x)
	if off, _ := a.offsetOf(x2); off != 64 || x2[0] != 7 || a.moved != 0 || a.next != 192 {
		t.Fatalf("in-place growth: off %d, moved %d, next %d", off, a.moved, a.next)
	}
	for _, b := range x2[10:] {
		if b != 0 {
			t.Fatal("grown tail not zeroed")
		}
	}
	y := a.Allocate(1)
	// x2 is no longer the last: growing it moves it.
	x3 := a.Reallocate(200, x2)
	off3, _ := a.offsetOf(x3)
	if off3%64 != 0 || off3 <= 192 || x3[0] != 7 || a.moved != 100 {
		t.Fatalf("moved growth: off %d, moved %d", off3, a.moved)
	}
	if off, _ := a.offsetOf(y); off != 192 {
		t.Fatalf("y at %d", off)
	}
	// Shrinking keeps the place.
	if s := a.Reallocate(5, x3); &s[0] != &x3[0] || len(s) != 5 {
		t.Fatal("shrink moved the buffer")
	}
	// Running out is an ErrSlotFull out of catchAlloc, not a crash.
	err := catchAlloc(func() error { a.Allocate(2048); return nil })
	if !errors.Is(err, ErrSlotFull) {
		t.Fatalf("overflow: %v", err)
	}
	a.sealed = true
	if err := catchAlloc(func() error { a.Allocate(1); return nil }); !errors.Is(err, errAllocatorSealed) {
		t.Fatalf("sealed: %v", err)
	}
	if _, ok := a.offsetOf(make([]byte, 8)); ok {
		t.Fatal("a Go heap slice reported inside the slot")
	}
}

// descriptorBuffers returns every present buffer entry (offset, length) of
// a flag-3 payload.
func descriptorBuffers(msg []byte) [][2]uint64 {
	var out [][2]uint64
	for _, n := range parseNodes(msg) {
		for _, b := range n.Buffers {
			if b[1] != 0 {
				out = append(out, b)
			}
		}
	}
	return out
}

// TestCDataBuildIsCopyFree: records built with Build's allocator (random
// types, nulls, slices, dictionaries) are described in place: no byte is
// copied after building, and every buffer is a 64-aligned range of the
// data area. Write of the same record copies it.
func TestCDataBuildIsCopyFree(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		kinds := rapid.SliceOfN(rapid.IntRange(0, len(columnTypes)-1), 0, 8).Draw(rt, "kinds")
		rows := rapid.IntRange(0, 300).Draw(rt, "rows")
		offset := rapid.IntRange(0, 20).Draw(rt, "offset")
		seed := rapid.Uint64().Draw(rt, "seed")
		ref := randomRecord(memory.DefaultAllocator, seed, kinds, rows, offset, true)
		defer ref.Release()
		r := newRing(rt, 4, 1<<20)
		c := subscribe(rt, r)
		w, err := NewCDataWriter(producer(rt, r), ref.Schema())
		if err != nil {
			rt.Fatal(err)
		}
		if err := w.Build(func(mem memory.Allocator) (arrow.RecordBatch, error) {
			return randomRecord(mem, seed, kinds, rows, offset, true), nil
		}); err != nil {
			rt.Fatal(err)
		}
		if w.CopiedBytes() != 0 {
			rt.Fatalf("Build copied %d bytes", w.CopiedBytes())
		}
		if err := w.Write(ref); err != nil {
			rt.Fatal(err)
		}
		if len(kinds) > 0 && rows+offset > 0 && w.CopiedBytes() == 0 {
			rt.Fatal("Write of a heap record copied nothing")
		}
		w.Close()
		var msgs [][]byte
		for {
			l, err := c.Recv()
			if err != nil {
				break
			}
			if l.Flags() == FlagCDataOffsets {
				msgs = append(msgs, bytes.Clone(l.Bytes()))
			}
			l.Release()
		}
		if len(msgs) != 2 {
			rt.Fatalf("%d batch messages", len(msgs))
		}
		for _, m := range msgs {
			descOff := binary.LittleEndian.Uint64(m[32:])
			if binary.LittleEndian.Uint64(m[8:]) != uint64(rows) {
				rt.Fatalf("row count %d, want %d", binary.LittleEndian.Uint64(m[8:]), rows)
			}
			for _, b := range descriptorBuffers(m) {
				if b[0]%64 != 0 || b[0] < 64 || b[0]+b[1] > descOff {
					rt.Fatalf("buffer %v outside the data area (desc at %d)", b, descOff)
				}
			}
		}
	})
}

func TestCDataSlotFullPublishesNothing(t *testing.T) {
	r := newRing(t, 4, 4096)
	p := producer(t, r)
	schema := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64}}, nil)
	w, err := NewCDataWriter(p, schema)
	if err != nil {
		t.Fatal(err)
	}
	build := func(n int) func(memory.Allocator) (arrow.RecordBatch, error) {
		return func(mem memory.Allocator) (arrow.RecordBatch, error) {
			b := array.NewInt64Builder(mem)
			defer b.Release()
			for i := range n {
				b.Append(int64(i))
			}
			a := b.NewArray()
			defer a.Release()
			return array.NewRecordBatch(schema, []arrow.Array{a}, int64(n)), nil
		}
	}
	if err := w.Build(build(10_000)); !errors.Is(err, ErrSlotFull) {
		t.Fatalf("oversized build: %v", err)
	}
	if p.Published() != 1 { // the schema only
		t.Fatalf("%d messages published", p.Published())
	}
	if err := w.Build(build(100)); err != nil {
		t.Fatalf("the slot is usable after a failed build: %v", err)
	}
	big := build(10_000)
	rec, _ := big(memory.DefaultAllocator)
	defer rec.Release()
	if err := w.Write(rec); !errors.Is(err, ring.ErrMessageTooLarge) || !errors.Is(err, ErrSlotFull) {
		t.Fatalf("oversized write: %v", err)
	}
	// A callback error is returned as is; nothing is published.
	boom := errors.New("boom")
	if err := w.Build(func(memory.Allocator) (arrow.RecordBatch, error) { return nil, boom }); err != boom {
		t.Fatalf("callback error: %v", err)
	}
	other := arrow.NewSchema([]arrow.Field{{Name: "y", Type: arrow.PrimitiveTypes.Int64}}, nil)
	if err := w.Build(func(mem memory.Allocator) (arrow.RecordBatch, error) {
		return array.NewRecordBatch(other, []arrow.Array{array.NewInt64Builder(mem).NewArray()}, 0), nil
	}); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Fatalf("schema mismatch: %v", err)
	}
	if p.Published() != 2 {
		t.Fatalf("%d messages published", p.Published())
	}
	w.Close()
}

// tagType is a minimal extension type (storage int32).
type tagType struct{ arrow.ExtensionBase }

func (*tagType) ExtensionName() string { return "alloy.test.tag" }
func (*tagType) Serialize() string     { return "" }
func (*tagType) Deserialize(storage arrow.DataType, _ string) (arrow.ExtensionType, error) {
	return &tagType{arrow.ExtensionBase{Storage: storage}}, nil
}
func (*tagType) ExtensionEquals(o arrow.ExtensionType) bool {
	return o.ExtensionName() == "alloy.test.tag"
}
func (*tagType) ArrayType() reflect.Type { return reflect.TypeOf(array.ExtensionArrayBase{}) }

func TestCDataRefusesUnsupportedTypes(t *testing.T) {
	r := newRing(t, 4, 4096)
	p := producer(t, r)
	for _, dt := range []arrow.DataType{
		&tagType{arrow.ExtensionBase{Storage: arrow.PrimitiveTypes.Int32}},
		arrow.StructOf(arrow.Field{Name: "v", Type: &tagType{arrow.ExtensionBase{Storage: arrow.PrimitiveTypes.Int8}}}),
		arrow.ListOf(&tagType{arrow.ExtensionBase{Storage: arrow.PrimitiveTypes.Int8}}),
	} {
		schema := arrow.NewSchema([]arrow.Field{{Name: "c", Type: dt}}, nil)
		if _, err := NewCDataWriter(p, schema); !errors.Is(err, ErrUnsupportedType) {
			t.Errorf("%s: %v", dt, err)
		}
	}
}

// TestCDataGoToRust sends random records built in the slot (rapid) to
// `alloy recv`, which decodes them in place (validation on) and writes an
// IPC stream file; Go compares it value by value with the same records
// built on the Go heap.
func TestCDataGoToRust(t *testing.T) {
	bin := alloyBin(t)
	rapid.Check(t, func(rt *rapid.T) {
		kinds := rapid.SliceOfN(rapid.IntRange(0, len(columnTypes)-1), 0, 6).Draw(rt, "kinds")
		nrec := rapid.IntRange(0, 3).Draw(rt, "records")
		nulls := rapid.Bool().Draw(rt, "nulls")
		type spec struct {
			seed         uint64
			rows, offset int
		}
		specs := make([]spec, nrec)
		want := make([]arrow.RecordBatch, nrec)
		for i := range specs {
			specs[i] = spec{rapid.Uint64().Draw(rt, "seed"), rapid.IntRange(0, 400).Draw(rt, "rows"), rapid.IntRange(0, 30).Draw(rt, "offset")}
			want[i] = randomRecord(memory.DefaultAllocator, specs[i].seed, kinds, specs[i].rows, specs[i].offset, nulls)
		}
		defer release(want)
		schema := randomRecord(memory.DefaultAllocator, 0, kinds, 0, 0, nulls)
		defer schema.Release()
		r := namedRing(rt)
		out := filepath.Join(t.TempDir(), "out.arrows")
		cmd := exec.Command(bin, "recv", "--ring", r.Name(), "--out", out)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			rt.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			rt.Fatal(err)
		}
		lines := bufio.NewScanner(stdout)
		if !lines.Scan() || lines.Text() != "ready" {
			cmd.Process.Kill()
			rt.Fatalf("alloy recv did not say ready: %s", stderr.String())
		}
		w, err := NewCDataWriter(producer(rt, r), schema.Schema())
		if err != nil {
			rt.Fatal(err)
		}
		for _, s := range specs {
			if err := w.Build(func(mem memory.Allocator) (arrow.RecordBatch, error) {
				return randomRecord(mem, s.seed, kinds, s.rows, s.offset, nulls), nil
			}); err != nil {
				rt.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			rt.Fatal(err)
		}
		lines.Scan()
		summary := lines.Text()
		if err := cmd.Wait(); err != nil {
			rt.Fatalf("alloy recv: %v: %s", err, stderr.String())
		}
		if w.CopiedBytes() != 0 {
			rt.Fatalf("Build copied %d bytes", w.CopiedBytes())
		}
		if !strings.Contains(summary, fmt.Sprintf(`"batches":%d`, nrec)) {
			rt.Fatalf("summary %s", summary)
		}
		got := readStream(t, out)
		defer release(got)
		if err := sameRecords(want, got); err != nil {
			rt.Fatal(err)
		}
	})
}

// TestCDataFullSlotGoesThrough: a batch that fills its slot to the last
// 64-byte line goes to `alloy recv` intact; one row more is ErrSlotFull.
func TestCDataFullSlotGoesThrough(t *testing.T) {
	bin := alloyBin(t)
	r := namedRing(t) // 1 MiB slots
	slot := r.Layout().SlotSize
	// header + validity + values (each allocation 64-aligned) + descriptor
	// (one node, two buffer entries).
	need := func(n int) int {
		return cdataHeaderSize + int(alignUp(int64((n+7)/8), align)) + int(alignUp(int64(8*n), align)) + cdataNodeSize + 2*cdataBufferSize
	}
	n := int(slot) / 8
	for need(n) > int(slot) {
		n--
	}
	schema := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64}}, nil)
	build := func(n int) func(memory.Allocator) (arrow.RecordBatch, error) {
		return func(mem memory.Allocator) (arrow.RecordBatch, error) {
			b := array.NewInt64Builder(mem)
			defer b.Release()
			b.Resize(n)
			for i := range n {
				b.UnsafeAppend(int64(i) * 3)
			}
			a := b.NewArray()
			defer a.Release()
			return array.NewRecordBatch(schema, []arrow.Array{a}, int64(n)), nil
		}
	}
	out := filepath.Join(t.TempDir(), "out.arrows")
	cmd := exec.Command(bin, "recv", "--ring", r.Name(), "--out", out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "ready" {
		cmd.Process.Kill()
		t.Fatalf("alloy recv did not say ready: %s", stderr.String())
	}
	w, err := NewCDataWriter(producer(t, r), schema)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Build(build(n + 1)); !errors.Is(err, ErrSlotFull) {
		t.Fatalf("%d rows in a %d-byte slot: %v", n+1, slot, err)
	}
	if err := w.Build(build(n)); err != nil {
		t.Fatalf("%d rows (%d bytes) in a %d-byte slot: %v", n, need(n), slot, err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	lines.Scan()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("alloy recv: %v: %s", err, stderr.String())
	}
	if want := fmt.Sprintf(`"batches":1,"rows":%d`, n); !strings.Contains(lines.Text(), want) {
		t.Fatalf("summary %s, want %s", lines.Text(), want)
	}
	got := readStream(t, out)
	defer release(got)
	want, _ := build(n)(memory.DefaultAllocator)
	defer want.Release()
	if err := sameRecords([]arrow.RecordBatch{want}, got); err != nil {
		t.Fatal(err)
	}
}
