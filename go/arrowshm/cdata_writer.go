package arrowshm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/ring"
)

// C-Data-offsets message constants (LAYOUT.md §8.3).
const (
	cdataMagic      = "ALCD"
	cdataVersion    = 1
	cdataHeaderSize = 64
	cdataNodeSize   = 40
	cdataBufferSize = 16
	cdataMaxDepth   = 64
	nodeHasDict     = 1
)

// ErrUnsupportedType means a schema holds a type the C-Data-offsets mode
// does not carry (see CDataSupported).
var ErrUnsupportedType = errors.New("arrowshm: type not supported in C-Data-offsets mode")

// CDataSupported reports whether the C-Data-offsets mode carries values of
// type dt (recursively), and if not, why. Supported: null, boolean, all
// integers, float16/32/64, decimal32/64/128/256, date32/64, time32/64,
// timestamp (with or without zone), duration, the three interval types,
// binary/string and their large and view variants, fixed-size binary,
// list, large list, list view, large list view, fixed-size list, struct,
// map, sparse and dense union, dictionary and run-end encoded. Refused:
// extension types (send their storage type instead).
func CDataSupported(dt arrow.DataType) error {
	switch t := dt.(type) {
	case arrow.ExtensionType:
		return fmt.Errorf("%w: extension type %s (send its storage type)", ErrUnsupportedType, t.ExtensionName())
	case *arrow.DictionaryType:
		return CDataSupported(t.ValueType)
	case arrow.NestedType:
		for _, f := range t.Fields() {
			if err := CDataSupported(f.Type); err != nil {
				return err
			}
		}
	}
	return nil
}

// CDataWriter sends records through a ring in C-Data-offsets mode
// (LAYOUT.md §8.3): each record's buffers live inside its slot, followed by
// a descriptor of the array tree with offsets instead of pointers. The
// schema goes first, exactly as in IPC mode (an IPC schema message, also
// stored in the ring's schema area); dictionary values travel inside every
// batch.
//
// Build is the copy-free path: the caller's builders allocate straight into
// the reserved slot, and nothing is copied after building. Write sends a
// record that already exists elsewhere, copying each of its buffers into
// the slot once. A record must fit in one slot (it is not split); one that
// does not fails with ErrSlotFull (Build) or ring.ErrMessageTooLarge
// (Write). CDataWriter is not safe for concurrent use.
type CDataWriter struct {
	p       *ring.Producer
	schema  *arrow.Schema
	sw      *slotWriter // publishes the schema message
	started bool
	closed  bool
	bytes   uint64
	batches uint64
	copied  uint64
	desc    []byte
	// same is the last record schema found equal to schema: a builder
	// that makes its schema per batch pays arrow's field-by-field Equal
	// once, not per batch (schemas are immutable).
	same *arrow.Schema
	// own is the allocator of Write's slots: reused, since no user code
	// sees it (Build gives each callback a new one, sealed afterwards).
	own slotAllocator
}

// NewCDataWriter returns a writer of records with the given schema through
// p, or ErrUnsupportedType for a schema holding a type the mode does not
// carry. Nothing is published before the first Build, Write or Close.
func NewCDataWriter(p *ring.Producer, schema *arrow.Schema) (*CDataWriter, error) {
	for _, f := range schema.Fields() {
		if err := CDataSupported(f.Type); err != nil {
			return nil, fmt.Errorf("column %q: %w", f.Name, err)
		}
	}
	return &CDataWriter{p: p, schema: schema, same: schema, sw: &slotWriter{p: p}}, nil
}

// BytesSent is the total payload of the messages published so far.
func (w *CDataWriter) BytesSent() uint64 { return w.bytes + w.sw.bytes }

// Batches is the number of record batch messages published so far.
func (w *CDataWriter) Batches() uint64 { return w.batches }

// CopiedBytes is the number of buffer bytes copied into slots so far:
// those of records given to Write, and those of buffers a Build callback
// did not allocate with the slot allocator. Zero when every record was
// built with Build's allocator.
func (w *CDataWriter) CopiedBytes() uint64 { return w.copied }

// Build reserves a slot and calls build with an allocator over it: arrays
// built with that allocator (array.NewBuilder(mem, …), Reserve, Append…)
// are written straight into shared memory. The record build returns is
// described in the slot and published; Build takes ownership of it and
// releases it. Arrays built with mem must not be used once build has
// returned: after publication the slot belongs to the ring again.
//
// A buffer that does not come from mem (or is not 64-byte aligned) is
// copied into the slot (see CopiedBytes). Builders grow their buffers by
// doubling, and only the most recent allocation grows in place, so sizing
// builders up front keeps the slot from filling with outgrown copies:
// Builder.Resize(n) gives exactly n elements (Reserve rounds up to a power
// of two, up to twice the space), ReserveData the exact data bytes. When the slot is full the
// allocator aborts the build and Build returns ErrSlotFull; nothing is
// published.
func (w *CDataWriter) Build(build func(mem memory.Allocator) (arrow.RecordBatch, error)) error {
	return w.BuildContext(context.Background(), build)
}

