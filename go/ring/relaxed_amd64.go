//go:build amd64 && !race

package ring

import "unsafe"

// storeRelaxed32 stores a slot word that LAYOUT §4 writes Relaxed (len,
// flags, gen: the Release store of the stamp after them orders them for
// readers). Go's atomic stores are sequentially consistent, an XCHG on
// amd64, which waits for every earlier store (the payload's) to reach the
// cache before the next can start; a plain aligned MOV is single-copy
// atomic on amd64 and, under its total store order, stays before the
// stamp's store, so the payload's and the slot header's cache-line
// transfers overlap instead of following each other. The compiler keeps
// a plain store before a later sync/atomic store (atomics are ordered
// memory operations in its SSA). Race builds and other architectures use
// the atomic store (relaxed_other.go): the race detector would see a
// plain store that tools reading a live slot (Inspect) load atomically.
func storeRelaxed32(mem []byte, off uint64, v uint32) {
	*(*uint32)(unsafe.Pointer(&mem[off])) = v
}
