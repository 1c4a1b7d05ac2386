package arrowshm

import (
	"encoding/binary"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// cdataFlat is the C-Data-offsets reader's plan for flat schemas (the
// column types of readPlan; a dictionary's values of one of those types
// but a dictionary). Each column is one node with two or three buffers (a
// dictionary column a second node, its values, after it), so the
// descriptor can be checked and the record built in one pass over
// fixed-size entries, without the general walk's per-node slices and
// closures, arrow-go's per-array validation (array.ValidateFull, which
// asks every array's type for its Layout) and its panics turned into
// errors.
//
// As with readPlan, the checks come first and are at least as strict as
// the general path's (the walk's descriptor checks, then ValidateFull, or
// Validate when trusted): anything they doubt goes to decodeCData's
// general walk, which reports it with the errors it always did. The
// arrays built are exactly the walk's: the same offsets, null counts,
// validity bitmaps (kept when present, even with no nulls) and empty data
// buffers.
type cdataFlat struct {
	schema          *arrow.Schema
	cols            []cdataFlatColumn
	nodes, nbuffers uint32
	// parsed: the nodes of the batch being decoded, reused; scratch: the
	// columns of the record being built.
	parsed  []cdataFlatNode
	scratch []arrow.Array
	// batches is the number of records the plan decoded.
	batches uint64
}

// cdataFlatColumn is one column: its type, and a dictionary's values.
type cdataFlatColumn struct {
	readColumn
	values readColumn // planDict only
}

// cdataFlatNode is one node as parsed from the descriptor.
type cdataFlatNode struct {
	length, nulls, offset int64
	nbuf                  int
	bufs                  [3][2]uint64 // payload offset, length
}

// buf is buffer i of n as a view of the payload p, nil if absent.
func (n *cdataFlatNode) buf(p []byte, i int) []byte {
	if n.bufs[i][1] == 0 {
		return nil
	}
	return p[n.bufs[i][0] : n.bufs[i][0]+n.bufs[i][1]]
}

// newCDataFlat returns the plan for schema, nil if it is not flat.
func newCDataFlat(schema *arrow.Schema) *cdataFlat {
	f := &cdataFlat{schema: schema, cols: make([]cdataFlatColumn, schema.NumFields())}
	for i, fl := range schema.Fields() {
		c, ok := readColumnOf(fl.Type)
		if !ok {
			return nil
		}
		f.cols[i].readColumn = c
		f.nodes++
		f.nbuffers += uint32(planColumn{kind: c.kind}.buffers())
		if c.kind == planDict {
			v, ok := readColumnOf(fl.Type.(*arrow.DictionaryType).ValueType)
			if !ok || v.kind == planDict {
				return nil
			}
			f.cols[i].values = v
			f.nodes++
			f.nbuffers += uint32(planColumn{kind: v.kind}.buffers())
		}
	}
	return f
}

// decode decodes the payload of owner as decodeCData does when the plan
// covers it and its checks pass (ok true; err only if arrow-go panicked
// on bytes changed under the checks by a producer breaking the protocol);
// ok false leaves it to the general walk.
func (f *cdataFlat) decode(owner *memory.Buffer, full bool) (rec arrow.RecordBatch, ok bool, err error) {
	p := owner.Bytes()
	h, herr := parseCDataHeader(p)
	if herr != nil || h.nodes != f.nodes || h.nbuffers != f.nbuffers || int(h.columns) != len(f.cols) {
		return nil, false, nil
	}
	rows := int64(h.rows)
	f.parsed = f.parsed[:0]
	pos := int(h.descOff)
	for _, c := range f.cols {
		keys, ok := f.node(p, h, &pos, c.readColumn, c.kind == planDict)
		if !ok || keys.length != rows {
			return nil, false, nil
		}
		if c.kind != planDict {
			if !flatValid(p, &keys, c.readColumn, full, 0) {
				return nil, false, nil
			}
			f.parsed = append(f.parsed, keys)
			continue
		}
		values, ok := f.node(p, h, &pos, c.values, false)
		if !ok || !flatValid(p, &values, c.values, full, 0) || !flatValid(p, &keys, c.readColumn, full, values.length) {
			return nil, false, nil
		}
		f.parsed = append(f.parsed, keys, values)
	}
	defer func() {
		if r := recover(); r != nil {
			rec, ok, err = nil, true, fmt.Errorf("%w: invalid arrays: %v", ErrCorrupt, r)
		}
	}()
	// cols is scratch (the record takes its columns over and the slice is
	// cleared; a panic leaves what was built to release); one slab holds
	// every node's buffer slots.
	cols := f.scratch[:0]
	defer func() {
		for i, c := range cols {
			if c != nil {
				c.Release()
			}
			cols[i] = nil
		}
		f.scratch = cols[:0]
	}()
	slab := make([]*memory.Buffer, f.nbuffers)
	at := 0
	for _, c := range f.cols {
		var d *array.Data
		if c.kind == planDict {
			dict := f.data(owner, &f.parsed[at+1], c.values.dt, nil, &slab)
			d = f.data(owner, &f.parsed[at], c.dt, dict, &slab)
			dict.Release()
			at += 2
		} else {
			d = f.data(owner, &f.parsed[at], c.dt, nil, &slab)
			at++
		}
		arr := array.MakeFromData(d)
		d.Release()
		cols = append(cols, arr)
	}
	f.batches++
	rec = newPlanRecord(f.schema, cols, rows) // takes the columns over
	clear(cols)
	return rec, true, nil
}

// data builds the array data of node n as the general walk does: buffers
// as slices of owner, an empty data buffer for an absent one (only a
// validity bitmap may be nil). Its buffer slots are taken from *slab.
func (f *cdataFlat) data(owner *memory.Buffer, n *cdataFlatNode, dt arrow.DataType, dict *array.Data, slab *[]*memory.Buffer) *array.Data {
	bufs := (*slab)[:n.nbuf:n.nbuf]
	*slab = (*slab)[n.nbuf:]
	for i := range n.nbuf {
		switch {
		case n.bufs[i][1] != 0:
			bufs[i] = memory.SliceBuffer(owner, int(n.bufs[i][0]), int(n.bufs[i][1]))
		case i > 0:
			bufs[i] = memory.NewBufferBytes([]byte{})
		}
	}
	var d *array.Data
	if dict != nil {
		d = array.NewDataWithDictionary(dt, int(n.length), bufs, int(n.nulls), int(n.offset), dict)
	} else {
		d = array.NewData(dt, int(n.length), bufs, nil, int(n.nulls), int(n.offset))
	}
	for _, b := range bufs {
		if b != nil {
			b.Release()
		}
	}
	return d
}

// node parses the node at *pos and its buffer entries with the general
// walk's descriptor checks (no children, the type's buffer count, the
// dictionary bit, sane lengths, 64-aligned buffers inside the data area).
func (f *cdataFlat) node(p []byte, h cdataHeader, pos *int, c readColumn, dict bool) (n cdataFlatNode, ok bool) {
	// parseCDataHeader checked the descriptor's size against its counts,
	// which match the plan's: every entry read here lies inside it.
	b := p[*pos : *pos+cdataNodeSize]
	*pos += cdataNodeSize
	n.length = int64(binary.LittleEndian.Uint64(b[0:]))
	n.nulls = int64(binary.LittleEndian.Uint64(b[8:]))
	n.offset = int64(binary.LittleEndian.Uint64(b[16:]))
	nbuf := binary.LittleEndian.Uint32(b[24:])
	nchild := binary.LittleEndian.Uint32(b[28:])
	flags := binary.LittleEndian.Uint32(b[32:])
	wantFlags := uint32(0)
	if dict {
		wantFlags = nodeHasDict
	}
	if binary.LittleEndian.Uint32(b[36:]) != 0 || flags != wantFlags || nchild != 0 ||
		nbuf != uint32(planColumn{kind: c.kind}.buffers()) {
		return n, false
	}
	if n.length < 0 || n.offset < 0 || n.nulls < 0 || n.nulls > n.length || uint64(n.length)+uint64(n.offset) >= cdataMaxExtent {
		return n, false
	}
	n.nbuf = int(nbuf)
	for i := range n.nbuf {
		e := p[*pos : *pos+cdataBufferSize]
		*pos += cdataBufferSize
		off, size := binary.LittleEndian.Uint64(e[0:]), binary.LittleEndian.Uint64(e[8:])
		if size == 0 {
			if off != 0 {
				return n, false
			}
			continue
		}
		if off%align != 0 || off < cdataHeaderSize || off > h.descOff || size > h.descOff-off {
			return n, false
		}
		n.bufs[i] = [2]uint64{off, size}
	}
	return n, true
}

// flatValid checks node n of column c against what array.ValidateFull (or
// with full false, array.Validate) and arrow-go's array constructors
// require: buffer sizes for offset + length, the null count against the
// bitmap, offsets, UTF-8, and a dictionary's keys against its dictLen
// values.
func flatValid(p []byte, n *cdataFlatNode, c readColumn, full bool, dictLen int64) bool {
	end := n.offset + n.length
	validity := n.buf(p, 0)
	if validity == nil {
		if n.nulls != 0 {
			return false
		}
	} else {
		if int64(len(validity)) < bitutil.BytesForBits(end) {
			return false
		}
		if full && n.length-int64(bitutil.CountSetBits(validity, int(n.offset), int(n.length))) != n.nulls {
			return false
		}
	}
	values := n.buf(p, 1)
	switch c.kind {
	case planFixed:
		return int64(len(values)) >= end*c.width
	case planBool:
		return int64(len(values)) >= bitutil.BytesForBits(end)
	case planDict:
		if int64(len(values)) < end*c.width {
			return false
		}
		return !full || keysInRange(values[n.offset*c.width:end*c.width], c.width, c.signed, validity, n.offset, dictLen)
	case planBinary:
		if n.length == 0 {
			return int64(len(values)) >= end*c.width
		}
		if int64(len(values)) < (end+1)*c.width {
			return false
		}
		return checkOffsets(values[n.offset*c.width:], n.buf(p, 2), n.length, c.width, c.utf8, full)
	}
	return false
}
