package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/ignalina/alloy/go/internal/testbin"
	"github.com/ignalina/alloy/go/ring"

	"github.com/ignalina/alloy/go/reqrep"
)

// TestRun runs the example against the Rust worker (built by make build).
func TestRun(t *testing.T) {
	bin := testbin.Need(t, "ALLOY_REQREP_WORKER", "target/release/examples/reqrep_worker")
	name := fmt.Sprintf("alloy-rr-example-%d", os.Getpid())
	cmd := exec.Command(bin, "--name", name)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		ring.Remove(reqrep.RequestRing(name))
		ring.Remove(reqrep.ReplyRing(name))
	}()
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); strings.TrimSpace(line) != "ready" {
		t.Fatalf("worker said %q", line)
	}
	var out bytes.Buffer
	if err := run(context.Background(), name, 8, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"call 0: x=[0 1] -> x*x=[0 1] sum=1",
		"call 3: x=[30 31 32 33 34] -> x*x=[900 961 1024 1089 1156] sum=160",
		"call 7: x=[70 71 72 73 74] -> x*x=[4900 5041 5184 5329 5476] sum=360",
		"8 concurrent calls answered",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
