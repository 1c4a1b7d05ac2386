package arrowshm

import (
	"encoding/binary"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/internal/ipcframe"
)

// ipcPlan is the Writer's per-schema plan for record batches whose columns
// are all flat: fixed-width (integers, floats, decimals, dates, times,
// timestamps, durations, intervals, fixed-size binary), binary and utf8
// (and their large forms), or dictionary-encoded of any value type without
// a nested dictionary. Each column is one node and a fixed number of
// buffers (validity and values; validity, offsets and data; for a
// dictionary its indices), so every record batch message of the schema has
// the same flatbuffer metadata except for the numbers in it. The plan
// keeps one such message (produced by arrow-go) as a template and writes
// each batch by copying it into the slot and patching the batch length,
// the field nodes, the buffers and the body length, then copying the
// buffers to their 64-byte aligned places: no flatbuffer builder, no
// payload, no allocation per batch. The bytes are those arrow-go's encoder
// and ipcframe.Write produce (TestIPCPlanMatchesArrowGo compares them);
// anything the plan does not reproduce exactly (a sliced validity bitmap,
// an oversized one, offsets not starting at 0, zero rows, custom
// metadata) goes the general way.
//
// Dictionary batches stay with arrow-go's writer: a batch is planned only
// when each of its dictionaries is the very one (same array data) of the
// last batch the general path wrote successfully, for which arrow-go's
// writer would send no dictionary message either (it compares the
// dictionary it holds, our copier's copy of that same source, first by
// identity). Any other dictionary sends the batch the general way, which
// sends the dictionary (or a delta) when its values changed.
type ipcPlan struct {
	cols  []planColumn
	nbufs int
	tmpl  []byte // record batch metadata of this schema, arrow-go's
	info  ipcframe.Info
	// Per batch, reused: the source bytes and length of each buffer
	// (validity bitmaps of all-null columns have src nil and a length),
	// then their offsets in the body.
	src  [][]byte
	lens []int64
	offs []int64
	// node length and null count per column
	nodes [][2]int64
	// dicts: per column, the source dictionary of the last batch the
	// general path wrote (nil: none, or not a dictionary column). Held
	// for identity only: no reference is taken, so it pins no buffer.
	dicts []arrow.ArrayData
	// batches is the number of record batches the plan wrote.
	batches uint64
}

// planColumn is how the plan writes one column.
type planColumn struct {
	kind  planKind
	width int64 // fixed, dict: value (index) byte width; binary: offset width
}

type planKind uint8

const (
	planFixed  planKind = iota + 1 // validity, values
	planBinary                     // validity, offsets, data
	planDict                       // validity, indices (the dictionary travels apart)
)

func (c planColumn) buffers() int {
	if c.kind == planBinary {
		return 3
	}
	return 2
}

// planWidth is the byte width of the values of dt if the plan carries
// columns of that fixed-width type, else 0.
func planWidth(dt arrow.DataType) int64 {
	switch dt.ID() {
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64,
		arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64,
		arrow.FLOAT16, arrow.FLOAT32, arrow.FLOAT64,
		arrow.DATE32, arrow.DATE64, arrow.TIME32, arrow.TIME64,
		arrow.TIMESTAMP, arrow.DURATION,
		arrow.DECIMAL32, arrow.DECIMAL64, arrow.DECIMAL128, arrow.DECIMAL256,
		arrow.INTERVAL_MONTHS, arrow.INTERVAL_DAY_TIME, arrow.INTERVAL_MONTH_DAY_NANO,
		arrow.FIXED_SIZE_BINARY:
		fw, ok := dt.(arrow.FixedWidthDataType)
		if !ok || fw.BitWidth() <= 0 || fw.BitWidth()%8 != 0 {
			return 0
		}
		return int64(fw.BitWidth() / 8)
	}
	return 0
}

// planColumnOf is how the plan writes a column of type dt; ok false if it
// does not carry that type.
func planColumnOf(dt arrow.DataType) (c planColumn, ok bool) {
	switch dt.ID() {
	case arrow.STRING, arrow.BINARY:
		return planColumn{planBinary, 4}, true
	case arrow.LARGE_STRING, arrow.LARGE_BINARY:
		return planColumn{planBinary, 8}, true
	case arrow.DICTIONARY:
		t, isDict := dt.(*arrow.DictionaryType)
		if !isDict || hasDictionary(t.ValueType) {
			return c, false // a nested dictionary: arrow-go's path
		}
		if w := planWidth(t.IndexType); w != 0 {
			return planColumn{planDict, w}, true
		}
		return c, false
	}
	if w := planWidth(dt); w != 0 {
		return planColumn{planFixed, w}, true
	}
	return c, false
}

