package arrowshm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/endian"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/internal/ipcframe"
	"github.com/ignalina/alloy/go/ring"
)

// readPlan is the Reader's per-schema plan for IPC record batches of flat
// schemas: every column fixed-width (integers, floats, decimals, dates,
// times, timestamps, durations, intervals, fixed-size binary), boolean,
// binary or utf8 (and their large forms), or dictionary-encoded with
// indices of such a type — the columns ipc_plan.go writes, plus booleans.
// Each column is then one field node and two or three buffers, so the
// Reader can build the record itself from the message's node and buffer
// structs (ipcframe.Parse), the body in place or copied once, instead of
// through arrow-go's ipc.Reader (a flatbuffer walk, dt.Layout and an
// array loader per column and batch, then own's second pass over the
// buffers and the validator's own arrays).
//
// The plan builds exactly the arrays arrow-go's loader builds (a validity
// bitmap only when the null count is not zero, a nil values buffer for
// empty fixed-width columns, empty buffers as empty byte buffers), and it
// validates the message first, on its bytes, with checks at least as strict
// as the general path's (the framing checks, arrow-go's loader, and
// validate.go's checks, full or O(1) as configured): node lengths equal to
// the batch's, null counts within [0, length] and equal to the bitmap's,
// every buffer large enough, offsets from 0 up, non-decreasing and inside
// the data, UTF-8 value by value, dictionary keys inside the dictionary.
// A message that fails any of them, or that the plan does not cover (zero
// rows, custom metadata, a new dictionary, another node or buffer count),
// goes the general way, which reports it with the errors it always did:
// the plan only ever accepts.
//
// Dictionary values are not in record batch messages: a dictionary column
// is planned with the dictionary of the same column in the last record the
// ipc.Reader decoded, valid for as long as no dictionary batch arrives in
// between (each one sends the next record batch through the ipc.Reader,
// which updates its memo, and the plan takes the new dictionary from that
// record). Those dictionaries are copies (the Reader copies dictionary
// batches), so the plan holds no slot.
type readPlan struct {
	schema *arrow.Schema
	cols   []readColumn
	nbufs  int
	// dicts: per dictionary column, the dictionary of the last record the
	// ipc.Reader decoded (retained); nil until there is one.
	dicts []*array.Data
	// batches is the number of records the plan decoded.
	batches uint64
	// meta: the copy of the metadata of the message being decoded;
	// scratch: the columns of the record being built.
	meta    []byte
	scratch []arrow.Array
	// info: ipcframe.Parse of meta, when infoOK; kept for the next
	// message, whose metadata is often the same bytes (a writer's batches
	// of one shape): Parse and the buffer checks against the body length
	// are then not done again.
	info   ipcframe.Info
	infoOK bool
}

// readColumn is how the plan reads one column.
type readColumn struct {
	kind   planKind
	width  int64 // fixed, dict: value (index) byte width; binary: offset width
	utf8   bool  // binary: the values must be UTF-8 (string, large string)
	signed bool  // dict: the index type is signed
	dt     arrow.DataType
}

// planBool is a boolean column (validity, values bitmap): read, not
// written, by a plan (the writer's plan leaves bit-offset bitmaps to
// arrow-go).
const planBool = planDict + 1

// newReadPlan returns the plan for schema, or nil if a column's type is
// not one the plan reads, or the schema is not in this machine's byte
// order (arrow-go's ipc.Reader swaps those).
func newReadPlan(schema *arrow.Schema) *readPlan {
	if schema.Endianness() != endian.NativeEndian {
		return nil
	}
	p := &readPlan{schema: schema, cols: make([]readColumn, schema.NumFields())}
	for i, f := range schema.Fields() {
		c, ok := readColumnOf(f.Type)
		if !ok {
			return nil
		}
		p.cols[i] = c
		p.nbufs += planColumn{kind: c.kind}.buffers()
	}
	p.dicts = make([]*array.Data, len(p.cols))
	return p
}

