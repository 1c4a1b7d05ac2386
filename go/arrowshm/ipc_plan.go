package arrowshm

import (
	"encoding/binary"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/ignalina/alloy/go/internal/ipcframe"
)

// ipcPlan is the Writer's per-schema plan for record batches whose columns
// are all fixed-width (integers, floats, decimals, dates, times,
// timestamps, durations, intervals, fixed-size binary): one node and two
// buffers (validity, values) per column, so every record batch message of
// the schema has the same flatbuffer metadata except for the numbers in
// it. The plan keeps one such message (produced by arrow-go) as a template
// and writes each batch by copying it into the slot and patching the batch
// length, the field nodes, the buffers and the body length, then copying
// the buffers to their 64-byte aligned places: no flatbuffer builder, no
// payload, no allocation per batch. The bytes are those arrow-go's encoder
// and ipcframe.Write produce (TestIPCPlanMatchesArrowGo compares them);
// anything the plan does not reproduce exactly (a sliced validity bitmap,
// an oversized one, zero rows, custom metadata) goes the general way.
type ipcPlan struct {
	width []int64 // value byte width per column
	tmpl  []byte  // record batch metadata of this schema, arrow-go's
	info  ipcframe.Info
	// Per batch, reused: the source bytes and length of each buffer
	// (validity bitmaps of all-null columns have src nil and a length),
	// then their offsets in the body.
	src  [][]byte
	lens []int64
	offs []int64
	// node length and null count per column
	nodes [][2]int64
}

// planWidth is the byte width of the values of dt if the plan carries
// columns of that type, else 0.
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

// newIPCPlan returns the plan for schema, or nil if a column's type is not
// one the plan carries.
func newIPCPlan(schema *arrow.Schema) *ipcPlan {
	n := schema.NumFields()
	if n == 0 {
		return nil
	}
	p := &ipcPlan{
		width: make([]int64, n), src: make([][]byte, 2*n),
		lens: make([]int64, 2*n), offs: make([]int64, 2*n), nodes: make([][2]int64, n),
	}
	for i, f := range schema.Fields() {
		if p.width[i] = planWidth(f.Type); p.width[i] == 0 {
			return nil
		}
	}
	return p
}

// prepare fills the plan's buffers and nodes for rec; false if rec needs
// the general path.
func (p *ipcPlan) prepare(rec arrow.RecordBatch) bool {
	rows := rec.NumRows()
	if rows <= 0 || int(rec.NumCols()) != len(p.width) {
		return false
	}
	if rm, ok := rec.(arrow.RecordBatchWithMetadata); ok && rm.Metadata().Len() > 0 {
		return false // custom metadata: the template has none
	}
	for i := range p.width {
		d := rec.Column(i).Data()
		length, off, nulls := int64(d.Len()), int64(d.Offset()), int64(d.NullN())
		bufs := d.Buffers()
		if length != rows || len(bufs) < 2 {
			return false
		}
		p.nodes[i] = [2]int64{length, nulls}
		// Validity: as arrow-go's recordEncoder.visit.
		v := 2 * i
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
		// Values: as arrow-go's recordEncoder.visit for fixed-width types.
		w := p.width[i]
		values := bufs[1]
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
		p.src[v+1], p.lens[v+1] = vb, int64(len(vb))
	}
	return true
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
		info.NNodes != len(p.width) || info.NBufs != 2*len(p.width) {
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
