//go:build linux

package ring

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ignalina/alloy/go/internal/testbin"
)

// The owner check of LAYOUT §1 between real processes of two uids: as root
// (CI) the other side is this test binary re-run as nobody (uid and gid
// 65534) through exec.Cmd's SysProcAttr.Credential; the ring is created by
// one uid and opened by the other, in both directions. Without root the
// tests skip, or fail under CI / ALLOY_REQUIRE_CROSS (internal/testbin).

// otherUID is the uid (and gid) of the other side: nobody.
const otherUID = 65534

// ownerChildEnv tells TestOwnerChild what to do: "<role> <ring name>".
const ownerChildEnv = "ALLOY_TEST_OWNER_CHILD"

// ownerCfg is a geometry no default has, so the opener can tell it is the
// creator's ring; ownerPublished messages are sent into it with nobody
// subscribed (LAYOUT §4 gate: simply overwritten).
var ownerCfg = Config{SlotCount: 8, SlotSize: 192, MaxSubscribers: 4, MaxMembers: 4, SchemaCapacity: 256}

const ownerPublished = 5

// needRoot ends the test unless we can start a process as another uid.
func needRoot(t *testing.T) {
	if me := unix.Geteuid(); me != 0 {
		testbin.Skip(t, "not root (uid %d), so no process of another uid can be started", me)
	}
}

// createAndPublish creates name with ownerCfg and sends ownerPublished
// messages through the producer it returns; the ring file stays in
// /dev/shm.
func createAndPublish(t *testing.T, name string) (*Ring, *Producer) {
	r, err := Create(name, ownerCfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.NewProducer(ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < ownerPublished; i++ {
		mustSend(t, p, []byte{byte(i)}, 0)
	}
	return r, p
}

// checkRefusedThenAllowed: the opener (uid me) refuses name, owned by
// owner, with the documented error, and OpenForeign opens the creator's
// ring.
func checkRefusedThenAllowed(t *testing.T, name string, owner, me int) *Ring {
	_, err := Open(name)
	want := fmt.Sprintf("alloy: region owned by another user: ring %q is owned by uid %d, not by this user (uid %d)", name, owner, me)
	if err == nil || err.Error() != want || !errors.Is(err, ErrForeignOwner) {
		t.Fatalf("uid %d: Open: %v, want %q (ErrForeignOwner)", me, err, want)
	}
	foreign, err := OpenForeign(name)
	if err != nil {
		t.Fatalf("uid %d: OpenForeign: %v", me, err)
	}
	if foreign.Layout().Config != ownerCfg {
		t.Fatalf("OpenForeign config %+v, want %+v", foreign.Layout().Config, ownerCfg)
	}
	if got := foreign.Stat().Published; got != ownerPublished {
		t.Fatalf("OpenForeign: published %d, want %d", got, ownerPublished)
	}
	return foreign
}

// startAsNobody starts TestOwnerChild of a copy of this test binary (the
// go-build directory is not readable by nobody) as uid/gid 65534, with no
// supplementary groups.
func startAsNobody(t *testing.T, role, name string) (*exec.Cmd, *bufio.Reader, *strings.Builder) {
	cred := &syscall.Credential{Uid: otherUID, Gid: otherUID, Groups: []uint32{}}
	return startAs(t, "TestOwnerChild", ownerChildEnv+"="+role+" "+name, cred)
}

// startAs starts test run of a copy of this test binary with credentials
// cred and the extra environment entry env.
func startAs(t *testing.T, run, env string, cred *syscall.Credential) (*exec.Cmd, *bufio.Reader, *strings.Builder) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "alloy-owner")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "ring.test")
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	var out io.ReadCloser
	errb := new(strings.Builder)
	for try := 0; ; try++ {
		cmd = exec.Command(bin, "-test.run=^"+run+"$", "-test.count=1", "-test.v")
		cmd.Dir = "/"
		cmd.Env = append(os.Environ(), env)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Stderr = errb
		if out, err = cmd.StdoutPipe(); err != nil {
			t.Fatal(err)
		}
		err = cmd.Start()
		// A process forked meanwhile may still hold the copy open for
		// writing until its exec (golang/go#22315): retry.
		if err == nil || !errors.Is(err, syscall.ETXTBSY) || try == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, bufio.NewReader(out), errb
}

