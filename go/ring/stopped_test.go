//go:build linux

package ring

// A consumer that is alive but stopped is never taken for dead (issue #12,
// LAYOUT §11.1 and §11.3 "No eviction"): a real consumer process holding
// leases is SIGSTOPped for longer than every timeout (staleAfter, the
// producer's ReclaimAfter, a queue survivor's group check) while the
// producer keeps trying under each back-pressure policy. It keeps its
// entries and its leases, the producer gets ErrTimeout / ErrFull, and once
// continued the consumer finds the bytes it holds intact (checksummed) and
// reads every later message exactly as published.
//
// The consumer is this test binary run again with stoppedChildEnv set:
// init below turns it into the consumer before any test runs.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ignalina/alloy/go/internal/checkmsg"
	"github.com/ignalina/alloy/go/internal/proc"
)

const stoppedChildEnv = "ALLOY_TEST_STOPPED_CHILD"

// stoppedSpec is the checked-message format of the stopped-consumer tests.
var stoppedSpec = checkmsg.Spec{Seed: 12, MinSize: 16, MaxSize: 4096}

const (
	stoppedSlots = 8
	stoppedTotal = 200
	// stoppedFor is longer than staleAfter, the heartbeat age at which
	// layout v2 declared a process dead.
	stoppedFor          = staleAfter + 500*time.Millisecond
	stoppedReclaimAfter = 50 * time.Millisecond
)

func init() {
	if spec := os.Getenv(stoppedChildEnv); spec != "" {
		if err := stoppedChild(spec, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "stopped child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// stoppedChild is the consumer process: "<ring> <broadcast|queue> <hold>".
// It joins, keeps the first hold leases, says "holding N", waits for "go"
// on stdin (it is stopped meanwhile), checks that the held bytes are still
// the messages it received, releases them and reads to the end, verifying
// every message. It prints "received N j0 j1 …".
func stoppedChild(spec string, in io.Reader, out io.Writer) error {
	var name, mode string
	var hold int
	if _, err := fmt.Sscan(spec, &name, &mode, &hold); err != nil {
		return err
	}
	r, err := Open(name)
	if err != nil {
		return err
	}
	var c *Consumer
	if mode == "broadcast" {
		c, err = r.Subscribe(ConsumerOptions{})
	} else {
		c, err = r.JoinQueue(1, ConsumerOptions{})
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "ready")
	var got []uint64
	type held struct {
		copy  []byte
		lease *Lease
	}
	var leases []held
	for len(leases) < hold {
		l, err := c.RecvTimeout(30 * time.Second)
		if err != nil {
			return err
		}
		j, err := stoppedSpec.Verify(l.Bytes())
		if err != nil {
			return err
		}
		got = append(got, j)
		leases = append(leases, held{slices.Clone(l.Bytes()), l})
	}
	fmt.Fprintf(out, "holding %d\n", hold)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "go" {
		return fmt.Errorf("waiting for go: %q %v", line, err)
	}
	for _, h := range leases {
		if string(h.lease.Bytes()) != string(h.copy) {
			return fmt.Errorf("held message %d was rewritten", h.lease.Seq())
		}
		if _, err := stoppedSpec.Verify(h.lease.Bytes()); err != nil || h.lease.Redelivered() {
			return fmt.Errorf("held message %d: %v, redelivered %v", h.lease.Seq(), err, h.lease.Redelivered())
		}
		h.lease.Release()
	}
	for {
		l, err := c.RecvTimeout(30 * time.Second)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		j, err := stoppedSpec.Verify(l.Bytes())
		if err != nil || l.Redelivered() {
			return fmt.Errorf("message %d: %v, redelivered %v", l.Seq(), err, l.Redelivered())
		}
		got = append(got, j)
		l.Release()
	}
	fmt.Fprintf(out, "received %d", len(got))
	for _, j := range got {
		fmt.Fprintf(out, " %d", j)
	}
	fmt.Fprintln(out)
	c.Close()
	return r.Close()
}

// stoppedConsumer is the parent's handle on the child process.
type stoppedConsumer struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines *bufio.Scanner
}

func spawnStopped(t *testing.T, ring, mode string, hold int) *stoppedConsumer {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %d", stoppedChildEnv, ring, mode, hold))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Never leave a stopped child behind, whatever the outcome.
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c := &stoppedConsumer{t, cmd, stdin, bufio.NewScanner(stdout)}
	c.expect("ready")
	return c
}

// expect reads the child's lines until one starts with prefix.
func (c *stoppedConsumer) expect(prefix string) string {
	c.t.Helper()
	for c.lines.Scan() {
		if strings.HasPrefix(c.lines.Text(), prefix) {
			return c.lines.Text()
		}
	}
	c.t.Fatalf("child ended before %q: %v", prefix, c.lines.Err())
	return ""
}

// stop sends SIGSTOP and waits until /proc shows the child stopped.
func (c *stoppedConsumer) stop() {
	c.t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		c.t.Fatal(err)
	}
	for start := time.Now(); proc.State(c.cmd.Process.Pid) != "T"; time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			c.t.Fatalf("child never stopped (state %q)", proc.State(c.cmd.Process.Pid))
		}
	}
}

