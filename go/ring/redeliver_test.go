//go:build linux

package ring

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"
	"time"
)

// The done-word markers never equal a released value and name their holder.
func TestDoneMarkers(t *testing.T) {
	for _, seq := range []uint64{0, 1, 7, 1<<47 - 1, 1<<48 - 2, 1<<62 + 5} {
		for _, m := range []uint32{0, 1, 255} {
			h := doneHeld(m, seq)
			if h&doneMarker == 0 || h == seq+1 || h == doneRedeliver(seq) || h == doneHeld(m, seq+8) {
				t.Fatalf("HELD(%d, %d) = %#x collides", m, seq, h)
			}
			if uint32(h>>doneHolderShift&doneHolderMask) != m {
				t.Fatalf("HELD(%d, %d) = %#x: wrong holder", m, seq, h)
			}
		}
		if earlierLap(doneRedeliver(seq), seq) || !earlierLap(seq, seq) || earlierLap(seq+1, seq) {
			t.Fatalf("earlierLap wrong around %d", seq)
		}
	}
	// Same encoding as src/layout.rs `done::held(3, 41)`.
	if got := doneHeld(3, 41); got != 0x8003_0000_0000_002A {
		t.Fatalf("HELD(3, 41) = %#x", got)
	}
}

// A queue member that dies holding leases (faked: its pid becomes a reaped
// child's) gets them redelivered, flagged and before newer messages, to the
// surviving member once the producer reclaims it; the stat shows them
// waiting; the dead member's late releases change nothing.
func TestQueueRedeliveryToSurvivor(t *testing.T) {
	const count = 40
	r := anonRing(t, Config{SlotCount: 4, SlotSize: 64, MaxSubscribers: 2, MaxMembers: 4})
	live, err := r.JoinQueue(3, ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dead, err := r.JoinQueue(3, ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.NewProducer(ProducerOptions{Backpressure: Backpressure{Kind: Block, Timeout: 10 * time.Second}, ReclaimAfter: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for j := 0; j < 4; j++ {
		mustSend(t, p, []byte{byte(j)}, 0)
	}
	h0, h1 := recvOK(t, dead), recvOK(t, dead) // 0 and 1, never released
	recvOK(t, live).Release()                  // 2
	fakeDeadMember(t, r, dead)
	sent := make(chan error, 1)
	go func() {
		for j := 4; j < count; j++ {
			if err := p.Send([]byte{byte(j)}, 0); err != nil {
				sent <- fmt.Errorf("message %d: %w", j, err)
				return
			}
		}
		sent <- p.Close()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for r.Stat().Consumers[0].Redeliver != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no redelivery: %+v", r.Stat().Consumers[0])
		}
		time.Sleep(2 * time.Millisecond)
	}
	if c := r.Stat().Consumers[0]; c.LeasesHeld != 0 || len(c.Members) != 1 || c.Released != 0 {
		t.Fatalf("after the reclaim: %+v", c)
	}
	var got []uint64
	for {
		l, err := live.RecvTimeout(10 * time.Second)
		if err != nil {
			break // io.EOF, checked below
		}
		if l.Redelivered() != (l.Seq() < 2) {
			t.Fatalf("seq %d redelivered=%v", l.Seq(), l.Redelivered())
		}
		if int(l.Bytes()[0]) != int(l.Seq()) {
			t.Fatalf("seq %d holds %d", l.Seq(), l.Bytes()[0])
		}
		got = append(got, l.Seq())
		l.Release()
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	want := []uint64{0, 1, 3}
	for j := uint64(4); j < count; j++ {
		want = append(want, j)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("survivor got %v, want %v", got, want)
	}
	// The "dead" member's releases come late: the words are no longer its.
	h0.Release()
	h1.Release()
	if c := r.Stat().Consumers[0]; c.Released != count || c.Redeliver != 0 || c.LeasesHeld != 0 {
		t.Fatalf("at the end: %+v", c)
	}
	live.Close()
	dead.Close()
}

// queueChildEnv switches the re-executed test binary into the queue member
// that TestReclaimKilledQueueMember kills.
const queueChildEnv = "ALLOY_TEST_QUEUE_CHILD"

// TestReclaimKilledQueueMember kills (SIGKILL) a real queue member process
// holding every lease it received; the producer reclaims it and the
// surviving member receives the held messages again, flagged, and every
// other message once.
func TestReclaimKilledQueueMember(t *testing.T) {
	if os.Getenv(queueChildEnv) != "" {
		t.Skip("runs in the parent only")
	}
	const count = 300
	r := anonRing(t, Config{SlotCount: 8, SlotSize: 64, MaxSubscribers: 2, MaxMembers: 4})
	live, err := r.JoinQueue(1, ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cmd := regionChild(t, r, "TestHeldQueueLeasesChild", queueChildEnv+"=1")
	cmd.Stderr = new(limitedBuffer)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stdout)
	childGot := map[uint64]bool{}
	waitFor := func(n int) {
		t.Helper()
		for len(childGot) < n && lines.Scan() {
			var seq uint64
			if _, err := fmt.Sscanf(lines.Text(), "got %d", &seq); err == nil {
				childGot[seq] = true
			}
		}
		if len(childGot) < n {
			t.Fatalf("child ended early: %v; stderr: %s", lines.Err(), cmd.Stderr)
		}
	}
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("child not ready: %s", cmd.Stderr)
	}
	p, err := r.NewProducer(ProducerOptions{Backpressure: Backpressure{Kind: Block, Timeout: 30 * time.Second}, ReclaimAfter: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() {
		for j := 0; j < count; j++ {
			if err := p.Send([]byte{byte(j)}, 0); err != nil {
				sent <- fmt.Errorf("message %d: %w", j, err)
				return
			}
		}
		sent <- p.Close()
	}()
	waitFor(4) // the survivor has not read anything yet
	cmd.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	for lines.Scan() { // whatever it printed before dying
		var seq uint64
		if _, err := fmt.Sscanf(lines.Text(), "got %d", &seq); err == nil {
			childGot[seq] = true
		}
	}
	cmd.Wait()

	seen := map[uint64]bool{}
	flagged := map[uint64]bool{}
	var firstAgain time.Duration
	for {
		l, err := live.RecvTimeout(30 * time.Second)
		if err != nil {
			break
		}
		if seen[l.Seq()] {
			t.Fatalf("seq %d delivered twice to the survivor", l.Seq())
		}
		seen[l.Seq()] = true
		if l.Redelivered() {
			if firstAgain == 0 {
				firstAgain = time.Since(killed)
			}
			flagged[l.Seq()] = true
		}
		l.Release()
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if len(seen) != count {
		t.Fatalf("survivor got %d of %d messages", len(seen), count)
	}
	// Every message the child got comes back flagged; at most one more is
	// flagged (claimed by the child, killed before it printed it).
	extra := 0
	for s := range childGot {
		if !flagged[s] {
			t.Fatalf("seq %d held by the killed member, not flagged", s)
		}
	}
	for s := range flagged {
		if !childGot[s] {
			extra++
		}
	}
	if extra > 1 {
		t.Fatalf("flagged %v, the child had %v", flagged, childGot)
	}
	t.Logf("child held %d; first redelivery %v after the kill (ReclaimAfter 100ms)", len(childGot), firstAgain)
}

// TestHeldQueueLeasesChild is TestReclaimKilledQueueMember's child: it
// joins queue group 1 and keeps every lease, printing each sequence, until
// killed.
func TestHeldQueueLeasesChild(t *testing.T) {
	if os.Getenv(queueChildEnv) == "" {
		t.Skip("runs as TestReclaimKilledQueueMember's child process")
	}
	r := inheritedRing(t)
	c, err := r.JoinQueue(1, ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	var held []*Lease
	for {
		l, err := c.RecvTimeout(time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
		fmt.Printf("got %d\n", l.Seq())
	}
}

// With a producer that never blocks (idle, or closed), the surviving
// member redelivers a dead member's messages itself: while it waits, and
// before it would report the end of the stream.
func TestSurvivorRedeliversWithoutProducerReclaim(t *testing.T) {
	for _, closeFirst := range []bool{false, true} {
		r := anonRing(t, Config{SlotCount: 8, SlotSize: 64, MaxSubscribers: 2, MaxMembers: 4})
		live, err := r.JoinQueue(3, ConsumerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		dead, err := r.JoinQueue(3, ConsumerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p := mustProducer(t, r, Backpressure{Kind: Block})
		for j := 0; j < 3; j++ {
			mustSend(t, p, []byte{byte(j)}, 0)
		}
		recvOK(t, dead).Release()                  // 0
		h1, h2 := recvOK(t, dead), recvOK(t, dead) // 1, 2 held
		fakeDeadMember(t, r, dead)
		if closeFirst {
			p.Close()
		}
		start := time.Now()
		for _, want := range []uint64{1, 2} {
			l, err := live.RecvTimeout(5 * time.Second)
			if err != nil {
				t.Fatalf("close first %v: %v", closeFirst, err)
			}
			if l.Seq() != want || !l.Redelivered() {
				t.Fatalf("close first %v: seq %d redelivered=%v, want %d flagged", closeFirst, l.Seq(), l.Redelivered(), want)
			}
			l.Release()
		}
		t.Logf("close first %v: redelivered by the survivor after %v", closeFirst, time.Since(start))
		if closeFirst {
			if _, err := live.Recv(); err != io.EOF {
				t.Fatalf("after the redeliveries: %v, want io.EOF", err)
			}
			// A count left too high (a reclaimer died between its increment
			// and its CAS) does not hide the end.
			u64At(r.mem, r.lay.subOff(live.sub)+subRedeliver).Add(1)
			if _, err := live.RecvTimeout(5 * time.Second); err != io.EOF {
				t.Fatalf("with an over-count: %v, want io.EOF", err)
			}
		} else if _, err := live.TryRecv(); err != ErrEmpty {
			t.Fatalf("after the redeliveries: %v, want ErrEmpty", err)
		}
		h1.Release()
		h2.Release()
		overcount := uint64(0)
		if closeFirst {
			overcount = 1
		}
		if c := r.Stat().Consumers[0]; c.Released != 3 || c.Redeliver != overcount || c.LeasesHeld != 0 || len(c.Members) != 1 {
			t.Fatalf("at the end: %+v", c)
		}
		if !closeFirst {
			p.Close()
		}
		live.Close()
		dead.Close()
	}
}
