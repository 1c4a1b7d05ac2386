package arrowshm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/internal/ipcframe"
	"github.com/ignalina/alloy/go/ring"
)

// Reader decodes the Arrow IPC messages a ring consumer receives into
// records, like ipc.Reader does for a byte stream, and implements arrow-go's
// array.RecordReader. Each message is copied out of its slot (one copy) and
// the slot released before decoding, so a record stays valid for as long as
// it is retained, independently of the ring. A consumer that joined after
// the schema message went by reads the schema from the ring's schema area.
//
// As with ipc.Reader, the current record is owned by the Reader and valid
// until the next call to Next; Retain it to keep it longer. The Reader is
// reference counted (Retain, Release); the last Release frees the current
// record and the dictionaries. Close also closes the consumer. A Reader is
// not safe for concurrent use.
type Reader struct {
	refs   atomic.Int64
	msgs   *slotMessages
	ipc    *ipc.Reader
	err    error
	closed bool
}

var _ array.RecordReader = (*Reader)(nil)

// NewReader reads the stream c (a consumer of r) receives. Nothing is
// received before the first Next (or Schema).
func NewReader(r *ring.Ring, c *ring.Consumer) *Reader {
	rd := &Reader{msgs: &slotMessages{r: r, c: c}}
	rd.refs.Store(1)
	return rd
}

// Next waits for the next record; false at the end of the stream or on an
// error (see Err).
func (rd *Reader) Next() bool { return rd.NextContext(context.Background()) }

// NextContext is Next giving up when ctx is done: it returns false
// promptly (the consumer's futex wait is woken) and Err returns ctx.Err().
// Like any error, cancellation ends the iteration for good.
func (rd *Reader) NextContext(ctx context.Context) bool {
	if rd.closed {
		rd.err = orErr(rd.err, ring.ErrClosed)
	}
	if rd.err != nil || !rd.start(ctx) {
		return false
	}
	rd.msgs.ctx = ctx
	defer func() { rd.msgs.ctx = nil }()
	if rd.ipc.Next() {
		return true
	}
	rd.err = rd.ipc.Err()
	return false
}

// orErr returns err if it is set, else alt.
func orErr(err, alt error) error {
	if err != nil {
		return err
	}
	return alt
}

// start creates the ipc.Reader, which receives the schema message (or,
// for a late joiner, reads the schema area). It reports success.
func (rd *Reader) start(ctx context.Context) bool {
	if rd.ipc != nil {
		return true
	}
	if rd.err != nil || rd.closed {
		return false
	}
	rd.msgs.ctx = ctx
	defer func() { rd.msgs.ctx = nil }()
	rd.ipc, rd.err = ipc.NewReaderFromMessageReader(rd.msgs)
	if rd.err != nil {
		rd.ipc = nil
		if errors.Is(rd.err, io.EOF) {
			rd.err = fmt.Errorf("%w: the stream ended before its schema", ErrNoSchema)
		}
		return false
	}
	return true
}

// RecordBatch is the current record, valid until the next call to Next
// unless retained; nil before the first Next or after Release.
func (rd *Reader) RecordBatch() arrow.RecordBatch {
	if rd.ipc == nil {
		return nil
	}
	return rd.ipc.RecordBatch()
}

// Record is RecordBatch, for array.RecordReader.
//
// Deprecated: use RecordBatch.
func (rd *Reader) Record() arrow.RecordBatch { return rd.RecordBatch() }

// Schema is the stream's schema. Called before the first Next it waits for
// the schema message (or reads the schema area), as ipc.NewReader waits for
// the schema of a byte stream; nil if that fails (see Err).
func (rd *Reader) Schema() *arrow.Schema {
	if !rd.start(context.Background()) {
		return nil
	}
	return rd.ipc.Schema()
}

// Err is the error that ended the iteration, nil at a clean end of stream.
func (rd *Reader) Err() error { return rd.err }

// BytesReceived is the total payload of the messages received so far.
func (rd *Reader) BytesReceived() uint64 { return rd.msgs.bytes }

// Retain adds a reference to the Reader.
func (rd *Reader) Retain() { rd.refs.Add(1) }

// Release drops a reference; the last one frees the current record and
// the reader's dictionaries. It does not close the consumer (see Close).
func (rd *Reader) Release() {
	if rd.refs.Add(-1) == 0 {
		rd.free()
	}
}

func (rd *Reader) free() {
	if rd.ipc != nil {
		rd.ipc.Release()
		rd.ipc = nil
	}
}

// Close ends reading: it frees the current record and the dictionaries
// whatever references remain, and closes the consumer (releasing its
// entry in the ring). Later calls to Next return false with ring.ErrClosed.
// Reader implements io.Closer.
func (rd *Reader) Close() error {
	if rd.closed {
		return nil
	}
	rd.closed = true
	rd.free()
	if err := rd.msgs.c.Close(); err != nil && !errors.Is(err, ring.ErrClosed) {
		return err
	}
	return nil
}

// slotMessages is the ipc.MessageReader over a ring consumer.
type slotMessages struct {
	r       *ring.Ring
	c       *ring.Consumer
	ctx     context.Context // of the NextContext in progress, or nil
	bytes   uint64
	schema  *arrow.Schema // decoded first schema, to detect changes
	started bool
	pending *ring.Lease // a lease received before the schema-area message
}

