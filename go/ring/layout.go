package ring

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync/atomic"
	"unsafe"
)

// Constants of layout version 3 (doc/LAYOUT.md §2).
const (
	// Magic is the first u64 of every region: the ASCII bytes "ALLOYSHM".
	Magic uint64 = 0x4D4853594F4C4C41
	// Version is the layout version this package reads and writes (3:
	// every pid field is the low half of a u64 identity word whose high
	// half is the process's start time, and heartbeats no longer prove
	// death, LAYOUT §11.1; 2 added the queue holder markers of §3.3).
	Version uint32 = 3
	// HeaderSize is the size of the fixed header.
	HeaderSize = 256
	// Align is the payload alignment every slot guarantees.
	Align = 64
	// SlotHeaderSize precedes each slot's payload.
	SlotHeaderSize = 64
	// SubscriberEntrySize is the size of one subscriber table entry.
	SubscriberEntrySize = 128
	// MemberEntrySize is the size of one member table entry.
	MemberEntrySize = 64

	// MaxSlotCount bounds Config.SlotCount.
	MaxSlotCount = 1 << 20
	// MaxSlotSize bounds Config.SlotSize.
	MaxSlotSize = 1 << 30
	// MaxSubscribers bounds Config.MaxSubscribers.
	MaxSubscribers = 64
	// MaxMembers bounds Config.MaxMembers.
	MaxMembers = 256
	// MaxSchemaCapacity bounds Config.SchemaCapacity.
	MaxSchemaCapacity = 1 << 24
)

// Header field offsets (LAYOUT §2).
const (
	offMagic          = 0
	offVersion        = 8
	offHeaderSize     = 12
	offSlotCount      = 16
	offSlotSize       = 20
	offMaxSubscribers = 24
	offMaxMembers     = 28
	offSchemaCapacity = 32
	offAlign          = 36
	offTotalSize      = 40
	offCreatorPid     = 48
	offFlags          = 52
	offCreatedNs      = 56

	offPublished         = 64
	offClosed            = 72
	offError             = 76
	offProducerPid       = 80 // with offProducerStart, the producer's identity word (§11.1)
	offProducerStart     = 84
	offProducerHeartbeat = 88
	offStreamStart       = 96  // first sequence of the current stream (§4.1)
	offStreamGen         = 104 // generation of the current stream (§4.1)
	offDataWakes         = 112 // counters (§2.1): futex wake-ups issued on publish
	offFullRefusals      = 120 // reservations refused with ErrFull

	offDataWaiters       = 128
	offDataFutex         = 132
	offSpaceWaiters      = 136
	offSpaceFutex        = 140
	offTableEpoch        = 144
	offTableLock         = 152 // with offTableLockStart, the holder's identity word
	offTableLockStart    = 156
	offLostCount         = 160 // consumer members reclaimed as dead (§11.3)
	offLostPid           = 168 // pid of the last one
	offReclaims          = 172 // counters (§2.1), u32: reclaims that freed an entry
	offBackpressureWaits = 176 // reservations that waited for space
	offBackpressureNs    = 184 // total time of those waits

	offSchemaSeq = 192
	offSchemaLen = 196
)

// Subscriber entry (§3.1), member entry (§3.2) and slot header (§3.4) fields.
const (
	subState      = 0
	subKind       = 4
	subGroup      = 8
	subMembers    = 12
	subOwnerPid   = 16 // with subOwnerStart, the owner's identity word
	subOwnerStart = 20
	subHeartbeat  = 24
	subClaim      = 64
	subRelease    = 72
	subRedeliver  = 80

	memState      = 0
	memSubscriber = 4
	memPid        = 8 // with memStart, the member's identity word
	memStart      = 12
	memHeartbeat  = 16
	memParks      = 24 // counters (§2.1): futex waits for data
	memParkNs     = 32 // total time of those waits
	memSpaceWakes = 40 // wake-ups its releases issued to a waiting producer

	slotStamp = 0
	slotLen   = 8
	slotFlags = 12
	slotGen   = 16 // the message's stream generation (§4.1)
)

// Entry states and subscriber kinds (§3.1, §3.2).
const (
	stateFree    = 0
	stateJoining = 1
	stateActive  = 2

	kindBroadcast = 1
	kindQueue     = 2
)

