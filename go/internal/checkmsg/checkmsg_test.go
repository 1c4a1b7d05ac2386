package checkmsg

import (
	"encoding/binary"
	"testing"
)

// The pattern shortcut must agree with TESTING.md's byte formula.
func TestBodyMatchesFormula(t *testing.T) {
	s := Spec{Seed: 1, MinSize: 16, MaxSize: 4096}
	for _, j := range []uint64{0, 1, 2, 255, 256, 12345, 1 << 40} {
		m := make([]byte, s.Len(j))
		Fill(m, j)
		for i := 16; i < len(m); i++ {
			if want := byte((j*131 + uint64(i)*7) % 256); m[i] != want {
				t.Fatalf("message %d byte %d = %d, want %d", j, i, m[i], want)
			}
		}
		if got, err := s.Verify(m); err != nil || got != j {
			t.Fatalf("Verify(message %d) = %d, %v", j, got, err)
		}
	}
}

func TestSplitmixKnownValue(t *testing.T) {
	// First output of the reference splitmix64 seeded with 0.
	if got := Splitmix64(0); got != 0xe220a8397b1dcdaf {
		t.Fatalf("Splitmix64(0) = %#x", got)
	}
}

func TestVerifyDetectsDamage(t *testing.T) {
	s := Spec{Seed: 7, MinSize: 16, MaxSize: 300}
	m := make([]byte, s.Len(9))
	Fill(m, 9)
	for _, damage := range []func([]byte) []byte{
		func(b []byte) []byte { b[len(b)-1] ^= 1; return b },                     // torn body
		func(b []byte) []byte { b[9] ^= 1; return b },                            // checksum
		func(b []byte) []byte { binary.LittleEndian.PutUint64(b, 10); return b }, // wrong j
		func(b []byte) []byte { return b[:len(b)-1] },                            // short
	} {
		c := append([]byte(nil), m...)
		if _, err := s.Verify(damage(c)); err == nil {
			t.Fatal("damaged message verified")
		}
	}
}
