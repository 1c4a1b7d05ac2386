package ring

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// otherUID is the uid a ring file is given to test the owner check: nobody.
const otherUID = 65534

// TestOpenRefusesForeignOwner: a named region owned by another user is
// refused (LAYOUT §1), with an error naming the file and our uid; the same
// ring opens again once it is ours. As root the test chowns the file to
// nobody; an ordinary user cannot, and the test says so and skips.
func TestOpenRefusesForeignOwner(t *testing.T) {
	name := uniqueName(t)
	r, err := Create(name, small)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	me := unix.Geteuid()
	if me == otherUID {
		t.Fatal("run the test as a user other than nobody")
	}
	own, err := Open(name)
	if err != nil {
		t.Fatalf("own ring: %v", err)
	}
	own.Close()

	path := shmDir + name
	if err := os.Chown(path, otherUID, -1); err != nil {
		if me != 0 && errors.Is(err, os.ErrPermission) {
			t.Skipf("not root (uid %d), so %s cannot be given to uid %d: %v", me, path, otherUID, err)
		}
		t.Fatalf("chown %s to uid %d as uid %d: %v", path, otherUID, me, err)
	}
	_, err = Open(name)
	if err == nil {
		t.Fatal("a ring owned by another uid was opened")
	}
	want := fmt.Sprintf("alloy: region owned by another user: ring %q is owned by uid %d, not by this user (uid %d)", name, otherUID, me)
	if err.Error() != want || !errors.Is(err, ErrForeignOwner) {
		t.Fatalf("error %q, want %q (ErrForeignOwner)", err, want)
	}
	if errors.Is(err, ErrBadMagic) || strings.Contains(err.Error(), "no such file") {
		t.Fatalf("refused for the wrong reason: %v", err)
	}
	// Accepted on purpose: the same ring.
	foreign, err := OpenForeign(name)
	if err != nil {
		t.Fatalf("OpenForeign: %v", err)
	}
	if foreign.Layout() != r.Layout() {
		t.Fatalf("OpenForeign layout %+v, want %+v", foreign.Layout(), r.Layout())
	}
	foreign.Close()

	// Given back to us, the same file opens and is the same ring.
	if err := os.Chown(path, me, -1); err != nil {
		t.Fatal(err)
	}
	again, err := Open(name)
	if err != nil {
		t.Fatalf("after chown back: %v", err)
	}
	defer again.Close()
	if again.Layout() != r.Layout() {
		t.Fatalf("layout %+v, want %+v", again.Layout(), r.Layout())
	}
}
