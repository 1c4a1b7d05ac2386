package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
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
	return perMessageBy(lo, hi, func(n int64, out string) error {
		return run(n, []string{"strace", "-f", "-c", "-o", out})
	})
}

// perMessageSelf is perMessage for a measurement whose producer is this
// process (the Go side of shm-go and uds-ipc): strace attaches to the
// driver, all its threads, with -f, so the peer processes the run starts
// are traced too, and detaches when run returns.
func perMessageSelf(lo, hi int64, run func(n int64) error) (float64, string, error) {
	return perMessageBy(lo, hi, func(n int64, out string) error {
		stop, err := traceSelf(out)
		if err != nil {
			return err
		}
		err = run(n)
		if serr := stop(); err == nil {
			err = serr
		}
		return err
	})
}

// traceSelf attaches `strace -f -c -o out` to this process and returns
// once every thread of it is traced; stop detaches strace (SIGINT) and
// waits until it has written its summary.
func traceSelf(out string) (stop func() error, err error) {
	cmd := exec.Command("strace", "-f", "-c", "-o", out, "-p", strconv.Itoa(os.Getpid()))
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(10 * time.Second); !allTraced(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			return nil, fmt.Errorf("strace did not attach to the driver: %s", errb.String())
		}
	}
	return func() error {
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			return err
		}
		// strace ends by re-raising the SIGINT it was stopped with.
		if err := cmd.Wait(); err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGINT {
				return fmt.Errorf("strace: %v: %s", err, errb.String())
			}
		}
		return nil
	}, nil
}

// allTraced reports whether every thread of this process has a tracer.
func allTraced() bool {
	tasks, _ := filepath.Glob("/proc/self/task/*/status")
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread has exited
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "TracerPid:"); ok && strings.TrimSpace(v) == "0" {
				return false
			}
		}
	}
	return len(tasks) > 0
}

// perMessageBy runs trace(n, out) for lo and hi messages, each writing an
// `strace -c` summary to out, and computes perMessage's figures.
func perMessageBy(lo, hi int64, trace func(n int64, out string) error) (float64, string, error) {
	var calls [2]map[string]int64
	dir, err := os.MkdirTemp("", "alloy-bench-strace")
	if err != nil {
		return 0, "", err
	}
	defer os.RemoveAll(dir)
	for i, n := range []int64{lo, hi} {
		f := filepath.Join(dir, strconv.Itoa(i))
		if err := trace(n, f); err != nil {
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

// bothTraced is the "measured" of the rows whose producer is the driver.
const bothTraced = "Go driver (all threads, Go runtime included) + Rust consumer processes"

// syscallSteps measures syscalls per message for the ring (raw bytes and
// Arrow IPC mode, both modes) and for uds-ipc, at the grid's syscall
// message size.
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
			v, raw, err := perMessageSelf(g.sysLow, g.sysHigh, func(n int64) error {
				_, err := shmGoStream(h, size, n*size, 1, false, busy, nil)
				return err
			})
			return row("shm-go", mode, bothTraced, v, raw), err
		})
	}
	// Arrow against Arrow (issue 13): the IPC-mode writer over the ring,
	// next to uds-ipc's row.
	for _, busy := range []bool{true, false} {
		mode := modeName(busy)
		s.step("shm-go-ipc", "syscalls "+mode, func() (Result, error) {
			v, raw, err := perMessageSelf(g.sysLow, g.sysHigh, func(n int64) error {
				_, err := shmGoArrow(h, "shm-go-ipc", size, n*size, busy)
				return err
			})
			return row("shm-go-ipc", mode, bothTraced, v, raw), err
		})
	}
	s.step("uds-ipc", "syscalls blocking", func() (Result, error) {
		v, raw, err := perMessageSelf(g.sysLow, g.sysHigh, func(n int64) error {
			_, err := udsThroughput(h, size, n*size, nil)
			return err
		})
		return row("uds-ipc", "blocking", bothTraced, v, raw), err
	})
}
