package crosstest

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ignalina/alloy/go/internal/checkmsg"
	"github.com/ignalina/alloy/go/internal/testbin"
	"github.com/ignalina/alloy/go/ring"
)

// runJSON runs a CLI and decodes its stdout as one JSON value.
func runJSON(t *testing.T, bin string, args ...string) any {
	t.Helper()
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %v: %v\n%s", bin, args, err, stderr)
	}
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%s %v: output %q is not JSON: %v", bin, args, out, err)
	}
	return v
}

// timeFields are the stat fields that depend on when the samples were
// taken; every other field must agree between the two tools.
var timeFields = []string{"interval_ms", "messages_per_s"}

func dropTimeFields(t *testing.T, v any) map[string]any {
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("stat output is not an object: %v", v)
	}
	for _, f := range timeFields {
		if _, ok := m[f]; !ok {
			t.Errorf("field %q missing", f)
		}
		delete(m, f)
	}
	for _, c := range m["consumers"].([]any) {
		cm := c.(map[string]any)
		if _, ok := cm["consumed_per_s"]; !ok {
			t.Errorf("field consumed_per_s missing")
		}
		delete(cm, "consumed_per_s")
	}
	return m
}

func keys(m map[string]any) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	sort.Strings(k)
	return k
}

// bin/alloy stat --json and bin/alloy-go stat --json describe the same ring
// with the same field set and the same values (all but the time-dependent
// rates), and ls --json lists it identically. The ring has a Go producer, a
// Rust broadcast consumer (another process, parked in recv), a Go broadcast
// consumer holding leases out of order and a Go queue group.
func TestStatJSONAgreesAcrossLanguages(t *testing.T) {
	needRust(t)
	name := newRing(t)
	r, err := ring.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rust := start(t, ctx, rustBin, "test-consume", "--ring", name, "--broadcast")
	rust.ready(t)

	c, err := r.Subscribe(ring.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q, err := r.JoinQueue(3, ring.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	p, err := r.NewProducer(ring.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Checked messages the Rust consumer verifies (doc/TESTING.md), which
	// it receives and releases at once.
	spec := checkmsg.Spec{Seed: 1, MinSize: 16, MaxSize: 4096} // test-consume's defaults
	var held []*ring.Lease
	for j := range uint64(6) {
		msg := make([]byte, spec.Len(j))
		checkmsg.Fill(msg, j)
		if err := p.Send(msg, 0); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		l, err := c.Recv()
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
	}
	held[1].Release() // out of order: sequences 0, 2, 3 stay held
	lq, err := q.Recv()
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the Rust consumer has released all six.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := r.Stat()
		if s.Consumers[0].Released == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rust consumer stuck: %+v", s.Consumers[0])
		}
		time.Sleep(5 * time.Millisecond)
	}

	rs := runJSON(t, rustBin, "stat", name, "--json", "--interval", "0")
	gs := runJSON(t, goBin, "stat", name, "--json", "--interval", "0")
	rm, gm := dropTimeFields(t, rs), dropTimeFields(t, gs)
	if !reflect.DeepEqual(keys(rm), keys(gm)) {
		t.Fatalf("field sets differ:\nrust %v\ngo   %v", keys(rm), keys(gm))
	}
	if !reflect.DeepEqual(rm, gm) {
		a, _ := json.Marshal(rm)
		b, _ := json.Marshal(gm)
		t.Fatalf("stat differs:\nrust %s\ngo   %s", a, b)
	}
	// Spot checks, so that agreeing on wrong values cannot pass.
	cons := rm["consumers"].([]any)
	if len(cons) != 3 || rm["published"] != 6.0 || rm["slots_in_use"] != 6.0 {
		t.Fatalf("unexpected state: %v", rm)
	}
	rc, gc, qc := cons[0].(map[string]any), cons[1].(map[string]any), cons[2].(map[string]any)
	rustPid := float64(rust.cmd.Process.Pid)
	if rc["kind"] != "broadcast" || rc["lag"] != 0.0 || rc["leases_held"] != 0.0 ||
		rc["members"].([]any)[0].(map[string]any)["pid"] != rustPid {
		t.Errorf("rust consumer: %v", rc)
	}
	if gc["cursor"] != 4.0 || gc["lag"] != 2.0 || gc["leases_held"] != 3.0 || gc["released"] != 0.0 {
		t.Errorf("go consumer: %v", gc)
	}
	if qc["kind"] != "queue" || qc["group"] != 3.0 || qc["leases_held"] != 1.0 || qc["lag"] != 5.0 {
		t.Errorf("queue group: %v", qc)
	}
	if rm["producer_pid"] != float64(os.Getpid()) || rm["producer_alive"] != true {
		t.Errorf("producer: %v %v", rm["producer_pid"], rm["producer_alive"])
	}

	// With an interval both report the rates (published nothing meanwhile).
	for _, bin := range []string{rustBin, goBin} {
		m := runJSON(t, bin, "stat", "--ring", name, "--json", "--interval", "50").(map[string]any)
		if m["messages_per_s"] != 0.0 || m["interval_ms"].(float64) < 40 {
			t.Errorf("%s: rates %v over %v ms", bin, m["messages_per_s"], m["interval_ms"])
		}
	}

	// ls --json: both list the ring with the same fields.
	find := func(bin string) map[string]any {
		for _, e := range runJSON(t, bin, "ls", "--json").([]any) {
			if m := e.(map[string]any); m["name"] == name {
				return m
			}
		}
		t.Fatalf("%s ls: ring %s not listed", bin, name)
		return nil
	}
	rl, gl := find(rustBin), find(goBin)
	if !reflect.DeepEqual(rl, gl) {
		t.Errorf("ls differs:\nrust %v\ngo   %v", rl, gl)
	}
	if rl["slot_count"] != 256.0 || rl["producer_alive"] != true || rl["error"] != nil {
		t.Errorf("ls entry: %v", rl)
	}

	for _, l := range held {
		l.Release()
	}
	lq.Release()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if got := rust.result(t); got["received"] != 6 {
		t.Errorf("rust consumer: %v", got)
	}
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// watch (both tools) redraws its frame and exits with a clear message once
// the ring's file is removed.
func TestWatchExitsWhenTheRingIsRemoved(t *testing.T) {
	needRust(t)
	for _, bin := range []string{rustBin, goBin} {
		name := newRing(t)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "watch", name, "--interval", "20")
		out := new(lockedBuffer)
		cmd.Stdout = out
		cmd.Stderr = out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		testbin.WaitFor(t, 10*time.Second, bin+" watch to draw two frames", func() bool {
			return strings.Count(out.String(), "slots in use") >= 2
		})
		if err := ring.Remove(name); err != nil {
			t.Fatal(err)
		}
		removed := time.Now()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%s watch: %v\n%s", bin, err, out.String())
		}
		took := time.Since(removed)
		s := out.String()
		// Into a pipe the Rust CLI draws frames without escape codes (#18).
		if !strings.Contains(s, "slots in use") {
			t.Errorf("%s watch drew no frame: %q", bin, s)
		}
		if !strings.Contains(s, "was removed") {
			t.Errorf("%s watch: no removal message in %q", bin, s)
		}
		if took > 2*time.Second {
			t.Errorf("%s watch took %v to notice the removal", bin, took)
		}
	}
}