// resume sends SIGCONT and tells the child to check what it holds.
func (c *stoppedConsumer) resume() {
	c.t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		c.t.Fatal(err)
	}
	if _, err := io.WriteString(c.stdin, "go\n"); err != nil {
		c.t.Fatal(err)
	}
}

// finish returns the message numbers the child received, after its exit.
func (c *stoppedConsumer) finish() []uint64 {
	c.t.Helper()
	f := strings.Fields(c.expect("received "))
	if err := c.cmd.Wait(); err != nil {
		c.t.Fatalf("child consumer: %v", err)
	}
	var got []uint64
	for _, w := range f[2:] {
		j, err := strconv.ParseUint(w, 10, 64)
		if err != nil {
			c.t.Fatal(err)
		}
		got = append(got, j)
	}
	if n, _ := strconv.Atoi(f[1]); n != len(got) {
		c.t.Fatalf("child says %s messages, lists %d", f[1], len(got))
	}
	return got
}

func stoppedSend(p *Producer, j uint64) error {
	b := make([]byte, stoppedSpec.Len(j))
	checkmsg.Fill(b, j)
	return p.Send(b, 0)
}

// publishWhileStopped: while the consumer is stopped, a producer under
// Block with a timeout, then one under Fail, find the ring full
// (ErrTimeout, ErrFull) for longer than staleAfter, reclaiming every
// stoppedReclaimAfter and freeing nothing. It returns the stat of the
// consumer entry with the stalled member, and the Fail producer.
func publishWhileStopped(t *testing.T, r *Ring, next uint64, stopped time.Time) (ConsumerStat, *Producer) {
	t.Helper()
	p, err := r.NewProducer(ProducerOptions{
		Backpressure: Backpressure{Kind: Block, Timeout: 200 * time.Millisecond},
		ReclaimAfter: stoppedReclaimAfter,
	})
	if err != nil {
		t.Fatal(err)
	}
	timeouts, fulls := 0, 0
	for time.Since(stopped) < stoppedFor/2 {
		if err := stoppedSend(p, next); !errors.Is(err, ErrTimeout) {
			t.Fatalf("Block with timeout on a ring held by a stopped consumer: %v", err)
		}
		timeouts++
	}
	if err := p.Detach(); err != nil {
		t.Fatal(err)
	}
	p, err = r.NewProducer(ProducerOptions{Backpressure: Backpressure{Kind: Fail}, ReclaimAfter: stoppedReclaimAfter})
	if err != nil {
		t.Fatal(err)
	}
	for time.Since(stopped) < stoppedFor {
		if err := stoppedSend(p, next); !errors.Is(err, ErrFull) {
			t.Fatalf("Fail on a ring held by a stopped consumer: %v", err)
		}
		fulls++
		time.Sleep(5 * time.Millisecond)
	}
	if timeouts < 5 || fulls < 100 {
		t.Fatalf("%d timeouts, %d ErrFull", timeouts, fulls)
	}
	t.Logf("stopped %.1f s (staleAfter %v, reclaim every %v): %d ErrTimeout, %d ErrFull, nothing reclaimed",
		time.Since(stopped).Seconds(), staleAfter, stoppedReclaimAfter, timeouts, fulls)
	st := r.Stat()
	if st.Published != next {
		t.Fatalf("published %d while full, want %d", st.Published, next)
	}
	for _, c := range st.Consumers {
		for _, m := range c.Members {
			if m.Stalled {
				if !c.Alive || c.Redeliver != 0 {
					t.Fatalf("stopped consumer's entry: %+v", c)
				}
				for _, m := range c.Members {
					if !m.Alive {
						t.Fatalf("a member counts as dead: %+v", c)
					}
				}
				return c, p
			}
		}
	}
	t.Fatalf("no stalled member shown: %+v", st)
	return ConsumerStat{}, nil
}

