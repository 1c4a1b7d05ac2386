//go:build linux

package ring

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var statCfg = Config{SlotCount: 8, SlotSize: 64, MaxSubscribers: 4, MaxMembers: 4, SchemaCapacity: 64}

func mustRecv(t *testing.T, c *Consumer) *Lease {
	t.Helper()
	l, err := c.TryRecv()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Lag, leases held (with an out-of-order release), fill and liveness on a
// ring in a known state; the same scenario as the Rust unit test
// stat_reports_lag_leases_and_fill.
func TestStatReportsLagLeasesAndFill(t *testing.T) {
	r := anonRing(t, statCfg)
	a, b := mustSubscribe(t, r), mustSubscribe(t, r)
	q1, err := r.JoinQueue(7, ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	q2, err := r.JoinQueue(7, ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := mustProducer(t, r, Backpressure{Kind: Fail})
	defer p.Close()
	for j := range 5 {
		mustSend(t, p, bytes.Repeat([]byte{byte(j)}, 10), 0)
	}
	l0, l1, l2 := mustRecv(t, a), mustRecv(t, a), mustRecv(t, a)
	l1.Release()
	for range 5 {
		mustRecv(t, b).Release()
	}
	lq := mustRecv(t, q2)

	s := r.Stat()
	me := uint32(os.Getpid())
	if s.Version != Version || s.SlotCount != 8 || s.SlotSize != 64 || s.Published != 5 || s.Closed {
		t.Fatalf("header fields: %+v", s)
	}
	if s.ProducerPid != me || !s.ProducerAlive {
		t.Fatalf("producer %d alive %v", s.ProducerPid, s.ProducerAlive)
	}
	if len(s.Consumers) != 3 {
		t.Fatalf("%d consumers", len(s.Consumers))
	}
	ca, cb, cq := s.Consumers[0], s.Consumers[1], s.Consumers[2]
	if ca.Kind != "broadcast" || ca.Cursor != 3 || ca.Released != 0 || ca.Lag != 2 || ca.LeasesHeld != 2 {
		t.Errorf("a: %+v", ca)
	}
	if cb.Cursor != 5 || cb.Released != 5 || cb.Lag != 0 || cb.LeasesHeld != 0 {
		t.Errorf("b: %+v", cb)
	}
	if cq.Kind != "queue" || cq.Group != 7 || len(cq.Members) != 2 || cq.Lag != 4 || cq.LeasesHeld != 1 {
		t.Errorf("queue: %+v", cq)
	}
	for _, c := range s.Consumers {
		if c.State != "active" || !c.Alive {
			t.Errorf("consumer %d: state %s alive %v", c.Index, c.State, c.Alive)
		}
		for _, m := range c.Members {
			if m.Pid != me || !m.Alive {
				t.Errorf("member %+v", m)
			}
		}
	}
	if s.SlotsInUse != 5 || s.Fill != 5.0/8.0 {
		t.Errorf("fill %d %v", s.SlotsInUse, s.Fill)
	}

	l0.Release()
	l2.Release()
	lq.Release()
	for range 2 {
		mustRecv(t, a).Release()
	}
	s2 := r.Stat()
	if c := s2.Consumers[0]; c.Released != 5 || c.LeasesHeld != 0 {
		t.Errorf("a after releases: %+v", c)
	}
	if s2.SlotsInUse != 4 {
		t.Errorf("slots in use %d, want 4 (the queue group released 1 of 5)", s2.SlotsInUse)
	}
	q1.Close()
	q2.Close()
	a.Close()
	b.Close()
	if s3 := r.Stat(); len(s3.Consumers) != 0 || s3.SlotsInUse != 0 {
		t.Errorf("after close: %+v", s3)
	}
}

func TestStatRatesAndJSON(t *testing.T) {
	r := anonRing(t, statCfg)
	c := mustSubscribe(t, r)
	defer c.Close()
	p := mustProducer(t, r, Backpressure{Kind: Fail})
	defer p.Close()
	first := r.Stat()
	if first.MessagesPerS != nil {
		t.Fatal("a single sample has no rate")
	}
	for range 6 {
		mustSend(t, p, []byte("x"), 0)
		mustRecv(t, c).Release()
	}
	time.Sleep(20 * time.Millisecond)
	s := r.Stat().WithRates(first)
	secs := *s.IntervalMs / 1e3
	if secs < 0.02 {
		t.Fatalf("interval %v s", secs)
	}
	if d := *s.MessagesPerS - 6/secs; d > 1e-6 || d < -1e-6 {
		t.Errorf("messages/s %v, want %v", *s.MessagesPerS, 6/secs)
	}
	if cr := s.Consumers[0].ConsumedPerS; cr == nil || *cr-6/secs > 1e-6 || 6/secs-*cr > 1e-6 {
		t.Errorf("consumed/s %v", cr)
	}
	js, err := json.Marshal(first)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	if m["messages_per_s"] != nil || m["consumers"].([]any)[0].(map[string]any)["kind"] != "broadcast" {
		t.Errorf("json: %s", js)
	}
	if !strings.Contains(s.Render(), "broadcast") {
		t.Errorf("render:\n%s", s.Render())
	}
}

// StatNamed maps the ring read-only: every byte outside the heartbeat
// words is unchanged, and it sees what the ring's own handle sees.
func TestStatNamedIsReadOnly(t *testing.T) {
	name := fmt.Sprintf("alloy-go-stat-%d-%d", os.Getpid(), time.Now().UnixNano())
	r, err := Create(name, statCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer Remove(name)
	defer r.Close()
	c := mustSubscribe(t, r)
	defer c.Close()
	p := mustProducer(t, r, Backpressure{Kind: Fail})
	defer p.Close()
	mustSend(t, p, []byte("hello"), 0)
	held := mustRecv(t, c)
	mustSend(t, p, []byte("world"), 0)

	before := maskHeartbeats(r)
	s, err := StatNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	if after := maskHeartbeats(r); !bytes.Equal(before, after) {
		t.Fatal("StatNamed changed the region")
	}
	own := r.Stat()
	own.sampledNs = s.sampledNs
	a, _ := json.Marshal(s)
	b, _ := json.Marshal(own)
	if !bytes.Equal(a, b) {
		t.Fatalf("read-only view %s\nring handle    %s", a, b)
	}
	if s.Name != name || s.Consumers[0].Lag != 1 || s.Consumers[0].LeasesHeld != 1 {
		t.Errorf("%+v", s)
	}
	held.Release()
	if _, err := StatNamed("alloy-go-stat-does-not-exist"); err == nil {
		t.Error("missing ring: no error")
	}
}

// maskHeartbeats copies the region with the heartbeat words zeroed (the
// heartbeat goroutines keep writing them).
func maskHeartbeats(r *Ring) []byte {
	b := make([]byte, len(r.mem))
	copyWordsOut(b, r.mem, 0)
	zero := func(off uint64) { binary.LittleEndian.PutUint64(b[off:], 0) }
	zero(offProducerHeartbeat)
	for k := uint32(0); k < r.lay.MaxSubscribers; k++ {
		zero(r.lay.subOff(k) + subHeartbeat)
	}
	for j := uint32(0); j < r.lay.MaxMembers; j++ {
		zero(r.lay.memberOff(j) + memHeartbeat)
	}
	return b
}

func TestListDirFindsRingsAndSkipsOthers(t *testing.T) {
	dir := t.TempDir()
	r := anonRing(t, statCfg)
	p := mustProducer(t, r, Backpressure{Kind: Fail})
	defer p.Close()
	img := maskHeartbeats(r)
	binary.LittleEndian.PutUint64(img[offProducerHeartbeat:], newEnv().monoNs())
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a-ring", img)
	write("not-alloy", []byte("just some bytes, no magic"))
	write("empty", nil)
	v1 := bytes.Clone(img)
	binary.LittleEndian.PutUint32(v1[offVersion:], 1)
	write("b-v1", v1)
	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o700); err != nil {
		t.Fatal(err)
	}
	// A creation's temporary file (LAYOUT §1), e.g. left by a creator that
	// died before linking it: listed as not a ring, whatever its header says.
	write(".a-ring.4242.0.tmp", img)
	got, err := ListDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Name != ".a-ring.4242.0.tmp" || got[0].Error == nil || *got[0].Error != Unfinished {
		t.Fatalf("%+v", got)
	}
	got = got[1:]
	if len(got) != 2 || got[0].Name != "a-ring" || got[1].Name != "b-v1" {
		t.Fatalf("%+v", got)
	}
	a := got[0]
	if a.Version != Version || a.SlotCount != 8 || a.SlotSize != 64 || a.Size != r.lay.TotalSize || a.Error != nil {
		t.Errorf("%+v", a)
	}
	if a.ProducerPid != uint32(os.Getpid()) || !a.ProducerAlive {
		t.Errorf("producer %d alive %v", a.ProducerPid, a.ProducerAlive)
	}
	if got[1].Version != 1 || got[1].Error == nil || !strings.Contains(*got[1].Error, "version") {
		t.Errorf("%+v", got[1])
	}
	if _, err := ListDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing dir: no error")
	}
}