// newIPCPlan returns the plan for schema, or nil if a column's type is not
// one the plan carries.
func newIPCPlan(schema *arrow.Schema) *ipcPlan {
	n := schema.NumFields()
	if n == 0 {
		return nil
	}
	p := &ipcPlan{cols: make([]planColumn, n), nodes: make([][2]int64, n), dicts: make([]arrow.ArrayData, n)}
	for i, f := range schema.Fields() {
		c, ok := planColumnOf(f.Type)
		if !ok {
			return nil
		}
		p.cols[i] = c
		p.nbufs += c.buffers()
	}
	p.src, p.lens, p.offs = make([][]byte, p.nbufs), make([]int64, p.nbufs), make([]int64, p.nbufs)
	return p
}

// dictionaryOf is the dictionary of d, nil if it has none.
func dictionaryOf(d arrow.ArrayData) arrow.ArrayData {
	// Dictionary returns a typed nil for non-dictionary arrays.
	if dd, ok := d.Dictionary().(*array.Data); ok && dd != nil {
		return dd
	}
	return nil
}

// noteDictionaries records the dictionaries of rec after the general path
// wrote it (ok) or failed to (then no batch is planned until the general
// path has written the dictionaries again).
func (p *ipcPlan) noteDictionaries(rec arrow.RecordBatch, ok bool) {
	for i, c := range p.cols {
		p.dicts[i] = nil
		if ok && c.kind == planDict && i < int(rec.NumCols()) {
			p.dicts[i] = dictionaryOf(rec.Column(i).Data())
		}
	}
}

// prepare fills the plan's buffers and nodes for rec; false if rec needs
// the general path.
func (p *ipcPlan) prepare(rec arrow.RecordBatch) bool {
	rows := rec.NumRows()
	if rows <= 0 || int(rec.NumCols()) != len(p.cols) {
		return false
	}
	if rm, ok := rec.(arrow.RecordBatchWithMetadata); ok && rm.Metadata().Len() > 0 {
		return false // custom metadata: the template has none
	}
	v := 0 // the column's first buffer
	for i, c := range p.cols {
		col := rec.Column(i)
		d := col.Data()
		// The array's NullN, not the data's: a slice's null count is
		// unknown (-1) until the array counts it, as arrow-go's encoder does.
		length, off, nulls := int64(d.Len()), int64(d.Offset()), int64(col.NullN())
		bufs := d.Buffers()
		if length != rows || len(bufs) < c.buffers() {
			return false
		}
		if c.kind == planDict {
			if dict := dictionaryOf(d); dict == nil || dict != p.dicts[i] {
				return false // a dictionary arrow-go's writer has not sent
			}
		}
		p.nodes[i] = [2]int64{length, nulls}
		// Validity: as arrow-go's recordEncoder.visit.
		minBitmap := ipcframe.AlignUp(bitutil.BytesForBits(length), 64)
		switch {
		case nulls == 0:
			p.src[v], p.lens[v] = nil, 0
		case nulls == length:
			p.src[v], p.lens[v] = nil, minBitmap
		default:
			b := bufs[0]
			if b == nil || off != 0 || minBitmap < int64(b.Len()) {
				return false // a copied, shifted bitmap: the general path
			}
			p.src[v], p.lens[v] = b.Bytes(), int64(b.Len())
		}
		var ok bool
		if c.kind == planBinary {
			ok = p.binaryBuffers(v+1, c.width, off, length, bufs[1], bufs[2])
		} else {
			ok = p.fixedBuffer(v+1, c.width, off, length, bufs[1])
		}
		if !ok {
			return false
		}
		v += c.buffers()
	}
	return true
}

// fixedBuffer sets buffer v to the values of a fixed-width column (or a
// dictionary's indices), as arrow-go's recordEncoder.visit slices them.
func (p *ipcPlan) fixedBuffer(v int, w, off, length int64, values *memory.Buffer) bool {
	if values == nil {
		return false
	}
	vb := values.Bytes()
	minValues := ipcframe.AlignUp(length*w, 64)
	if off != 0 || minValues < int64(len(vb)) {
		start := off * w
		n := min(ipcframe.AlignUp(length*w, 8), int64(len(vb))-start)
		if start > int64(len(vb)) || n < 0 {
			return false
		}
		vb = vb[start : start+n]
	}
	p.src[v], p.lens[v] = vb, int64(len(vb))
	return true
}

