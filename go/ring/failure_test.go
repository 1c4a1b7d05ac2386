//go:build linux

package ring

import (
	"bufio"
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

	"github.com/ignalina/alloy/go/internal/proc"
	"github.com/ignalina/alloy/go/internal/testbin"
)

// deadPid returns the pid of a child that has finished and been reaped, so
// /proc/<pid> no longer exists (until the kernel reuses the number, which
// takes a full lap of pid_max).
func deadPid(t testing.TB) uint32 {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return uint32(cmd.Process.Pid)
}

// startOf is the low 32 bits of a running process's start time.
func startOf(t testing.TB, pid uint32) uint32 {
	t.Helper()
	st, start := proc.Probe(pid)
	if st != proc.Running {
		t.Fatalf("pid %d: /proc status %d", pid, st)
	}
	return uint32(start)
}

// LAYOUT §11.1: dead means gone, a zombie, or a pid now naming a process
// with another start time (pid reuse) — never a stale heartbeat.
func TestIsDead(t *testing.T) {
	me := uint32(os.Getpid())
	start := ownStart()
	if start == 0 || start != startOf(t, me) {
		t.Fatalf("own start time %d", start)
	}
	for _, c := range []struct {
		name  string
		pid   uint32
		start uint32
		dead  bool
	}{
		{"live pid, its start time", me, start, false},
		{"live pid, start unknown", me, 0, false},
		{"reused pid: another start time", me, start + 1, true},
		{"reused pid: high bit differs", me, start ^ 1<<31, true},
		{"parent, its start time", uint32(os.Getppid()), startOf(t, uint32(os.Getppid())), false},
		{"reaped pid", deadPid(t), start, true},
		{"pid 0", 0, 0, true},
	} {
		if got := isDead(c.pid, c.start); got != c.dead {
			t.Errorf("%s: isDead = %v, want %v", c.name, got, c.dead)
		}
		if got := identityDead(identity(c.pid, c.start)); got != c.dead {
			t.Errorf("%s: identityDead = %v, want %v", c.name, got, c.dead)
		}
	}
	// Heartbeats are a hint only.
	now := newEnv().monoNs()
	if stalled(now-uint64(time.Second), now) || !stalled(now-uint64(staleAfter+time.Second), now) ||
		stalled(now+uint64(time.Second), now) {
		t.Error("stalled: wrong threshold")
	}
}

// A stopped process is alive; the same pid with another start time is not.
func TestStoppedProcessIsAlive(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	pid := uint32(cmd.Process.Pid)
	start := startOf(t, pid)
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for begin := time.Now(); proc.State(int(pid)) != "T"; time.Sleep(time.Millisecond) {
		if time.Since(begin) > 10*time.Second {
			t.Fatalf("child never stopped (state %q)", proc.State(int(pid)))
		}
	}
	if isDead(pid, start) {
		t.Fatal("a stopped process counts as dead")
	}
	if !isDead(pid, start+1) {
		t.Fatal("its pid with another start time counts as alive")
	}
}

// hbLoad reads a heartbeat word.
func hbLoad(r *Ring, off uint64) uint64 { return u64At(r.mem, off).Load() }

// Attached handles refresh their heartbeats from a goroutine that Close
// stops (and waits for): nothing is written after detaching.
func TestHeartbeatsRefreshAndStop(t *testing.T) {
	r := anonRing(t, small)
	p := mustProducer(t, r, failBP)
	c := mustSubscribe(t, r)
	memHB, subHB := r.lay.memberOff(c.mem)+memHeartbeat, r.lay.subOff(c.sub)+subHeartbeat
	p0, m0, s0 := hbLoad(r, offProducerHeartbeat), hbLoad(r, memHB), hbLoad(r, subHB)
	testbin.WaitFor(t, 50*heartbeatPeriod, "the producer, member and subscriber heartbeats to be refreshed", func() bool {
		return hbLoad(r, offProducerHeartbeat) > p0 && hbLoad(r, memHB) > m0 && hbLoad(r, subHB) > s0
	})
	if err := p.Detach(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]*heartbeat{"producer": p.hb, "consumer": c.hb} {
		select {
		case <-h.done:
		default:
			t.Fatalf("%s heartbeat goroutine still running after Close", name)
		}
	}
	p1, m1 := hbLoad(r, offProducerHeartbeat), hbLoad(r, memHB)
	time.Sleep(2 * heartbeatPeriod)
	if hbLoad(r, offProducerHeartbeat) != p1 || hbLoad(r, memHB) != m1 {
		t.Fatal("a heartbeat was written after Close")
	}
	// Close stops it as well.
	p2 := mustProducer(t, r, failBP)
	p2.Close()
	select {
	case <-p2.hb.done:
	default:
		t.Fatal("producer heartbeat goroutine still running after Close")
	}
}

