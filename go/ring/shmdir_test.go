//go:build linux

package ring

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ignalina/alloy/go/internal/testbin"
)

// Rings in a directory other than /dev/shm (issue #17, LAYOUT §1): the
// ALLOY_SHM_DIR variable both languages honour, Options.Dir, and the
// ErrNoSpace error naming Docker's --shm-size and Kubernetes' emptyDir.

var smallCfg = Config{SlotCount: 4, SlotSize: 128, MaxSubscribers: 2, MaxMembers: 2, SchemaCapacity: 0}

// roundTrip sends one message from w's producer to a subscriber of r.
func roundTrip(t *testing.T, w, r *Ring, msg string) {
	t.Helper()
	c := mustSubscribe(t, r)
	defer c.Close()
	p, err := w.NewProducer(ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	mustSend(t, p, []byte(msg), 0)
	l, err := c.TryRecv()
	if err != nil {
		t.Fatal(err)
	}
	if string(l.Bytes()) != msg {
		t.Fatalf("received %q, want %q", l.Bytes(), msg)
	}
	l.Release()
}

func TestShmDirEnvMovesNamedRings(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(ShmDirEnv, dir)
	if ShmDir() != dir {
		t.Fatalf("ShmDir() = %q, want %q", ShmDir(), dir)
	}
	name := uniqueName(t)
	w, err := Create(name, smallCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
		t.Fatalf("the ring is not in %s: %v", dir, err)
	}
	if _, err := os.Stat(filepath.Join(DefaultShmDir, name)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the ring is in /dev/shm too: %v", err)
	}
	r, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	roundTrip(t, w, r, "via ALLOY_SHM_DIR")
	if st, err := StatNamed(name); err != nil || st.Published != 1 {
		t.Fatalf("StatNamed: %+v, %v", st, err)
	}
	if ls, err := List(); err != nil || len(ls) != 1 || ls[0].Name != name {
		t.Fatalf("List: %+v, %v", ls, err)
	}
	if err := Remove(name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Remove left the file: %v", err)
	}
}

func TestOptionsDir(t *testing.T) {
	dir := t.TempDir()
	name := uniqueName(t)
	o := Options{Dir: dir}
	w, err := CreateWith(name, smallCfg, o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, name), &st); err != nil || st.Mode&0o777 != 0o600 {
		t.Fatalf("ring file: mode %o, %v; want 600", st.Mode&0o777, err)
	}
	if _, err := Open(name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open in the default directory: %v, want not-exist", err)
	}
	r, err := OpenOrCreateWith(name, smallCfg, o)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	roundTrip(t, w, r, "via Options.Dir")
	if err := RemoveIn(dir, name); err != nil {
		t.Fatal(err)
	}
}

// TestNoSpaceNamesShmSize: a ring bigger than its directory's filesystem
// (Docker's 64 MB /dev/shm holds no default 64 MiB ring) is refused at
// creation with a message naming the fix, and leaves no file.
func TestNoSpaceNamesShmSize(t *testing.T) {
	if me := unix.Geteuid(); me != 0 {
		testbin.Skip(t, "not root (uid %d), so no 1 MiB tmpfs can be mounted", me)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		testbin.Skip(t, "mount -t tmpfs failed: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	name := uniqueName(t)
	_, err := CreateWith(name, DefaultConfig(), Options{Dir: mnt})
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("CreateWith default config in 1 MiB: %v, want ErrNoSpace", err)
	}
	for _, want := range []string{name, "needs", mnt + " has", "--shm-size", "emptyDir", "medium: Memory", "sizeLimit"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q missing from: %v", want, err)
		}
	}
	if _, err := os.Stat(filepath.Join(mnt, name)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a file was left behind: %v", err)
	}
	r, err := CreateWith(name, Config{SlotCount: 8, SlotSize: 4096, MaxSubscribers: 1, MaxMembers: 1}, Options{Dir: mnt})
	if err != nil {
		t.Fatalf("a ring that fits: %v", err)
	}
	r.Close()
	if err := RemoveIn(mnt, name); err != nil {
		t.Fatal(err)
	}
}