// readColumnOf is how a plan reads a column of type dt; ok false if no
// plan reads that type.
func readColumnOf(dt arrow.DataType) (c readColumn, ok bool) {
	c.dt = dt
	if dt.ID() == arrow.BOOL {
		c.kind = planBool
		return c, true
	}
	pc, ok := planColumnOf(dt)
	if !ok {
		return c, false
	}
	c.kind, c.width = pc.kind, pc.width
	switch dt.ID() {
	case arrow.STRING, arrow.LARGE_STRING:
		c.utf8 = true
	case arrow.DICTIONARY:
		switch dt.(*arrow.DictionaryType).IndexType.ID() {
		case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64:
			c.signed = true
		}
	}
	return c, true
}

// noteDictionaries takes the dictionaries of rec, a record the ipc.Reader
// decoded, for the batches that follow it.
func (p *readPlan) noteDictionaries(rec arrow.RecordBatch) {
	for i, c := range p.cols {
		if c.kind != planDict {
			continue
		}
		var d *array.Data
		if i < int(rec.NumCols()) {
			d = dictOf(rec.Column(i).Data())
		}
		if d == p.dicts[i] {
			continue
		}
		if d != nil {
			d.Retain()
		}
		if p.dicts[i] != nil {
			p.dicts[i].Release()
		}
		p.dicts[i] = d
	}
}

// release drops the dictionaries the plan holds.
func (p *readPlan) release() {
	for i, d := range p.dicts {
		if d != nil {
			d.Release()
			p.dicts[i] = nil
		}
	}
}

// readBuf is one buffer of a planned message: its bytes in the body.
type readBuf struct{ off, n int64 }

// check reports whether the record batch message (meta, body) is one the
// plan decodes, checked as described on readPlan (in full, or with full
// false only the O(1) checks), and returns its row count.
func (p *readPlan) check(meta, body []byte, info ipcframe.Info, full bool) (rows int64, ok bool) {
	if info.CustomMetadata || info.NNodes != len(p.cols) || info.NBufs != p.nbufs || info.LenPos < 0 {
		return 0, false
	}
	rows = int64(binary.LittleEndian.Uint64(meta[info.LenPos:]))
	if rows <= 0 || rows >= cdataMaxExtent {
		return 0, false
	}
	bi := 0
	buf := func() []byte {
		off, n := info.Buffer(meta, bi)
		bi++
		return body[off : off+n] // inside the body: parseFrame checked it
	}
	for i, c := range p.cols {
		np := info.NodesPos + 16*i
		length := int64(binary.LittleEndian.Uint64(meta[np:]))
		nulls := int64(binary.LittleEndian.Uint64(meta[np+8:]))
		if length != rows || nulls < 0 || nulls > length {
			return 0, false
		}
		validity := buf()
		if nulls != 0 {
			if int64(len(validity)) < bitutil.BytesForBits(length) {
				return 0, false
			}
			if full && length-int64(bitutil.CountSetBits(validity, 0, int(length))) != nulls {
				return 0, false
			}
		} else {
			validity = nil
		}
		switch c.kind {
		case planFixed:
			if int64(len(buf())) < length*c.width {
				return 0, false
			}
		case planBool:
			if int64(len(buf())) < bitutil.BytesForBits(length) {
				return 0, false
			}
		case planDict:
			keys := buf()
			if int64(len(keys)) < length*c.width || p.dicts[i] == nil {
				return 0, false
			}
			if full && !keysInRange(keys[:length*c.width], c.width, c.signed, validity, 0, int64(p.dicts[i].Len())) {
				return 0, false
			}
		case planBinary:
			offsets, data := buf(), buf()
			if !checkOffsets(offsets, data, length, c.width, c.utf8, full) {
				return 0, false
			}
		}
	}
	return rows, true
}

