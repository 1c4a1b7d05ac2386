//go:build !linux

package proc

import (
	"errors"
	"math"

	"golang.org/x/sys/unix"
)

// Probe asks kill(pid, 0): ESRCH is Gone; anything else is Unknown, with no
// start time (this system has no /proc/<pid>/stat).
func Probe(pid uint32) (Status, uint64) {
	if pid == 0 || pid > math.MaxInt32 {
		return Gone, 0
	}
	if err := unix.Kill(int(pid), 0); errors.Is(err, unix.ESRCH) {
		return Gone, 0
	}
	return Unknown, 0
}

// State is "" here: there is no /proc/<pid>/stat to read.
func State(int) string { return "" }
