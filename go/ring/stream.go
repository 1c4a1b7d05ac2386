package ring

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// A ring carries one stream at a time, and a ring whose stream was closed
// can carry another (LAYOUT §4.1): a producer attached with
// ProducerOptions.NewStream starts stream generation g+1 at the current
// sequence and empties the schema area. Every slot records the generation
// of its message, so consumers attached across the change drain the old
// stream, get io.EOF once, and then receive the new one.

// StreamGen returns the generation of the ring's current stream: 0 for its
// first, one more for every stream a producer started with NewStream.
func (r *Ring) StreamGen() uint32 { return u32At(r.mem, offStreamGen).Load() }

// StreamStart returns the sequence number of the current stream's first
// message.
func (r *Ring) StreamStart() uint64 { return u64At(r.mem, offStreamStart).Load() }

// IsClosed reports whether the current stream has ended.
func (r *Ring) IsClosed() bool { return u32At(r.mem, offClosed).Load() == 1 }

// startStream is LAYOUT §4.1 for the attached producer: a new stream at
// `published` — unless the current stream is open and still empty, which
// it simply continues. It returns the generation to write into slots.
func (r *Ring) startStream() uint32 {
	m := r.mem
	gen := u32At(m, offStreamGen)
	published := u64At(m, offPublished).Load()
	start := u64At(m, offStreamStart)
	closed := u32At(m, offClosed)
	if closed.Load() == 0 && published == start.Load() {
		return gen.Load()
	}
	// Order (all SeqCst): where the stream starts, an empty schema area, the
	// generation, and only then reopen: a consumer that sees the new
	// generation finds the start and no stale schema.
	start.Store(published)
	r.setSchema(nil)
	g := gen.Load() + 1
	gen.Store(g)
	closed.Store(0)
	// Consumers parked at the end of the old stream look again.
	f := u32At(m, offDataFutex)
	f.Add(1)
	futexWakeAll(f)
	return g
}

// StreamEndedError says that the stream on a ring has ended (LAYOUT §4.1);
// it matches ErrStreamEnded with errors.Is, and for a producer's attach
// also ErrClosed (what that attach returned before streams could restart).
type StreamEndedError struct {
	Ring string // the ring's name, or "(anonymous)"
	Seq  uint64 // published when the stream ended: its last message was Seq-1

	attach bool
}

func (e *StreamEndedError) Error() string {
	return fmt.Sprintf("alloy: the stream on ring %s ended at sequence %d: a producer must start a new stream on it (ProducerOptions.NewStream; Rust: ProducerBuilder::new_stream), or remove the ring",
		e.Ring, e.Seq)
}

// Is matches ErrStreamEnded, and ErrClosed for a producer's attach.
func (e *StreamEndedError) Is(target error) bool {
	return target == ErrStreamEnded || (e.attach && target == ErrClosed)
}

// streamEnded is the error for a ring whose current stream was closed.
func (r *Ring) streamEnded(seq uint64, attach bool) error {
	return &StreamEndedError{Ring: r.displayName(), Seq: seq, attach: attach}
}

// OpenOrCreate opens the named ring if it exists, else creates it with cfg.
// Opening checks the geometry: every non-zero field of cfg must equal the
// ring's, else the error wraps ErrConfigMismatch (zero fields are taken
// from the ring). Safe against a concurrent creator: whoever loses the
// creation race opens the winner's ring. A ring whose stream has ended is
// returned as it is; attach the producer with NewStream to reuse it.
func OpenOrCreate(name string, cfg Config) (*Ring, error) {
	return OpenOrCreateWith(name, cfg, Options{})
}

// OpenOrCreateWith is OpenOrCreate with directory, group and owner Options
// (Group applies if this call creates the ring).
func OpenOrCreateWith(name string, cfg Config, o Options) (*Ring, error) {
	r, err := CreateWith(name, cfg, o)
	if err == nil || !errors.Is(err, unix.EEXIST) {
		return r, err
	}
	if r, err = OpenWith(name, o); err != nil {
		return nil, err
	}
	have := r.lay
	for _, f := range []struct {
		name       string
		want, have uint32
	}{
		{"SlotCount", cfg.SlotCount, have.SlotCount},
		{"SlotSize", cfg.SlotSize, have.SlotSize},
		{"MaxSubscribers", cfg.MaxSubscribers, have.MaxSubscribers},
		{"MaxMembers", cfg.MaxMembers, have.MaxMembers},
		{"SchemaCapacity", cfg.SchemaCapacity, have.SchemaCapacity},
	} {
		if f.want != 0 && f.want != f.have {
			r.Close()
			return nil, fmt.Errorf("%w: ring %s has %s %d, not the requested %d", ErrConfigMismatch, name, f.name, f.have, f.want)
		}
	}
	return r, nil
}
