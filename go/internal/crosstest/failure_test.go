package crosstest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ignalina/alloy/go/internal/testbin"
)

// needRustFlag ends the test when the Rust CLI is missing (needRust) or
// predates test-consume's flag (a stale bin/alloy: a failure, rebuild it).
func needRustFlag(t testing.TB, flag string) {
	t.Helper()
	needRust(t)
	out, _ := exec.Command(rustBin, "test-consume", "--help").CombinedOutput()
	if !strings.Contains(string(out), "--"+flag) {
		t.Fatalf("%s does not know test-consume --%s: rebuild it (make build)", rustBin, flag)
	}
}

// killSides lists the language pairs to run: Go-only, and both mixed pairs
// with the Rust CLI. Without bin/alloy only the Go pair runs, which is a
// failure under CI / ALLOY_REQUIRE_CROSS.
func killSides(t *testing.T) [][2]side {
	g, r := sides()
	if _, err := os.Stat(rustBin); err != nil && !testbin.Required() {
		t.Logf("%s missing: Go-only", rustBin)
		return [][2]side{{g, g}}
	}
	needRustFlag(t, "hold")
	return [][2]side{{g, g}, {g, r}, {r, g}}
}

// A consumer process SIGKILLed while holding leases stops gating the ring
// once the producer has been blocked for --reclaim-after (LAYOUT §11.3);
// the surviving consumer receives every message.
func TestKilledConsumerIsReclaimed(t *testing.T) {
	const count = 20000
	for _, pair := range killSides(t) {
		producer, victim := pair[0], pair[1]
		t.Run(producer.lang+"-producer-"+victim.lang+"-victim", func(t *testing.T) {
			name := newRing(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			g, _ := sides()
			live := start(t, ctx, g.bin, "test-consume", "--ring", name, "--broadcast")
			v := start(t, ctx, victim.bin, "test-consume", "--ring", name, "--broadcast", "--hold", "8")
			live.ready(t)
			v.ready(t)
			// A bare number is milliseconds for both CLIs.
			p := start(t, ctx, producer.bin, "test-produce", "--ring", name, "--count", fmt.Sprint(count), "--reclaim-after", "300")
			r := openRing(t, name)
			testbin.WaitFor(t, 30*time.Second, "the victim to hold 8 leases", func() bool {
				for _, c := range r.Stat().Consumers {
					if c.LeasesHeld >= 8 {
						return true
					}
				}
				return false
			})
			v.cmd.Process.Signal(syscall.SIGKILL)
			io.ReadAll(v.out)
			v.cmd.Wait()
			sent := p.result(t)
			if got := live.result(t); got["received"] != count || got["bytes"] != sent["bytes"] {
				t.Fatalf("survivor: %v, want %d messages and %d bytes", got, count, sent["bytes"])
			}
		})
	}
}

// A consumer whose producer is SIGKILLed fails with "producer gone"
// (LAYOUT §11.2) instead of waiting forever.
func TestKilledProducerIsNoticed(t *testing.T) {
	g, _ := sides()
	name := newRing(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := start(t, ctx, g.bin, "test-consume", "--ring", name, "--broadcast")
	c.ready(t)
	p := start(t, ctx, g.bin, "test-produce", "--ring", name, "--count", "1000000000")
	r := openRing(t, name)
	testbin.WaitFor(t, 30*time.Second, "the stream to be under way", func() bool { return r.Stat().Published >= 1000 })
	p.cmd.Process.Signal(syscall.SIGKILL)
	io.ReadAll(p.out)
	p.cmd.Wait()
	killed := time.Now()
	io.ReadAll(c.out)
	err := c.cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(c.errb.String(), "producer gone") {
		t.Fatalf("consumer of a killed producer: %v; stderr: %s", err, c.errb.String())
	}
	if d := time.Since(killed); d > 5*time.Second {
		t.Fatalf("noticed after %v", d)
	}
}
