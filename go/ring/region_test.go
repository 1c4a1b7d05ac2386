//go:build linux

package ring

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// uniqueName returns a region name no other test run uses, removed at the end.
func uniqueName(t *testing.T) string {
	name := fmt.Sprintf("alloy-gotest-%d-%s", os.Getpid(), t.Name())
	t.Cleanup(func() { os.Remove(NamedPath(name)) })
	return name
}

func TestNamedCreateOpenRemove(t *testing.T) {
	name := uniqueName(t)
	r, err := Create(name, small)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	st, err := os.Stat(NamedPath(name))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || st.Size() != 4608 {
		t.Fatalf("mode %v size %d, want 0600 and 4608", st.Mode(), st.Size())
	}
	if _, err := Create(name, small); !errors.Is(err, unix.EEXIST) {
		t.Fatalf("second create: %v, want EEXIST", err)
	}
	o, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	// Two mappings of one file: a message sent through one arrives through
	// the other.
	c := mustSubscribe(t, o)
	p := mustProducer(t, r, failBP)
	mustSend(t, p, []byte("across mappings"), 0)
	if l := recvOK(t, c); string(l.Bytes()) != "across mappings" {
		t.Fatalf("got %q", l.Bytes())
	}
	if err := Remove(name); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(name); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("open after remove: %v", err)
	}
}

func TestNamedOpenRefusesBadFiles(t *testing.T) {
	name := uniqueName(t)
	if err := os.WriteFile(NamedPath(name), []byte("ALLOYSHX-not-a-region-but-long-enough"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(name); !errors.Is(err, ErrTruncated) {
		t.Fatalf("short file: %v, want ErrTruncated", err)
	}
	if err := os.WriteFile(NamedPath(name), make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(name); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("zero file: %v, want ErrNotInitialized (after 1 s)", err)
	}
	for _, bad := range []string{"", ".hidden", "a/b", "../etc", strings.Repeat("a", 201)} {
		if _, err := Open(bad); !errors.Is(err, ErrInvalidLayout) {
			t.Errorf("name %q: %v", bad, err)
		}
	}
}

func TestMemfdIsSealed(t *testing.T) {
	r := anonRing(t, small)
	if err := unix.Ftruncate(r.Fd(), 0); !errors.Is(err, unix.EPERM) {
		t.Fatalf("shrinking a sealed memfd: %v, want EPERM", err)
	}
	if err := unix.Ftruncate(r.Fd(), 1<<20); !errors.Is(err, unix.EPERM) {
		t.Fatalf("growing a sealed memfd: %v, want EPERM", err)
	}
	if _, err := unix.FcntlInt(uintptr(r.Fd()), unix.F_ADD_SEALS, unix.F_SEAL_WRITE); err == nil {
		t.Fatal("F_SEAL_SEAL did not stop further seals")
	}
	o, err := OpenFd(r.Fd())
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.Fd() == r.Fd() {
		t.Fatal("OpenFd did not duplicate the fd")
	}
}

func TestOpenFdRefusesUnsealed(t *testing.T) {
	fd, err := unix.MemfdCreate("alloy:unsealed", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Ftruncate(fd, 4608); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFd(fd); !errors.Is(err, ErrNotSealed) {
		t.Fatalf("unsealed memfd: %v, want ErrNotSealed", err)
	}
}

func TestSendRecvFd(t *testing.T) {
	r := anonRing(t, small)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socket")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	a, b := conn(fds[0]), conn(fds[1])
	if err := r.SendFd(a); err != nil {
		t.Fatal(err)
	}
	fd, err := RecvFd(b)
	if err != nil {
		t.Fatal(err)
	}
	o, err := OpenFd(fd)
	unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	p := mustProducer(t, r, failBP)
	c := mustSubscribe(t, o)
	mustSend(t, p, []byte("via SCM_RIGHTS"), 0)
	if l := recvOK(t, c); string(l.Bytes()) != "via SCM_RIGHTS" {
		t.Fatalf("got %q", l.Bytes())
	}
}

// memfdCreateSealed writes b into a new memfd and seals it.
func memfdCreateSealed(b []byte) (int, error) {
	fd, err := unix.MemfdCreate("alloy:test", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, err
	}
	if _, err := unix.Write(fd, b); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, requiredSeals); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}
