package reqrep

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/internal/ipcframe"
	"github.com/ignalina/alloy/go/ring"
)

// Encoding a record into a request slot (LAYOUT.md §12.2): the envelope,
// the schema message, then the record batch message framed as in §8.1 —
// metadata padded to 64 and every body buffer at a 64-byte offset. arrow-go
// pads buffers to 8 bytes only, so the Buffer offsets of the metadata are
// rewritten in place and each buffer is copied once, straight from the
// record's memory to its place in the slot (as package arrowshm's Writer
// does for streams).

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
	n := ipcframe.HeaderLen(meta.Len())
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
	info    ipcframe.Info
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
	if m.info, err = ipcframe.Parse(m.meta.Bytes()); err == nil && m.info.Header != ipcframe.HeaderRecordBatch {
		err = fmt.Errorf("header type %d, not a record batch", m.info.Header)
	}
	if err != nil {
		m.release()
		return nil, fmt.Errorf("reqrep: arrow-go produced unexpected metadata: %w", err)
	}
	m.offsets, m.bodyLen = ipcframe.Layout(m.meta.Bytes(), m.info, make([]int64, m.info.NBufs))
	m.hdr = ipcframe.HeaderLen(m.meta.Len())
	if m.bodyLen != 0 && m.info.BodyPos < 0 {
		m.release()
		return nil, fmt.Errorf("reqrep: metadata without bodyLength for a %d-byte body", m.bodyLen)
	}
	return m, nil
}

// dictMessages encodes the dictionaries of rec's dictionary-encoded
// columns (at any depth) as framed DictionaryBatch messages, whole (never
// deltas), in the order and with the ids arrow-go's stream writer gives
// them (those of the schema message). Each message's body is padded to 64
// bytes, so the next message in the slot starts aligned (LAYOUT.md §12.2).
// nil without dictionary columns.
func dictMessages(rec arrow.RecordBatch, mem memory.Allocator) ([][]byte, error) {
	has := false
	for _, f := range rec.Schema().Fields() {
		has = has || hasDictionary(f.Type)
	}
	if !has {
		return nil, nil
	}
	c := &dictCollector{}
	w := ipc.NewWriterWithPayloadWriter(c, ipc.WithSchema(rec.Schema()), ipc.WithAllocator(mem))
	err := w.Write(rec)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = c.err
	}
	if err != nil {
		return nil, fmt.Errorf("reqrep: encoding the dictionaries: %w", err)
	}
	return c.msgs, nil
}

// dictCollector is the ipc.PayloadWriter of dictMessages: it frames the
// dictionary batches and drops the rest (the schema and the record batch
// travel their own way).
type dictCollector struct {
	msgs [][]byte
	err  error
}

func (c *dictCollector) Start() error { return nil }
func (c *dictCollector) Close() error { return nil }

func (c *dictCollector) WritePayload(pl ipc.Payload) error {
	meta := pl.Meta()
	defer meta.Release()
	mb := meta.Bytes()
	info, err := ipcframe.Parse(mb)
	if err != nil {
		return fmt.Errorf("arrow-go produced unexpected metadata: %w", err)
	}
	if info.Header != ipcframe.HeaderDictionaryBatch {
		return nil
	}
	offsets, bodyLen := ipcframe.Layout(mb, info, make([]int64, info.NBufs))
	bodyLen = ipcframe.AlignUp(bodyLen, ipcframe.Align)
	b := make([]byte, ipcframe.HeaderLen(len(mb))+bodyLen)
	if err := ipcframe.Write(b, mb, info, offsets, bodyLen, pl.SerializeBody); err != nil {
		return err
	}
	c.msgs = append(c.msgs, b)
	return nil
}

// write frames the message into dst (len(dst) == size()).
func (m *batchMessage) write(dst []byte) error {
	return ipcframe.Write(dst, m.meta.Bytes(), m.info, m.offsets, m.bodyLen, m.pl.SerializeBody)
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
	return firstRecord(ipc.NewReader(bytes.NewReader(msgs), ipc.WithAllocator(mem)))
}

// firstRecord returns the first record of a reader just made (retained:
// the caller releases it) and releases the reader.
func firstRecord(rd *ipc.Reader, err error) (arrow.RecordBatch, error) {
	if err != nil {
		return nil, fmt.Errorf("%w: schema: %v", ErrBadMessage, err)
	}
	defer rd.Release()
	if !rd.Next() {
		return nil, fmt.Errorf("%w: record batch: %v", ErrBadMessage, rd.Err())
	}
	rec := rd.RecordBatch()
	rec.Retain()
	return rec, nil
}

