package arrowshm

import (
	"encoding/binary"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// cdataMaxExtent bounds a node's offset + length (LAYOUT.md §8.3).
const cdataMaxExtent = 1 << 48

// cdataHeader is the parsed header of a flag-3 message (LAYOUT.md §8.3).
type cdataHeader struct {
	rows                     uint64
	columns, nodes, nbuffers uint32
	descOff, descLen         uint64
}

// parseCDataHeader checks the header of the payload p.
func parseCDataHeader(p []byte) (cdataHeader, error) {
	var h cdataHeader
	if len(p) < cdataHeaderSize {
		return h, fmt.Errorf("C-Data-offsets message of %d bytes is shorter than its %d-byte header", len(p), cdataHeaderSize)
	}
	if string(p[:4]) != cdataMagic {
		return h, fmt.Errorf("bad C-Data-offsets magic % x", p[:4])
	}
	if v, hs := binary.LittleEndian.Uint16(p[4:]), binary.LittleEndian.Uint16(p[6:]); v != cdataVersion || hs != cdataHeaderSize {
		return h, fmt.Errorf("C-Data-offsets version %d / header size %d, expected %d / %d", v, hs, cdataVersion, cdataHeaderSize)
	}
	if binary.LittleEndian.Uint32(p[28:]) != 0 || binary.LittleEndian.Uint64(p[48:]) != 0 || binary.LittleEndian.Uint64(p[56:]) != 0 {
		return h, fmt.Errorf("reserved header bytes are not zero")
	}
	h = cdataHeader{
		rows:     binary.LittleEndian.Uint64(p[8:]),
		columns:  binary.LittleEndian.Uint32(p[16:]),
		nodes:    binary.LittleEndian.Uint32(p[20:]),
		nbuffers: binary.LittleEndian.Uint32(p[24:]),
		descOff:  binary.LittleEndian.Uint64(p[32:]),
		descLen:  binary.LittleEndian.Uint64(p[40:]),
	}
	want := uint64(h.nodes)*cdataNodeSize + uint64(h.nbuffers)*cdataBufferSize
	if h.descLen != want {
		return h, fmt.Errorf("descriptor length %d but %d nodes and %d buffers need %d", h.descLen, h.nodes, h.nbuffers, want)
	}
	if h.descOff%8 != 0 || h.descOff < cdataHeaderSize {
		return h, fmt.Errorf("descriptor offset %d is not a multiple of 8 ≥ 64", h.descOff)
	}
	if h.descOff > uint64(len(p)) || uint64(len(p))-h.descOff != h.descLen {
		return h, fmt.Errorf("descriptor at %d with length %d does not end the %d-byte message", h.descOff, h.descLen, len(p))
	}
	if h.rows >= cdataMaxExtent {
		return h, fmt.Errorf("row count %d is too large", h.rows)
	}
	return h, nil
}

// decodeCData rebuilds the record batch of a flag-3 payload (LAYOUT.md
// §8.3) with the stream's schema. owner holds the payload; every buffer of
// the record is a slice of it, so nothing is copied and owner's memory is
// freed when the last array built from it is released. The descriptor is
// checked against the payload and the schema first, and the arrays are
// then validated in full (arrow-go's array.ValidateFull), so a damaged
// message is an ErrCorrupt error, never a panic or a read outside the
// payload. With full false (a trusted producer, WithTrustedProducer) only
// the O(1) checks of array.Validate run: buffer sizes, not offsets or
// UTF-8. decodeCData does not take over the caller's reference to owner.
func decodeCData(owner *memory.Buffer, plan *cdataSchemaPlan, full bool) (rec arrow.RecordBatch, err error) {
	if plan.flat != nil && !plan.noFlat {
		if rec, ok, err := plan.flat.decode(owner, full); ok {
			return rec, err
		}
	}
	schema := plan.schema
	p := owner.Bytes()
	h, err := parseCDataHeader(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if int(h.columns) != schema.NumFields() {
		return nil, fmt.Errorf("%w: %d columns, the schema has %d", ErrCorrupt, h.columns, schema.NumFields())
	}
	w := cdataWalk{owner: owner, p: p, h: h, pos: int(h.descOff)}
	cols := make([]arrow.Array, 0, schema.NumFields())
	defer func() {
		for _, c := range cols {
			c.Release()
		}
	}()
	for i, cp := range plan.cols {
		f := schema.Field(i)
		d, err := w.node(cp, 1)
		if err != nil {
			return nil, fmt.Errorf("%w: column %d (%s): %v", ErrCorrupt, i, f.Name, err)
		}
		if uint64(d.Len()) != h.rows {
			d.Release()
			return nil, fmt.Errorf("%w: column %d (%s) has %d rows, the batch %d", ErrCorrupt, i, f.Name, d.Len(), h.rows)
		}
		arr, err := makeChecked(d, full)
		d.Release()
		if err != nil {
			return nil, fmt.Errorf("%w: column %d (%s): %v", ErrCorrupt, i, f.Name, err)
		}
		cols = append(cols, arr)
	}
	if w.nodes != h.nodes || w.buffers != h.nbuffers {
		return nil, fmt.Errorf("%w: the schema uses %d nodes and %d buffers, the descriptor has %d and %d", ErrCorrupt, w.nodes, w.buffers, h.nodes, h.nbuffers)
	}
	return array.NewRecordBatch(schema, cols, int64(h.rows)), nil
}

// makeChecked makes the array of d and validates it (in full, or only its
// O(1) layout checks); arrow-go panics on some inconsistent data while
// building the array, which is reported as an error too.
func makeChecked(d arrow.ArrayData, full bool) (arr arrow.Array, err error) {
	defer func() {
		if r := recover(); r != nil {
			if arr != nil {
				arr.Release()
			}
			arr, err = nil, fmt.Errorf("invalid arrays: %v", r)
		}
	}()
	arr = array.MakeFromData(d)
	validate := array.Validate
	if full {
		validate = array.ValidateFull
	}
	if err := validate(arr); err != nil {
		arr.Release()
		return nil, err
	}
	return arr, nil
}

// cdataWalk reads the descriptor's nodes and buffer entries in order,
// counting them against the header.
type cdataWalk struct {
	owner          *memory.Buffer
	p              []byte
	h              cdataHeader
	pos            int
	nodes, buffers uint32
}

// buffer returns the next buffer entry as a slice of the payload, nil if
// absent.
func (w *cdataWalk) buffer() (*memory.Buffer, error) {
	if w.buffers == w.h.nbuffers {
		return nil, fmt.Errorf("the descriptor's %d buffers are not enough for its nodes", w.h.nbuffers)
	}
	i := w.buffers
	w.buffers++
	off := binary.LittleEndian.Uint64(w.p[w.pos:])
	n := binary.LittleEndian.Uint64(w.p[w.pos+8:])
	w.pos += cdataBufferSize
	if n == 0 {
		if off != 0 {
			return nil, fmt.Errorf("buffer %d: empty but at offset %d", i, off)
		}
		return nil, nil
	}
	if off%align != 0 || off < cdataHeaderSize || off > w.h.descOff || n > w.h.descOff-off {
		return nil, fmt.Errorf("buffer %d at offset %d with length %d is not a 64-aligned range of the data area (64..%d)", i, off, n, w.h.descOff)
	}
	return memory.SliceBuffer(w.owner, int(off), int(n)), nil
}

// cdataSchemaPlan is what decoding a C-Data-offsets batch of one schema
// needs, worked out once per schema instead of per node and batch
// (arrow.DataType.Layout and NestedType.Fields allocate).
type cdataSchemaPlan struct {
	schema *arrow.Schema
	cols   []*cdataPlan
	// flat: the flat-schema plan (cdata_plan.go), nil if the schema is
	// not flat; noFlat: never use it (tests, benchmarks).
	flat   *cdataFlat
	noFlat bool
}

// cdataPlan is the decoding plan of one node type.
type cdataPlan struct {
	dt arrow.DataType
	// specs is the number of buffers of the format (the descriptor's),
	// variadic whether more may follow (view types), noValidity whether
	// arrow-go keeps a nil validity slot the descriptor does not list.
	specs      int
	variadic   bool
	noValidity bool
	children   []*cdataPlan
	dict       *arrow.DictionaryType
	dictValues *cdataPlan
}

func newCDataSchemaPlan(schema *arrow.Schema) *cdataSchemaPlan {
	p := &cdataSchemaPlan{schema: schema, flat: newCDataFlat(schema)}
	for _, f := range schema.Fields() {
		p.cols = append(p.cols, newCDataPlan(f.Type))
	}
	return p
}

// newCDataPlan plans dt and its descendants. (Types nested deeper than
// cdataMaxDepth are planned too; the walk refuses them.)
func newCDataPlan(dt arrow.DataType) *cdataPlan {
	p := &cdataPlan{dt: dt}
	// arrow-go keeps a nil validity slot for the types that have none in
	// the Arrow format (null and run-end encoded, whose layouts list it as
	// always null, and unions, whose layouts leave it out); the descriptor
	// lists the format's buffers only.
	layout := dt.Layout()
	specs := layout.Buffers
	switch {
	case dt.ID() == arrow.SPARSE_UNION || dt.ID() == arrow.DENSE_UNION:
		p.noValidity = true
	case len(specs) > 0 && specs[0].Kind == arrow.KindAlwaysNull:
		p.noValidity = true
		specs = specs[1:]
	}
	p.specs, p.variadic = len(specs), layout.VariadicSpec != nil
	if nested, ok := dt.(arrow.NestedType); ok {
		for _, f := range nested.Fields() {
			p.children = append(p.children, newCDataPlan(f.Type))
		}
	}
	if dict, ok := dt.(*arrow.DictionaryType); ok {
		p.dict, p.dictValues = dict, newCDataPlan(dict.ValueType)
	}
	return p
}

// node rebuilds the array data of plan's type from the next node and its
// descendants. The caller owns the returned data.
func (w *cdataWalk) node(plan *cdataPlan, depth int) (d arrow.ArrayData, err error) {
	dt := plan.dt
	if depth > cdataMaxDepth {
		return nil, fmt.Errorf("arrays nested deeper than %d", cdataMaxDepth)
	}
	if w.nodes == w.h.nodes {
		return nil, fmt.Errorf("the descriptor's %d nodes are not enough for the schema", w.h.nodes)
	}
	index := w.nodes
	w.nodes++
	b := w.p[w.pos : w.pos+cdataNodeSize]
	w.pos += cdataNodeSize
	length := int64(binary.LittleEndian.Uint64(b[0:]))
	nulls := int64(binary.LittleEndian.Uint64(b[8:]))
	offset := int64(binary.LittleEndian.Uint64(b[16:]))
	nbuf := binary.LittleEndian.Uint32(b[24:])
	nchild := binary.LittleEndian.Uint32(b[28:])
	flags := binary.LittleEndian.Uint32(b[32:])
	bad := func(format string, args ...any) error {
		return fmt.Errorf("node %d (%s): %s", index, dt, fmt.Sprintf(format, args...))
	}
	if binary.LittleEndian.Uint32(b[36:]) != 0 || flags&^nodeHasDict != 0 {
		return nil, bad("reserved bits set (flags %#x)", flags)
	}
	if length < 0 || offset < 0 || nulls < 0 || nulls > length || uint64(length)+uint64(offset) >= cdataMaxExtent {
		return nil, bad("length %d, offset %d, null count %d", length, offset, nulls)
	}
	isDict := plan.dict != nil
	if (flags&nodeHasDict != 0) != isDict {
		return nil, bad("dictionary bit %d does not match the type", flags&nodeHasDict)
	}
	noValidity := plan.noValidity
	if nbuf < uint32(plan.specs) || (!plan.variadic && nbuf != uint32(plan.specs)) {
		return nil, bad("%d buffers, the type has %d", nbuf, plan.specs)
	}
	children := plan.children
	if nchild != uint32(len(children)) {
		return nil, bad("%d children, the type has %d", nchild, len(children))
	}

	if nbuf > w.h.nbuffers-w.buffers {
		// Checked before allocating: a hostile count must not size the
		// slice below.
		return nil, bad("%d buffers, the descriptor has %d left", nbuf, w.h.nbuffers-w.buffers)
	}
	bufs := make([]*memory.Buffer, 0, nbuf+1)
	var kids []arrow.ArrayData
	var dictData arrow.ArrayData
	defer func() {
		for _, b := range bufs {
			if b != nil {
				b.Release()
			}
		}
		for _, k := range kids {
			k.Release()
		}
		if dictData != nil {
			dictData.Release()
		}
	}()
	if noValidity {
		bufs = append(bufs, nil)
	}
	for j := uint32(0); j < nbuf; j++ {
		buf, err := w.buffer()
		if err != nil {
			return nil, err
		}
		if buf == nil && (j > 0 || noValidity) {
			// An empty data buffer (of an empty array): arrow-go wants a
			// buffer there, only a validity bitmap may be nil.
			buf = memory.NewBufferBytes([]byte{})
		}
		bufs = append(bufs, buf)
	}
	if !noValidity {
		if bufs[0] == nil && nulls != 0 {
			return nil, bad("%d nulls but no validity bitmap", nulls)
		}
		if v := bufs[0]; v != nil && int64(v.Len()) < (offset+length+7)/8 {
			return nil, bad("validity bitmap of %d bytes, needs %d", v.Len(), (offset+length+7)/8)
		}
	}
	switch dt.ID() {
	case arrow.NULL:
		nulls = length // every value of a null array is null
	case arrow.SPARSE_UNION, arrow.DENSE_UNION, arrow.RUN_END_ENCODED:
		nulls = 0
	}
	for _, ct := range children {
		k, err := w.node(ct, depth+1)
		if err != nil {
			return nil, err
		}
		kids = append(kids, k)
	}
	if isDict {
		if dictData, err = w.node(plan.dictValues, depth+1); err != nil {
			return nil, err
		}
		return array.NewDataWithDictionary(dt, int(length), bufs, int(nulls), int(offset), dictData.(*array.Data)), nil
	}
	return array.NewData(dt, int(length), bufs, kids, int(nulls), int(offset)), nil
}