// Config is the creator's choice of ring geometry. Every field is checked
// against the bounds of LAYOUT §2 when a region is created.
type Config struct {
	// SlotCount is the number of slots N: a power of two, 2 ≤ N ≤ 2^20.
	SlotCount uint32
	// SlotSize is the payload capacity of a slot, which is also the largest
	// message: a multiple of 64 in [64, 2^30].
	SlotSize uint32
	// MaxSubscribers is the number of broadcast consumers plus queue groups
	// that may be attached at once: 1..64.
	MaxSubscribers uint32
	// MaxMembers is the number of consumer handles that may be attached at
	// once: 1..256.
	MaxMembers uint32
	// SchemaCapacity is the size of the schema area: a multiple of 64, at
	// most 2^24, possibly 0.
	SchemaCapacity uint32
}

// DefaultConfig returns the general-purpose geometry both languages use
// (Rust `RingConfig::default()`): 64 slots of 1 MiB, 16 subscribers, 32
// members and a 64 KiB schema area. The file is 64 MiB and a bit; tmpfs
// pages are only allocated as slots are first written.
func DefaultConfig() Config {
	return Config{SlotCount: 64, SlotSize: 1 << 20, MaxSubscribers: 16, MaxMembers: 32, SchemaCapacity: 64 << 10}
}

// Layout is a validated Config with every derived offset of LAYOUT §3.
type Layout struct {
	Config
	// SubsOff is the offset of the subscriber table.
	SubsOff uint64
	// MembersOff is the offset of the member table.
	MembersOff uint64
	// DoneOff is the offset of the done arrays.
	DoneOff uint64
	// SchemaOff is the offset of the schema area.
	SchemaOff uint64
	// SlotsOff is the offset of slot 0 (a multiple of 4096).
	SlotsOff uint64
	// SlotStride is the distance between consecutive slots.
	SlotStride uint64
	// TotalSize is the size of the whole region.
	TotalSize uint64
}

func alignUp(x, a uint64) uint64 { return (x + a - 1) / a * a }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidLayout}, args...)...)
}

// check reports the first bound of LAYOUT §2 the config violates.
func (c Config) check() error {
	switch {
	case c.SlotCount < 2 || c.SlotCount > MaxSlotCount || bits.OnesCount32(c.SlotCount) != 1:
		return invalid("slot_count %d is not a power of two in [2, 2^20]", c.SlotCount)
	case c.SlotSize < 64 || c.SlotSize > MaxSlotSize || c.SlotSize%64 != 0:
		return invalid("slot_size %d is not a multiple of 64 in [64, 2^30]", c.SlotSize)
	case c.MaxSubscribers < 1 || c.MaxSubscribers > MaxSubscribers:
		return invalid("max_subscribers %d is not in [1, 64]", c.MaxSubscribers)
	case c.MaxMembers < 1 || c.MaxMembers > MaxMembers:
		return invalid("max_members %d is not in [1, 256]", c.MaxMembers)
	case c.SchemaCapacity > MaxSchemaCapacity || c.SchemaCapacity%64 != 0:
		return invalid("schema_capacity %d is not a multiple of 64 in [0, 2^24]", c.SchemaCapacity)
	}
	return nil
}

// Layout validates the config and computes the offsets of LAYOUT §3. The
// bounds keep every intermediate far below 2^64, so no overflow check is needed.
func (c Config) Layout() (Layout, error) {
	if err := c.check(); err != nil {
		return Layout{}, err
	}
	s, m, n := uint64(c.MaxSubscribers), uint64(c.MaxMembers), uint64(c.SlotCount)
	l := Layout{Config: c, SubsOff: HeaderSize}
	l.MembersOff = l.SubsOff + s*SubscriberEntrySize
	l.DoneOff = l.MembersOff + m*MemberEntrySize
	l.SchemaOff = alignUp(l.DoneOff+s*n*8, 64)
	l.SlotsOff = alignUp(l.SchemaOff+uint64(c.SchemaCapacity), 4096)
	l.SlotStride = SlotHeaderSize + uint64(c.SlotSize)
	l.TotalSize = l.SlotsOff + n*l.SlotStride
	return l, nil
}

// subOff is the offset of subscriber entry k.
func (l *Layout) subOff(k uint32) uint64 { return l.SubsOff + uint64(k)*SubscriberEntrySize }

// memberOff is the offset of member entry j.
func (l *Layout) memberOff(j uint32) uint64 { return l.MembersOff + uint64(j)*MemberEntrySize }

