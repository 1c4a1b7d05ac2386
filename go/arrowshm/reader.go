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
// array.RecordReader. By default each message is copied out of its slot
// (one copy) and the slot released before decoding, so a record stays valid
// for as long as it is retained, independently of the ring; WithZeroCopy
// decodes record batches in place instead, holding each slot until the
// record's arrays are released. A consumer that joined after
// the schema message went by reads the schema from the ring's schema area.
//
// Every record is validated in full before it is handed out (unless
// WithTrustedProducer): offsets, UTF-8, dictionary keys, union type ids,
// null counts, dictionaries included (each dictionary once), so a damaged
// message is an ErrCorrupt error naming its slot and sequence, never a
// record that panics or reads garbage later (validate.go). Batches of flat
// schemas (fixed-width, boolean, binary and utf8 columns, dictionaries of
// those) are decoded by per-schema plans (read_plan.go, cdata_plan.go)
// whose checks are at least as strict; what they doubt goes the general
// way, with the same errors.
//
// Record batches in C-Data-offsets mode (flag 3, LAYOUT.md §8.3) are
// decoded too, from the same copy or in place: their descriptor is checked
// against the slot and the schema and the arrays are validated in full
// (array.ValidateFull) before the record is handed out. A stream may mix
// the two modes (writers do not): the ipc.Reader underneath keeps its
// dictionaries (copies) across C-Data-offsets batches.
//
// The Reader holds no slot beyond the records (and arrays) the user holds
// (doc/README.md "Holding batches"): dictionaries are copied, and the
// state kept between messages does not refer to a slot. A user who keeps
// more records read in place than the ring has slots stalls the stream;
// after the consumer's HeldLeaseTimeout Next returns false and Err an
// error wrapping ring.ErrRetentionStall. That error does not end the
// iteration: once records are released, a later Next goes on.
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
	schema *arrow.Schema
	// cur is the current record (the Reader's reference; an IPC record is
	// the ipc.Reader's record, rebuilt in place by slotMessages.own).
	cur    arrow.RecordBatch
	err    error
	closed bool
}

var _ array.RecordReader = (*Reader)(nil)

// ReaderOption configures NewReader.
type ReaderOption func(*slotMessages)

// WithZeroCopy makes the Reader decode record batches in place: their
// arrays point into the ring's shared memory, and the slot of a batch is
// released only when the last array (or slice of one) built from it is
// released, as in Rust. No byte of a batch is copied; the price is that a
// retained record holds its slot, so retaining as many as the ring has
// slots stalls the producer: Next then fails with ring.ErrRetentionStall
// after the consumer's HeldLeaseTimeout (doc/README.md "Holding batches";
// a later Next goes on once records are released). Schema and dictionary
// messages are still copied
// (the Reader keeps them for the whole stream); in C-Data-offsets mode
// dictionary values travel inside each batch's slot and are read in place
// with the rest.
//
// STRINGS CHANGE AFTER RELEASE. A string taken from a string, binary or
// dictionary column (String.Value, Dictionary values, ValueStr, …) is a view
// of the slot, not a copy: once the record is released the producer reuses
// the slot and the string's bytes change under it, with no error — a map
// keyed by such strings ends up with wrong keys. Copy every string you keep
// beyond the record (strings.Clone(col.Value(i))), or use
// WithCopiedStrings, which copies string and binary data and reads the
// rest in place.
func WithZeroCopy() ReaderOption {
	return func(m *slotMessages) { m.zeroCopy = true }
}

// WithCopiedStrings is WithZeroCopy except for string and binary data: the
// buffers of string, large string, string view, binary, large binary,
// binary view and fixed-size binary arrays (at any depth, dictionary values
// included) are copied out of the slot when the record is decoded, so the
// strings and byte slices taken from them stay as they were after the
// record is released. Numbers, booleans, offsets of lists and the rest are
// read in place, and a retained record still holds its slot.
func WithCopiedStrings() ReaderOption {
	return func(m *slotMessages) { m.zeroCopy, m.copyStrings = true, true }
}

// WithTrustedProducer skips the O(n) validation of records, in both modes
// (offsets monotonic and in range, UTF-8, dictionary keys, union type ids
// and offsets, null counts): for a producer you trust, as the Rust
// reader's unsafe with_skip_validation. The framing (IPC) or descriptor
// (C-Data-offsets) is still checked against the slot and the schema, and
// each array's buffer sizes and first and last offsets against its length
// (array.Validate), so no array reaches outside its message; but a
// producer that writes bad offsets in between or invalid UTF-8 can make
// later reads of the values panic or return garbage.
func WithTrustedProducer() ReaderOption {
	return func(m *slotMessages) { m.trusted = true }
}