// waitChild waits for the child and checks that TestOwnerChild ran and
// passed.
func waitChild(t *testing.T, role string, cmd *exec.Cmd, out *bufio.Reader, errb *strings.Builder) {
	rest, _ := io.ReadAll(out)
	err := cmd.Wait()
	if err != nil || !strings.Contains(string(rest), "--- PASS: TestOwnerChild") {
		t.Fatalf("child %q as uid %d: %v\n%s%s", role, otherUID, err, rest, errb)
	}
}

// TestForeignOwnerRingOfAnotherUser: a ring created by nobody is refused by
// root — the check is on the owner, not on whether the file opens (root
// can open it) — and OpenForeign opens it.
func TestForeignOwnerRingOfAnotherUser(t *testing.T) {
	if os.Getenv(ownerChildEnv) != "" {
		t.Skip("runs in the parent only")
	}
	needRoot(t)
	name := uniqueName(t)
	cmd, out, errb := startAsNobody(t, "create", name)
	waitChild(t, "create", cmd, out, errb)
	var st unix.Stat_t
	if err := unix.Stat(NamedPath(name), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != otherUID || st.Mode&0o777 != 0o600 {
		t.Fatalf("child's ring: uid %d mode %o, want %d 600", st.Uid, st.Mode&0o777, otherUID)
	}
	checkRefusedThenAllowed(t, name, otherUID, 0).Close()
}

// TestForeignOwnerAnotherUserOpens: a ring created by root cannot even be opened
// by nobody while it is 0600 (the kernel refuses); once root grants access
// through the mode, Open still refuses it, and with OpenForeign nobody
// subscribes and receives a message root publishes (futex wake-up and
// liveness across uids included).
func TestForeignOwnerAnotherUserOpens(t *testing.T) {
	if os.Getenv(ownerChildEnv) != "" {
		t.Skip("runs in the parent only")
	}
	needRoot(t)
	name := uniqueName(t)
	r, p := createAndPublish(t, name)
	defer r.Close()

	cmd, out, errb := startAsNobody(t, "denied", name)
	waitChild(t, "denied", cmd, out, errb)

	if err := os.Chmod(NamedPath(name), 0o666); err != nil {
		t.Fatal(err)
	}
	cmd, out, errb = startAsNobody(t, "foreign", name)
	for {
		line, err := out.ReadString('\n')
		if err != nil {
			t.Fatalf("child: %v before ready\n%s", err, errb)
		}
		if strings.TrimSpace(line) == "ready" {
			break
		}
	}
	mustSend(t, p, []byte("from uid 0"), 0)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	waitChild(t, "foreign", cmd, out, errb)
}

// TestOwnerChild is the other uid's side of the two tests above.
func TestOwnerChild(t *testing.T) {
	spec := os.Getenv(ownerChildEnv)
	if spec == "" {
		t.Skip("runs as TestForeignOwnerRingOfAnotherUser's and TestForeignOwnerAnotherUserOpens's child process")
	}
	role, name, _ := strings.Cut(spec, " ")
	me := unix.Geteuid()
	if me != otherUID {
		t.Fatalf("child runs as uid %d, want %d", me, otherUID)
	}
	switch role {
	case "create":
		r, p := createAndPublish(t, name)
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		r.Close()
	case "denied":
		_, err := Open(name)
		if !errors.Is(err, os.ErrPermission) {
			t.Fatalf("a 0600 ring of uid 0 opened as uid %d: %v", me, err)
		}
	case "foreign":
		r := checkRefusedThenAllowed(t, name, 0, me)
		defer r.Close()
		c := mustSubscribe(t, r)
		fmt.Println("ready")
		l, err := c.RecvTimeout(30 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if string(l.Bytes()) != "from uid 0" {
			t.Fatalf("received %q", l.Bytes())
		}
		l.Release()
		if l, err := c.RecvTimeout(30 * time.Second); err != io.EOF {
			t.Fatalf("after the message: %v, %v; want end-of-stream", l, err)
		}
	default:
		t.Fatalf("unknown role %q", role)
	}
}
