//go:build linux

package ring

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/ignalina/alloy/go/internal/testbin"
)

var failBP = Backpressure{Kind: Fail}

func recvOK(t *testing.T, c *Consumer) *Lease {
	t.Helper()
	l, err := c.TryRecv()
	if err != nil {
		t.Fatalf("TryRecv: %v", err)
	}
	return l
}

func TestSendRecvInOrderWithFlags(t *testing.T) {
	r := anonRing(t, small)
	c := mustSubscribe(t, r)
	p := mustProducer(t, r, failBP)
	for j := 0; j < 3; j++ {
		mustSend(t, p, bytes.Repeat([]byte{byte(j)}, j+1), uint32(10+j))
	}
	for j := 0; j < 3; j++ {
		l := recvOK(t, c)
		if l.Seq() != uint64(j) || l.Flags() != uint32(10+j) || !bytes.Equal(l.Bytes(), bytes.Repeat([]byte{byte(j)}, j+1)) {
			t.Fatalf("message %d: seq %d flags %d bytes %v", j, l.Seq(), l.Flags(), l.Bytes())
		}
		l.Release()
	}
	if _, err := c.TryRecv(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty ring: %v", err)
	}
}

// The lease aliases the slot: no copy is made.
func TestLeaseIsZeroCopy(t *testing.T) {
	r := anonRing(t, small)
	c := mustSubscribe(t, r)
	p := mustProducer(t, r, failBP)
	mustSend(t, p, []byte("abc"), 0)
	l := recvOK(t, c)
	slot := r.lay.SlotsOff + SlotHeaderSize
	// Leases point into the consumer's read-only mapping (LAYOUT §1).
	if &l.Bytes()[0] != &c.payload[slot] || &c.payload[0] == &r.mem[0] {
		t.Fatal("lease bytes do not point into slot 0 of the read-only mapping")
	}
	l.Release()
}

func TestBackpressureFailAndOutOfOrderRelease(t *testing.T) {
	r := anonRing(t, small) // N = 4
	c := mustSubscribe(t, r)
	p := mustProducer(t, r, failBP)
	for j := 0; j < 4; j++ {
		mustSend(t, p, []byte{byte(j)}, 0)
	}
	if err := p.Send([]byte{4}, 0); !errors.Is(err, ErrFull) {
		t.Fatalf("fifth send into 4 slots: %v, want ErrFull", err)
	}
	ls := make([]*Lease, 4)
	for j := range ls {
		ls[j] = recvOK(t, c)
	}
	// Releasing 3, 2, 1 frees nothing: sequence 0 still gates the ring.
	for _, j := range []int{3, 2, 1} {
		ls[j].Release()
		if err := p.Send([]byte{4}, 0); !errors.Is(err, ErrFull) {
			t.Fatalf("after releasing %d: %v, want ErrFull", j, err)
		}
	}
	ls[0].Release()
	ls[0].Release() // idempotent
	if got := u64At(r.mem, r.lay.subOff(c.sub)+subRelease).Load(); got != 4 {
		t.Fatalf("release cursor %d after releasing 0..3, want 4", got)
	}
	for j := 4; j < 8; j++ {
		mustSend(t, p, []byte{byte(j)}, 0)
	}
	for j := 4; j < 8; j++ { // wrapped around: slots 0..3 again
		l := recvOK(t, c)
		if l.Seq() != uint64(j) || l.Bytes()[0] != byte(j) {
			t.Fatalf("after wrap: seq %d byte %d, want %d", l.Seq(), l.Bytes()[0], j)
		}
		l.Release()
	}
}

func TestBackpressureBlockTimeout(t *testing.T) {
	r := anonRing(t, small)
	mustSubscribe(t, r)
	p := mustProducer(t, r, Backpressure{Kind: Block, Timeout: 50 * time.Millisecond})
	for j := 0; j < 4; j++ {
		mustSend(t, p, nil, 0)
	}
	start := time.Now()
	err := p.Send(nil, 0)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("blocked send: %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 2*time.Second {
		t.Fatalf("timed out after %v, want about 50ms", d)
	}
}