// NewReader reads the stream the consumer c receives (from c's ring, so a
// reader cannot be given another ring's consumer). Nothing is received
// before the first Next (or Schema).
func NewReader(c *ring.Consumer, opts ...ReaderOption) *Reader {
	rd := &Reader{msgs: &slotMessages{r: c.Ring(), c: c}}
	for _, o := range opts {
		o(rd.msgs)
	}
	rd.refs.Store(1)
	return rd
}

// Next waits for the next record; false at the end of the stream or on an
// error (see Err).
func (rd *Reader) Next() bool { return rd.NextContext(context.Background()) }

// NextContext is Next giving up when ctx is done: it returns false
// promptly (the consumer's futex wait is woken) and Err returns ctx.Err().
// Like any error, cancellation ends the iteration for good.
func (rd *Reader) NextContext(ctx context.Context) (ok bool) {
	// The deferred calls are here, around next and its many returns, so
	// that the compiler open-codes them (a function with more returns
	// times defers than it open-codes runs them through the runtime).
	var fault error
	defer rd.afterFault(&ok, &fault)
	defer rd.msgs.r.CatchFault(ring.TrapFaults(), &fault) // a truncated ring (ring/fault.go)
	defer func() { rd.msgs.ctx = nil }()
	return rd.next(ctx)
}

// next is NextContext without the fault handling; rd.msgs.ctx is set to
// ctx once the Reader has started (NextContext clears it).
func (rd *Reader) next(ctx context.Context) bool {
	if errors.Is(rd.err, ring.ErrRetentionStall) {
		rd.err = nil // the one error after which reading goes on
	}
	if rd.closed {
		rd.err = orErr(rd.err, ring.ErrClosed)
	}
	if rd.err != nil || !rd.start(ctx) {
		return false
	}
	rd.msgs.ctx = ctx
	rd.setCur(nil)
	// Each message is looked at here first: records of C-Data-offsets
	// messages are decoded by the Reader, IPC messages go on to the
	// ipc.Reader (which keeps its dictionaries across them).
	for {
		l := rd.msgs.pending
		rd.msgs.pending = nil
		if l == nil {
			var err error
			if l, err = rd.msgs.c.RecvContext(ctx); err != nil {
				if errors.Is(err, ring.ErrRetentionStall) {
					// Between records (dictionary batches are queued):
					// the ipc.Reader stays as it is, for the next Next.
					rd.err = err
					return false
				}
				if !errors.Is(err, io.EOF) {
					rd.err = err
				}
				// Let the ipc.Reader end too, releasing its last record
				// (and, in place, its slot).
				rd.msgs.end = err
				rd.ipc.Next()
				return false
			}
		}
		switch l.Flags() {
		case FlagCDataOffsets:
			if len(rd.msgs.queued) > 0 {
				slot, seq := l.Seq()%uint64(rd.msgs.r.Layout().SlotCount), l.Seq()
				l.Release()
				rd.err = fmt.Errorf("slot %d (sequence %d): %w: a C-Data-offsets batch between a dictionary batch and its IPC record batch", slot, seq, ErrCorrupt)
				return false
			}
			rd.msgs.bytes += uint64(len(l.Bytes()))
			rd.msgs.count++
			rec, err := rd.msgs.cdata(l)
			if err != nil {
				rd.err = err
				return false
			}
			rd.cur = rd.msgs.strings(rec)
			return true
		case FlagIPCSchema:
			// A repeat (a producer that attached again): ignored if
			// identical, else ErrSchemaChanged.
			rd.msgs.bytes += uint64(len(l.Bytes()))
			rd.msgs.count++
			msg, err := rd.msgs.decode(l)
			l.Release()
			if msg != nil {
				msg.Release()
			}
			if err != nil {
				rd.err = err
				return false
			}
			continue
		case FlagIPCDictionaryBatch:
			// Copied now and queued for the ipc.Reader, so that every wait
			// of a record happens here, between records (retention.go).
			rd.msgs.note(l)
			if err := rd.msgs.queueDictionary(l); err != nil {
				rd.err = err
				return false
			}
			continue
		}
		if l.Flags() == FlagIPCRecordBatch && len(rd.msgs.queued) == 0 && !rd.msgs.noPlan {
			// A flat schema's batch the read plan decodes (read_plan.go);
			// anything else, and anything it doubts, goes on below.
			rec, err := rd.msgs.planned(l, rd.schema)
			if err != nil {
				rd.fail(err)
				return false
			}
			if rec != nil {
				rd.cur = rd.msgs.strings(rec)
				return true
			}
		}
		rd.msgs.pending = l
		if rd.ipc.Next() {
			if err := rd.msgs.checkRecord(rd.ipc.RecordBatch()); err != nil {
				rd.fail(err)
				return false
			}
			if p := rd.msgs.readPlan(rd.schema); p != nil && !rd.msgs.noPlan {
				p.noteDictionaries(rd.ipc.RecordBatch())
			}
			rd.cur = rd.msgs.strings(rd.msgs.own(rd.ipc.RecordBatch()))
			return true
		}
		rd.err = rd.msgs.ipcErr(rd.ipc.Err())
		return false
	}
}