// BuildContext is Build giving up with ctx.Err() when ctx is done while it
// waits for a free slot.
func (w *CDataWriter) BuildContext(ctx context.Context, build func(mem memory.Allocator) (arrow.RecordBatch, error)) (err error) {
	defer w.p.CatchFault(ring.TrapFaults(), &err) // a truncated ring (ring/fault.go)
	return w.send(ctx, build, nil)
}

// send publishes the record build returns, or given (copied into the
// slot) if not nil.
func (w *CDataWriter) send(ctx context.Context, build func(mem memory.Allocator) (arrow.RecordBatch, error), given arrow.RecordBatch) (err error) {
	if w.closed {
		return ring.ErrClosed
	}
	if err := w.start(ctx); err != nil {
		return err
	}
	slot, err := w.p.ReserveContext(ctx, w.p.MaxMessageSize())
	if err != nil {
		return err
	}
	slot = slot[:cap(slot)]
	var alloc *slotAllocator
	if given != nil {
		w.own = slotAllocator{buf: slot, next: cdataHeaderSize, last: -1}
		alloc = &w.own
	} else {
		alloc = newSlotAllocator(slot)
	}
	// The slot goes back to the ring whatever happens; a late use of the
	// allocator (a builder kept after build returned) panics instead of
	// writing into a published or reused slot.
	defer func() { alloc.sealed = true }()
	rec := given
	if rec != nil {
		rec.Retain()
	} else {
		err = catchAlloc(func() error {
			var err error
			rec, err = build(alloc)
			return err
		})
	}
	if rec != nil {
		defer rec.Release()
	}
	if err != nil {
		return err
	}
	if rec == nil {
		return errors.New("arrowshm: Build callback returned no record")
	}
	if rs := rec.Schema(); rs != w.same {
		if !rs.Equal(w.schema) {
			return fmt.Errorf("arrowshm: record schema %s differs from the stream's %s", rs, w.schema)
		}
		w.same = rs
	}
	var n int
	if err := catchAlloc(func() error {
		var err error
		n, err = w.describe(alloc, rec)
		return err
	}); err != nil {
		return err
	}
	if err := w.p.Publish(n, FlagCDataOffsets); err != nil {
		return err
	}
	w.bytes += uint64(n)
	w.batches++
	return nil
}

// Write sends rec, copying each of its buffers into the slot (one copy;
// Build avoids it). Sliced arrays keep their offsets and whole buffers.
func (w *CDataWriter) Write(rec arrow.RecordBatch) error {
	return w.WriteContext(context.Background(), rec)
}

// WriteContext is Write giving up with ctx.Err() when ctx is done while it
// waits for a free slot.
func (w *CDataWriter) WriteContext(ctx context.Context, rec arrow.RecordBatch) (err error) {
	defer w.p.CatchFault(ring.TrapFaults(), &err) // a truncated ring (ring/fault.go)
	err = w.send(ctx, nil, rec)
	if errors.Is(err, ErrSlotFull) {
		return fmt.Errorf("%w: %w (C-Data-offsets mode does not split batches; send smaller ones)", ring.ErrMessageTooLarge, err)
	}
	return err
}

// Close publishes the schema if nothing was written, then ends the stream
// and detaches the producer. It is CloseContext(context.Background()): the
// schema's wait for a free slot has no end.
func (w *CDataWriter) Close() error {
	return w.CloseContext(context.Background())
}

// CloseContext is Close with ctx bounding the wait for a slot for the
// schema: a done ctx ends the stream without it (and its error is
// returned). A caller whose WriteContext gave up on ctx closes with the
// same ctx, so it does not block again on the full ring.
func (w *CDataWriter) CloseContext(ctx context.Context) (err error) {
	defer w.p.CatchFault(ring.TrapFaults(), &err) // a truncated ring (ring/fault.go)
	if w.closed {
		return nil
	}
	err = w.start(ctx)
	w.closed = true
	if cerr := w.p.Close(); err == nil {
		err = cerr
	}
	return err
}

// start publishes the schema message (LAYOUT.md §8.2) once.
func (w *CDataWriter) start(ctx context.Context) error {
	if w.started {
		return nil
	}
	pl := ipc.GetSchemaPayload(w.schema, memory.DefaultAllocator)
	defer pl.Release()
	w.sw.ctx = ctx
	defer func() { w.sw.ctx = nil }()
	if err := w.sw.WritePayload(pl); err != nil {
		return err
	}
	w.started = true
	return nil
}

// catchAlloc runs f, turning an allocator failure raised inside arrow-go
// into an error.
func catchAlloc(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			ap, ok := r.(allocPanic)
			if !ok {
				panic(r)
			}
			err = ap.err
		}
	}()
	return f()
}