func TestBackpressureBlockWakesOnRelease(t *testing.T) {
	r := anonRing(t, small)
	c := mustSubscribe(t, r)
	p := mustProducer(t, r, Backpressure{Kind: Block})
	for j := 0; j < 4; j++ {
		mustSend(t, p, nil, 0)
	}
	l := recvOK(t, c)
	// A long slice: only the releaser's futex wake can end the wait soon.
	defer func(d time.Duration) { waitSlice = d }(waitSlice)
	waitSlice = 10 * time.Second
	sent := make(chan error, 1)
	go func() { sent <- p.Send(nil, 0) }()
	testbin.WaitFor(t, 10*time.Second, "the producer to park for space", func() bool {
		return u32At(r.mem, offSpaceWaiters).Load() == 1
	})
	select {
	case err := <-sent:
		t.Fatalf("send returned (%v) with the ring full", err)
	default:
	}
	l.Release()
	select {
	case err := <-sent:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the release did not wake the parked producer")
	}
}

// A parked consumer is woken by the publish, not by the end of its slice.
func TestParkedConsumerWokenByPublish(t *testing.T) {
	defer func(d time.Duration) { consumerWaitSlice = d }(consumerWaitSlice)
	consumerWaitSlice = 10 * time.Second
	r := anonRing(t, small)
	c := mustSubscribe(t, r)
	p := mustProducer(t, r, failBP)
	type got struct {
		l   *Lease
		err error
	}
	recv := make(chan got, 1)
	go func() {
		l, err := c.Recv()
		recv <- got{l, err}
	}()
	waiters := u32At(r.mem, offDataWaiters)
	testbin.WaitFor(t, 10*time.Second, "the consumer to park", func() bool { return waiters.Load() == 1 })
	mustSend(t, p, []byte("wake"), 0)
	select {
	case g := <-recv:
		if g.err != nil || string(g.l.Bytes()) != "wake" {
			t.Fatalf("Recv: %v", g.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the publish did not wake the parked consumer")
	}
	if w := waiters.Load(); w != 0 {
		t.Fatalf("data_waiters %d after the wake-up, want 0", w)
	}
}

func TestNobodySubscribedNeverBlocks(t *testing.T) {
	r := anonRing(t, small)
	p := mustProducer(t, r, failBP)
	for j := 0; j < 100; j++ {
		mustSend(t, p, []byte{byte(j)}, 0)
	}
	// A subscriber that leaves stops gating at once.
	c := mustSubscribe(t, r)
	for j := 0; j < 4; j++ {
		mustSend(t, p, nil, 0)
	}
	if err := p.Send(nil, 0); !errors.Is(err, ErrFull) {
		t.Fatalf("with a subscriber: %v, want ErrFull", err)
	}
	c.Close()
	mustSend(t, p, nil, 0)
}

func TestLateJoinerStartsAtHead(t *testing.T) {
	r := anonRing(t, small)
	p := mustProducer(t, r, failBP)
	for j := 0; j < 6; j++ {
		mustSend(t, p, []byte{byte(j)}, 0)
	}
	c := mustSubscribe(t, r)
	if _, err := c.TryRecv(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("late joiner saw an old message: %v", err)
	}
	mustSend(t, p, []byte{6}, 0)
	if l := recvOK(t, c); l.Seq() != 6 || l.Bytes()[0] != 6 {
		t.Fatalf("late joiner got seq %d", l.Seq())
	}
}

func TestEndOfStreamDrains(t *testing.T) {
	r := anonRing(t, small)
	c := mustSubscribe(t, r)
	p := mustProducer(t, r, failBP)
	for j := 0; j < 3; j++ {
		mustSend(t, p, []byte{byte(j)}, 0)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for j := 0; j < 3; j++ {
		l, err := c.Recv()
		if err != nil || l.Seq() != uint64(j) {
			t.Fatalf("drain %d: %v", j, err)
		}
		l.Release()
	}
	for i := 0; i < 2; i++ {
		if _, err := c.Recv(); err != io.EOF {
			t.Fatalf("after drain: %v, want io.EOF", err)
		}
	}
	if _, err := r.NewProducer(ProducerOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("producer on a closed stream: %v, want ErrClosed", err)
	}
}

func TestZeroAndMaxSizeMessages(t *testing.T) {
	r := anonRing(t, small)
	c := mustSubscribe(t, r)
	p := mustProducer(t, r, failBP)
	max := bytes.Repeat([]byte{0xAB}, 64)
	mustSend(t, p, nil, 1)
	mustSend(t, p, max, 2)
	if err := p.Send(make([]byte, 65), 3); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("65 bytes into 64-byte slots: %v", err)
	}
	if l := recvOK(t, c); len(l.Bytes()) != 0 || l.Flags() != 1 {
		t.Fatalf("zero-length message: %d bytes, flags %d", len(l.Bytes()), l.Flags())
	}
	if l := recvOK(t, c); !bytes.Equal(l.Bytes(), max) || l.Flags() != 2 {
		t.Fatalf("max-size message: %d bytes", len(l.Bytes()))
	}
	if _, err := c.TryRecv(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("the refused message became visible: %v", err)
	}
}

func TestProducerExistsAndReattach(t *testing.T) {
	r := anonRing(t, small)
	c := mustSubscribe(t, r)
	p := mustProducer(t, r, failBP)
	if _, err := r.NewProducer(ProducerOptions{}); !errors.Is(err, ErrProducerExists) {
		t.Fatalf("second producer: %v", err)
	}
	mustSend(t, p, []byte{0}, 0)
	p.Detach()
	p2 := mustProducer(t, r, failBP)
	mustSend(t, p2, []byte{1}, 0)
	for j := 0; j < 2; j++ {
		if l := recvOK(t, c); l.Seq() != uint64(j) || l.Bytes()[0] != byte(j) {
			t.Fatalf("after reattach: seq %d", l.Seq())
		}
	}
}

func TestTableFull(t *testing.T) {
	r := anonRing(t, Config{SlotCount: 4, SlotSize: 64, MaxSubscribers: 2, MaxMembers: 3})
	mustSubscribe(t, r)
	q1, err := r.JoinQueue(5, ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Subscribe(ConsumerOptions{}); !errors.Is(err, ErrTableFull) {
		t.Fatalf("third subscriber: %v", err)
	}
	if _, err := r.JoinQueue(5, ConsumerOptions{}); err != nil { // same group: one more member
		t.Fatal(err)
	}
	if _, err := r.JoinQueue(5, ConsumerOptions{}); !errors.Is(err, ErrTableFull) {
		t.Fatalf("fourth member: %v", err)
	}
	q1.Close()
	if _, err := r.JoinQueue(5, ConsumerOptions{}); err != nil {
		t.Fatalf("member entry not freed: %v", err)
	}
	if _, err := r.JoinQueue(0, ConsumerOptions{}); err == nil {
		t.Fatal("group 0 accepted")
	}
}

// A closed consumer's subscriber keeps gating while a lease is out.
func TestCloseWaitsForLeases(t *testing.T) {
	r := anonRing(t, small)
	c := mustSubscribe(t, r)
	p := mustProducer(t, r, failBP)
	mustSend(t, p, nil, 0)
	l := recvOK(t, c)
	c.Close()
	if st := u32At(r.mem, r.lay.subOff(c.sub)+subState).Load(); st != stateActive {
		t.Fatalf("subscriber state %d with a lease out, want ACTIVE", st)
	}
	if _, err := c.Recv(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Recv after Close: %v", err)
	}
	l.Release()
	if st := u32At(r.mem, r.lay.subOff(c.sub)+subState).Load(); st != stateFree {
		t.Fatalf("subscriber state %d after the last lease, want FREE", st)
	}
}

func TestRecvTimeoutAndContext(t *testing.T) {
	r := anonRing(t, small)
	c := mustSubscribe(t, r)
	start := time.Now()
	if _, err := c.RecvTimeout(30 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("RecvTimeout: %v", err)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("RecvTimeout returned after %v", d)
	}
	// With a long slice, only a wake-up can end the futex wait early:
	// cancellation must interrupt it rather than wait the slice out.
	defer func(d time.Duration) { consumerWaitSlice = d }(consumerWaitSlice)
	consumerWaitSlice = 10 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start = time.Now()
	if _, err := c.RecvContext(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("RecvContext: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancellation took %v", d)
	}
}

func TestCorruptStampDetected(t *testing.T) {
	r := anonRing(t, small)
	c := mustSubscribe(t, r)
	p := mustProducer(t, r, failBP)
	mustSend(t, p, nil, 0)
	u64At(r.mem, r.lay.slotOff(0)+slotStamp).Store(99)
	if _, err := c.TryRecv(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("bad stamp: %v, want ErrCorrupt", err)
	}
	mustSend(t, p, nil, 0)
	u32At(r.mem, r.lay.slotOff(1)+slotLen).Store(65)
	if _, err := c.TryRecv(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("len > slot_size: %v, want ErrCorrupt", err)
	}
	// Both damaged sequences were released: the ring keeps flowing.
	if got := u64At(r.mem, r.lay.subOff(c.sub)+subRelease).Load(); got != 2 {
		t.Fatalf("release cursor after two corrupt slots = %d, want 2", got)
	}
	mustSend(t, p, []byte("fine"), 0)
	l, err := c.TryRecv()
	if err != nil || string(l.Bytes()) != "fine" {
		t.Fatalf("after corruption: %v, %v", l, err)
	}
	l.Release()
}

func TestSchema(t *testing.T) {
	r := anonRing(t, small)
	if s, err := r.Schema(); s != nil || err != nil {
		t.Fatalf("schema before any: %q, %v", s, err)
	}
	p := mustProducer(t, r, failBP)
	for _, s := range []string{"a longer first schema", "short", ""} {
		if err := p.SetSchema([]byte(s)); err != nil {
			t.Fatal(err)
		}
		if got, err := r.Schema(); string(got) != s || err != nil {
			t.Fatalf("Schema() = %q, %v; want %q", got, err, s)
		}
	}
	if err := p.SetSchema(make([]byte, 65)); !errors.Is(err, ErrSchemaTooLarge) {
		t.Fatalf("65-byte schema: %v", err)
	}
	// The area beyond the last (empty) schema keeps the older bytes, as a
	// byte-wise writer would leave them.
	if got := string(r.mem[r.lay.SchemaOff : r.lay.SchemaOff+5]); got != "short" {
		t.Fatalf("schema area starts %q", got)
	}
}

// A table lock left behind by a dead process is taken over, not waited on
// forever: a pid that no longer exists, or one reused by another process
// (here: our own pid recorded with another start time, LAYOUT §11.1).
func TestTableLockOfDeadProcess(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := uint32(cmd.Process.Pid) // reaped: the pid no longer exists
	me := uint32(os.Getpid())
	for name, holder := range map[string]uint64{
		"gone":   identity(dead, 0),
		"reused": identity(me, ownStart()+1),
	} {
		t.Run(name, func(t *testing.T) {
			r := anonRing(t, small)
			u64At(r.mem, offTableLock).Store(holder)
			done := make(chan error, 1)
			go func() {
				c, err := r.Subscribe(ConsumerOptions{})
				if err == nil {
					c.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("join waited on a dead process's table lock")
			}
			if got := u64At(r.mem, offTableLock).Load(); got != 0 {
				t.Fatalf("table_lock %#x after the join, want 0", got)
			}
		})
	}
}

// A member joining an existing group shares its cursors: it receives what
// is still unclaimed, not only what comes after its join. A group whose
// last member left starts again at the head.
func TestQueueLateMemberSharesCursor(t *testing.T) {
	r := anonRing(t, small)
	a, err := r.JoinQueue(3, ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := mustProducer(t, r, failBP)
	for j := 0; j < 3; j++ {
		mustSend(t, p, []byte{byte(j)}, 0)
	}
	recvOK(t, a).Release()
	b, err := r.JoinQueue(3, ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b.sub != a.sub {
		t.Fatalf("second member got subscriber %d, the group has %d", b.sub, a.sub)
	}
	if l := recvOK(t, b); l.Seq() != 1 {
		t.Fatalf("late member got seq %d, want 1 (unclaimed)", l.Seq())
	} else {
		l.Release()
	}
	if l := recvOK(t, a); l.Seq() != 2 {
		t.Fatalf("first member got seq %d, want 2", l.Seq())
	} else {
		l.Release()
	}
	a.Close()
	b.Close()
	mustSend(t, p, []byte{3}, 0)
	c, err := r.JoinQueue(3, ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.TryRecv(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("re-created group saw an old message: %v", err)
	}
}
