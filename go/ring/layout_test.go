//go:build linux

package ring

import (
	"encoding/binary"
	"errors"
	"testing"
)

func TestLayoutOffsets(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want Layout
	}{
		// Worked by hand from LAYOUT §3.
		{small, Layout{SubsOff: 256, MembersOff: 512, DoneOff: 768, SchemaOff: 832, SlotsOff: 4096, SlotStride: 128, TotalSize: 4608}},
		{Config{SlotCount: 8, SlotSize: 256, MaxSubscribers: 4, MaxMembers: 8, SchemaCapacity: 128},
			Layout{SubsOff: 256, MembersOff: 768, DoneOff: 1280, SchemaOff: 1536, SlotsOff: 4096, SlotStride: 320, TotalSize: 6656}},
		// Schema area pushing the slots to the next page; capacity 0.
		{Config{SlotCount: 2, SlotSize: 64, MaxSubscribers: 1, MaxMembers: 1, SchemaCapacity: 4096},
			Layout{SubsOff: 256, MembersOff: 384, DoneOff: 448, SchemaOff: 512, SlotsOff: 8192, SlotStride: 128, TotalSize: 8448}},
		{Config{SlotCount: 2, SlotSize: 64, MaxSubscribers: 1, MaxMembers: 1},
			Layout{SubsOff: 256, MembersOff: 384, DoneOff: 448, SchemaOff: 512, SlotsOff: 4096, SlotStride: 128, TotalSize: 4352}},
	} {
		tc.want.Config = tc.cfg
		got, err := tc.cfg.Layout()
		if err != nil || got != tc.want {
			t.Errorf("%+v.Layout() = %+v, %v; want %+v", tc.cfg, got, err, tc.want)
		}
	}
}

func TestConfigBounds(t *testing.T) {
	ok := Config{SlotCount: 2, SlotSize: 64, MaxSubscribers: 1, MaxMembers: 1}
	if _, err := ok.Layout(); err != nil {
		t.Fatalf("minimal config refused: %v", err)
	}
	big := Config{SlotCount: 1 << 20, SlotSize: 1 << 30, MaxSubscribers: 64, MaxMembers: 256, SchemaCapacity: 1 << 24}
	if _, err := big.Layout(); err != nil {
		t.Fatalf("maximal config refused: %v", err)
	}
	for name, mutate := range map[string]func(*Config){
		"slots 0":           func(c *Config) { c.SlotCount = 0 },
		"slots 1":           func(c *Config) { c.SlotCount = 1 },
		"slots 3":           func(c *Config) { c.SlotCount = 3 },
		"slots 2^21":        func(c *Config) { c.SlotCount = 1 << 21 },
		"slot size 0":       func(c *Config) { c.SlotSize = 0 },
		"slot size 100":     func(c *Config) { c.SlotSize = 100 },
		"slot size 2^30+64": func(c *Config) { c.SlotSize = 1<<30 + 64 },
		"subscribers 0":     func(c *Config) { c.MaxSubscribers = 0 },
		"subscribers 65":    func(c *Config) { c.MaxSubscribers = 65 },
		"members 0":         func(c *Config) { c.MaxMembers = 0 },
		"members 257":       func(c *Config) { c.MaxMembers = 257 },
		"schema 32":         func(c *Config) { c.SchemaCapacity = 32 },
		"schema 2^24+64":    func(c *Config) { c.SchemaCapacity = 1<<24 + 64 },
	} {
		c := ok
		mutate(&c)
		if _, err := c.Layout(); !errors.Is(err, ErrInvalidLayout) {
			t.Errorf("%s: err = %v, want ErrInvalidLayout", name, err)
		}
	}
}

// image returns a valid header image of the small config, whole file.
func image(t *testing.T) []byte {
	r := memRing(t, small, fixedEnv(4242, 3000, 1000))
	return append([]byte(nil), r.mem...)
}