// A broadcast consumer stopped holding every slot's lease keeps them and
// its subscription; continued, it reads all messages intact.
func TestStoppedBroadcastConsumerIsNotReclaimed(t *testing.T) {
	name := uniqueName(t)
	r, err := Create(name, Config{SlotCount: stoppedSlots, SlotSize: 4096, MaxSubscribers: 2, MaxMembers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	child := spawnStopped(t, name, "broadcast", stoppedSlots)
	p := mustProducer(t, r, Backpressure{})
	for j := uint64(0); j < stoppedSlots; j++ {
		if err := stoppedSend(p, j); err != nil {
			t.Fatal(err)
		}
	}
	child.expect(fmt.Sprintf("holding %d", stoppedSlots))
	if err := p.Detach(); err != nil {
		t.Fatal(err)
	}
	child.stop()
	c, p := publishWhileStopped(t, r, stoppedSlots, time.Now())
	if c.LeasesHeld != stoppedSlots || c.Released != 0 {
		t.Fatalf("stopped consumer: %+v", c)
	}
	child.resume()
	for j := uint64(stoppedSlots); j < stoppedTotal; {
		switch err := stoppedSend(p, j); {
		case err == nil:
			j++
		case errors.Is(err, ErrFull): // a Fail producer: wait for the consumer
			time.Sleep(100 * time.Microsecond)
		default:
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	got := child.finish()
	for j, n := range got {
		if n != uint64(j) {
			t.Fatalf("message %d is %d", j, n)
		}
	}
	if len(got) != stoppedTotal {
		t.Fatalf("received %d messages, want %d", len(got), stoppedTotal)
	}
}

// A queue member stopped holding leases is neither redelivered nor
// detached, though a surviving member of its group waits for messages
// (and runs its dead-member check) the whole time; continued, it releases
// what it held and the two members share the rest exactly once.
func TestStoppedQueueMemberIsNotRedelivered(t *testing.T) {
	const hold = 3
	name := uniqueName(t)
	r, err := Create(name, Config{SlotCount: stoppedSlots, SlotSize: 4096, MaxSubscribers: 2, MaxMembers: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	child := spawnStopped(t, name, "queue", hold)
	p := mustProducer(t, r, Backpressure{})
	for j := uint64(0); j < hold; j++ {
		if err := stoppedSend(p, j); err != nil {
			t.Fatal(err)
		}
	}
	child.expect(fmt.Sprintf("holding %d", hold))
	child.stop()
	stopped := time.Now()
	// The survivor joins now: it gets what the stopped member did not claim.
	survivor, err := r.JoinQueue(1, ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		got []uint64
		err error
	}
	done := make(chan result, 1)
	go func() {
		var got []uint64
		for {
			l, err := survivor.RecvTimeout(30 * time.Second)
			if err == io.EOF {
				done <- result{got, survivor.Close()}
				return
			}
			if err != nil {
				done <- result{got, err}
				return
			}
			j, err := stoppedSpec.Verify(l.Bytes())
			if err != nil || l.Redelivered() {
				done <- result{got, fmt.Errorf("survivor, message %d: %v, redelivered %v", l.Seq(), err, l.Redelivered())}
				return
			}
			got = append(got, j)
			l.Release()
		}
	}()
	// The group's release cursor stays at 0: the ring takes the other
	// slots' worth of messages, which the survivor reads, then it is full.
	for j := uint64(hold); j < stoppedSlots; j++ {
		if err := stoppedSend(p, j); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Detach(); err != nil {
		t.Fatal(err)
	}
	c, p := publishWhileStopped(t, r, stoppedSlots, stopped)
	if len(c.Members) != 2 || c.LeasesHeld != hold || c.Released != 0 {
		t.Fatalf("queue group while a member is stopped: %+v", c)
	}
	child.resume()
	for j := uint64(stoppedSlots); j < stoppedTotal; {
		switch err := stoppedSend(p, j); {
		case err == nil:
			j++
		case errors.Is(err, ErrFull):
			time.Sleep(100 * time.Microsecond)
		default:
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	all := child.finish()
	if !slices.Equal(all[:hold], []uint64{0, 1, 2}) {
		t.Fatalf("stopped member held %v", all[:hold])
	}
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	all = append(all, res.got...)
	slices.Sort(all)
	for j, n := range all {
		if n != uint64(j) {
			t.Fatalf("messages received: %v; want each of 0..%d once", all, stoppedTotal-1)
		}
	}
	if len(all) != stoppedTotal {
		t.Fatalf("%d messages received, want %d", len(all), stoppedTotal)
	}
}
