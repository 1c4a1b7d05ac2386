package arrowshm

import (
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/ring"
)

// The retention rule, Go side (doc/README.md "Holding batches"): the
// library never holds a slot beyond the batches the user holds. A ring's
// producer cannot get more than slot_count messages ahead of the oldest
// message a consumer still holds, so one slot kept by library state (the
// ipc.Reader's last record, a writer's dictionary memo) is enough to stall
// a stream once the user keeps the rest.
//
//   - IPC dictionary batches are decoded from a copy (decode), also with
//     WithZeroCopy: the ipc.Reader keeps them for the whole stream.
//   - A record batch read in place is decoded by the ipc.Reader from a body
//     that does not own the slot; the Reader then hands out a record whose
//     buffers in the slot each hold a reference to the lease (own). The
//     ipc.Reader keeps its last record until its next Next, and the message
//     reader its last message: neither holds the slot.
//   - The Reader receives every message of a record itself, queueing the
//     (copied) dictionary batches before it for the ipc.Reader, so a
//     receive that fails (a retention stall) fails between records and the
//     Reader stays usable.
//   - Writers that keep dictionaries to compare them with the next record
//     (arrow-go's ipc.Writer, inside Writer, flightshm.Writer and alloy-go
//     recv) are given copies (DictionaryCopier): in C-Data-offsets mode a
//     dictionary read in place lives in its batch's slot.

// own turns rec, the record the ipc.Reader just decoded from the last
// record batch message, into the Reader's current record, and drops the
// message's lease reference (m.owner). Copied messages give heap records,
// retained as they are. Read in place, the ipc.Reader's record points into
// the slot without holding it; the returned record has the same arrays
// whose buffers in the mapping each hold a reference to the lease, so the
// slot is released with the last of them, and the ipc.Reader's copy of the
// record (released at its next Next, never read) holds nothing.
func (m *slotMessages) own(rec arrow.RecordBatch) arrow.RecordBatch {
	defer m.dropOwner()
	if m.owner == nil {
		rec.Retain()
		return rec
	}
	cols := make([]arrow.Array, rec.NumCols())
	for i, col := range rec.Columns() {
		d := reown(m.r, col.Data(), m.owner)
		cols[i] = array.MakeFromData(d)
		d.Release()
	}
	out := array.NewRecordBatch(rec.Schema(), cols, rec.NumRows())
	for _, c := range cols {
		c.Release()
	}
	return out
}

// dropOwner releases the in-place message's reference to its lease: the
// slot goes back to the ring unless the current record holds it.
func (m *slotMessages) dropOwner() {
	if m.owner != nil {
		m.owner.Release()
		m.owner = nil
	}
}

// reown returns d (retained) with every buffer that lies in r's mapping
// replaced by a buffer over the same bytes holding a reference to owner,
// children and dictionary included; d itself when nothing lies there.
func reown(r *ring.Ring, d arrow.ArrayData, owner *memory.Buffer) arrow.ArrayData {
	return mapBuffers(d, func(_ arrow.DataType, b *memory.Buffer) *memory.Buffer {
		if b == nil || b.Len() == 0 || !r.Contains(b.Bytes()) {
			return nil
		}
		owner.Retain()
		return memory.NewBufferWithAllocator(b.Bytes(), ownerRef{owner})
	})
}

