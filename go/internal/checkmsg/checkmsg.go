// Package checkmsg builds and verifies the checked messages of
// doc/TESTING.md, with which stress and cross-language tests detect torn,
// partial, duplicated or reordered messages without sharing state.
package checkmsg

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

const (
	fnvOffset = 0xcbf29ce484222325
	fnvPrime  = 0x100000001b3
)

// Spec is the parameters both ends of a run agree on.
type Spec struct {
	Seed    uint64
	MinSize int // ≥ 16
	MaxSize int
}

// Splitmix64 is the length generator of TESTING.md.
func Splitmix64(x uint64) uint64 {
	x += 0x9E3779B97F4A7C15
	z := x
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// Len is the length of message j.
func (s Spec) Len(j uint64) int {
	return s.MinSize + int(Splitmix64(s.Seed^j)%uint64(s.MaxSize-s.MinSize+1))
}

// Check reports a malformed spec.
func (s Spec) Check() error {
	if s.MinSize < 16 || s.MaxSize < s.MinSize {
		return fmt.Errorf("checkmsg: need 16 ≤ min-size ≤ max-size, got %d, %d", s.MinSize, s.MaxSize)
	}
	return nil
}

// pattern[k] = 7k mod 256, long enough that every body is one sub-slice:
// byte i of message j is (131j + 7i) mod 256 = pattern[i + o] with
// o = 131j·7⁻¹ mod 256 (7 is invertible mod 256), so bodies are written and
// compared with copy and bytes.Equal instead of a byte loop.
var pattern []byte

// inv7 is 7⁻¹ mod 256.
const inv7 = 183

func init() {
	pattern = make([]byte, 256+1<<20)
	for k := range pattern {
		pattern[k] = byte(7 * k)
	}
}

func body(j uint64, n int) []byte {
	o := int(byte(j * 131 * inv7))
	return pattern[o+16 : o+n]
}

func checksum(head, body []byte) uint64 {
	h := uint64(fnvOffset)
	for _, b := range head {
		h = (h ^ uint64(b)) * fnvPrime
	}
	for _, b := range body {
		h = (h ^ uint64(b)) * fnvPrime
	}
	return h
}

// Fill writes message j into dst, which must be exactly Len(j) bytes.
func Fill(dst []byte, j uint64) {
	binary.LittleEndian.PutUint64(dst[0:8], j)
	copy(dst[16:], body(j, len(dst)))
	binary.LittleEndian.PutUint64(dst[8:16], checksum(dst[0:8], dst[16:]))
}

// Verify checks a received message and returns its number j.
func (s Spec) Verify(m []byte) (uint64, error) {
	if len(m) < 16 {
		return 0, fmt.Errorf("checkmsg: message of %d bytes is shorter than 16", len(m))
	}
	j := binary.LittleEndian.Uint64(m[0:8])
	if want := s.Len(j); len(m) != want {
		return j, fmt.Errorf("checkmsg: message %d has %d bytes, want %d", j, len(m), want)
	}
	if got, want := binary.LittleEndian.Uint64(m[8:16]), checksum(m[0:8], m[16:]); got != want {
		return j, fmt.Errorf("checkmsg: message %d checksum %#x, computed %#x", j, got, want)
	}
	if !bytes.Equal(m[16:], body(j, len(m))) {
		return j, fmt.Errorf("checkmsg: message %d body differs from the pattern", j)
	}
	return j, nil
}
