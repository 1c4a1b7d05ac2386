// Package ipcframe frames Arrow IPC messages the way slots carry them
// (LAYOUT.md §8.1): the 8-byte prefix, the flatbuffer metadata padded so the
// body starts 64-byte aligned, and every body buffer at a 64-byte offset.
// arrow-go pads buffers to 8 bytes only and keeps its flatbuffer code
// internal, so this package reads the few Message fields it needs with
// bounds checks and rewrites the Buffer offsets in place; the body is then
// copied once, buffer by buffer, from arrow-go's serializer to its aligned
// place. Used by package arrowshm (streams) and package reqrep.
package ipcframe

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Message header union values (Message.fbs).
const (
	HeaderSchema          = 1
	HeaderDictionaryBatch = 2
	HeaderRecordBatch     = 3
)

// Align is the alignment of the body and of every buffer in it.
const Align = 64

// AlignUp rounds x up to a multiple of a.
func AlignUp(x, a int64) int64 { return (x + a - 1) / a * a }

// HeaderLen is the prefix plus metadata, padded so the body starts on a
// 64-byte boundary.
func HeaderLen(metaLen int) int64 { return AlignUp(8+int64(metaLen), Align) }

// Layout computes each buffer's 64-aligned offset and the body length;
// with out != nil it stores the new offsets (out[i], len(out) >= NBufs).
func Layout(meta []byte, info Info, out []int64) (offsets []int64, bodyLen int64) {
	var cursor int64
	for i := 0; i < info.NBufs; i++ {
		_, n := info.Buffer(meta, i)
		at := AlignUp(cursor, Align)
		if out != nil {
			out[i] = at
		}
		cursor = at + n
	}
	return out, AlignUp(cursor, 8)
}

