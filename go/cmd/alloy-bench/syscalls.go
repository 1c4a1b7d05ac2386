package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// straceTotal reads the "total" calls of an `strace -c` summary file.
func straceTotal(path string) (int64, error) {
	c, err := straceCalls(path)
	if err != nil {
		return 0, err
	}
	return c["total"], nil
}

// straceCalls reads an `strace -c` summary file: calls per syscall name,
// and the sum under "total".
func straceCalls(path string) (map[string]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	calls := map[string]int64{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 || strings.HasPrefix(f[0], "-") || f[0] == "%" {
			continue
		}
		n, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			continue
		}
		calls[f[len(f)-1]] = n
	}
	if _, ok := calls["total"]; !ok {
		return nil, fmt.Errorf("%s: no total line in the strace summary", path)
	}
	return calls, nil
}

// perMessage runs one measurement twice under `strace -c -f`, with lo and
// hi messages, and returns the extra syscalls per extra message (start-up
// and tear-down cancel out) and the raw counts. A difference below zero is
// run-to-run noise in start-up (thread spawns, futexes); it is reported as
// 0, with the raw counts alongside.
func perMessage(lo, hi int64, run func(n int64, wrap []string) error) (float64, string, error) {
	var calls [2]map[string]int64
	dir, err := os.MkdirTemp("", "alloy-bench-strace")
	if err != nil {
		return 0, "", err
	}
	defer os.RemoveAll(dir)
	for i, n := range []int64{lo, hi} {
		f := filepath.Join(dir, strconv.Itoa(i))
		if err := run(n, []string{"strace", "-f", "-c", "-o", f}); err != nil {
			return 0, "", err
		}
		if calls[i], err = straceCalls(f); err != nil {
			return 0, "", err
		}
	}
	d := float64(hi - lo)
	raw := fmt.Sprintf("%d syscalls for %d msgs, %d for %d", calls[1]["total"], hi, calls[0]["total"], lo)
	// Name the syscalls that grow with the message count.
	var names []string
	for name, n := range calls[1] {
		if per := float64(n-calls[0][name]) / d; name != "total" && per >= 0.001 {
			names = append(names, fmt.Sprintf("%s %.3f", name, per))
		}
	}
	slices.Sort(names)
	if len(names) > 0 {
		raw += "; per message: " + strings.Join(names, ", ")
	}
	return max(0, float64(calls[1]["total"]-calls[0]["total"])/d), raw, nil
}

// syscallSteps measures syscalls per message for the ring (both modes) and
// for uds-ipc, at the grid's syscall message size.
func syscallSteps(s *suite) {
	g, h := s.g, s.helper
	size := g.syscallSize
	sz := strconv.FormatInt(size, 10)
	row := func(transport, mode, who string, v float64, raw string) Result {
		return Result{Transport: transport, Mode: mode, Kind: "syscalls", PayloadBytes: size, Consumers: 1,
			Messages: g.sysHigh - g.sysLow, SyscallsPerMessage: f64(v), Measured: who + ", strace -c -f: " + raw}
	}
	for _, busy := range []bool{true, false} {
		mode := modeName(busy)
		s.step("shm-rust", "syscalls "+mode, func() (Result, error) {
			v, raw, err := perMessage(g.sysLow, g.sysHigh, func(n int64, wrap []string) error {
				args := append(wrap, h, "tput", "--size", sz, "--total", strconv.FormatInt(n*size, 10))
				_, err := runPeer(append(args, spinArg(busy)...)...)
				return err
			})
			return row("shm-rust", mode, "producer + consumer processes", v, raw), err
		})
		s.step("shm-go", "syscalls "+mode, func() (Result, error) {
			v, raw, err := perMessage(g.sysLow, g.sysHigh, func(n int64, wrap []string) error {
				_, err := shmGoStream(h, size, n*size, 1, false, busy, wrap)
				return err
			})
			return row("shm-go", mode, "Rust consumer process", v, raw), err
		})
	}
	s.step("uds-ipc", "syscalls blocking", func() (Result, error) {
		v, raw, err := perMessage(g.sysLow, g.sysHigh, func(n int64, wrap []string) error {
			_, err := udsThroughput(h, size, n*size, wrap)
			return err
		})
		return row("uds-ipc", "blocking", "Rust consumer process", v, raw), err
	})
}