// setCur makes rec (possibly nil) the current C-Data-offsets record,
// releasing the previous one.
func (rd *Reader) setCur(rec arrow.RecordBatch) {
	if rd.cur != nil {
		rd.cur.Release()
	}
	rd.cur = rec
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
	rd.schema = rd.ipc.Schema()
	return true
}

// RecordBatch is the current record, valid until the next call to Next
// unless retained; nil before the first Next or after Release.
func (rd *Reader) RecordBatch() arrow.RecordBatch { return rd.cur }

// Record is RecordBatch, for array.RecordReader.
//
// Deprecated: use RecordBatch.
func (rd *Reader) Record() arrow.RecordBatch { return rd.RecordBatch() }

// Schema is the stream's schema. Called before the first Next it waits for
// the schema message (or reads the schema area), as ipc.NewReader waits for
// the schema of a byte stream; nil if that fails (see Err). It waits for
// as long as no producer publishes a schema: use SchemaContext when the
// producer may never come.
func (rd *Reader) Schema() *arrow.Schema {
	s, _ := rd.SchemaContext(context.Background())
	return s
}

// SchemaContext is Schema giving up when ctx is done: it returns ctx.Err()
// (the consumer's wait is woken) when no schema was published in time — no
// producer attached, or it has not written yet. Giving up takes no message
// off the ring, so the Reader stays usable: a later SchemaContext or Next
// waits again. Any other error ends the Reader as in Next (see Err).
func (rd *Reader) SchemaContext(ctx context.Context) (s *arrow.Schema, err error) {
	var fault error
	defer func() {
		if fault != nil {
			rd.err, s, err = fault, nil, fault
		}
	}()
	defer rd.msgs.r.CatchFault(ring.TrapFaults(), &fault) // a truncated ring (ring/fault.go)
	if rd.start(ctx) {
		return rd.schema, nil
	}
	if cerr := ctx.Err(); cerr != nil && errors.Is(rd.err, cerr) {
		// Nothing was received (the wait for the first message ended):
		// leave the Reader as it was before this call.
		rd.err = nil
		return nil, cerr
	}
	if rd.err == nil && rd.closed {
		return nil, ring.ErrClosed
	}
	return nil, rd.err
}

// Err is the error that ended the iteration, nil at a clean end of stream.
func (rd *Reader) Err() error { return rd.err }

// BytesReceived is the total payload of the messages received so far.
func (rd *Reader) BytesReceived() uint64 { return rd.msgs.bytes }

// MessagesReceived is the number of ring messages received so far: the
// schema, dictionary batches and record batches, one each.
func (rd *Reader) MessagesReceived() uint64 { return rd.msgs.count }

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
	rd.setCur(nil)
	if rd.ipc != nil {
		rd.ipc.Release()
		rd.ipc = nil
	}
	rd.msgs.releaseQueued()
	rd.msgs.check.valid.release()
	if rd.msgs.rplan != nil {
		rd.msgs.rplan.release()
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
	count   uint64        // messages received (BytesReceived's messages)
	schema  *arrow.Schema // decoded first schema, to detect changes
	started bool
	pending *ring.Lease // a lease received before the schema-area message
	// zeroCopy: record batch bodies stay in their slots (WithZeroCopy).
	zeroCopy bool
	// copyStrings: string and binary buffers are copied out of the slot
	// (WithCopiedStrings).
	copyStrings bool
	// trusted: WithTrustedProducer (C-Data-offsets records are checked
	// only in O(1)).
	trusted bool
	last    *ipc.Message // the previous in-place message
	// owner: the lease of the last in-place message, as a buffer that
	// releases it when its last reference goes (retention.go: own).
	owner *memory.Buffer
	// queued: dictionary batches (copied) the Reader received before the
	// record batch in pending; Message returns them first.
	queued []*ipc.Message
	// end: the error (io.EOF at the end of the stream) the Reader met;
	// Message returns it.
	end error
	// check: what the contents of IPC records are checked with, and what
	// their errors name (validate.go).
	check ipcCheck
	// cplan: the C-Data-offsets decoding plan of schema (cdata_reader.go).
	cplan *cdataSchemaPlan
	// rplan: the IPC record batch plan of rplanFor, nil if that schema
	// has none (read_plan.go); noPlan: use neither it nor the C-Data-offsets
	// flat plan (cdata_plan.go), for tests and benchmarks.
	rplan    *readPlan
	rplanFor *arrow.Schema
	noPlan   bool
}