func TestReadLayoutRefusals(t *testing.T) {
	le := binary.LittleEndian
	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
		want   error
	}{
		{"empty", func(b []byte) []byte { return b[:0] }, ErrTruncated},
		{"255 bytes", func(b []byte) []byte { return b[:255] }, ErrTruncated},
		{"short of total_size", func(b []byte) []byte { return b[:len(b)-1] }, ErrTruncated},
		{"zero magic", func(b []byte) []byte { le.PutUint64(b, 0); return b }, ErrNotInitialized},
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }, ErrBadMagic},
		{"big-endian magic", func(b []byte) []byte { binary.BigEndian.PutUint64(b, Magic); return b }, ErrBadMagic},
		{"version 1", func(b []byte) []byte { le.PutUint32(b[offVersion:], 1); return b }, ErrVersionMismatch},
		{"version 2", func(b []byte) []byte { le.PutUint32(b[offVersion:], 2); return b }, ErrVersionMismatch},
		{"version 4", func(b []byte) []byte { le.PutUint32(b[offVersion:], 4); return b }, ErrVersionMismatch},
		{"version 0", func(b []byte) []byte { le.PutUint32(b[offVersion:], 0); return b }, ErrVersionMismatch},
		{"header_size", func(b []byte) []byte { le.PutUint32(b[offHeaderSize:], 128); return b }, ErrInvalidLayout},
		{"align", func(b []byte) []byte { le.PutUint32(b[offAlign:], 8); return b }, ErrInvalidLayout},
		{"flags", func(b []byte) []byte { le.PutUint32(b[offFlags:], 1); return b }, ErrInvalidLayout},
		{"slot_count 3", func(b []byte) []byte { le.PutUint32(b[offSlotCount:], 3); return b }, ErrInvalidLayout},
		{"slot_size 65", func(b []byte) []byte { le.PutUint32(b[offSlotSize:], 65); return b }, ErrInvalidLayout},
		{"subscribers 0", func(b []byte) []byte { le.PutUint32(b[offMaxSubscribers:], 0); return b }, ErrInvalidLayout},
		{"members 300", func(b []byte) []byte { le.PutUint32(b[offMaxMembers:], 300); return b }, ErrInvalidLayout},
		{"schema 1", func(b []byte) []byte { le.PutUint32(b[offSchemaCapacity:], 1); return b }, ErrInvalidLayout},
		{"total_size", func(b []byte) []byte { le.PutUint64(b[offTotalSize:], 4608+128); return b }, ErrInvalidLayout},
		// A slot count that needs more bytes than the file has: the size
		// mismatch is caught before the truncation.
		{"total_size for other slots", func(b []byte) []byte { le.PutUint32(b[offSlotCount:], 8); return b }, ErrInvalidLayout},
	} {
		b := tc.mutate(image(t))
		if _, err := ReadLayout(b, uint64(len(b))); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	// A longer file is fine: its tail is ignored.
	b := append(image(t), make([]byte, 100)...)
	if l, err := ReadLayout(b, uint64(len(b))); err != nil || l.TotalSize != 4608 {
		t.Errorf("longer file: %+v, %v", l, err)
	}
}

func TestHeaderFields(t *testing.T) {
	b := image(t)
	le := binary.LittleEndian
	if string(b[:8]) != "ALLOYSHM" {
		t.Fatalf("magic bytes %q", b[:8])
	}
	for off, want := range map[int]uint64{
		offVersion: uint64(Version), offHeaderSize: 256, offSlotCount: 4, offSlotSize: 64, offMaxSubscribers: 2,
		offMaxMembers: 4, offSchemaCapacity: 64, offAlign: 64, offCreatorPid: 4242, offFlags: 0,
	} {
		if got := le.Uint32(b[off:]); uint64(got) != want {
			t.Errorf("u32 at %d = %d, want %d", off, got, want)
		}
	}
	if got := le.Uint64(b[offTotalSize:]); got != 4608 {
		t.Errorf("total_size = %d", got)
	}
	if got := le.Uint64(b[offCreatedNs:]); got != 1700000000000000000 {
		t.Errorf("created_ns = %d", got)
	}
	for i := 64; i < len(b); i++ {
		if b[i] != 0 {
			t.Fatalf("byte %d = %d in a fresh region; everything after line 0 must be zero", i, b[i])
		}
	}
}
