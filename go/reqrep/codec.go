package reqrep

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Encoding a record into a request slot (LAYOUT.md §12.2): the envelope,
// the schema message, then the record batch message framed as in §8.1 —
// metadata padded to 64 and every body buffer at a 64-byte offset. arrow-go
// pads buffers to 8 bytes only, so the Buffer offsets of the metadata are
// rewritten in place and each buffer is copied once, straight from the
// record's memory to its place in the slot (as package arrowshm's Writer
// does for streams).

const align = 64

func alignUp(x, a int64) int64 { return (x + a - 1) / a * a }

// hasDictionary reports whether t is or contains a dictionary type.
func hasDictionary(t arrow.DataType) bool {
	switch t := t.(type) {
	case *arrow.DictionaryType:
		return true
	case arrow.NestedType:
		for _, f := range t.Fields() {
			if hasDictionary(f.Type) {
				return true
			}
		}
	}
	return false
}

// framedSchema is the schema message as it appears in a slot.
func framedSchema(s *arrow.Schema, mem memory.Allocator) []byte {
	pl := ipc.GetSchemaPayload(s, mem)
	defer pl.Release()
	meta := pl.Meta()
	defer meta.Release()
	n := alignUp(8+int64(meta.Len()), align)
	b := make([]byte, n)
	binary.LittleEndian.PutUint32(b, 0xFFFFFFFF)
	binary.LittleEndian.PutUint32(b[4:], uint32(n-8))
	copy(b[8:], meta.Bytes())
	return b
}

// batchMessage is an encoded record batch with its aligned layout.
type batchMessage struct {
	pl      ipc.Payload
	meta    *memory.Buffer
	info    batchInfo
	offsets []int64 // 64-aligned offset of each buffer
	hdr     int64   // prefix + metadata, padded to 64
	bodyLen int64
}

func (m *batchMessage) release() {
	m.meta.Release()
	m.pl.Release()
}

// size is the framed message's length in the slot.
func (m *batchMessage) size() int64 { return m.hdr + m.bodyLen }

func encodeBatch(rec arrow.RecordBatch, mem memory.Allocator) (*batchMessage, error) {
	pl, err := ipc.GetRecordBatchPayload(rec, ipc.WithAllocator(mem))
	if err != nil {
		return nil, err
	}
	m := &batchMessage{pl: pl, meta: pl.Meta()}
	if m.info, err = parseBatchMeta(m.meta.Bytes()); err != nil {
		m.release()
		return nil, fmt.Errorf("reqrep: arrow-go produced unexpected metadata: %w", err)
	}
	m.offsets = make([]int64, m.info.nbufs)
	var cursor int64
	for i := range m.offsets {
		_, n := m.info.buffer(m.meta.Bytes(), i)
		m.offsets[i] = alignUp(cursor, align)
		cursor = m.offsets[i] + n
	}
	m.bodyLen = alignUp(cursor, 8)
	m.hdr = alignUp(8+int64(m.meta.Len()), align)
	if m.bodyLen != 0 && m.info.bodyPos < 0 {
		m.release()
		return nil, fmt.Errorf("reqrep: metadata without bodyLength for a %d-byte body", m.bodyLen)
	}
	return m, nil
}

// write frames the message into dst (len(dst) == size()).
func (m *batchMessage) write(dst []byte) error {
	mb := m.meta.Bytes()
	binary.LittleEndian.PutUint32(dst[0:], 0xFFFFFFFF)
	binary.LittleEndian.PutUint32(dst[4:], uint32(m.hdr-8))
	meta := dst[8 : 8+len(mb)]
	copy(meta, mb)
	clear(dst[8+len(mb) : m.hdr])
	if m.info.bodyPos >= 0 {
		binary.LittleEndian.PutUint64(meta[m.info.bodyPos:], uint64(m.bodyLen))
	}
	for i, off := range m.offsets {
		m.info.setBufferOffset(meta, i, off)
	}
	rm := remapper{meta: mb, info: m.info, dst: dst[m.hdr:], offsets: m.offsets}
	if err := m.pl.SerializeBody(&rm); err != nil {
		return err
	}
	clear(rm.dst[rm.written:])
	return nil
}

// remapper receives the body as arrow-go serializes it (buffers at the
// 8-aligned offsets of the original metadata, with padding) and copies each
// buffer to its 64-aligned place, zeroing the gaps.
type remapper struct {
	meta    []byte
	info    batchInfo
	dst     []byte
	offsets []int64
	pos     int64 // position in arrow-go's serialized stream
	i       int   // current buffer
	written int64 // dst bytes up to which gaps are zeroed
}

func (r *remapper) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		for r.i < r.info.nbufs { // skip buffers that end before pos, and empty ones
			off, ln := r.info.buffer(r.meta, r.i)
			if off+ln > r.pos && ln > 0 {
				break
			}
			r.i++
		}
		if r.i == r.info.nbufs {
			return n, nil // trailing padding
		}
		off, ln := r.info.buffer(r.meta, r.i)
		if r.pos < off { // padding before the buffer
			skip := min(int64(len(p)), off-r.pos)
			p, r.pos = p[skip:], r.pos+skip
			continue
		}
		k := min(int64(len(p)), off+ln-r.pos)
		at := r.offsets[r.i] + (r.pos - off)
		if at+k > int64(len(r.dst)) {
			return 0, io.ErrShortWrite
		}
		clear(r.dst[r.written:at])
		copy(r.dst[at:at+k], p[:k])
		r.written = at + k
		p, r.pos = p[k:], r.pos+k
	}
	return n, nil
}

// decodeReply copies the record of a REPLY message out of b (the slot's
// payload, whose envelope e was checked).
func decodeReply(b []byte, e envelope, mem memory.Allocator) (rec arrow.RecordBatch, err error) {
	defer func() {
		if p := recover(); p != nil {
			rec, err = nil, fmt.Errorf("%w: decoder panicked: %v", ErrBadMessage, p)
		}
	}()
	msgs := b[envLen : envLen+int(e.schemaLen)+int(e.batchLen)]
	rd, err := ipc.NewReader(bytes.NewReader(msgs), ipc.WithAllocator(mem))
	if err != nil {
		return nil, fmt.Errorf("%w: schema: %v", ErrBadMessage, err)
	}
	defer rd.Release()
	if !rd.Next() {
		return nil, fmt.Errorf("%w: record batch: %v", ErrBadMessage, rd.Err())
	}
	rec = rd.RecordBatch()
	rec.Retain()
	return rec, nil
}
