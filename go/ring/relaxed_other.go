//go:build !amd64 || race

package ring

// storeRelaxed32 stores a slot word that LAYOUT §4 writes Relaxed (len,
// flags, gen). Go has no relaxed atomic store, so off amd64 (and in race
// builds) this is the sequentially consistent one; see relaxed_amd64.go.
func storeRelaxed32(mem []byte, off uint64, v uint32) {
	u32At(mem, off).Store(v)
}
