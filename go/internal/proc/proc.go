// Package proc is what Alloy's Go packages ask of the operating system about
// processes and time: whether a process is gone (the liveness test of LAYOUT
// §11.1 builds on it), a process's start time, and CLOCK_MONOTONIC, the
// clock of heartbeats (§11.1) and request deadlines (§12.2) that the Rust
// side reads too. One copy, used by ring, reqrep and the tests.
//
// On Linux it reads /proc/<pid>/stat. Elsewhere (where rings cannot be made,
// see ring.ErrUnsupportedPlatform) Probe asks kill(pid, 0) and never knows a
// start time.
package proc

import "golang.org/x/sys/unix"

// Status is what is known about a process.
type Status int

const (
	// Gone: no such process, or a zombie (Z) or dead (X) one.
	Gone Status = iota
	// Running: not exited — running, sleeping, stopped, traced, …
	Running
	// Unknown: the system could not say; callers treat it as alive, so that
	// a peer is only ever given up when it is known to be gone.
	Unknown
)

// Dead is the pid-only test: the process is gone or a zombie. It cannot
// tell a reused pid (the ring's identity words add the start time for
// that).
func Dead(pid uint32) bool {
	st, _ := Probe(pid)
	return st == Gone
}

// MonoNs is CLOCK_MONOTONIC in nanoseconds: the clock of the region's
// heartbeats and of request deadlines, shared with the Rust processes on
// the same machine.
func MonoNs() uint64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}
