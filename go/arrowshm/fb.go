package arrowshm

import (
	"encoding/binary"
	"fmt"
)

// A minimal, bounds-checked reader of the few flatbuffer fields of an IPC
// Message this package needs (header type, body length and the Buffer
// structs), plus in-place patching of the Buffer offsets (LAYOUT.md §8.1).
// arrow-go keeps its generated flatbuffer code internal.

// Message header union values (Message.fbs).
const (
	headerSchema          = 1
	headerDictionaryBatch = 2
	headerRecordBatch     = 3
)

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

// msgInfo is what the writer and reader need from a Message.
type msgInfo struct {
	header  int // union type
	bodyLen int64
	bodyPos int // position of the bodyLength field, -1 if absent
	bufsPos int // position of the first Buffer struct, -1 for none
	nbufs   int
}

func parseMessage(meta []byte) (msgInfo, error) {
	b := fbuf(meta)
	info := msgInfo{bodyPos: -1, bufsPos: -1}
	root, err := b.indirect(0)
	if err != nil {
		return info, err
	}
	p, err := b.field(root, 1)
	if err != nil || p < 0 || p >= len(b) {
		return info, fmt.Errorf("message without header type: %v", err)
	}
	info.header = int(b[p])
	if info.bodyPos, err = b.field(root, 3); err != nil {
		return info, err
	}
	if info.bodyPos >= 0 {
		if info.bodyPos+8 > len(b) {
			return info, fmt.Errorf("bodyLength outside the metadata")
		}
		info.bodyLen = int64(binary.LittleEndian.Uint64(b[info.bodyPos:]))
	}
	if info.header == headerSchema {
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
	switch info.header {
	case headerDictionaryBatch:
		dp, err := b.field(batch, 1)
		if err != nil || dp < 0 {
			return info, fmt.Errorf("dictionary batch without data: %v", err)
		}
		if batch, err = b.indirect(dp); err != nil {
			return info, err
		}
	case headerRecordBatch:
	default:
		return info, fmt.Errorf("unsupported message header %d", info.header)
	}
	if cp, err := b.field(batch, 3); err != nil || cp >= 0 {
		return info, fmt.Errorf("compressed bodies are not allowed in slots (%v)", err)
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
	info.bufsPos, info.nbufs = vec+4, n
	return info, nil
}

// buffer returns Buffer struct i (offset, length).
func (m msgInfo) buffer(meta []byte, i int) (int64, int64) {
	p := m.bufsPos + 16*i
	return int64(binary.LittleEndian.Uint64(meta[p:])), int64(binary.LittleEndian.Uint64(meta[p+8:]))
}

func (m msgInfo) setBufferOffset(meta []byte, i int, off int64) {
	binary.LittleEndian.PutUint64(meta[m.bufsPos+16*i:], uint64(off))
}