func (m *slotMessages) Retain()  {}
func (m *slotMessages) Release() {}

// Message returns the next message; io.EOF at end of stream.
func (m *slotMessages) Message() (*ipc.Message, error) {
	for {
		l := m.pending
		m.pending = nil
		if l == nil {
			var err error
			ctx := m.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			if l, err = m.c.RecvContext(ctx); err != nil {
				return nil, err
			}
		}
		if !m.started && l.Flags() != FlagIPCSchema {
			// A late joiner: the schema message went by before we joined.
			b, err := m.r.Schema()
			if err != nil {
				l.Release()
				return nil, err
			}
			if b == nil {
				l.Release()
				return nil, ErrNoSchema
			}
			m.pending = l
			msg, _, err := decodeFrame(b, FlagIPCSchema)
			if err != nil {
				return nil, fmt.Errorf("schema area: %w", err)
			}
			return m.schemaMessage(msg, b)
		}
		m.bytes += uint64(len(l.Bytes()))
		msg, err := m.decode(l)
		l.Release()
		if err != nil || msg != nil {
			return msg, err
		}
	}
}

// decode copies one lease's message; nil, nil for a repeated schema.
func (m *slotMessages) decode(l *ring.Lease) (*ipc.Message, error) {
	at := func(err error) error {
		slot := l.Seq() % uint64(m.r.Layout().SlotCount)
		return fmt.Errorf("slot %d (sequence %d): %w", slot, l.Seq(), err)
	}
	msg, _, err := decodeFrame(l.Bytes(), l.Flags())
	if err != nil {
		return nil, at(err)
	}
	if l.Flags() == FlagIPCSchema {
		msg, err := m.schemaMessage(msg, l.Bytes())
		if err != nil {
			return nil, at(err)
		}
		return msg, nil
	}
	return msg, nil
}

// schemaMessage passes the first schema on and drops identical repeats.
func (m *slotMessages) schemaMessage(msg *ipc.Message, framed []byte) (*ipc.Message, error) {
	sr, err := ipc.NewReader(bytes.NewReader(framed))
	if err != nil {
		return nil, fmt.Errorf("%w: schema: %v", ErrCorrupt, err)
	}
	s := sr.Schema()
	sr.Release()
	if !m.started {
		m.started, m.schema = true, s
		return msg, nil
	}
	if !s.Equal(m.schema) {
		return nil, ErrSchemaChanged
	}
	return nil, nil
}

// decodeFrame checks one slot's message (LAYOUT.md §8.1) and returns a copy
// of it as an ipc.Message.
func decodeFrame(b []byte, flags uint32) (*ipc.Message, ipcframe.Info, error) {
	var info ipcframe.Info
	if flags&^EncodingMask != 0 {
		return nil, info, fmt.Errorf("%w: flags %#x", ErrUnknownFlags, flags)
	}
	want := 0
	switch flags {
	case FlagIPCSchema:
		want = ipcframe.HeaderSchema
	case FlagIPCDictionaryBatch:
		want = ipcframe.HeaderDictionaryBatch
	case FlagIPCRecordBatch:
		want = ipcframe.HeaderRecordBatch
	case FlagCDataOffsets:
		return nil, info, fmt.Errorf("%w: C-Data-offsets mode", ErrNotImplemented)
	default:
		return nil, info, fmt.Errorf("%w: flags %#x", ErrUnknownFlags, flags)
	}
	if len(b) < 8 || binary.LittleEndian.Uint32(b) != 0xFFFFFFFF {
		return nil, info, fmt.Errorf("%w: missing continuation marker", ErrCorrupt)
	}
	metaLen := int64(int32(binary.LittleEndian.Uint32(b[4:])))
	if metaLen <= 0 || 8+metaLen > int64(len(b)) || (8+metaLen)%8 != 0 {
		return nil, info, fmt.Errorf("%w: metadata size %d in a %d-byte message", ErrCorrupt, metaLen, len(b))
	}
	meta := b[8 : 8+metaLen]
	info, err := ipcframe.Parse(meta)
	if err != nil {
		return nil, info, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if info.Header != want {
		return nil, info, fmt.Errorf("%w: flag %d but header type %d", ErrCorrupt, flags, info.Header)
	}
	rest := int64(len(b)) - 8 - metaLen
	if info.BodyLen < 0 || info.BodyLen > rest {
		return nil, info, fmt.Errorf("%w: body length %d exceeds the %d bytes after the metadata", ErrCorrupt, info.BodyLen, rest)
	}
	for i := 0; i < info.NBufs; i++ {
		off, n := info.Buffer(meta, i)
		if off < 0 || n < 0 || off > info.BodyLen-n {
			return nil, info, fmt.Errorf("%w: buffer %d (offset %d, length %d) outside the %d-byte body", ErrCorrupt, i, off, n, info.BodyLen)
		}
	}
	body := b[8+metaLen : 8+metaLen+info.BodyLen]
	return ipc.NewMessage(
		memory.NewBufferBytes(bytes.Clone(meta)),
		memory.NewBufferBytes(append(make([]byte, 0, len(body)), body...)),
	), info, nil
}
