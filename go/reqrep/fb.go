package reqrep

import (
	"encoding/binary"
	"fmt"
)

// A minimal, bounds-checked reader of the flatbuffer fields of a
// RecordBatch Message that the request encoder rewrites: bodyLength and the
// Buffer structs. (arrow-go keeps its generated flatbuffer code internal;
// package arrowshm has the same reader for streams.)

const headerRecordBatch = 3 // Message.fbs union value

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

// field returns the position of field i of the table at t, -1 if absent.
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
	if 4+2*i+2 > vtLen {
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

// batchInfo locates the fields of a RecordBatch message.
type batchInfo struct {
	bodyPos int // position of bodyLength, -1 if absent
	bufsPos int // position of the first Buffer struct
	nbufs   int
}

func parseBatchMeta(meta []byte) (batchInfo, error) {
	b := fbuf(meta)
	info := batchInfo{bodyPos: -1, bufsPos: -1}
	root, err := b.indirect(0)
	if err != nil {
		return info, err
	}
	p, err := b.field(root, 1) // header_type
	if err != nil || p < 0 || p >= len(b) || b[p] != headerRecordBatch {
		return info, fmt.Errorf("not a record batch message (%v)", err)
	}
	if info.bodyPos, err = b.field(root, 3); err != nil {
		return info, err
	}
	if info.bodyPos >= 0 && info.bodyPos+8 > len(b) {
		return info, fmt.Errorf("bodyLength outside the metadata")
	}
	hp, err := b.field(root, 2) // header
	if err != nil || hp < 0 {
		return info, fmt.Errorf("message without header: %v", err)
	}
	batch, err := b.indirect(hp)
	if err != nil {
		return info, err
	}
	if cp, err := b.field(batch, 3); err != nil || cp >= 0 {
		return info, fmt.Errorf("compressed bodies are not allowed (%v)", err)
	}
	vp, err := b.field(batch, 2) // buffers
	if err != nil || vp < 0 {
		return info, err
	}
	vec, err := b.indirect(vp)
	if err != nil {
		return info, err
	}
	n, err := b.u32(vec)
	if err != nil || n < 0 || vec+4+16*n > len(b) {
		return info, fmt.Errorf("buffer vector outside the metadata: %v", err)
	}
	info.bufsPos, info.nbufs = vec+4, n
	return info, nil
}

// buffer returns Buffer struct i (offset, length).
func (m batchInfo) buffer(meta []byte, i int) (int64, int64) {
	p := m.bufsPos + 16*i
	return int64(binary.LittleEndian.Uint64(meta[p:])), int64(binary.LittleEndian.Uint64(meta[p+8:]))
}

func (m batchInfo) setBufferOffset(meta []byte, i int, off int64) {
	binary.LittleEndian.PutUint64(meta[m.bufsPos+16*i:], uint64(off))
}
