// Package testbin is what a test does when something it needs is missing
// — a binary built by `make build`, root for a second uid — how tests find
// and build the binaries they run, and how they wait for a condition.
//
// Locally a missing prerequisite skips the test. Under CI (CI set) or with
// ALLOY_REQUIRE_CROSS set — which .ci/run and the Makefile's test targets
// do — it fails the test instead, so no test passes by not running. The
// Rust tests follow the same rule (tests/support/mod.rs).
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Required reports whether a missing prerequisite is a failure: CI or
// ALLOY_REQUIRE_CROSS is set to anything but empty, "0" or "false".
func Required() bool {
	for _, v := range []string{"CI", "ALLOY_REQUIRE_CROSS"} {
		switch strings.TrimSpace(os.Getenv(v)) {
		case "", "0", "false":
		default:
			return true
		}
	}
	return false
}

// Skip ends the test because a prerequisite is missing: t.Fatalf when
// Required, else t.Skipf.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	why := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("cannot run: %s (CI / ALLOY_REQUIRE_CROSS is set, so this is a failure)", why)
	}
	t.Skip(why)
}

// Root is the repository root (the directory above go/).
func Root() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("testbin: no caller information")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Path is $env when set, else rel under the repository root (e.g.
// "bin/alloy"): where a test expects a binary, present or not.
func Path(env, rel string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	return filepath.Join(Root(), rel)
}

// Need returns Path(env, rel) if that file exists, else ends the test
// through Skip.
func Need(t testing.TB, env, rel string) string {
	t.Helper()
	p := Path(env, rel)
	if _, err := os.Stat(p); err != nil {
		Skip(t, "%s is missing (run make build): %v", p, err)
	}
	return p
}

// BuildGoCLI builds alloy-go into a new temporary directory, without the
// race detector whatever the test's flags: the processes under test run at
// full speed, and the detector cannot see shared memory across processes
// anyway. It is for TestMain; remove the directory when done.
func BuildGoCLI() (bin, dir string, err error) {
	dir, err = os.MkdirTemp("", "alloy-testbin")
	if err != nil {
		return "", "", err
	}
	bin = filepath.Join(dir, "alloy-go")
	gotool := filepath.Join(runtime.GOROOT(), "bin", "go")
	build := exec.Command(gotool, "build", "-o", bin, "github.com/ignalina/alloy/go/cmd/alloy-go")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", "", fmt.Errorf("building alloy-go: %w", err)
	}
	return bin, dir, nil
}

// WaitFor polls cond every millisecond until it holds, and fails the test
// naming what it waited for after timeout. Tests wait for the condition
// they need, never for a fixed time.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}
