package ring

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/ignalina/alloy/go/internal/proc"
)

// env supplies the pid and clocks written into the region. Tests replace it
// to reproduce the fixed values of the LAYOUT §10 vectors; nothing else may.
type env struct {
	pid    func() uint32
	start  func() uint32 // low 32 bits of the process's start time (LAYOUT §11.1)
	monoNs func() uint64 // CLOCK_MONOTONIC, for heartbeats
	realNs func() uint64 // CLOCK_REALTIME, for created_ns
}

// id is the process's identity word (LAYOUT §11.1): pid and start time.
func (e env) id() uint64 { return identity(e.pid(), e.start()) }

func newEnv() env {
	return env{
		pid:    func() uint32 { return uint32(os.Getpid()) },
		start:  ownStart,
		monoNs: proc.MonoNs,
		realNs: func() uint64 { return uint64(time.Now().UnixNano()) },
	}
}

// Ring is one mapping of an Alloy region. Producers and consumers are
// attached to it; the mapping stays until the Ring and every handle made
// from it are closed, so a Lease's bytes can never dangle.
type Ring struct {
	mem []byte
	lay Layout
	env env
	reg *region // nil for in-memory rings used by tests

	mu      sync.Mutex
	handles int  // the Ring itself plus attached producers and consumers
	closed  bool // Close was called on the Ring itself
}

// platformOK is the check every entry point starts with: Linux (see
// platform_other.go), 64-bit, little-endian.
func platformOK() error {
	if err := osSupported(); err != nil {
		return err
	}
	if strconv.IntSize != 64 || binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		return fmt.Errorf("%w: Alloy regions need a little-endian 64-bit platform", ErrInvalidLayout)
	}
	return nil
}

func newRing(mem []byte, l Layout, e env, reg *region) *Ring {
	return &Ring{mem: mem[:l.TotalSize], lay: l, env: e, reg: reg, handles: 1}
}

// Create makes a new named region <ShmDir>/<name> (mode 0600, which must
// not exist yet) with the given geometry and maps it. ShmDir is /dev/shm
// unless $ALLOY_SHM_DIR names another directory.
func Create(name string, cfg Config) (*Ring, error) { return CreateWith(name, cfg, Options{}) }

// CreateWith is Create in o.Dir, shared with o.Group when set (mode 0660).
// A directory too small for the region fails with ErrNoSpace.
func CreateWith(name string, cfg Config, o Options) (*Ring, error) {
	if err := platformOK(); err != nil {
		return nil, err
	}
	l, err := cfg.Layout()
	if err != nil {
		return nil, err
	}
	e := newEnv()
	reg, err := createNamed(name, l, o, func(mem []byte) { writeHeader(mem, l, e.pid(), e.realNs()) })
	if err != nil {
		return nil, err
	}
	return newRing(reg.mem, l, e, reg), nil
}

// Open maps the existing named region <ShmDir>/<name> after checking that
// it is ours (or shared with one of our groups, mode 0660) and valid
// (LAYOUT §7).
func Open(name string) (*Ring, error) { return OpenWith(name, Options{}) }

// OpenForeign is Open that also accepts a ring owned by another user, for
// deployments that share rings across uids on purpose (the file must still
// be a regular file). Open refuses such a ring with ErrForeignOwner unless
// it is shared with one of our groups: another user could resize or
// rewrite it under us.
func OpenForeign(name string) (*Ring, error) { return OpenWith(name, Options{AllowForeign: true}) }

// OpenWith is Open in o.Dir, accepting another user's ring when
// o.AllowForeign is set.
func OpenWith(name string, o Options) (*Ring, error) {
	if err := platformOK(); err != nil {
		return nil, err
	}
	reg, l, err := openNamedWith(name, o)
	if err != nil {
		return nil, err
	}
	return newRing(reg.mem, l, newEnv(), reg), nil
}

// CreateAnonymous makes a sealed memfd region named "alloy:<label>". Hand it
// to other processes with Fd (inheritance) or SendFd (SCM_RIGHTS).
func CreateAnonymous(label string, cfg Config) (*Ring, error) {
	return CreateAnonymousWith(label, cfg, Options{})
}

// CreateAnonymousWith is CreateAnonymous with o.HugePages and o.Prefault
// (its Dir, Group and AllowForeign do not apply).
func CreateAnonymousWith(label string, cfg Config, o Options) (*Ring, error) {
	if err := platformOK(); err != nil {
		return nil, err
	}
	l, err := cfg.Layout()
	if err != nil {
		return nil, err
	}
	reg, err := createAnonymous(label, l, o)
	if err != nil {
		return nil, err
	}
	e := newEnv()
	writeHeader(reg.mem, l, e.pid(), e.realNs())
	return newRing(reg.mem, l, e, reg), nil
}

// OpenFd maps the sealed memfd region behind fd, refusing it with
// ErrNotSealed unless it carries F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL. The
// Ring works on its own duplicate: the caller still owns fd.
func OpenFd(fd int) (*Ring, error) {
	if err := platformOK(); err != nil {
		return nil, err
	}
	reg, l, err := openFd(fd)
	if err != nil {
		return nil, err
	}
	return newRing(reg.mem, l, newEnv(), reg), nil
}