// decodeReplyInPlace decodes the record of a REPLY message from lease l
// without copying its body: the record's buffers are views of the slot,
// and the slot is released with the last of them (the body buffer's
// allocator is the lease). The schema and dictionary messages are copied
// (they are small, and the dictionaries are kept by the decoder's memo).
// It takes over l: on error l is released.
func decodeReplyInPlace(l *ring.Lease, e envelope, mem memory.Allocator) (rec arrow.RecordBatch, err error) {
	var msgs []*ipc.Message
	owned := false // a message body holds l
	defer func() {
		if p := recover(); p != nil {
			rec, err = nil, fmt.Errorf("%w: decoder panicked: %v", ErrBadMessage, p)
		}
		for _, m := range msgs {
			m.Release()
		}
		if err != nil || !owned {
			l.Release() // idempotent
		}
	}()
	b := l.Bytes()[envLen : envLen+int(e.schemaLen)+int(e.batchLen)]
	for at := 0; at < len(b); {
		meta, body, info, next, err := frameAt(b, at)
		if err != nil {
			return nil, err
		}
		var bodyBuf *memory.Buffer
		if next == len(b) && info.Header == ipcframe.HeaderRecordBatch {
			bodyBuf = memory.NewBufferWithAllocator(body, leaseOwner{l})
			owned = true
		} else {
			bodyBuf = memory.NewBufferBytes(bytes.Clone(body))
		}
		msgs = append(msgs, ipc.NewMessage(memory.NewBufferBytes(bytes.Clone(meta)), bodyBuf))
		bodyBuf.Release() // the message holds it now
		at = next
	}
	if !owned {
		return nil, fmt.Errorf("%w: the reply does not end with a record batch", ErrBadMessage)
	}
	return firstRecord(ipc.NewReaderFromMessageReader(&messageList{msgs: msgs}, ipc.WithAllocator(mem)))
}

// frameAt checks the framed message at b[at:] (LAYOUT.md §8.1: marker,
// metadata length, metadata, a body holding every buffer) and returns its
// metadata and body as views of b and the offset of the next message.
func frameAt(b []byte, at int) (meta, body []byte, info ipcframe.Info, next int, err error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: message at byte %d: %s", ErrBadMessage, at, fmt.Sprintf(format, a...))
	}
	rest := b[at:]
	if len(rest) < 8 || binary.LittleEndian.Uint32(rest) != 0xFFFFFFFF {
		return nil, nil, info, 0, bad("missing continuation marker")
	}
	metaLen := int64(int32(binary.LittleEndian.Uint32(rest[4:])))
	if metaLen <= 0 || 8+metaLen > int64(len(rest)) {
		return nil, nil, info, 0, bad("metadata size %d in %d bytes", metaLen, len(rest))
	}
	meta = rest[8 : 8+metaLen]
	if info, err = ipcframe.Parse(meta); err != nil {
		return nil, nil, info, 0, bad("%v", err)
	}
	if info.BodyLen < 0 || info.BodyLen > int64(len(rest))-8-metaLen {
		return nil, nil, info, 0, bad("body length %d exceeds the %d bytes after the metadata", info.BodyLen, int64(len(rest))-8-metaLen)
	}
	for i := 0; i < info.NBufs; i++ {
		off, n := info.Buffer(meta, i)
		if off < 0 || n < 0 || off > info.BodyLen-n {
			return nil, nil, info, 0, bad("buffer %d (offset %d, length %d) outside the %d-byte body", i, off, n, info.BodyLen)
		}
	}
	end := 8 + metaLen + info.BodyLen
	return meta, rest[8+metaLen : end], info, at + int(end), nil
}

// messageList is the ipc.MessageReader of decodeReplyInPlace: its
// messages, then io.EOF. The caller releases the messages.
type messageList struct {
	msgs []*ipc.Message
	next int
}

func (m *messageList) Message() (*ipc.Message, error) {
	if m.next == len(m.msgs) {
		return nil, io.EOF
	}
	m.next++
	return m.msgs[m.next-1], nil
}
func (m *messageList) Retain()  {}
func (m *messageList) Release() {}

// leaseOwner is the memory.Allocator of a body read in place: freeing the
// body releases the slot. It allocates nothing.
type leaseOwner struct{ l *ring.Lease }

func (o leaseOwner) Allocate(int) []byte { panic("reqrep: slot memory cannot grow") }
func (o leaseOwner) Reallocate(int, []byte) []byte {
	panic("reqrep: slot memory cannot grow")
}
func (o leaseOwner) Free([]byte) { o.l.Release() }
