package arrowshm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// The batch of testdata/cdata/small.* (LAYOUT.md §8.3 test vectors); the
// Rust test src/arrow/cdata_reader_tests.rs builds the same values.
var vectorSchema = arrow.NewSchema([]arrow.Field{
	{Name: "i32", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
	{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "l", Type: arrow.ListOf(arrow.PrimitiveTypes.Int64), Nullable: true},
	{Name: "st", Type: arrow.StructOf(
		arrow.Field{Name: "x", Type: arrow.PrimitiveTypes.Int16},
		arrow.Field{Name: "y", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
	)},
	{Name: "d", Type: &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.BinaryTypes.String}, Nullable: true},
}, nil)

func buildVectorBatch(mem memory.Allocator) (arrow.RecordBatch, error) {
	b := array.NewRecordBuilder(mem, vectorSchema)
	defer b.Release()
	b.Field(0).(*array.Int32Builder).AppendValues([]int32{1, 0, 3, 4}, []bool{true, false, true, true})
	b.Field(1).(*array.StringBuilder).AppendValues([]string{"a", "bc", "", ""}, []bool{true, true, false, true})
	lb := b.Field(2).(*array.ListBuilder)
	vb := lb.ValueBuilder().(*array.Int64Builder)
	lb.Append(true)
	vb.AppendValues([]int64{1, 2}, nil)
	lb.Append(true)
	lb.AppendNull()
	lb.Append(true)
	vb.Append(3)
	sb := b.Field(3).(*array.StructBuilder)
	sb.AppendValues([]bool{true, true, true, true})
	sb.FieldBuilder(0).(*array.Int16Builder).AppendValues([]int16{1, 2, 3, 4}, nil)
	sb.FieldBuilder(1).(*array.BooleanBuilder).AppendValues([]bool{true, false, false, true}, []bool{true, true, false, true})
	db := b.Field(4).(*array.BinaryDictionaryBuilder)
	for _, s := range []string{"x", "y", "x"} {
		if err := db.AppendString(s); err != nil {
			return nil, err
		}
	}
	db.AppendNull()
	return b.NewRecordBatch(), nil
}

type vectorNode struct {
	Length    int64       `json:"length"`
	NullCount int64       `json:"null_count"`
	Offset    int64       `json:"offset"`
	NBuffers  uint32      `json:"n_buffers"`
	NChildren uint32      `json:"n_children"`
	Flags     uint32      `json:"flags"`
	Buffers   [][2]uint64 `json:"buffers"`
	at        int         // payload offset of the node record
}

type vectorBad struct {
	Name  string `json:"name"`
	At    int    `json:"at"`
	Width int    `json:"width"`
	Value uint64 `json:"value"`
	Error string `json:"error"` // Corrupt or Decode
}

type vectorFile struct {
	Comment  string         `json:"comment"`
	Len      int            `json:"len"`
	Header   map[string]any `json:"header"`
	Nodes    []vectorNode   `json:"nodes"`
	Bad      []vectorBad    `json:"bad"`
	Expected string         `json:"expected"`
}

// parseNodes reads the descriptor of a flag-3 payload (the Go side has no
// reader; this is enough to describe the vectors).
func parseNodes(msg []byte) []vectorNode {
	le := binary.LittleEndian
	n := int(le.Uint32(msg[20:]))
	pos := int(le.Uint64(msg[32:]))
	nodes := make([]vectorNode, n)
	for i := range nodes {
		v := vectorNode{
			Length: int64(le.Uint64(msg[pos:])), NullCount: int64(le.Uint64(msg[pos+8:])),
			Offset: int64(le.Uint64(msg[pos+16:])), NBuffers: le.Uint32(msg[pos+24:]),
			NChildren: le.Uint32(msg[pos+28:]), Flags: le.Uint32(msg[pos+32:]), at: pos,
		}
		pos += cdataNodeSize
		v.Buffers = [][2]uint64{}
		for range v.NBuffers {
			v.Buffers = append(v.Buffers, [2]uint64{le.Uint64(msg[pos:]), le.Uint64(msg[pos+8:])})
			pos += cdataBufferSize
		}
		nodes[i] = v
	}
	return nodes
}

// cdataMessages sends records through a CDataWriter on an anonymous ring
// and returns the schema message and each batch payload.
func cdataMessages(t *testing.T, build ...func(memory.Allocator) (arrow.RecordBatch, error)) (schema []byte, batches [][]byte) {
	r := newRing(t, 8, 1<<16)
	c := subscribe(t, r)
	w, err := NewCDataWriter(producer(t, r), vectorSchema)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range build {
		if err := w.Build(f); err != nil {
			t.Fatal(err)
		}
	}
	if w.CopiedBytes() != 0 {
		t.Errorf("Build copied %d bytes", w.CopiedBytes())
	}
	for i := 0; i <= len(build); i++ {
		l, err := c.Recv()
		if err != nil {
			t.Fatal(err)
		}
		want := FlagCDataOffsets
		if i == 0 {
			want = FlagIPCSchema
		}
		if l.Flags() != want {
			t.Fatalf("message %d has flags %d, want %d", i, l.Flags(), want)
		}
		b := bytes.Clone(l.Bytes())
		l.Release()
		if i == 0 {
			schema = b
		} else {
			batches = append(batches, b)
		}
	}
	return schema, batches
}

// TestCDataVectors checks (or with ALLOY_REGEN_VECTORS=1 writes)
// testdata/cdata/: the Go writer must reproduce the bytes exactly.
func TestCDataVectors(t *testing.T) {
	schema, batches := cdataMessages(t, buildVectorBatch)
	msg := batches[0]
	le := binary.LittleEndian
	nodes := parseNodes(msg)
	descOff := int(le.Uint64(msg[32:]))
	// Node order (pre-order): 0 i32, 1 s, 2 l, 3 l.item, 4 st, 5 st.x,
	// 6 st.y, 7 d (indices), 8 d's values.
	sBuf := nodes[1].Buffers
	dIdx := nodes[7].Buffers
	bad := []vectorBad{
		{"magic", 0, 4, 0x44434c42, "Corrupt"},
		{"version", 4, 2, 2, "Corrupt"},
		{"reserved header", 48, 8, 1, "Corrupt"},
		{"column count", 16, 4, 4, "Corrupt"},
		{"node count", 20, 4, uint64(len(nodes) - 1), "Corrupt"},
		{"descriptor offset", 32, 8, uint64(descOff + 8), "Corrupt"},
		{"row count", 8, 8, 5, "Corrupt"},
		{"top length", nodes[0].at, 8, 3, "Corrupt"},
		{"negative offset", nodes[0].at + 16, 8, 1 << 63, "Corrupt"},
		{"null count above length", nodes[0].at + 8, 8, 9, "Corrupt"},
		{"null count disagrees with bitmap", nodes[0].at + 8, 8, 0, "Corrupt"},
		{"child count", nodes[2].at + 28, 4, 2, "Corrupt"},
		{"buffer count", nodes[1].at + 24, 4, 4, "Corrupt"},
		{"dictionary bit", nodes[1].at + 32, 4, 1, "Corrupt"},
		{"misaligned buffer", nodes[1].at + cdataNodeSize + cdataBufferSize, 8, sBuf[1][0] + 8, "Corrupt"},
		{"buffer past data area", nodes[1].at + cdataNodeSize + cdataBufferSize + 8, 8, uint64(descOff), "Corrupt"},
		{"huge buffer", nodes[1].at + cdataNodeSize + cdataBufferSize + 8, 8, 1 << 62, "Corrupt"},
		{"buffer in header", nodes[1].at + cdataNodeSize + cdataBufferSize, 8, 0, "Corrupt"},
		{"string offset past values", int(sBuf[1][0]) + 16, 4, 1000, "Decode"},
		{"decreasing string offsets", int(sBuf[1][0]) + 8, 4, 0, "Decode"},
		{"invalid utf-8", int(nodes[1].Buffers[2][0]), 1, 0xff, "Decode"},
		{"dictionary key out of range", int(dIdx[1][0]), 1, 100, "Decode"},
	}
	for _, c := range bad {
		if c.At+c.Width > len(msg) {
			t.Fatalf("bad case %q out of range", c.Name)
		}
	}
	vf := vectorFile{
		Comment: "LAYOUT.md §8.3: small.bin is one flag-3 payload, schema.bin its stream's schema message; " +
			"bad: overwrite `width` bytes at payload offset `at` with `value` (LE) and expect the error kind",
		Len: len(msg),
		Header: map[string]any{
			"row_count": le.Uint64(msg[8:]), "n_columns": le.Uint32(msg[16:]), "n_nodes": le.Uint32(msg[20:]),
			"n_buffers": le.Uint32(msg[24:]), "desc_off": le.Uint64(msg[32:]), "desc_len": le.Uint64(msg[40:]),
		},
		Nodes: nodes, Bad: bad,
		Expected: `i32: [1, null, 3, 4]; s: ["a", "bc", null, ""]; l: [[1, 2], [], null, [3]]; ` +
			`st: [{x:1,y:true}, {x:2,y:false}, {x:3,y:null}, {x:4,y:true}]; d (int8 → utf8): ["x", "y", "x", null]`,
	}
	js, err := json.MarshalIndent(vf, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	js = append(js, '\n')
	dir := filepath.Join("..", "..", "testdata", "cdata")
	files := map[string][]byte{"schema.bin": schema, "small.bin": msg, "small.json": js}
	if os.Getenv("ALLOY_REGEN_VECTORS") == "1" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the Go writer no longer reproduces the vector (regenerate with ALLOY_REGEN_VECTORS=1 only for a LAYOUT change)", name)
		}
	}
}
