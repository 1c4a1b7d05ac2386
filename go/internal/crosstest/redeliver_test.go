package crosstest

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/ignalina/alloy/go/internal/checkmsg"
	"github.com/ignalina/alloy/go/ring"
)

func readU64s(t *testing.T, path string) []uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for i := 0; i+8 <= len(b); i += 8 {
		out = append(out, binary.LittleEndian.Uint64(b[i:]))
	}
	return out
}

// A Rust work-queue member SIGKILLed while holding leases, with a Go (or
// Rust) producer: the producer reclaims it after --reclaim-after, the
// surviving Rust member receives the held messages again, flagged, and the
// group processes every message at least once; the ones processed twice
// are exactly the flagged ones (LAYOUT §11.3).
func TestKilledQueueMemberRedelivered(t *testing.T) {
	needRustFlag(t, "redelivered")
	const count = 20000
	g, r := sides()
	for _, producer := range []side{g, r} {
		t.Run(producer.lang+"-producer", func(t *testing.T) {
			name := newRing(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			dir := t.TempDir()
			rec := filepath.Join(dir, "victim.rec")
			if err := os.WriteFile(rec, make([]byte, 8+8*count), 0o600); err != nil {
				t.Fatal(err)
			}
			out, again := filepath.Join(dir, "survivor.out"), filepath.Join(dir, "survivor.again")
			v := start(t, ctx, rustBin, "test-consume", "--ring", name, "--queue", "7", "--hold", "8", "--record", rec)
			s := start(t, ctx, rustBin, "test-consume", "--ring", name, "--queue", "7", "--out", out, "--redelivered", again)
			v.ready(t)
			s.ready(t)
			// A bare number is milliseconds for both CLIs.
			p := start(t, ctx, producer.bin, "test-produce", "--ring", name, "--count", fmt.Sprint(count), "--reclaim-after", "100")
			// Kill once the victim holds its 8 leases (its record lists
			// what it received, before releasing, and survives SIGKILL) —
			// or 100 ms after its first message: a live member that holds
			// its leases stalls the group once the survivor has taken all
			// the rest, and then it never gets to 8.
			deadline := time.Now().Add(30 * time.Second)
			var first time.Time
			for {
				b, _ := os.ReadFile(rec)
				n := uint64(0)
				if len(b) >= 8 {
					n = binary.LittleEndian.Uint64(b)
				}
				if n >= 1 && first.IsZero() {
					first = time.Now()
				}
				if n >= 8 || (n >= 1 && time.Since(first) > 100*time.Millisecond) {
					break
				}
				if time.Now().After(deadline) {
					st, _ := exec.Command(rustBin, "stat", name).CombinedOutput()
					t.Fatalf("the victim received nothing\n%s\nvictim stderr: %s", st, v.errb.String())
				}
				time.Sleep(time.Millisecond)
			}
			v.cmd.Process.Signal(syscall.SIGKILL)
			io.ReadAll(v.out)
			v.cmd.Wait()
			sent := p.result(t)
			if got := s.result(t); got["received"] == 0 || sent["sent"] != count {
				t.Fatalf("survivor %v, producer %v", got, sent)
			}
			b, err := os.ReadFile(rec)
			if err != nil {
				t.Fatal(err)
			}
			byVictim := readU64s(t, rec)[1 : 1+binary.LittleEndian.Uint64(b)]
			bySurvivor := readU64s(t, out)
			flagged := map[uint64]bool{}
			for _, j := range readU64s(t, again) {
				flagged[j] = true
			}
			times := make([]int, count)
			for _, j := range append(append([]uint64{}, byVictim...), bySurvivor...) {
				if j >= count {
					t.Fatalf("message %d out of range", j)
				}
				times[j]++
			}
			twice := 0
			for j, n := range times {
				switch {
				case n == 0:
					t.Fatalf("message %d never processed", j)
				case n > 2:
					t.Fatalf("message %d processed %d times", j, n)
				case n == 2 && !flagged[uint64(j)]:
					t.Fatalf("message %d processed twice, not flagged", j)
				case n == 2:
					twice++
				}
			}
			// Flagged but processed once: only a message the victim had
			// claimed and not yet recorded (it reads one at a time).
			if held := min(len(byVictim), 8); len(flagged) < held || len(flagged)-twice > 1 {
				t.Fatalf("%d flagged, %d processed twice (the victim held %d)", len(flagged), twice, held)
			}
			t.Logf("victim processed %d, survivor %d, %d redelivered", len(byVictim), len(bySurvivor), len(flagged))
		})
	}
}

// Both tools report a queue group's pending redeliveries identically: a
// Rust member process holding 2 leases is SIGKILLed, the Go producer
// reclaims it, and until the Go member (not reading yet) takes them,
// `stat --json` of both CLIs shows "redeliver": 2 and no lease held. The
// Go member then receives them first, flagged.
func TestKilledQueueMemberStatAgrees(t *testing.T) {
	needRustFlag(t, "redelivered")
	name := newRing(t)
	r, err := ring.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v := start(t, ctx, rustBin, "test-consume", "--ring", name, "--queue", "3", "--hold", "2")
	v.ready(t)
	q, err := r.JoinQueue(3, ring.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	p, err := r.NewProducer(ring.ProducerOptions{Backpressure: ring.Backpressure{Kind: ring.Fail}, ReclaimAfter: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	spec := checkmsg.Spec{Seed: 1, MinSize: 16, MaxSize: 4096} // test-consume's defaults
	send := func(j uint64) error {
		msg := make([]byte, spec.Len(j))
		checkmsg.Fill(msg, j)
		return p.Send(msg, 0)
	}
	for j := range uint64(4) {
		if err := send(j); err != nil {
			t.Fatal(err)
		}
	}
	waitStat := func(what string, ok func(ring.ConsumerStat) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok(r.Stat().Consumers[0]) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %+v", what, r.Stat().Consumers[0])
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	// The victim took all 4 (the Go member does not read) and holds 2, 3.
	waitStat("victim holds 2", func(c ring.ConsumerStat) bool { return c.Released == 2 && c.LeasesHeld == 2 })
	v.cmd.Process.Signal(syscall.SIGKILL)
	io.ReadAll(v.out)
	v.cmd.Wait()
	// Fill the ring (256 slots, gate at 2 + 256); the Fail producer then
	// reclaims after 50 ms of Full.
	next := uint64(4)
	deadline := time.Now().Add(10 * time.Second)
	for r.Stat().Consumers[0].Redeliver == 0 {
		if err := send(next); err == nil {
			next++
		} else if !errors.Is(err, ring.ErrFull) {
			t.Fatal(err)
		} else if time.Now().After(deadline) {
			t.Fatalf("no redelivery: %+v", r.Stat().Consumers[0])
		} else {
			time.Sleep(5 * time.Millisecond)
		}
	}
	rs := runJSON(t, rustBin, "stat", name, "--json", "--interval", "0")
	gs := runJSON(t, goBin, "stat", name, "--json", "--interval", "0")
	rm, gm := dropTimeFields(t, rs), dropTimeFields(t, gs)
	if !reflect.DeepEqual(rm, gm) {
		a, _ := json.Marshal(rm)
		b, _ := json.Marshal(gm)
		t.Fatalf("stat differs:\nrust %s\ngo   %s", a, b)
	}
	qc := rm["consumers"].([]any)[0].(map[string]any)
	if qc["redeliver"] != 2.0 || qc["leases_held"] != 0.0 || qc["released"] != 2.0 || len(qc["members"].([]any)) != 1 {
		t.Fatalf("queue group after the reclaim: %v", qc)
	}
	for _, want := range []uint64{2, 3} {
		l, err := q.RecvTimeout(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if l.Seq() != want || !l.Redelivered() {
			t.Fatalf("got seq %d redelivered=%v, want %d flagged", l.Seq(), l.Redelivered(), want)
		}
		if j, err := spec.Verify(l.Bytes()); err != nil || j != want {
			t.Fatalf("seq %d: message %d, %v", want, j, err)
		}
		l.Release()
	}
	if c := r.Stat().Consumers[0]; c.Redeliver != 0 {
		t.Fatalf("after taking them: %+v", c)
	}
}