// Write frames one message into dst, whose length must be
// HeaderLen(len(meta)) + bodyLen: the prefix, a copy of meta with bodyLength
// and the Buffer offsets rewritten to offsets (from Layout), zero padding,
// then the body. serialize is called with a writer that receives the body
// as arrow-go serializes it (ipc.Payload.SerializeBody) and puts each buffer
// at its aligned place, zeroing the gaps.
func Write(dst, meta []byte, info Info, offsets []int64, bodyLen int64, serialize func(io.Writer) error) error {
	hdr := HeaderLen(len(meta))
	if int64(len(dst)) != hdr+bodyLen {
		return fmt.Errorf("ipcframe: %d-byte destination for a %d-byte message", len(dst), hdr+bodyLen)
	}
	if bodyLen != 0 && info.BodyPos < 0 {
		return fmt.Errorf("ipcframe: message without bodyLength has a %d-byte body", bodyLen)
	}
	binary.LittleEndian.PutUint32(dst[0:], 0xFFFFFFFF)
	binary.LittleEndian.PutUint32(dst[4:], uint32(hdr-8))
	m := dst[8 : 8+len(meta)]
	copy(m, meta)
	clear(dst[8+len(meta) : hdr])
	if info.BodyPos >= 0 {
		binary.LittleEndian.PutUint64(m[info.BodyPos:], uint64(bodyLen))
	}
	for i, off := range offsets[:info.NBufs] {
		info.SetBufferOffset(m, i, off)
	}
	rm := remapper{meta: meta, info: info, dst: dst[hdr:], offsets: offsets}
	if err := serialize(&rm); err != nil {
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
	info    Info
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
		for r.i < r.info.NBufs {
			off, ln := r.info.Buffer(r.meta, r.i)
			if off+ln > r.pos && ln > 0 {
				break
			}
			r.i++
		}
		if r.i == r.info.NBufs {
			return n, nil // trailing padding
		}
		off, ln := r.info.Buffer(r.meta, r.i)
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

type fbuf []byte

func (b fbuf) u16(at int) (int, error) {
	if at < 0 || at+2 > len(b) {
		return 0, fmt.Errorf("flatbuffer read at %d outside %d bytes", at, len(b))
	}
	return int(binary.LittleEndian.Uint16(b[at:])), nil
}

func (b fbuf) u32(at int) (int, error) {
	if at < 0 || at+4 > len(b) {
		return 0, fmt.Errorf("flatbuffer read at %d outside %d bytes", at, len(b))
	}
	return int(int32(binary.LittleEndian.Uint32(b[at:]))), nil
}

// field returns the absolute position of field i of the table at t, or -1
// if the field is absent.
func (b fbuf) field(t, i int) (int, error) {
	soff, err := b.u32(t)
	if err != nil {
		return 0, err
	}
	vt := t - soff
	vtLen, err := b.u16(vt)
	if err != nil {
		return 0, err
	}
	// As the flatbuffers runtime (arrow-go's reader) sees it: an entry
	// starting inside the vtable is there, even when an odd vtable size
	// cuts it (a damaged message must not read differently here).
	if 4+2*i >= vtLen {
		return -1, nil
	}
	off, err := b.u16(vt + 4 + 2*i)
	if err != nil || off == 0 {
		return -1, err
	}
	return t + off, nil
}

// indirect follows the uoffset stored at pos.
func (b fbuf) indirect(pos int) (int, error) {
	off, err := b.u32(pos)
	if err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("negative flatbuffer offset %d", off)
	}
	return pos + off, nil
}

// Info is what writers and readers need from a Message.
type Info struct {
	Header  int // union type: HeaderSchema, HeaderDictionaryBatch or HeaderRecordBatch
	BodyLen int64
	BodyPos int // position of the bodyLength field, -1 if absent
	BufsPos int // position of the first Buffer struct, -1 for none
	NBufs   int
	// LenPos is the position of the (record or dictionary) batch's
	// length field, -1 if absent (a zero length); NodesPos the position of
	// the first FieldNode struct (16 bytes: length, null count), -1 for
	// none. Writers patch these in a copy of a message of the same shape.
	LenPos   int
	NodesPos int
	NNodes   int
	// CustomMetadata: the Message has a custom_metadata field (readers
	// that decode batches themselves leave such messages to arrow-go).
	CustomMetadata bool
}

// Parse reads the header type, body length and Buffer structs of the IPC
// Message flatbuffer meta, checking every read against its bounds. A
// compressed body is refused (slots carry uncompressed buffers).
func Parse(meta []byte) (Info, error) {
	b := fbuf(meta)
	info := Info{BodyPos: -1, BufsPos: -1, LenPos: -1, NodesPos: -1}
	root, err := b.indirect(0)
	if err != nil {
		return info, err
	}
	p, err := b.field(root, 1)
	if err != nil || p < 0 || p >= len(b) {
		return info, fmt.Errorf("message without header type: %v", err)
	}
	info.Header = int(b[p])
	if info.BodyPos, err = b.field(root, 3); err != nil {
		return info, err
	}
	if info.BodyPos >= 0 {
		if info.BodyPos+8 > len(b) {
			return info, fmt.Errorf("bodyLength outside the metadata")
		}
		info.BodyLen = int64(binary.LittleEndian.Uint64(b[info.BodyPos:]))
	}
	// The version is not needed here, but arrow-go reads it: a damaged
	// position must be an error here too.
	verPos, err := b.field(root, 0)
	if err != nil {
		return info, err
	}
	if verPos >= 0 && verPos+2 > len(b) {
		return info, fmt.Errorf("version outside the metadata")
	}
	cm, err := b.field(root, 4)
	if err != nil {
		return info, err
	}
	info.CustomMetadata = cm >= 0
	if info.Header == HeaderSchema {
		return info, nil
	}
	hp, err := b.field(root, 2)
	if err != nil || hp < 0 {
		return info, fmt.Errorf("message without header: %v", err)
	}
	batch, err := b.indirect(hp)
	if err != nil {
		return info, err
	}
	switch info.Header {
	case HeaderDictionaryBatch:
		dp, err := b.field(batch, 1)
		if err != nil || dp < 0 {
			return info, fmt.Errorf("dictionary batch without data: %v", err)
		}
		if batch, err = b.indirect(dp); err != nil {
			return info, err
		}
	case HeaderRecordBatch:
	default:
		return info, fmt.Errorf("unsupported message header %d", info.Header)
	}
	if cp, err := b.field(batch, 3); err != nil || cp >= 0 {
		return info, fmt.Errorf("compressed bodies are not allowed in slots (%v)", err)
	}
	if info.LenPos, err = b.field(batch, 0); err != nil {
		return info, err
	}
	if info.LenPos >= 0 && info.LenPos+8 > len(b) {
		return info, fmt.Errorf("batch length outside the metadata")
	}
	np, err := b.field(batch, 1)
	if err != nil {
		return info, err
	}
	if np >= 0 {
		nvec, err := b.indirect(np)
		if err != nil {
			return info, err
		}
		n, err := b.u32(nvec)
		if err != nil || n < 0 || nvec+4+16*n > len(b) {
			return info, fmt.Errorf("node vector outside the metadata: %v", err)
		}
		info.NodesPos, info.NNodes = nvec+4, n
	}
	vp, err := b.field(batch, 2)
	if err != nil {
		return info, err
	}
	if vp < 0 {
		return info, nil
	}
	vec, err := b.indirect(vp)
	if err != nil {
		return info, err
	}
	n, err := b.u32(vec)
	if err != nil || n < 0 || vec+4+16*n > len(b) {
		return info, fmt.Errorf("buffer vector outside the metadata: %v", err)
	}
	info.BufsPos, info.NBufs = vec+4, n
	return info, nil
}

// Buffer returns Buffer struct i (offset, length).
func (m Info) Buffer(meta []byte, i int) (int64, int64) {
	p := m.BufsPos + 16*i
	return int64(binary.LittleEndian.Uint64(meta[p:])), int64(binary.LittleEndian.Uint64(meta[p+8:]))
}

// SetBufferOffset rewrites the offset of Buffer struct i in place.
func (m Info) SetBufferOffset(meta []byte, i int, off int64) {
	binary.LittleEndian.PutUint64(meta[m.BufsPos+16*i:], uint64(off))
}
