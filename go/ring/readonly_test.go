//go:build linux

package ring

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Consumers read payloads through a read-only mapping (LAYOUT §1), so a
// consumer that writes into a received message dies with a fault instead
// of corrupting the message for every other reader. The write happens in a
// child process (this test binary re-run), which must die of SIGSEGV while
// the message stays intact for another subscriber.

const readOnlyChildEnv = "ALLOY_TEST_READONLY_CHILD"

func TestConsumerWriteToPayloadFaults(t *testing.T) {
	if os.Getenv(readOnlyChildEnv) != "" {
		t.Skip("runs in the parent only")
	}
	name := uniqueName(t)
	r, err := Create(name, smallCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	witness := mustSubscribe(t, r)
	p := mustProducer(t, r, failBP)
	mustSend(t, p, []byte("intact"), 0)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestReadOnlyChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), readOnlyChildEnv+"="+name)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	text := out.String()
	if err == nil || !strings.Contains(text, "writing into the lease") || !strings.Contains(text, "unexpected fault address") {
		t.Fatalf("the child's write to a payload page did not fault: %v\n%s", err, text)
	}
	l := recvOK(t, witness)
	if string(l.Bytes()) != "intact" {
		t.Fatalf("the witness received %q", l.Bytes())
	}
	l.Release()
}

// TestReadOnlyChild attaches to the parent's ring, receives the message
// and writes into it: the write must fault (the runtime then aborts).
func TestReadOnlyChild(t *testing.T) {
	name := os.Getenv(readOnlyChildEnv)
	if name == "" {
		t.Skip("runs as TestConsumerWriteToPayloadFaults's child process")
	}
	r, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.Subscribe(ConsumerOptions{History: 1})
	if err != nil {
		t.Fatal(err)
	}
	l := recvOK(t, c)
	t.Log("writing into the lease")
	os.Stdout.WriteString("writing into the lease\n")
	l.Bytes()[0] = 'X'
	t.Fatal("the write to a read-only payload page did not fault")
}
