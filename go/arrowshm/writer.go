package arrowshm

import (
	"context"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/internal/ipcframe"
	"github.com/ignalina/alloy/go/ring"
)

// Writer sends arrow records through a ring as Arrow IPC messages, one per
// slot (LAYOUT.md §8): the schema first (also stored in the ring's schema
// area), then dictionary batches when a dictionary changes, then one message
// per record. Each message is written straight into the reserved slot: the
// metadata is copied and patched so that every body buffer is 64-byte
// aligned, and each buffer is copied once, from the record's memory into the
// slot. Close ends the stream.
//
// Once the schema is sent, a record batch of a schema whose columns are
// all flat (fixed-width, binary, utf8, or dictionary-encoded) is written by
// a per-schema plan (ipc_plan.go) instead of arrow-go's encoder: the same
// bytes, with no allocation per batch. A batch whose dictionary is not the
// one last sent goes through arrow-go's writer, which sends the dictionary.
//
// A record whose message would not fit in a slot is split into row ranges
// that do (so one Write may publish several batches). Writer is not safe
// for concurrent use.
type Writer struct {
	p   *ring.Producer
	sw  *slotWriter
	ipc *ipc.Writer
	mem memory.Allocator
	// dicts gives the ipc.Writer, which keeps the last dictionary of each
	// field, copies: a record read in place elsewhere must not have its
	// slot kept by this writer (doc/README.md "Holding batches").
	dicts *DictionaryCopier
	// schema is the stream's; plan its fast path (nil if none), built
	// once planned is set.
	schema  *arrow.Schema
	plan    *ipcPlan
	planned bool
	// same is the last record schema found equal to schema (arrow's
	// Equal compares field by field; schemas are immutable).
	same *arrow.Schema
	// err is the failure of a planned write: like arrow-go's writer, the
	// Writer repeats it.
	err error
}

// WriterOption configures NewWriter.
type WriterOption func(*writerConfig)

type writerConfig struct{ deltas bool }

// WithDictionaryDeltas makes the Writer send a dictionary that only grew
// (its old values are a prefix of the new ones) as a delta dictionary batch
// holding just the new values (LAYOUT.md §8.2), instead of the whole
// dictionary again. Readers in both languages apply deltas.
func WithDictionaryDeltas(on bool) WriterOption {
	return func(c *writerConfig) { c.deltas = on }
}

// NewWriter returns a Writer of records with the given schema through p.
// Nothing is published before the first Write or Close.
func NewWriter(p *ring.Producer, schema *arrow.Schema, opts ...WriterOption) *Writer {
	var cfg writerConfig
	for _, o := range opts {
		o(&cfg)
	}
	sw := &slotWriter{p: p}
	mem := memory.DefaultAllocator
	return &Writer{
		p: p, sw: sw, mem: mem, dicts: NewDictionaryCopier(mem), schema: schema, same: schema,
		ipc: ipc.NewWriterWithPayloadWriter(sw, ipc.WithSchema(schema), ipc.WithAllocator(mem),
			ipc.WithDictionaryDeltas(cfg.deltas)),
	}
}

// BytesSent is the total payload of the messages published so far.
func (w *Writer) BytesSent() uint64 { return w.sw.bytes }

// Batches is the number of record batch messages published so far.
func (w *Writer) Batches() uint64 { return w.sw.batches }

// Write sends rec (after the schema and any changed dictionaries). A record
// with another schema is refused. Once Write fails the stream cannot
// continue: Close it.
func (w *Writer) Write(rec arrow.RecordBatch) error {
	return w.WriteContext(context.Background(), rec)
}