// checkOffsets checks the offsets of a binary column of length values
// (length > 0) against its data: from 0 up to at most len(data), and in
// full non-decreasing, each value UTF-8 when utf8 is set.
func checkOffsets(offsets, data []byte, length, w int64, utf8Values, full bool) bool {
	if int64(len(offsets)) < (length+1)*w {
		return false
	}
	first, last := offsetAt(offsets, 0, w), offsetAt(offsets, length, w)
	if first < 0 || last < first || last > int64(len(data)) {
		return false
	}
	if !full {
		return true
	}
	prev := first
	for i := int64(1); i <= length; i++ {
		cur := offsetAt(offsets, i, w)
		if cur < prev {
			return false
		}
		prev = cur
	}
	if !utf8Values {
		return true
	}
	// Valid as a whole and split only where a rune starts is valid value
	// by value (arrow-go checks each value).
	if !utf8.Valid(data[first:last]) {
		return false
	}
	for i := int64(1); i < length; i++ {
		if at := offsetAt(offsets, i, w); at < last && !utf8.RuneStart(data[at]) {
			return false
		}
	}
	return true
}

// keysInRange reports whether every key (little-endian, w bytes, signed
// or not) whose validity bit is set (bit voff+i for key i; all when
// validity is nil) lies in [0, n).
func keysInRange(keys []byte, w int64, signed bool, validity []byte, voff, n int64) bool {
	count := int64(len(keys)) / w
	for i := range count {
		var out bool // outside [0, n)
		switch w {
		case 1:
			if signed {
				k := int64(int8(keys[i]))
				out = k < 0 || k >= n
			} else {
				out = int64(keys[i]) >= n
			}
		case 2:
			u := binary.LittleEndian.Uint16(keys[2*i:])
			if signed {
				k := int64(int16(u))
				out = k < 0 || k >= n
			} else {
				out = int64(u) >= n
			}
		case 4:
			u := binary.LittleEndian.Uint32(keys[4*i:])
			if signed {
				k := int64(int32(u))
				out = k < 0 || k >= n
			} else {
				out = int64(u) >= n
			}
		default:
			u := binary.LittleEndian.Uint64(keys[8*i:])
			if signed {
				k := int64(u)
				out = k < 0 || k >= n
			} else {
				out = u >= uint64(n)
			}
		}
		if out && (validity == nil || bitutil.BitIsSet(validity, int(voff+i))) {
			return false
		}
	}
	return true
}

// build makes the record of a message check accepted. buffer wraps the
// bytes of each non-empty buffer (a view holding the slot, or of a copy).
func (p *readPlan) build(meta []byte, info ipcframe.Info, rows int64, buffer func(off, n int64) *memory.Buffer) arrow.RecordBatch {
	// One slab holds every column's buffer slots (each column's a
	// capacity-bounded part); cols is scratch (the record copies it and
	// takes its columns over).
	slab := make([]*memory.Buffer, p.nbufs)
	cols := p.scratch[:0]
	bi := 0
	next := func() *memory.Buffer {
		off, n := info.Buffer(meta, bi)
		bi++
		if n == 0 {
			return memory.NewBufferBytes(nil) // as arrow-go's loader
		}
		return buffer(off, n)
	}
	for i, c := range p.cols {
		np := info.NodesPos + 16*i
		nulls := int(binary.LittleEndian.Uint64(meta[np+8:]))
		nb := planColumn{kind: c.kind}.buffers()
		bufs := slab[:nb:nb]
		slab = slab[nb:]
		if nulls != 0 {
			bufs[0] = next()
		} else {
			bi++ // arrow-go leaves the bitmap out when nothing is null
		}
		for j := 1; j < nb; j++ {
			bufs[j] = next()
		}
		var d *array.Data
		if c.kind == planDict {
			d = array.NewDataWithDictionary(c.dt, int(rows), bufs, nulls, 0, p.dicts[i])
		} else {
			d = array.NewData(c.dt, int(rows), bufs, nil, nulls, 0)
		}
		for _, b := range bufs {
			if b != nil {
				b.Release() // the data holds them
			}
		}
		cols = append(cols, array.MakeFromData(d))
		d.Release()
	}
	rec := newPlanRecord(p.schema, cols, rows) // takes the columns over
	clear(cols)
	p.scratch = cols[:0]
	p.batches++
	return rec
}

