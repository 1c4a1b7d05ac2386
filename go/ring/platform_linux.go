package ring

// The Linux-only pieces of the region and of waiting (LAYOUT §1, §6):
// sealed memfds, fallocate and futexes. platform_other.go makes the package
// compile elsewhere, where every entry point fails with
// ErrUnsupportedPlatform before reaching any of these.

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// osSupported reports whether this operating system can hold Alloy rings.
func osSupported() error { return nil }

// requiredSeals are the seals an anonymous region must carry (LAYOUT §1).
const requiredSeals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL

// fallocate allocates every page of fd's first size bytes now: a full
// /dev/shm fails here with ENOSPC instead of a SIGBUS on first touch of a
// page that cannot be had. A filesystem without fallocate is not an error.
func fallocate(fd int, size uint64) error {
	if err := unix.Fallocate(fd, 0, 0, int64(size)); err != nil && err != unix.EOPNOTSUPP {
		return err
	}
	return nil
}

// statfsFree is the space an unprivileged user may still allocate.
func statfsFree(st *unix.Statfs_t) uint64 { return st.Bavail * uint64(st.Frsize) }

// createAnonymous makes a sealed memfd region. The seals go on after the
// size is final and before any peer can see the fd.
func createAnonymous(label string, l Layout, o Options) (*region, error) {
	fd, size, err := anonymousFd(label, l.TotalSize, o.HugePages)
	if err != nil {
		return nil, err
	}
	r, err := sizeAndMap(fd, size)
	if err == nil {
		if _, err = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, requiredSeals); err != nil {
			unix.Munmap(r.mem)
			err = fmt.Errorf("alloy: F_ADD_SEALS: %w", err)
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	if o.Prefault {
		prefault(r.mem, true)
		r.prefault = true
	}
	return r, nil
}

// openFd opens a region from an inherited or received fd. The region keeps
// its own duplicate, so the caller still owns (and may close) fd.
func openFd(fd int) (*region, Layout, error) {
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		return nil, Layout{}, fmt.Errorf("%w: F_GET_SEALS on fd %d: %v", ErrNotSealed, fd, err)
	}
	if seals&requiredSeals != requiredSeals {
		return nil, Layout{}, fmt.Errorf("%w: fd %d has seals %#x, want %#x", ErrNotSealed, fd, seals, requiredSeals)
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, Layout{}, fmt.Errorf("alloy: dup fd %d: %w", fd, err)
	}
	r, l, err := mapAndValidate(dup)
	if err != nil {
		unix.Close(dup)
		return nil, Layout{}, err
	}
	return r, l, nil
}

// Shared (not FUTEX_PRIVATE_FLAG) operations: the waker is usually another
// process, and private futexes are keyed by address space.
const (
	futexWait = 0 // FUTEX_WAIT
	futexWake = 1 // FUTEX_WAKE
)

// futexWaitOn sleeps while *w == val, for at most d. Every outcome (woken,
// value changed, timeout, signal) just returns: callers re-check their
// condition, so the cause does not matter.
func futexWaitOn(w *atomic.Uint32, val uint32, d time.Duration) {
	if d <= 0 {
		return
	}
	ts := unix.NsecToTimespec(int64(d))
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWait, uintptr(val),
		uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// futexWakeAll wakes every waiter on w, in any process.
func futexWakeAll(w *atomic.Uint32) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWake, math.MaxInt32, 0, 0, 0)
}