// cdata decodes a C-Data-offsets lease (LAYOUT.md §8.3) and takes over the
// lease: in place (WithZeroCopy: the slot is released with the last array)
// or from one copy of the payload (the slot is released at once).
func (m *slotMessages) cdata(l *ring.Lease) (arrow.RecordBatch, error) {
	seq, slot := l.Seq(), l.Seq()%uint64(m.r.Layout().SlotCount)
	var owner *memory.Buffer
	if m.zeroCopy {
		owner = memory.NewBufferWithAllocator(l.Bytes(), leaseOwner{l})
	} else {
		// The default allocator aligns to 64 bytes, as buffers in a slot are.
		owner = memory.NewResizableBuffer(memory.DefaultAllocator)
		owner.Resize(len(l.Bytes()))
		copy(owner.Bytes(), l.Bytes())
		l.Release()
	}
	if m.cplan == nil || m.cplan.schema != m.schema {
		m.cplan = newCDataSchemaPlan(m.schema)
		m.cplan.noFlat = m.noPlan
	}
	rec, err := decodeCData(owner, m.cplan, !m.trusted)
	owner.Release() // the arrays hold the payload now
	if err != nil {
		// arrow-go may have kept references to the payload in arrays it
		// abandoned when it panicked; they are unreachable, so the slot is
		// released here rather than with its last reference (Release is
		// idempotent).
		l.Release()
		return nil, fmt.Errorf("slot %d (sequence %d): %w", slot, seq, err)
	}
	return rec, nil
}

// strings applies WithCopiedStrings to a decoded record (its reference
// taken over).
func (m *slotMessages) strings(rec arrow.RecordBatch) arrow.RecordBatch {
	if !m.copyStrings {
		return rec
	}
	return copyStrings(m.r, rec, memory.DefaultAllocator)
}

func (m *slotMessages) Retain() {}

// Release drops the last in-place message (the ipc.Reader is done with it).
func (m *slotMessages) Release() { m.dropLast() }

// dropLast releases the previous in-place message: as with arrow-go's own
// message readers, a message is valid until the next call to Message. The
// arrays built from it keep its body (and so its slot) for themselves.
func (m *slotMessages) dropLast() {
	if m.last != nil {
		m.last.Release()
		m.last = nil
	}
	m.dropOwner()
}

// Message returns the next message; io.EOF at end of stream.
func (m *slotMessages) Message() (msg *ipc.Message, err error) {
	defer func() { m.check.msgErr = err }()
	m.dropLast()
	if m.end != nil {
		return nil, m.end
	}
	if msg := m.popQueued(); msg != nil {
		return msg, nil
	}
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
		m.count++
		m.note(l)
		if m.zeroCopy && l.Flags() == FlagIPCRecordBatch {
			return m.inPlace(l)
		}
		if l.Flags() == FlagCDataOffsets {
			// The Reader takes C-Data-offsets messages before the
			// ipc.Reader sees them; one here follows a dictionary batch
			// whose record batch has not come yet.
			slot, seq := l.Seq()%uint64(m.r.Layout().SlotCount), l.Seq()
			l.Release()
			return nil, fmt.Errorf("slot %d (sequence %d): %w: a C-Data-offsets batch between a dictionary batch and its IPC record batch", slot, seq, ErrCorrupt)
		}
		msg, err := m.decode(l)
		l.Release()
		if err != nil || msg != nil {
			return msg, err
		}
	}
}