// mapBuffers returns d (retained) with each buffer b for which f returns a
// new buffer replaced by it (f returns nil to keep b; mapBuffers releases
// what f returned once the new data holds it), children and dictionary
// included; d itself when f replaced nothing.
func mapBuffers(d arrow.ArrayData, f func(arrow.DataType, *memory.Buffer) *memory.Buffer) arrow.ArrayData {
	changed := false
	bufs := make([]*memory.Buffer, len(d.Buffers()))
	for i, b := range d.Buffers() {
		bufs[i] = b
		if nb := f(d.DataType(), b); nb != nil {
			bufs[i] = nb
			defer nb.Release() // NewData retains it
			changed = true
		}
	}
	children := make([]arrow.ArrayData, len(d.Children()))
	for i, c := range d.Children() {
		children[i] = mapBuffers(c, f)
		defer children[i].Release()
		changed = changed || children[i] != c
	}
	var dict arrow.ArrayData
	// Dictionary returns a typed nil for non-dictionary arrays.
	if dd, ok := d.Dictionary().(*array.Data); ok && dd != nil {
		dict = mapBuffers(dd, f)
		defer dict.Release()
		changed = changed || dict != arrow.ArrayData(dd)
	}
	if !changed {
		d.Retain()
		return d
	}
	nd := array.NewData(d.DataType(), d.Len(), bufs, children, d.NullN(), d.Offset())
	if dict != nil {
		nd.SetDictionary(dict)
	}
	return nd
}

// ownerRef is the allocator of a buffer viewing part of an in-place
// message: freeing it drops one reference to the lease's buffer.
type ownerRef struct{ owner *memory.Buffer }

func (o ownerRef) Allocate(int) []byte { panic("arrowshm: slot memory cannot grow") }
func (o ownerRef) Reallocate(int, []byte) []byte {
	panic("arrowshm: slot memory cannot grow")
}
func (o ownerRef) Free([]byte) { o.owner.Release() }

// queueDictionary decodes (copies) a dictionary batch received by the
// Reader and releases its lease; the ipc.Reader gets the message before
// the record batch that follows (Message).
func (m *slotMessages) queueDictionary(l *ring.Lease) error {
	m.bytes += uint64(len(l.Bytes()))
	m.count++
	msg, err := m.decode(l)
	l.Release()
	if err != nil {
		return err
	}
	m.queued = append(m.queued, msg)
	return nil
}

// popQueued returns the oldest queued dictionary message, or nil.
func (m *slotMessages) popQueued() *ipc.Message {
	if len(m.queued) == 0 {
		return nil
	}
	msg := m.queued[0]
	m.queued[0] = nil
	m.queued = m.queued[1:]
	return msg
}

// releaseQueued drops the queued messages (the Reader is freed).
func (m *slotMessages) releaseQueued() {
	for msg := m.popQueued(); msg != nil; msg = m.popQueued() {
		msg.Release()
	}
}

// DictionaryCopier gives a writer that keeps dictionaries copies of them.
// arrow-go's ipc.Writer keeps the last dictionary of each field, to send
// it again only when it changes; handed a record read in place in
// C-Data-offsets mode, it would keep that record's slot for as long as the
// dictionary stays the same, and the ring's producer would stall once it is
// slot_count messages ahead. Writer and flightshm.Writer copy dictionaries
// with one; do the same before any other dictionary-keeping writer.
//
// A dictionary seen in the previous record (the same array) is not copied
// again. Not safe for concurrent use.
type DictionaryCopier struct {
	mem memory.Allocator
	// schema, hasDict: whether the last schema seen has a dictionary
	// anywhere (records without one are passed through untouched).
	schema  *arrow.Schema
	hasDict bool
	// last: per dictionary-encoded node, in depth-first order, the source
	// dictionary of the previous record (compared by identity only: no
	// reference is held, so it pins nothing) and our copy of it.
	last []dictCopy
}

type dictCopy struct {
	src  arrow.ArrayData
	copy arrow.ArrayData
}

// NewDictionaryCopier returns a copier allocating from mem (nil: the
// default allocator).
func NewDictionaryCopier(mem memory.Allocator) *DictionaryCopier {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	return &DictionaryCopier{mem: mem}
}

