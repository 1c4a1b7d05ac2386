//go:build linux

package ring

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Rings shared by a group (issue #17, LAYOUT §1): the creator (root) gives
// the ring to group groupGID (mode 0660); a process of another uid in that
// group (here as a supplementary group) attaches without OpenForeign and
// receives; a process of a third uid outside the group is refused by the
// kernel, with an error naming the owner, group and mode.

// groupGID is a group no account on the test machine needs to have.
const groupGID = 4242

// outsiderUID is the uid (and gid) of the process outside the group.
const outsiderUID = 65533

// groupChildEnv tells TestGroupChild what to do: "<role> <ring name>".
const groupChildEnv = "ALLOY_TEST_GROUP_CHILD"

func TestGroupSharedRing(t *testing.T) {
	if os.Getenv(groupChildEnv) != "" {
		t.Skip("runs in the parent only")
	}
	needRoot(t)
	name := uniqueName(t)
	r, err := CreateWith(name, ownerCfg, Options{Group: fmt.Sprint(groupGID)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var st unix.Stat_t
	if err := unix.Stat(NamedPath(name), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o777 != 0o660 || st.Gid != groupGID || st.Uid != 0 {
		t.Fatalf("group ring: uid %d gid %d mode %o, want 0 %d 660", st.Uid, st.Gid, st.Mode&0o777, groupGID)
	}
	p, err := r.NewProducer(ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}

	outsider := &syscall.Credential{Uid: outsiderUID, Gid: outsiderUID, Groups: []uint32{}}
	cmd, out, errb := startAs(t, "TestGroupChild", groupChildEnv+"=outsider "+name, outsider)
	waitGroupChild(t, "outsider", cmd, out, errb)

	member := &syscall.Credential{Uid: otherUID, Gid: otherUID, Groups: []uint32{groupGID}}
	cmd, out, errb = startAs(t, "TestGroupChild", groupChildEnv+"=member "+name, member)
	for {
		line, err := out.ReadString('\n')
		if err != nil {
			t.Fatalf("member child: %v before ready\n%s", err, errb)
		}
		if strings.TrimSpace(line) == "ready" {
			break
		}
	}
	mustSend(t, p, []byte("to the group"), 0)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	waitGroupChild(t, "member", cmd, out, errb)
}

func waitGroupChild(t *testing.T, role string, cmd interface{ Wait() error }, out io.Reader, errb *strings.Builder) {
	t.Helper()
	rest, _ := io.ReadAll(out)
	err := cmd.Wait()
	if err != nil || !strings.Contains(string(rest), "--- PASS: TestGroupChild") {
		t.Fatalf("child %q: %v\n%s%s", role, err, rest, errb)
	}
}

// TestGroupChild is the other users' side of TestGroupSharedRing.
func TestGroupChild(t *testing.T) {
	spec := os.Getenv(groupChildEnv)
	if spec == "" {
		t.Skip("runs as TestGroupSharedRing's child process")
	}
	role, name, _ := strings.Cut(spec, " ")
	me := unix.Geteuid()
	switch role {
	case "member":
		// Open, not OpenForeign: a ring shared with one of our groups is
		// accepted although another user owns it.
		r, err := Open(name)
		if err != nil {
			t.Fatalf("uid %d in group %d: Open: %v", me, groupGID, err)
		}
		defer r.Close()
		c := mustSubscribe(t, r)
		fmt.Println("ready")
		l, err := c.RecvTimeout(30 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if string(l.Bytes()) != "to the group" {
			t.Fatalf("received %q", l.Bytes())
		}
		l.Release()
		if l, err := c.RecvTimeout(30 * time.Second); err != io.EOF {
			t.Fatalf("after the message: %v, %v; want end-of-stream", l, err)
		}
	case "outsider":
		for _, open := range []func(string) (*Ring, error){Open, OpenForeign} {
			_, err := open(name)
			want := fmt.Sprintf("(%s: owner uid 0, group gid %d, mode 660) is not open to uid %d", NamedPath(name), groupGID, me)
			if !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), want) {
				t.Fatalf("uid %d outside the group: %v; want a permission error containing %q", me, err, want)
			}
		}
		// Nor can it give a ring of its own to a group it is not in.
		other := name + "-outsider"
		_, err := CreateWith(other, ownerCfg, Options{Group: fmt.Sprint(groupGID)})
		if !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), "the creator must be root or in that group") {
			t.Fatalf("CreateWith a foreign group: %v", err)
		}
		if _, err := os.Stat(NamedPath(other)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a refused create left %s: %v", other, err)
		}
	default:
		t.Fatalf("unknown role %q", role)
	}
}