// describe writes the header and descriptor of rec, whose buffers are
// (or are copied) in alloc's slot, and returns the message length.
func (w *CDataWriter) describe(alloc *slotAllocator, rec arrow.RecordBatch) (int, error) {
	e := cdataEncoder{alloc: alloc, desc: w.desc[:0]}
	for _, c := range rec.Columns() {
		if err := e.node(c.Data(), 1); err != nil {
			return 0, err
		}
	}
	w.desc = e.desc
	w.copied += e.copied
	descOff := alloc.next
	total := descOff + len(e.desc)
	if total > len(alloc.buf) {
		return 0, fmt.Errorf("%w: %d bytes of buffers and a %d-byte descriptor exceed the %d-byte slot", ErrSlotFull, descOff-cdataHeaderSize, len(e.desc), len(alloc.buf))
	}
	copy(alloc.buf[descOff:], e.desc)
	h := alloc.buf[:cdataHeaderSize]
	clear(h)
	copy(h, cdataMagic)
	binary.LittleEndian.PutUint16(h[4:], cdataVersion)
	binary.LittleEndian.PutUint16(h[6:], cdataHeaderSize)
	binary.LittleEndian.PutUint64(h[8:], uint64(rec.NumRows()))
	binary.LittleEndian.PutUint32(h[16:], uint32(rec.NumCols()))
	binary.LittleEndian.PutUint32(h[20:], e.nodes)
	binary.LittleEndian.PutUint32(h[24:], e.buffers)
	binary.LittleEndian.PutUint64(h[32:], uint64(descOff))
	binary.LittleEndian.PutUint64(h[40:], uint64(len(e.desc)))
	return total, nil
}

// cdataEncoder appends the pre-order node tree of LAYOUT.md §8.3.
type cdataEncoder struct {
	alloc   *slotAllocator
	desc    []byte
	nodes   uint32
	buffers uint32
	copied  uint64
}

func (e *cdataEncoder) node(d arrow.ArrayData, depth int) error {
	if depth > cdataMaxDepth {
		return fmt.Errorf("arrowshm: arrays nested deeper than %d", cdataMaxDepth)
	}
	dt := d.DataType()
	bufs := d.Buffers()
	// arrow-go keeps a (nil) validity slot for types that have none in the
	// Arrow format; the descriptor lists the format's buffers only.
	switch dt.ID() {
	case arrow.NULL, arrow.RUN_END_ENCODED:
		bufs = nil
	case arrow.SPARSE_UNION:
		bufs = bufs[1:2]
	case arrow.DENSE_UNION:
		bufs = bufs[1:3]
	}
	children := d.Children()
	// Dictionary returns a typed nil for non-dictionary arrays.
	dict, hasDict := d.Dictionary().(*array.Data)
	hasDict = hasDict && dict != nil
	var flags uint32
	if hasDict {
		flags = nodeHasDict
	}
	nulls := d.NullN()
	if nulls < 0 { // unknown after slicing: count the bitmap
		nulls = 0
		if len(bufs) > 0 && bufs[0] != nil && bufs[0].Len() > 0 {
			nulls = d.Len() - bitutil.CountSetBits(bufs[0].Bytes(), d.Offset(), d.Len())
		}
	}
	var n [cdataNodeSize]byte
	binary.LittleEndian.PutUint64(n[0:], uint64(d.Len()))
	binary.LittleEndian.PutUint64(n[8:], uint64(nulls))
	binary.LittleEndian.PutUint64(n[16:], uint64(d.Offset()))
	binary.LittleEndian.PutUint32(n[24:], uint32(len(bufs)))
	binary.LittleEndian.PutUint32(n[28:], uint32(len(children)))
	binary.LittleEndian.PutUint32(n[32:], flags)
	e.desc = append(e.desc, n[:]...)
	e.nodes++
	for _, b := range bufs {
		e.buffer(b)
	}
	for _, c := range children {
		if err := e.node(c, depth+1); err != nil {
			return err
		}
	}
	if hasDict {
		return e.node(dict, depth+1)
	}
	return nil
}

// buffer appends one buffer entry: in place when the buffer was allocated
// in the slot (64-byte aligned), else after copying it there.
func (e *cdataEncoder) buffer(b *memory.Buffer) {
	var off, n int
	if b != nil && b.Len() > 0 {
		bs := b.Bytes()
		n = len(bs)
		at, ok := e.alloc.offsetOf(bs)
		if !ok || at%align != 0 {
			dst := e.alloc.allocate(n) // not zeroed: overwritten at once
			copy(dst, bs)
			e.copied += uint64(n)
			at, _ = e.alloc.offsetOf(dst)
		}
		off = at
	}
	var ent [cdataBufferSize]byte
	binary.LittleEndian.PutUint64(ent[0:], uint64(off))
	binary.LittleEndian.PutUint64(ent[8:], uint64(n))
	e.desc = append(e.desc, ent[:]...)
	e.buffers++
}