// WriteContext is Write giving up with ctx.Err() when ctx is done while a
// message waits for a free slot (the producer's Block back-pressure). As
// with any failed Write, the stream cannot continue afterwards: Close it.
func (w *Writer) WriteContext(ctx context.Context, rec arrow.RecordBatch) (err error) {
	defer w.p.CatchFault(ring.TrapFaults(), &err) // a truncated ring (ring/fault.go)
	if w.err != nil {
		return w.err
	}
	if w.sw.closed {
		return fmt.Errorf("arrowshm: Write after Close: %w", ring.ErrClosed)
	}
	if w.sw.schemaSent {
		if done, err := w.writePlanned(ctx, rec); done {
			w.err = err
			return err
		}
	}
	w.sw.ctx = ctx
	defer func() { w.sw.ctx = nil }()
	cp := w.dicts.Copy(rec)
	defer cp.Release()
	err = w.write(cp)
	if p := w.planFor(); p != nil {
		p.noteDictionaries(rec, err == nil)
	}
	return err
}

// planFor is the schema's plan (made on first use), nil if it has none.
func (w *Writer) planFor() *ipcPlan {
	if !w.planned {
		w.planned = true
		w.plan = newIPCPlan(w.schema)
	}
	return w.plan
}

// writePlanned writes rec with the schema's plan if it applies; done
// reports that it did (or failed trying: err).
func (w *Writer) writePlanned(ctx context.Context, rec arrow.RecordBatch) (done bool, err error) {
	p := w.planFor()
	if p == nil || !w.sameSchema(rec.Schema()) || !p.prepare(rec) {
		return false, nil
	}
	if p.tmpl == nil && !p.setTemplate(rec) {
		w.plan = nil
		return false, nil
	}
	total := p.layout()
	if total > int64(w.p.MaxMessageSize()) {
		return false, nil // the general path splits it
	}
	slot, err := w.p.ReserveContext(ctx, int(total))
	if err != nil {
		return true, err
	}
	p.write(slot[:total], rec.NumRows())
	if err := w.p.Publish(int(total), FlagIPCRecordBatch); err != nil {
		return true, err
	}
	w.sw.bytes += uint64(total)
	w.sw.batches++
	p.batches++
	return true, nil
}

// sameSchema reports whether s equals the stream's schema, comparing
// field by field only when s is not the schema last found equal.
func (w *Writer) sameSchema(s *arrow.Schema) bool {
	if s == w.same {
		return true
	}
	if !s.Equal(w.schema) {
		return false
	}
	w.same = s
	return true
}

func (w *Writer) write(rec arrow.RecordBatch) error {
	n, err := w.recordSize(rec)
	if err != nil {
		return err
	}
	if max := int64(w.p.MaxMessageSize()); n > max {
		if rec.NumRows() <= 1 {
			return fmt.Errorf("%w: a %d-byte record batch, max %d", ring.ErrMessageTooLarge, n, max)
		}
		half := rec.NumRows() / 2
		for _, r := range [][2]int64{{0, half}, {half, rec.NumRows()}} {
			part := rec.NewSlice(r[0], r[1])
			err := w.write(part)
			part.Release()
			if err != nil {
				return err
			}
		}
		return nil
	}
	return w.ipc.Write(rec)
}

// recordSize is the exact size of rec's record batch message in a slot,
// or a cheap upper bound when that already fits.
func (w *Writer) recordSize(rec arrow.RecordBatch) (int64, error) {
	bound := int64(4096)
	for _, c := range rec.Columns() {
		bound += dataBound(c.Data())
	}
	if bound <= int64(w.p.MaxMessageSize()) {
		return bound, nil
	}
	pl, err := ipc.GetRecordBatchPayload(rec, ipc.WithAllocator(w.mem))
	if err != nil {
		return 0, err
	}
	defer pl.Release()
	meta := pl.Meta()
	defer meta.Release()
	info, err := ipcframe.Parse(meta.Bytes())
	if err != nil {
		return 0, err
	}
	_, body := ipcframe.Layout(meta.Bytes(), info, nil)
	return ipcframe.HeaderLen(meta.Len()) + body, nil
}

// dataBound bounds the encoded size of one array: every buffer (whole, even
// if sliced) padded to 64, plus metadata per buffer and node.
func dataBound(d arrow.ArrayData) int64 {
	n := int64(64)
	for _, b := range d.Buffers() {
		n += 64 + 16
		if b != nil {
			n += int64(b.Len())
		}
	}
	for _, c := range d.Children() {
		n += dataBound(c)
	}
	// Dictionary returns a typed nil for non-dictionary arrays.
	if dict, ok := d.Dictionary().(*array.Data); ok && dict != nil {
		n += dataBound(dict)
	}
	return n
}