// binaryBuffers sets buffers v, v+1 to the offsets and data of a binary or
// utf8 column with w-byte offsets, as arrow-go's recordEncoder.visit
// (getZeroBasedValueOffsets, then the data sliced to the used bytes). A
// column whose first offset is not 0 needs offsets rebased into a new
// buffer: the general path.
func (p *ipcPlan) binaryBuffers(v int, w, off, length int64, offsets, data *memory.Buffer) bool {
	if offsets == nil || offsets.Len() == 0 {
		return false
	}
	ob := offsets.Bytes()
	start, n := off*w, (length+1)*w
	if start+n > int64(len(ob)) {
		return false
	}
	ob = ob[start : start+n]
	first, end := offsetAt(ob, 0, w), offsetAt(ob, length, w)
	if first != 0 || end < 0 {
		return false
	}
	var db []byte
	if data != nil {
		db = data.Bytes()
	}
	if end > int64(len(db)) {
		return false
	}
	p.src[v], p.lens[v] = ob, n
	p.src[v+1], p.lens[v+1] = db[:end], end
	return true
}

// offsetAt is offset i of a w-byte (4 or 8) little-endian offsets buffer.
func offsetAt(b []byte, i, w int64) int64 {
	if w == 8 {
		return int64(binary.LittleEndian.Uint64(b[i*8:]))
	}
	return int64(int32(binary.LittleEndian.Uint32(b[i*4:])))
}

// layout sets the buffers' body offsets and returns the message length.
func (p *ipcPlan) layout() int64 {
	var cursor int64
	for i, n := range p.lens {
		at := ipcframe.AlignUp(cursor, ipcframe.Align)
		p.offs[i] = at
		cursor = at + n
	}
	return ipcframe.HeaderLen(len(p.tmpl)) + ipcframe.AlignUp(cursor, 8)
}

// setTemplate takes the metadata of rec's record batch message from
// arrow-go; false if it does not have the shape the plan patches.
func (p *ipcPlan) setTemplate(rec arrow.RecordBatch) bool {
	pl, err := ipc.GetRecordBatchPayload(rec)
	if err != nil {
		return false
	}
	defer pl.Release()
	meta := pl.Meta()
	defer meta.Release()
	info, err := ipcframe.Parse(meta.Bytes())
	if err != nil || info.Header != ipcframe.HeaderRecordBatch || info.BodyPos < 0 || info.LenPos < 0 ||
		info.NNodes != len(p.cols) || info.NBufs != p.nbufs {
		return false
	}
	p.tmpl, p.info = append([]byte(nil), meta.Bytes()...), info
	return true
}

// write frames the prepared batch into dst (len = layout's result), as
// ipcframe.Write does with arrow-go's metadata and body.
func (p *ipcPlan) write(dst []byte, rows int64) {
	hdr := ipcframe.HeaderLen(len(p.tmpl))
	binary.LittleEndian.PutUint32(dst[0:], 0xFFFFFFFF)
	binary.LittleEndian.PutUint32(dst[4:], uint32(hdr-8))
	m := dst[8 : 8+len(p.tmpl)]
	copy(m, p.tmpl)
	clear(dst[8+len(p.tmpl) : hdr])
	info := p.info
	binary.LittleEndian.PutUint64(m[info.BodyPos:], uint64(int64(len(dst))-hdr))
	binary.LittleEndian.PutUint64(m[info.LenPos:], uint64(rows))
	for i, n := range p.nodes {
		at := info.NodesPos + 16*i
		binary.LittleEndian.PutUint64(m[at:], uint64(n[0]))
		binary.LittleEndian.PutUint64(m[at+8:], uint64(n[1]))
	}
	body := dst[hdr:]
	var written int64
	for i, n := range p.lens {
		at := info.BufsPos + 16*i
		binary.LittleEndian.PutUint64(m[at:], uint64(p.offs[i]))
		binary.LittleEndian.PutUint64(m[at+8:], uint64(n))
		if n == 0 {
			continue
		}
		off := p.offs[i]
		clear(body[written:off])
		if p.src[i] == nil {
			clear(body[off : off+n]) // an all-null column's bitmap
		} else {
			copy(body[off:off+n], p.src[i])
		}
		written = off + n
	}
	clear(body[written:])
}
