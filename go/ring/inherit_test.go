//go:build linux

package ring

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// childEnv marks the re-executed test binary acting as the producer process.
const childEnv = "ALLOY_TEST_INHERIT_CHILD"

// TestInheritedFd hands a sealed memfd region to a child process by
// inheritance (fd 3, ALLOY_FD=3); the child produces checked messages that
// the parent consumes. The parent parks on the futex between messages, so
// this also proves the wake-ups are process-shared.
func TestInheritedFd(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("runs in the parent only")
	}
	const count = 5000
	r := anonRing(t, Config{SlotCount: 16, SlotSize: 256, MaxSubscribers: 1, MaxMembers: 1})
	c := mustSubscribe(t, r)
	cmd := regionChild(t, r, "TestInheritedFdChild", childEnv+"=1", fmt.Sprintf("ALLOY_TEST_COUNT=%d", count))
	out := new(limitedBuffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var got int
	for {
		l, err := c.RecvTimeout(30 * time.Second)
		if err == io.EOF {
			break
		}
		if err != nil {
			cmd.Process.Kill()
			t.Fatalf("after %d messages: %v; child: %s", got, err, out)
		}
		j, err := spec.Verify(l.Bytes())
		if err != nil || j != uint64(got) {
			t.Fatalf("message %d: j=%d, %v", got, j, err)
		}
		l.Release()
		got++
		if got%500 == 0 {
			time.Sleep(time.Millisecond) // let the producer fill the ring and park
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	if got != count {
		t.Fatalf("received %d of %d", got, count)
	}
}

// TestInheritedFdChild is the child side of TestInheritedFd.
func TestInheritedFdChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("runs as TestInheritedFd's child process")
	}
	r := inheritedRing(t)
	defer r.Close()
	var count int
	fmt.Sscan(os.Getenv("ALLOY_TEST_COUNT"), &count)
	p := mustProducer(t, r, Backpressure{Kind: Block, Timeout: 30 * time.Second})
	if err := produceChecked(p, count); err != nil {
		t.Fatal(err)
	}
}

// regionChild is the one way these tests hand a ring to a child process by
// inheritance (LAYOUT §1): the test binary run again for the single test
// named test, with a duplicate of r's region fd as its fd 3, ALLOY_FD=3 and
// env in its environment. The duplicate is closed when t ends; the Ring's
// own fd stays as it is. The caller sets Stdout/Stderr and starts it; the
// child opens the ring with inheritedRing.
func regionChild(t *testing.T, r *Ring, test string, env ...string) *exec.Cmd {
	t.Helper()
	dup, err := unix.FcntlInt(uintptr(r.Fd()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	region := os.NewFile(uintptr(dup), "region")
	t.Cleanup(func() { region.Close() })
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.ExtraFiles = []*os.File{region} // fd 3 in the child, without CLOEXEC
	cmd.Env = append(append(os.Environ(), "ALLOY_FD=3"), env...)
	return cmd
}

// inheritedRing opens, in a child started by regionChild, the ring its
// parent passed (ALLOY_FD).
func inheritedRing(t *testing.T) *Ring {
	t.Helper()
	fd, err := FdFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	r, err := OpenFd(fd)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// limitedBuffer keeps the first 64 KiB of a child's output for messages.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 64<<10 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }
