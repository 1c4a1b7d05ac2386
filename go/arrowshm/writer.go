package arrowshm

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

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
// A record whose message would not fit in a slot is split into row ranges
// that do (so one Write may publish several batches). Writer is not safe
// for concurrent use.
type Writer struct {
	p   *ring.Producer
	sw  *slotWriter
	ipc *ipc.Writer
	mem memory.Allocator
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
		p: p, sw: sw, mem: mem,
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
func (w *Writer) WriteContext(ctx context.Context, rec arrow.RecordBatch) error {
	w.sw.ctx = ctx
	defer func() { w.sw.ctx = nil }()
	return w.write(rec)
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
	info, err := parseMessage(meta.Bytes())
	if err != nil {
		return 0, err
	}
	_, body := alignedLayout(meta.Bytes(), info, nil)
	return headerLen(meta.Len()) + body, nil
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
func (w *Writer) Close() error {
	err := w.ipc.Close()
	if !w.sw.closed {
		// The ipc writer failed before reaching our Close: end the stream.
		if cerr := w.p.Close(); err == nil {
			err = cerr
		}
		w.sw.closed = true
	}
	return err
}

// headerLen is the prefix plus metadata, padded so the body starts on a
// 64-byte boundary.
func headerLen(metaLen int) int64 { return alignUp(8+int64(metaLen), align) }

const align = 64

func alignUp(x, a int64) int64 { return (x + a - 1) / a * a }

// alignedLayout computes each buffer's 64-aligned offset and the body
// length; with out != nil it stores the new offsets (out[i]).
func alignedLayout(meta []byte, info msgInfo, out []int64) (offsets []int64, bodyLen int64) {
	var cursor int64
	for i := 0; i < info.nbufs; i++ {
		_, n := info.buffer(meta, i)
		at := alignUp(cursor, align)
		if out != nil {
			out[i] = at
		}
		cursor = at + n
	}
	return out, alignUp(cursor, 8)
}

// slotWriter is the ipc.PayloadWriter that puts each message in a slot.
type slotWriter struct {
	p       *ring.Producer
	ctx     context.Context // of the WriteContext in progress, or nil
	bytes   uint64
	batches uint64
	closed  bool
	offsets []int64
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
	info, err := parseMessage(mb)
	if err != nil {
		return fmt.Errorf("arrowshm: arrow-go produced unexpected metadata: %w", err)
	}
	var flag uint32
	switch info.header {
	case headerSchema:
		flag = FlagIPCSchema
	case headerDictionaryBatch:
		flag = FlagIPCDictionaryBatch
	case headerRecordBatch:
		flag = FlagIPCRecordBatch
	}
	if cap(s.offsets) < info.nbufs {
		s.offsets = make([]int64, info.nbufs)
	}
	s.offsets = s.offsets[:info.nbufs]
	_, bodyLen := alignedLayout(mb, info, s.offsets)
	hdr := headerLen(len(mb))
	total := hdr + bodyLen
	if max := int64(s.p.MaxMessageSize()); total > max {
		return fmt.Errorf("%w: %d-byte message, max %d", ring.ErrMessageTooLarge, total, max)
	}
	if bodyLen != 0 && info.bodyPos < 0 {
		return fmt.Errorf("arrowshm: message without bodyLength has a %d-byte body", bodyLen)
	}
	ctx := s.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	slot, err := s.p.ReserveContext(ctx, int(total))
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(slot[0:], 0xFFFFFFFF)
	binary.LittleEndian.PutUint32(slot[4:], uint32(hdr-8))
	m := slot[8 : 8+len(mb)]
	copy(m, mb)
	clear(slot[8+len(mb) : hdr])
	if info.bodyPos >= 0 {
		binary.LittleEndian.PutUint64(m[info.bodyPos:], uint64(bodyLen))
	}
	body := slot[hdr:total]
	rm := remapper{meta: mb, info: info, dst: body, offsets: s.offsets}
	for i, off := range s.offsets {
		info.setBufferOffset(m, i, off)
	}
	if err := pl.SerializeBody(&rm); err != nil {
		return err
	}
	rm.finish()
	if flag == FlagIPCSchema {
		if err := s.p.SetSchema(slot[:total]); err != nil {
			return err
		}
	}
	if err := s.p.Publish(int(total), flag); err != nil {
		return err
	}
	s.bytes += uint64(total)
	if flag == FlagIPCRecordBatch {
		s.batches++
	}
	return nil
}

// remapper receives the body as arrow-go serializes it (buffers at the
// 8-aligned offsets of the original metadata, with padding) and copies each
// buffer to its 64-aligned place in the slot, zeroing the gaps.
type remapper struct {
	meta    []byte
	info    msgInfo
	dst     []byte
	offsets []int64
	pos     int64 // position in arrow-go's serialized stream
	i       int   // current buffer
	written int64 // dst bytes up to which gaps are zeroed
}

func (r *remapper) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		// Skip buffers that end before pos (and empty ones).
		for r.i < r.info.nbufs {
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

func (r *remapper) finish() { clear(r.dst[r.written:]) }

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