// doneOff is the offset of done[k][i].
func (l *Layout) doneOff(k uint32, i uint64) uint64 {
	return l.DoneOff + (uint64(k)*uint64(l.SlotCount)+i)*8
}

// slotOff is the offset of the header of the slot holding sequence seq.
func (l *Layout) slotOff(seq uint64) uint64 {
	return l.SlotsOff + (seq&uint64(l.SlotCount-1))*l.SlotStride
}

// writeHeader initializes a zero-filled region of l.TotalSize bytes: line 0
// of the header, magic last. The Release store of magic pairs with the
// Acquire load in readLayout: an opener that sees the magic sees every field.
func writeHeader(mem []byte, l Layout, creatorPid uint32, createdNs uint64) {
	le := binary.LittleEndian
	le.PutUint32(mem[offVersion:], Version)
	le.PutUint32(mem[offHeaderSize:], HeaderSize)
	le.PutUint32(mem[offSlotCount:], l.SlotCount)
	le.PutUint32(mem[offSlotSize:], l.SlotSize)
	le.PutUint32(mem[offMaxSubscribers:], l.MaxSubscribers)
	le.PutUint32(mem[offMaxMembers:], l.MaxMembers)
	le.PutUint32(mem[offSchemaCapacity:], l.SchemaCapacity)
	le.PutUint32(mem[offAlign:], Align)
	le.PutUint64(mem[offTotalSize:], l.TotalSize)
	le.PutUint32(mem[offCreatorPid:], creatorPid)
	le.PutUint32(mem[offFlags:], 0)
	le.PutUint64(mem[offCreatedNs:], createdNs)
	u64At(mem, offMagic).Store(Magic)
}

// ReadLayout validates a region image as LAYOUT §7 prescribes and returns
// its layout. size is the file size (b may be just the first 256 bytes of
// it); pass len(b) when b is the whole file. A zero magic gives
// ErrNotInitialized at once; opening a region by name or fd retries for 1 s.
func ReadLayout(b []byte, size uint64) (Layout, error) {
	if size < HeaderSize || len(b) < HeaderSize {
		return Layout{}, fmt.Errorf("%w: size %d, needed %d", ErrTruncated, size, HeaderSize)
	}
	le := binary.LittleEndian
	var magic uint64
	if uintptr(unsafe.Pointer(&b[0]))%8 == 0 {
		// Pairs with the Release store of magic in writeHeader.
		magic = u64At(b, offMagic).Load()
	} else {
		magic = le.Uint64(b) // a private copy: no concurrent writer
	}
	if magic == 0 {
		return Layout{}, ErrNotInitialized
	}
	if magic != Magic {
		return Layout{}, fmt.Errorf("%w: found %#x", ErrBadMagic, magic)
	}
	if v := le.Uint32(b[offVersion:]); v != Version {
		return Layout{}, fmt.Errorf("%w: found %d, expected %d", ErrVersionMismatch, v, Version)
	}
	if h := le.Uint32(b[offHeaderSize:]); h != HeaderSize {
		return Layout{}, invalid("header_size %d, expected %d", h, HeaderSize)
	}
	if a := le.Uint32(b[offAlign:]); a != Align {
		return Layout{}, invalid("align %d, expected %d", a, Align)
	}
	if f := le.Uint32(b[offFlags:]); f != 0 {
		return Layout{}, invalid("flags %#x, expected 0", f)
	}
	c := Config{
		SlotCount:      le.Uint32(b[offSlotCount:]),
		SlotSize:       le.Uint32(b[offSlotSize:]),
		MaxSubscribers: le.Uint32(b[offMaxSubscribers:]),
		MaxMembers:     le.Uint32(b[offMaxMembers:]),
		SchemaCapacity: le.Uint32(b[offSchemaCapacity:]),
	}
	l, err := c.Layout()
	if err != nil {
		return Layout{}, err
	}
	if t := le.Uint64(b[offTotalSize:]); t != l.TotalSize {
		return Layout{}, invalid("total_size %d, computed %d", t, l.TotalSize)
	}
	if size < l.TotalSize {
		return Layout{}, fmt.Errorf("%w: size %d, needed %d", ErrTruncated, size, l.TotalSize)
	}
	return l, nil
}

// u32At and u64At view a naturally aligned word of the mapping as an atomic.
// Every cross-process field is accessed only through these.
func u32At(mem []byte, off uint64) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&mem[off]))
}

func u64At(mem []byte, off uint64) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&mem[off]))
}
