package ring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A named ring's file can be truncated under a process that has it mapped
// (only by its owner: named rings are 0600; memfd rings are sealed against
// it). The next access to a page past the new end raises SIGBUS, which Go
// turns into a crash dump of every goroutine unless the goroutine that
// faulted asked for a panic instead (debug.SetPanicOnFault). Guarded
// calls ask for it while they run and turn the fault into an error
// wrapping ErrTruncated:
//
//	alloy: region truncated: ring "x" was truncated under this process (file now 0 bytes, mapping 2101248 bytes)
//
// Guarded are the calls where a process waits or that are rare (a producer
// waiting for space, Close, Detach, SetSchema, a consumer's Close, the
// heartbeat goroutines) and every call of arrowshm's readers and writers.
// The per-message calls of this package (Reserve, Publish, Send, Recv,
// TryRecv, Lease.Release) are not: a guard (a deferred recover) costs about
// 30 ns a call, a third of a 64-byte message's send-receive-release. A
// program that uses them and wants the error rather than a crash guards
// its own loop, once per goroutine (the setting is the goroutine's), which
// also covers its reads of Lease bytes and writes into reserved slots:
//
//	func consume(r *ring.Ring, c *ring.Consumer) (err error) {
//		defer r.CatchFault(ring.TrapFaults(), &err)
//		for { l, err := c.Recv(); ...; l.Release() }
//	}
//
// TrapFaults sets the goroutine's setting and returns the previous value,
// which CatchFault restores.

// TrapFaults makes a memory fault in the calling goroutine panic instead of
// crashing the process (debug.SetPanicOnFault(true)) and returns the
// previous setting, for a deferred CatchFault to restore.
func TrapFaults() bool { return debug.SetPanicOnFault(true) }

// CatchFault, deferred after TrapFaults, restores the goroutine's fault
// setting to prev and turns a memory fault in r's mapping into an error in
// *err (err may be nil: the fault is then only stopped). A returned error,
// when r's file has been truncated meanwhile, is replaced by the
// truncation: arrow-go recovers panics itself and reports them as
// "unknown error", and whatever failed, the cause is the truncation. Any
// other panic goes on.
func (r *Ring) CatchFault(prev bool, err *error) { r.catchFaultAt(prev, err, recover()) }

// catchFaultAt is CatchFault given what the deferred function recovered
// (recover works only when called by the deferred function itself).
func (r *Ring) catchFaultAt(prev bool, err *error, p any) {
	debug.SetPanicOnFault(prev)
	if p == nil {
		if err != nil && *err != nil && !routine(*err) {
			if t := r.Truncated(); t != nil {
				*err = t
			}
		}
		return
	}
	addr, ok := faultAddr(p)
	if !ok {
		panic(p)
	}
	t := r.Truncated()
	if t == nil {
		if !r.inMapping(addr) {
			panic(p) // not ours
		}
		t = fmt.Errorf("%w: memory fault at %#x in the mapping of ring %s (%s)", ErrTruncated, addr, r.label(), r.sizes())
	}
	if err != nil {
		*err = t
	}
}

// catchFaultQuietly, deferred after TrapFaults in a goroutine that has no
// error to return (the heartbeat), restores the fault setting and stops a
// memory fault; the ring's next operation in another goroutine reports it.
func catchFaultQuietly(prev bool) {
	debug.SetPanicOnFault(prev)
	if p := recover(); p != nil {
		if _, ok := faultAddr(p); !ok {
			panic(p)
		}
	}
}

// routine reports whether err is part of the normal flow (end of stream,
// nothing yet, full, timeout, cancellation, closed), which a truncated
// file does not explain and which is not worth an fstat.
func routine(err error) bool {
	for _, e := range []error{io.EOF, ErrEmpty, ErrFull, ErrTimeout, ErrClosed, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// faultAddr is the address of a memory fault turned into a panic by
// debug.SetPanicOnFault (a runtime.Error with an Addr method).
func faultAddr(p any) (uintptr, bool) {
	f, ok := p.(interface {
		error
		Addr() uintptr
	})
	if !ok {
		return 0, false
	}
	return f.Addr(), true
}

// Truncated returns an error wrapping ErrTruncated if r's file is now
// shorter than its mapping (pages past its end raise SIGBUS), else nil.
// Rings in memory (tests) and sealed memfd rings are never truncated.
func (r *Ring) Truncated() error {
	size, ok := r.fileSize()
	if !ok || size >= uint64(len(r.mem)) {
		return nil
	}
	return fmt.Errorf("%w: ring %s was truncated under this process (%s)", ErrTruncated, r.label(), r.sizes())
}

func (r *Ring) fileSize() (uint64, bool) {
	if r.reg == nil || r.reg.fd < 0 {
		return 0, false
	}
	var st unix.Stat_t
	if unix.Fstat(r.reg.fd, &st) != nil {
		return 0, false
	}
	return uint64(st.Size), true
}

func (r *Ring) sizes() string {
	size, _ := r.fileSize()
	return fmt.Sprintf("file now %d bytes, mapping %d bytes", size, len(r.mem))
}

func (r *Ring) label() string {
	if r.reg != nil && r.reg.name != "" {
		return fmt.Sprintf("%q", r.reg.name)
	}
	return "(anonymous)"
}

func (r *Ring) inMapping(addr uintptr) bool {
	if len(r.mem) == 0 {
		return false
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(r.mem)))
	return addr >= base && addr-base < uintptr(len(r.mem))
}

// CatchFault is Ring.CatchFault for the producer's ring.
func (p *Producer) CatchFault(prev bool, err *error) { p.r.catchFaultAt(prev, err, recover()) }

// CatchFault is Ring.CatchFault for the consumer's ring.
func (c *Consumer) CatchFault(prev bool, err *error) { c.r.catchFaultAt(prev, err, recover()) }