// inPlace turns a record batch lease into a message whose body is the
// slot itself. The body does not hold the lease (the ipc.Reader keeps its
// record after the user is done with it): m.owner does, a buffer that
// releases the lease with its last reference, which own hands to the
// record's buffers.
func (m *slotMessages) inPlace(l *ring.Lease) (*ipc.Message, error) {
	meta, body, err := checkFrame(l.Bytes(), l.Flags())
	if err != nil {
		slot := l.Seq() % uint64(m.r.Layout().SlotCount)
		l.Release()
		return nil, fmt.Errorf("slot %d (sequence %d): %w", slot, l.Seq(), err)
	}
	m.dropOwner()
	m.owner = memory.NewBufferWithAllocator(body, leaseOwner{l})
	msg := ipc.NewMessage(memory.NewBufferBytes(bytes.Clone(meta)), memory.NewBufferBytes(body))
	m.last = msg
	return msg, nil
}

// leaseOwner is the memory.Allocator of an in-place message body: freeing
// the body releases the slot. It allocates nothing.
type leaseOwner struct{ l *ring.Lease }

func (o leaseOwner) Allocate(int) []byte { panic("arrowshm: slot memory cannot grow") }
func (o leaseOwner) Reallocate(int, []byte) []byte {
	panic("arrowshm: slot memory cannot grow")
}
func (o leaseOwner) Free([]byte) { o.l.Release() }

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
	meta, body, info, err := parseFrame(b, flags)
	if err != nil {
		return nil, info, err
	}
	return ipc.NewMessage(
		memory.NewBufferBytes(bytes.Clone(meta)),
		memory.NewBufferBytes(append(make([]byte, 0, len(body)), body...)),
	), info, nil
}

// checkFrame is parseFrame without the Info.
func checkFrame(b []byte, flags uint32) (meta, body []byte, err error) {
	meta, body, _, err = parseFrame(b, flags)
	return meta, body, err
}

// parseFrame checks one slot's message (LAYOUT.md §8.1: flag, prefix,
// metadata, every buffer inside the body) and returns its metadata and body
// as views of b.
func parseFrame(b []byte, flags uint32) (meta, body []byte, info ipcframe.Info, err error) {
	if flags&^EncodingMask != 0 {
		return nil, nil, info, fmt.Errorf("%w: flags %#x", ErrUnknownFlags, flags)
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
		return nil, nil, info, fmt.Errorf("%w: a C-Data-offsets message is not an IPC message", ErrCorrupt)
	default:
		return nil, nil, info, fmt.Errorf("%w: flags %#x", ErrUnknownFlags, flags)
	}
	if len(b) < 8 || binary.LittleEndian.Uint32(b) != 0xFFFFFFFF {
		return nil, nil, info, fmt.Errorf("%w: missing continuation marker", ErrCorrupt)
	}
	metaLen := int64(int32(binary.LittleEndian.Uint32(b[4:])))
	if metaLen <= 0 || 8+metaLen > int64(len(b)) || (8+metaLen)%8 != 0 {
		return nil, nil, info, fmt.Errorf("%w: metadata size %d in a %d-byte message", ErrCorrupt, metaLen, len(b))
	}
	meta = b[8 : 8+metaLen]
	body, info, err = checkMeta(meta, b[8+metaLen:], flags, want)
	return meta, body, info, err
}

// checkMeta parses the metadata meta of a message with flag flags, whose
// header type must be want, and checks its body against rest, the bytes
// after the metadata (every buffer inside the body); it returns the body,
// a view of rest.
func checkMeta(meta, rest []byte, flags uint32, want int) (body []byte, info ipcframe.Info, err error) {
	info, err = ipcframe.Parse(meta)
	if err != nil {
		return nil, info, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if info.Header != want {
		return nil, info, fmt.Errorf("%w: flag %d but header type %d", ErrCorrupt, flags, info.Header)
	}
	if info.BodyLen < 0 || info.BodyLen > int64(len(rest)) {
		return nil, info, fmt.Errorf("%w: body length %d exceeds the %d bytes after the metadata", ErrCorrupt, info.BodyLen, len(rest))
	}
	for i := 0; i < info.NBufs; i++ {
		off, n := info.Buffer(meta, i)
		if off < 0 || n < 0 || off > info.BodyLen-n {
			return nil, info, fmt.Errorf("%w: buffer %d (offset %d, length %d) outside the %d-byte body", ErrCorrupt, i, off, n, info.BodyLen)
		}
	}
	return rest[:info.BodyLen], info, nil
}