// Copy returns rec with the dictionary of every dictionary-encoded column,
// at any nesting depth, replaced by a copy on the copier's allocator; the
// other buffers are shared. rec itself (retained) if it has no dictionary.
// Release the result.
func (c *DictionaryCopier) Copy(rec arrow.RecordBatch) arrow.RecordBatch {
	if s := rec.Schema(); s != c.schema {
		c.schema, c.hasDict = s, false
		for _, f := range s.Fields() {
			c.hasDict = c.hasDict || hasDictionary(f.Type)
		}
	}
	if !c.hasDict {
		rec.Retain()
		return rec
	}
	idx := 0
	cols := make([]arrow.Array, rec.NumCols())
	changed := false
	for i, col := range rec.Columns() {
		d := c.data(col.Data(), &idx)
		changed = changed || d != col.Data()
		cols[i] = array.MakeFromData(d)
		d.Release()
	}
	defer func() {
		for _, col := range cols {
			col.Release()
		}
	}()
	if !changed {
		rec.Retain()
		return rec
	}
	return array.NewRecordBatch(rec.Schema(), cols, rec.NumRows())
}

// data returns d (retained) with its dictionaries replaced by copies.
func (c *DictionaryCopier) data(d arrow.ArrayData, idx *int) arrow.ArrayData {
	changed := false
	children := make([]arrow.ArrayData, len(d.Children()))
	for i, ch := range d.Children() {
		children[i] = c.data(ch, idx)
		defer children[i].Release()
		changed = changed || children[i] != ch
	}
	var dict arrow.ArrayData
	// Dictionary returns a typed nil for non-dictionary arrays.
	if dd, ok := d.Dictionary().(*array.Data); ok && dd != nil {
		dict = c.dictionary(dd, *idx)
		*idx++
		changed = true
	}
	if !changed {
		d.Retain()
		return d
	}
	nd := array.NewData(d.DataType(), d.Len(), d.Buffers(), children, d.NullN(), d.Offset())
	if dict != nil {
		nd.SetDictionary(dict)
	}
	return nd
}

// dictionary returns the copy of dictionary src of node i (not retained:
// the copier keeps it until the node's dictionary changes or Release).
func (c *DictionaryCopier) dictionary(src arrow.ArrayData, i int) arrow.ArrayData {
	for len(c.last) <= i {
		c.last = append(c.last, dictCopy{})
	}
	e := &c.last[i]
	if e.src != src {
		if e.copy != nil {
			e.copy.Release()
		}
		e.src, e.copy = src, deepCopy(src, c.mem)
	}
	return e.copy
}

// Release frees the copies the copier keeps (writers keep their own
// references to what they still need).
func (c *DictionaryCopier) Release() {
	for _, e := range c.last {
		if e.copy != nil {
			e.copy.Release()
		}
	}
	c.last = nil
}

// deepCopy copies every buffer of d, its children and its dictionary onto
// mem (whole buffers, so d's offset stays valid).
func deepCopy(d arrow.ArrayData, mem memory.Allocator) arrow.ArrayData {
	bufs := make([]*memory.Buffer, len(d.Buffers()))
	for i, b := range d.Buffers() {
		if b == nil {
			continue
		}
		nb := memory.NewResizableBuffer(mem)
		nb.Resize(b.Len())
		copy(nb.Bytes(), b.Bytes())
		bufs[i] = nb
		defer nb.Release() // NewData retains it
	}
	children := make([]arrow.ArrayData, len(d.Children()))
	for i, ch := range d.Children() {
		children[i] = deepCopy(ch, mem)
		defer children[i].Release()
	}
	nd := array.NewData(d.DataType(), d.Len(), bufs, children, d.NullN(), d.Offset())
	if dd, ok := d.Dictionary().(*array.Data); ok && dd != nil {
		dict := deepCopy(dd, mem)
		nd.SetDictionary(dict)
		dict.Release()
	}
	return nd
}

// hasDictionary reports whether dt is, or contains, a dictionary type.
func hasDictionary(dt arrow.DataType) bool {
	switch t := dt.(type) {
	case *arrow.DictionaryType:
		return true
	case arrow.ExtensionType:
		return hasDictionary(t.StorageType())
	case arrow.NestedType:
		for _, f := range t.Fields() {
			if hasDictionary(f.Type) {
				return true
			}
		}
	}
	return false
}