// A producer whose recorded holder is dead takes the seat over and
// continues the sequence.
func TestProducerTakeover(t *testing.T) {
	r := anonRing(t, small)
	c := mustSubscribe(t, r)
	old := mustProducer(t, r, failBP)
	mustSend(t, old, []byte{0}, 0)
	mustSend(t, old, []byte{1}, 0)
	dead := deadPid(t)
	u64At(r.mem, offProducerPid).Store(identity(dead, 0)) // the holder "died"

	p, err := r.NewProducer(ProducerOptions{})
	if err != nil {
		t.Fatalf("takeover of dead pid %d: %v", dead, err)
	}
	if got := u64At(r.mem, offProducerPid).Load(); got != r.env.id() {
		t.Fatalf("producer identity %#x after takeover, want %#x", got, r.env.id())
	}
	if p.Published() != 2 {
		t.Fatalf("new producer continues at %d, want 2", p.Published())
	}
	// The displaced handle stopped refreshing a seat that is not its own.
	// (It cannot tell us from its holder: we share a pid.)
	stale := uint64(1)
	u64At(r.mem, offProducerHeartbeat).Store(stale)
	testbin.WaitFor(t, 50*heartbeatPeriod, "the new producer to refresh its heartbeat", func() bool {
		return u64At(r.mem, offProducerHeartbeat).Load() != stale
	})
	if _, err := r.NewProducer(ProducerOptions{}); !errors.Is(err, ErrProducerExists) {
		t.Fatalf("third producer against a live one: %v", err)
	}
	mustSend(t, p, []byte{2}, 0)
	for j := 0; j < 3; j++ {
		if l := recvOK(t, c); l.Seq() != uint64(j) || l.Bytes()[0] != byte(j) {
			t.Fatalf("message %d: seq %d", j, l.Seq())
		}
	}
	if err := p.Detach(); err != nil {
		t.Fatal(err)
	}
	if got := u64At(r.mem, offProducerPid).Load(); got != 0 {
		t.Fatalf("producer identity %#x after Detach", got)
	}
	old.Detach()
}

// A live producer whose heartbeat stopped long ago (stopped, say) keeps
// its seat; the same pid recorded with another start time is a reused pid,
// whose seat is taken over (LAYOUT §11.1).
func TestProducerTakeoverNeedsDeathNotStaleHeartbeat(t *testing.T) {
	r := anonRing(t, small)
	ppid := uint32(os.Getppid())
	u64At(r.mem, offProducerPid).Store(identity(ppid, startOf(t, ppid)))
	u64At(r.mem, offProducerHeartbeat).Store(r.env.monoNs() - uint64(10*staleAfter))
	if _, err := r.NewProducer(ProducerOptions{}); !errors.Is(err, ErrProducerExists) {
		t.Fatalf("attach against a live producer with a stale heartbeat: %v, want ErrProducerExists", err)
	}
	if !r.ProducerAlive() || r.ProducerPid() != ppid {
		t.Fatalf("a live producer with a stale heartbeat: ProducerAlive %v, ProducerPid %d (want %d)", r.ProducerAlive(), r.ProducerPid(), ppid)
	}
	u64At(r.mem, offProducerPid).Store(identity(ppid, startOf(t, ppid)+1))
	if r.ProducerAlive() || r.ProducerPid() != ppid {
		t.Fatalf("a reused pid: ProducerAlive %v (counts as the producer), ProducerPid %d", r.ProducerAlive(), r.ProducerPid())
	}
	p, err := r.NewProducer(ProducerOptions{})
	if err != nil {
		t.Fatalf("takeover from a reused pid: %v", err)
	}
	if me := uint32(os.Getpid()); r.ProducerPid() != me || !r.ProducerAlive() {
		t.Fatalf("after takeover: ProducerPid %d (want %d), ProducerAlive %v", r.ProducerPid(), me, r.ProducerAlive())
	}
	p.Close()
	if r.ProducerPid() != 0 || r.ProducerAlive() || !r.IsClosed() {
		t.Fatalf("after Close: ProducerPid %d, ProducerAlive %v, IsClosed %v", r.ProducerPid(), r.ProducerAlive(), r.IsClosed())
	}
}