// Close publishes the schema if nothing was written, then ends the stream
// and detaches the producer. Writer implements io.Closer.
//
// Close always ends the stream, even when it returns an error: the error
// says what could not be published on the way (the schema of a stream
// nothing was written to, with RequireConsumers and no consumer:
// ring.ErrNoConsumers), or repeats the failure of an earlier Write (arrow-go's
// IPC writer keeps it; e.g. ring.ErrConsumerLost). Receivers see the end
// of stream after the batches that were published.
func (w *Writer) Close() (err error) {
	defer w.p.CatchFault(ring.TrapFaults(), &err) // a truncated ring (ring/fault.go)
	err = w.ipc.Close()
	if err == nil {
		err = w.err
	}
	w.dicts.Release()
	if !w.sw.closed {
		// The ipc writer failed before reaching our Close: end the stream.
		if cerr := w.p.Close(); err == nil {
			err = cerr
		}
		w.sw.closed = true
	}
	return err
}

// align and alignUp serve the C-Data-offsets allocator.
const align = ipcframe.Align

func alignUp(x, a int64) int64 { return ipcframe.AlignUp(x, a) }

// slotWriter is the ipc.PayloadWriter that puts each message in a slot.
type slotWriter struct {
	p       *ring.Producer
	ctx     context.Context // of the WriteContext in progress, or nil
	bytes   uint64
	batches uint64
	closed  bool
	offsets []int64
	// schemaSent: the schema message is published.
	schemaSent bool
}

func (s *slotWriter) Start() error { return nil }

func (s *slotWriter) Close() error {
	s.closed = true
	return s.p.Close()
}

func (s *slotWriter) WritePayload(pl ipc.Payload) error {
	meta := pl.Meta()
	defer meta.Release()
	mb := meta.Bytes()
	info, err := ipcframe.Parse(mb)
	if err != nil {
		return fmt.Errorf("arrowshm: arrow-go produced unexpected metadata: %w", err)
	}
	var flag uint32
	switch info.Header {
	case ipcframe.HeaderSchema:
		flag = FlagIPCSchema
	case ipcframe.HeaderDictionaryBatch:
		flag = FlagIPCDictionaryBatch
	case ipcframe.HeaderRecordBatch:
		flag = FlagIPCRecordBatch
	}
	if cap(s.offsets) < info.NBufs {
		s.offsets = make([]int64, info.NBufs)
	}
	s.offsets = s.offsets[:info.NBufs]
	_, bodyLen := ipcframe.Layout(mb, info, s.offsets)
	total := ipcframe.HeaderLen(len(mb)) + bodyLen
	if max := int64(s.p.MaxMessageSize()); total > max {
		return fmt.Errorf("%w: %d-byte message, max %d", ring.ErrMessageTooLarge, total, max)
	}
	ctx := s.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	slot, err := s.p.ReserveContext(ctx, int(total))
	if err != nil {
		return err
	}
	if err := ipcframe.Write(slot[:total], mb, info, s.offsets, bodyLen, pl.SerializeBody); err != nil {
		return err
	}
	if flag == FlagIPCSchema {
		if err := s.p.SetSchema(slot[:total]); err != nil {
			return err
		}
	}
	if err := s.p.Publish(int(total), flag); err != nil {
		return err
	}
	s.schemaSent = s.schemaSent || flag == FlagIPCSchema
	s.bytes += uint64(total)
	if flag == FlagIPCRecordBatch {
		s.batches++
	}
	return nil
}

// WriteAll reads every record of rr and writes it to w.
func WriteAll(w *Writer, rr array.RecordReader) (records int64, rows int64, err error) {
	for rr.Next() {
		rec := rr.RecordBatch()
		if err := w.Write(rec); err != nil {
			return records, rows, err
		}
		records++
		rows += rec.NumRows()
	}
	return records, rows, rr.Err()
}
