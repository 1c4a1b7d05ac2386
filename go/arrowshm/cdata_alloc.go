package arrowshm

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// ErrSlotFull means a record built in C-Data-offsets mode outgrew its slot:
// the allocator could not carve another buffer out of it (or the
// descriptor did not fit after the buffers).
var ErrSlotFull = errors.New("arrowshm: record batch does not fit in the slot")

// errAllocatorSealed is raised when an allocator is used after its slot
// was published or abandoned: the memory belongs to the ring again.
var errAllocatorSealed = errors.New("arrowshm: slot allocator used after its slot was published")

// allocPanic carries an allocator failure out of arrow-go's builders, whose
// Allocator interface cannot return errors; CDataWriter.Build recovers it.
type allocPanic struct{ err error }

// slotAllocator is a memory.Allocator carving 64-byte aligned buffers out
// of one reserved slot's payload (a bump allocator). The data area starts
// after the 64-byte header of LAYOUT.md §8.3. Free is a no-op (the whole
// slot is given back to the ring at once); Reallocate grows the most recent
// allocation in place and otherwise allocates anew and copies, counting the
// copied bytes in moved. Memory it returns is zeroed, like GoAllocator's,
// since builders rely on that (validity bitmaps, for one).
type slotAllocator struct {
	buf    []byte // the slot payload, len = slot capacity
	next   int    // first free offset, a multiple of 64
	last   int    // offset of the most recent allocation, -1 if none
	moved  int64  // bytes copied by Reallocate moving a buffer
	sealed bool
}

var _ memory.Allocator = (*slotAllocator)(nil)

func newSlotAllocator(buf []byte) *slotAllocator {
	return &slotAllocator{buf: buf, next: cdataHeaderSize, last: -1}
}

// fail aborts the current build (recovered by CDataWriter.Build).
func (a *slotAllocator) fail(err error) { panic(allocPanic{err}) }

// Allocate returns size zeroed bytes at the next 64-byte boundary.
func (a *slotAllocator) Allocate(size int) []byte {
	b := a.allocate(size)
	clear(b)
	return b
}

// allocate is Allocate leaving the buffer's bytes as they are (the caller
// overwrites them all); the padding after it is zeroed.
func (a *slotAllocator) allocate(size int) []byte {
	if a.sealed {
		a.fail(errAllocatorSealed)
	}
	if size < 0 {
		a.fail(fmt.Errorf("arrowshm: negative allocation %d", size))
	}
	at := a.next
	end := int(alignUp(int64(at+size), align))
	if end > len(a.buf) {
		a.fail(fmt.Errorf("%w: a %d-byte buffer at offset %d of a %d-byte slot", ErrSlotFull, size, at, len(a.buf)))
	}
	clear(a.buf[at+size : end])
	a.next, a.last = end, at
	return a.buf[at : at+size : at+size]
}

// Reallocate resizes b, in place when b is the most recent allocation and
// the slot has room, else by allocating and copying.
func (a *slotAllocator) Reallocate(size int, b []byte) []byte {
	if a.sealed {
		a.fail(errAllocatorSealed)
	}
	if size <= len(b) {
		return b[:size:size]
	}
	if at, ok := a.offsetOf(b); ok && at == a.last && len(b) > 0 {
		end := int(alignUp(int64(at+size), align))
		if end <= len(a.buf) {
			// Bytes up to the old aligned end are already zero.
			if end > a.next {
				clear(a.buf[a.next:end])
			}
			a.next = max(a.next, end)
			return a.buf[at : at+size : at+size]
		}
	}
	nb := a.Allocate(size)
	copy(nb, b)
	a.moved += int64(len(b))
	return nb
}

// Free does nothing: the slot is reused as a whole once every consumer
// released it.
func (a *slotAllocator) Free([]byte) {}

// offsetOf reports where b starts in the slot, if it lies entirely inside
// the allocated part of the data area. (Only addresses are compared; mapped
// memory never moves.)
func (a *slotAllocator) offsetOf(b []byte) (int, bool) {
	if len(a.buf) == 0 || cap(b) == 0 {
		return 0, false
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(a.buf)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if p < base+cdataHeaderSize || p+uintptr(len(b)) > base+uintptr(a.next) {
		return 0, false
	}
	return int(p - base), true
}