// A consumer waiting on an empty ring whose producer died gets
// ErrProducerGone within about 50 ms, after what was published, with every
// wait strategy and Recv variant; a new producer's messages arrive later.
func TestConsumerSeesProducerGone(t *testing.T) {
	recvs := map[string]func(*Consumer) (*Lease, error){
		"Recv":        (*Consumer).Recv,
		"RecvTimeout": func(c *Consumer) (*Lease, error) { return c.RecvTimeout(time.Minute) },
		"RecvContext": func(c *Consumer) (*Lease, error) { return c.RecvContext(context.Background()) },
	}
	for _, wait := range []WaitStrategy{Blocking, Spin} {
		for name, recv := range recvs {
			t.Run(fmt.Sprintf("%s/wait=%d", name, wait), func(t *testing.T) {
				r := anonRing(t, small)
				c, err := r.Subscribe(ConsumerOptions{Wait: wait})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				p := mustProducer(t, r, failBP)
				defer p.Detach() // after p2's Close: it then frees nothing
				mustSend(t, p, []byte{0}, 0)
				dead := deadPid(t)
				u64At(r.mem, offProducerPid).Store(identity(dead, 0))

				l, err := recv(c) // published before the death: delivered
				if err != nil || l.Seq() != 0 {
					t.Fatalf("first Recv: %v", err)
				}
				l.Release()
				start := time.Now()
				_, err = recv(c)
				if !errors.Is(err, ErrProducerGone) || !strings.Contains(err.Error(), fmt.Sprint(dead)) {
					t.Fatalf("Recv with a dead producer: %v, want ErrProducerGone naming pid %d", err, dead)
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Fatalf("ErrProducerGone after %v", d)
				}

				p2 := mustProducer(t, r, failBP) // takes over
				defer p2.Close()
				sent := make(chan error, 1)
				go func() {
					time.Sleep(20 * time.Millisecond)
					sent <- p2.Send([]byte{1}, 0)
				}()
				l, err = recv(c)
				if err != nil || l.Seq() != 1 {
					t.Fatalf("Recv after a new producer attached: %v", err)
				}
				l.Release()
				if err := <-sent; err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// No producer, or a closed stream, is not a dead producer.
func TestNoProducerIsNotGone(t *testing.T) {
	r := anonRing(t, small)
	c := mustSubscribe(t, r)
	if _, err := c.RecvTimeout(150 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("no producer attached: %v, want ErrTimeout", err)
	}
	p := mustProducer(t, r, failBP)
	mustSend(t, p, nil, 0)
	p.Close()
	u64At(r.mem, offProducerPid).Store(identity(deadPid(t), 0)) // ignored once closed
	if l, err := c.Recv(); err != nil {
		t.Fatal(err)
	} else {
		l.Release()
	}
	if _, err := c.Recv(); err != io.EOF {
		t.Fatalf("after close: %v, want io.EOF", err)
	}
}

// fakeDeadMember turns consumer c into the entry of a dead process: its
// member identity becomes a reaped child's (its heartbeat goroutine then
// stops writing, the entry no longer being its own).
func fakeDeadMember(t testing.TB, r *Ring, c *Consumer) {
	u64At(r.mem, r.lay.memberOff(c.mem)+memPid).Store(identity(deadPid(t), 0))
}

// A dead broadcast member blocks the producer only until ReclaimAfter;
// then its subscriber is freed and the live consumer receives everything.
func TestReclaimDeadBroadcastMember(t *testing.T) {
	const count = 40
	const reclaimAfter = 300 * time.Millisecond
	r := anonRing(t, small)
	live := mustSubscribe(t, r)
	dead := mustSubscribe(t, r)
	fakeDeadMember(t, r, dead)
	p, err := r.NewProducer(ProducerOptions{Backpressure: Backpressure{Kind: Block, Timeout: 30 * time.Second}, ReclaimAfter: reclaimAfter})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		for j := 0; j < count; j++ {
			l, err := live.RecvTimeout(30 * time.Second)
			if err != nil {
				got <- err
				return
			}
			if l.Seq() != uint64(j) {
				got <- fmt.Errorf("seq %d, want %d", l.Seq(), j)
				return
			}
			l.Release()
		}
		got <- nil
	}()
	start := time.Now()
	for j := 0; j < count; j++ {
		mustSend(t, p, []byte{byte(j)}, 0)
	}
	if d := time.Since(start); d < reclaimAfter {
		t.Fatalf("sent %d messages into 4 slots in %v, before the reclaim", count, d)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if st := u32At(r.mem, r.lay.subOff(dead.sub)+subState).Load(); st != stateFree {
		t.Fatalf("dead subscriber's state %d, want FREE", st)
	}
	if st := u32At(r.mem, r.lay.memberOff(dead.mem)+memState).Load(); st != stateFree {
		t.Fatalf("dead member's state %d, want FREE", st)
	}
	// The reclaimed handle's Close leaves the (now foreign) entries alone,
	// even after a newcomer from another (live) process took them.
	other := newEnv()
	ppid := uint32(os.Getppid())
	ppidStart := startOf(t, ppid)
	other.pid = func() uint32 { return ppid }
	other.start = func() uint32 { return ppidStart }
	newcomer := mustSubscribe(t, r.view(other))
	dead.Close()
	for _, c := range []*Consumer{live, newcomer} {
		off := r.lay.subOff(c.sub)
		if st, n := u32At(r.mem, off+subState).Load(), u32At(r.mem, off+subMembers).Load(); st != stateActive || n != 1 {
			t.Fatalf("subscriber %d: state %d, %d members after the reclaimed handle's Close", c.sub, st, n)
		}
	}
	newcomer.Close()
	live.Close()
	p.Close()
}

// A Fail producer reclaims too, once its Reserve has found the ring full
// for ReclaimAfter; a dead queue member leaves its surviving group intact.
func TestReclaimWithFailAndQueueGroup(t *testing.T) {
	r := anonRing(t, Config{SlotCount: 4, SlotSize: 64, MaxSubscribers: 2, MaxMembers: 4})
	dead := mustSubscribe(t, r)
	fakeDeadMember(t, r, dead)
	q1, err := r.JoinQueue(7, ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	q2, err := r.JoinQueue(7, ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fakeDeadMember(t, r, q2)
	p, err := r.NewProducer(ProducerOptions{Backpressure: failBP, ReclaimAfter: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for j := 0; j < 4; j++ {
		mustSend(t, p, nil, 0)
	}
	for j := 0; j < 4; j++ {
		recvOK(t, q1).Release()
	}
	start := time.Now()
	for p.Send(nil, 0) != nil {
		if time.Since(start) > 5*time.Second {
			t.Fatal("still full 5 s after the dead subscriber's reclaim was due")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("reclaimed after %v, before ReclaimAfter", d)
	}
	qoff := r.lay.subOff(q1.sub)
	if st, n := u32At(r.mem, qoff+subState).Load(), u32At(r.mem, qoff+subMembers).Load(); st != stateActive || n != 1 {
		t.Fatalf("queue group: state %d, %d members; want ACTIVE with 1", st, n)
	}
	for _, c := range []*Consumer{dead, q1, q2} {
		c.Close()
	}
	p.Close()
}

// A subscriber left JOINING by an owner that died while joining is freed.
func TestReclaimDeadJoiner(t *testing.T) {
	r := anonRing(t, small)
	p, err := r.NewProducer(ProducerOptions{Backpressure: Backpressure{Kind: Block, Timeout: 10 * time.Second}, ReclaimAfter: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	off := r.lay.subOff(1)
	u32At(r.mem, off+subState).Store(stateJoining)
	u32At(r.mem, off+subKind).Store(kindBroadcast)
	u32At(r.mem, off+subMembers).Store(1)
	u64At(r.mem, off+subOwnerPid).Store(identity(deadPid(t), 0))
	u64At(r.mem, off+subHeartbeat).Store(r.env.monoNs())
	u64At(r.mem, offTableEpoch).Add(1)
	for j := 0; j < 8; j++ { // the JOINING entry gates at release 0 + 4
		mustSend(t, p, nil, 0)
	}
	if st := u32At(r.mem, off+subState).Load(); st != stateFree {
		t.Fatalf("dead joiner's subscriber state %d, want FREE", st)
	}
	p.Close()
}

// failureChildEnv switches the re-executed test binary into the consumer
// that TestReclaimKilledConsumer kills.
const failureChildEnv = "ALLOY_TEST_FAILURE_CHILD"

// TestReclaimKilledConsumer kills (SIGKILL) a real consumer process while
// it holds leases; the producer reclaims its subscriber after ReclaimAfter
// and a live consumer receives every message.
func TestReclaimKilledConsumer(t *testing.T) {
	if os.Getenv(failureChildEnv) != "" {
		t.Skip("runs in the parent only")
	}
	const count = 200
	const reclaimAfter = 300 * time.Millisecond
	r := anonRing(t, Config{SlotCount: 8, SlotSize: 64, MaxSubscribers: 2, MaxMembers: 2})
	live := mustSubscribe(t, r)

	cmd := regionChild(t, r, "TestHeldLeasesChild", failureChildEnv+"=1")
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
	waitFor := func(want string) {
		t.Helper()
		for lines.Scan() {
			if lines.Text() == want {
				return
			}
		}
		t.Fatalf("child ended before %q: %v; stderr: %s", want, lines.Err(), cmd.Stderr)
	}
	waitFor("ready")

	p, err := r.NewProducer(ProducerOptions{Backpressure: Backpressure{Kind: Block, Timeout: 30 * time.Second}, ReclaimAfter: reclaimAfter})
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
	waitFor("holding 4") // it dies with leases out
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	killed := time.Now()

	for j := 0; j < count; j++ {
		l, err := live.RecvTimeout(30 * time.Second)
		if err != nil {
			t.Fatalf("live consumer at %d: %v", j, err)
		}
		if l.Seq() != uint64(j) {
			t.Fatalf("live consumer got seq %d, want %d", l.Seq(), j)
		}
		l.Release()
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	t.Logf("producer finished %v after the kill (ReclaimAfter %v)", time.Since(killed), reclaimAfter)
	for k := uint32(0); k < 2; k++ {
		if k != live.sub {
			if st := u32At(r.mem, r.lay.subOff(k)+subState).Load(); st != stateFree {
				t.Fatalf("killed consumer's subscriber %d has state %d", k, st)
			}
		}
	}
}

// TestHeldLeasesChild is TestReclaimKilledConsumer's child: it subscribes
// and keeps every lease, reporting how many it holds, until killed.
func TestHeldLeasesChild(t *testing.T) {
	if os.Getenv(failureChildEnv) == "" {
		t.Skip("runs as TestReclaimKilledConsumer's child process")
	}
	r := inheritedRing(t)
	c := mustSubscribe(t, r)
	fmt.Println("ready")
	var held []*Lease
	for {
		l, err := c.RecvTimeout(time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
		fmt.Printf("holding %d\n", len(held))
	}
}
