package proc

import (
	"bytes"
	"errors"
	"io/fs"
	"math"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Probe reads /proc/<pid>/stat: the state and, for a process that has not
// exited, its start time (field 22, starttime, in clock ticks since boot).
// Any failure other than "no such process" is Unknown.
func Probe(pid uint32) (Status, uint64) {
	if pid == 0 || pid > math.MaxInt32 {
		return Gone, 0 // no process can have this id
	}
	b, err := readStat(int(pid))
	if err != nil {
		// ESRCH: the process exited between open and read.
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			return Gone, 0
		}
		return Unknown, 0
	}
	return parseStat(b)
}

// State is the state letter of /proc/<pid>/stat ("R", "S", "T", "Z", …),
// or "" when it cannot be read: for tests that wait for a child to stop or
// become a zombie.
func State(pid int) string {
	b, err := readStat(pid)
	if err != nil {
		return ""
	}
	if f := afterComm(b); len(f) > 0 {
		return string(f[0])
	}
	return ""
}

func readStat(pid int) ([]byte, error) {
	return os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
}

// afterComm splits /proc/<pid>/stat after the command name: "pid (comm) S
// ...", where comm may contain spaces and parentheses, so the fields start
// after the last ')'. nil when there is no ')'.
func afterComm(b []byte) [][]byte {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return bytes.Fields(b[i+1:])
}

// parseStat parses the contents of /proc/<pid>/stat: the state is the
// first field after the command name, starttime the 20th.
func parseStat(b []byte) (Status, uint64) {
	f := afterComm(b)
	if len(f) == 0 {
		return Unknown, 0
	}
	switch string(f[0]) {
	case "Z", "X":
		return Gone, 0
	}
	if len(f) < 20 {
		return Unknown, 0
	}
	start, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return Unknown, 0
	}
	return Running, start
}