// Layout returns the region's geometry.
func (r *Ring) Layout() Layout { return r.lay }

// Contains reports whether b lies entirely inside the ring's mappings (the
// read-write one or the read-only one consumers read through): for
// checking that data was not copied out of shared memory (zero-copy
// assertions, like Rust's arrow::in_mapping). An empty b is contained.
func (r *Ring) Contains(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	in := func(m []byte) bool {
		start := uintptr(unsafe.Pointer(unsafe.SliceData(m)))
		return len(m) > 0 && p >= start && p+uintptr(len(b)) <= start+uintptr(len(m))
	}
	// Leases point into the read-only mapping (LAYOUT §1).
	return in(r.mem) || r.reg != nil && in(r.reg.readOnly())
}

// Fd returns the region's file descriptor (close-on-exec), or -1 for a ring
// not backed by a file. It stays owned by the Ring.
func (r *Ring) Fd() int {
	if r.reg == nil {
		return -1
	}
	return r.reg.fd
}

// Name returns the name of a named region, or "" for an anonymous one.
func (r *Ring) Name() string {
	if r.reg == nil {
		return ""
	}
	return r.reg.name
}

// acquire registers a producer or consumer, which keeps the mapping alive.
func (r *Ring) acquire() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	r.handles++
	return nil
}

// release drops one registration and unmaps after the last.
func (r *Ring) release() error {
	r.mu.Lock()
	r.handles--
	last := r.handles == 0
	r.mu.Unlock()
	if last && r.reg != nil {
		return r.reg.close()
	}
	return nil
}

// Close releases the Ring's own hold on the mapping. Producers and consumers
// made from it keep working; the region is unmapped when the last of them is
// closed too. Close does not remove a named region (see Remove).
func (r *Ring) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	r.closed = true
	r.mu.Unlock()
	return r.release()
}

// Schema returns a copy of the schema bytes the producer published (LAYOUT
// §9), or nil if none was published yet.
func (r *Ring) Schema() ([]byte, error) {
	seq := u32At(r.mem, offSchemaSeq)
	var b backoff
	deadline := time.Now().Add(time.Second)
	for {
		// Pairs with the Release (second) increment in setSchema.
		s1 := seq.Load()
		if s1 == 0 {
			return nil, nil
		}
		if s1%2 == 1 {
			// A writer that stays odd for a second died mid-write (§9).
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%w: schema area still being written after 1s", ErrTimeout)
			}
			b.snooze()
			continue
		}
		n := u32At(r.mem, offSchemaLen).Load()
		if n == 0 {
			// Cleared by a new stream that has not set its schema yet
			// (LAYOUT §4.1, §9).
			return nil, nil
		}
		if n > r.lay.SchemaCapacity {
			return nil, fmt.Errorf("%w: schema_len %d exceeds capacity %d", ErrCorrupt, n, r.lay.SchemaCapacity)
		}
		out := make([]byte, n)
		copyWordsOut(out, r.mem, r.lay.SchemaOff)
		// Go's atomic loads order the copy before this reload, as the
		// Acquire fence of §9 does.
		if seq.Load() == s1 {
			return out, nil
		}
	}
}

// setSchema writes the schema area as the seqlock writer of LAYOUT §9.
func (r *Ring) setSchema(b []byte) error {
	if uint64(len(b)) > uint64(r.lay.SchemaCapacity) {
		return fmt.Errorf("%w: %d bytes, capacity %d", ErrSchemaTooLarge, len(b), r.lay.SchemaCapacity)
	}
	seq := u32At(r.mem, offSchemaSeq)
	// Odd while writing: readers retry (SeqCst, as §9 asks). An odd value
	// left by a producer that died mid-write is moved past, never back to
	// even, so no reader can take a half-written schema for a stable one.
	w := seq.Load()
	if w%2 == 0 {
		w++
	} else {
		w += 2
	}
	seq.Store(w)
	copyWordsIn(r.mem, r.lay.SchemaOff, b)
	u32At(r.mem, offSchemaLen).Store(uint32(len(b)))
	seq.Store(w + 1) // even again; pairs with the readers' Acquire loads
	return nil
}

// copyWordsIn writes b at off with 8-byte atomic stores, so a concurrent
// seqlock reader is a well-defined (if retried) read rather than a data race.
// The last partial word is merged with the bytes already there, leaving the
// area beyond len(b) exactly as a byte-wise copy would.
func copyWordsIn(mem []byte, off uint64, b []byte) {
	var w [8]byte
	for i := 0; i < len(b); i += 8 {
		p := u64At(mem, off+uint64(i))
		binary.LittleEndian.PutUint64(w[:], p.Load())
		copy(w[:], b[i:])
		p.Store(binary.LittleEndian.Uint64(w[:]))
	}
}

// copyWordsOut fills out from off with 8-byte atomic loads.
func copyWordsOut(out []byte, mem []byte, off uint64) {
	var w [8]byte
	for i := 0; i < len(out); i += 8 {
		binary.LittleEndian.PutUint64(w[:], u64At(mem, off+uint64(i)).Load())
		copy(out[i:], w[:])
	}
}