// slotBuffers is the number of buffers build wraps with its buffer
// function for the message (meta, info): the non-empty ones, validity
// bitmaps of columns without nulls left out.
func (p *readPlan) slotBuffers(meta []byte, info ipcframe.Info) int {
	count, bi := 0, 0
	for i, c := range p.cols {
		nulls := binary.LittleEndian.Uint64(meta[info.NodesPos+16*i+8:])
		for j := range (planColumn{kind: c.kind}).buffers() {
			if _, n := info.Buffer(meta, bi); n != 0 && (j > 0 || nulls != 0) {
				count++
			}
			bi++
		}
	}
	return count
}

// readPlan is the read plan of schema, made on first use; nil if schema
// has none.
func (m *slotMessages) readPlan(schema *arrow.Schema) *readPlan {
	if m.rplanFor != schema {
		if m.rplan != nil {
			m.rplan.release()
		}
		m.rplan, m.rplanFor = newReadPlan(schema), schema
	}
	return m.rplan
}

// planned decodes l, a record batch lease, with the read plan if the plan
// covers it and it passes the plan's checks, taking over the lease; nil,
// nil (the lease untouched) otherwise, for the general path. The metadata
// is read from a copy (a producer that breaks the protocol and writes into
// a leased slot changes no structure the checks saw); arrow-go panicking
// anyway on buffer contents changed since (the same producer) is an
// ErrCorrupt error, as it is on the general path.
func (m *slotMessages) planned(l *ring.Lease, schema *arrow.Schema) (rec arrow.RecordBatch, err error) {
	p := m.readPlan(schema)
	if p == nil {
		return nil, nil
	}
	// The framing of parseFrame, with the metadata parsed from its copy.
	b := l.Bytes()
	if len(b) < 8 || binary.LittleEndian.Uint32(b) != 0xFFFFFFFF {
		return nil, nil
	}
	metaLen := int64(int32(binary.LittleEndian.Uint32(b[4:])))
	if metaLen <= 0 || 8+metaLen > int64(len(b)) || (8+metaLen)%8 != 0 {
		return nil, nil
	}
	raw, rest := b[8:8+metaLen], b[8+metaLen:]
	var body []byte
	if p.infoOK && bytes.Equal(raw, p.meta) {
		// The metadata of the last message planned, byte for byte: its
		// Info (a function of the metadata alone) holds, and with it
		// checkMeta's checks but the one against the bytes after it.
		if p.info.BodyLen > int64(len(rest)) {
			return nil, nil
		}
		body = rest[:p.info.BodyLen]
	} else {
		p.meta, p.infoOK = append(p.meta[:0], raw...), false
		if body, p.info, err = checkMeta(p.meta, rest, l.Flags(), ipcframe.HeaderRecordBatch); err != nil {
			return nil, nil
		}
		p.infoOK = true
	}
	meta, info := p.meta, p.info
	rows, ok := p.check(meta, body, info, !m.trusted)
	if !ok {
		return nil, nil
	}
	m.bytes += uint64(len(l.Bytes()))
	m.count++
	m.note(l)
	defer func() {
		if r := recover(); r != nil {
			// Arrays abandoned half-built may hold the lease: it is
			// released here (Release is idempotent).
			l.Release()
			rec, err = nil, fmt.Errorf("%s: %w: %v", m.at(false), ErrCorrupt, r)
		}
	}()
	if !m.zeroCopy {
		heap := make([]byte, len(body))
		copy(heap, body)
		rec = p.build(meta, info, rows, func(off, n int64) *memory.Buffer {
			return memory.NewBufferBytes(heap[off : off+n])
		})
		l.Release()
		return rec, nil
	}
	if p.slotBuffers(meta, info) == 1 {
		// The one buffer in the slot (a column of fixed-width values
		// without nulls) releases the lease itself.
		return p.build(meta, info, rows, func(off, n int64) *memory.Buffer {
			return memory.NewBufferWithAllocator(body[off:off+n], leaseOwner{l})
		}), nil
	}
	// Each buffer in the slot holds a reference to owner, which releases
	// the lease with its last one (as own does for the general path).
	owner := memory.NewBufferWithAllocator(body, leaseOwner{l})
	rec = p.build(meta, info, rows, func(off, n int64) *memory.Buffer {
		owner.Retain()
		return memory.NewBufferWithAllocator(body[off:off+n], ownerRef{owner})
	})
	owner.Release()
	return rec, nil
}
