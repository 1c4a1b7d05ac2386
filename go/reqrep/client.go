package reqrep

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/internal/proc"
	"github.com/ignalina/alloy/go/ring"
)

// Client is the one client of a channel in this process. Call is safe for
// concurrent use by many goroutines; Close ends it.
type Client struct {
	name     string
	req, rep *ring.Ring
	prod     *ring.Producer
	cons     *ring.Consumer
	session  uint64
	mem      memory.Allocator
	opts     Options

	nextID atomic.Uint64
	// send guards prod (not safe for concurrent use) and the schema cache;
	// a channel rather than a mutex, so waiting callers honour their context.
	send       chan struct{}
	lastSchema *arrow.Schema
	lastFramed []byte

	mu      sync.Mutex
	pending map[uint64]chan delivery
	gone    error // set once: every later call fails with it

	stop      context.CancelFunc
	demuxDone chan struct{}
	closeOnce sync.Once
}

type delivery struct {
	env   envelope
	lease *ring.Lease
}

// dialPoll is how often Dial looks for a live worker.
const dialPoll = 10 * time.Millisecond

// Dial connects to channel name, waiting until a live worker serves it or
// ctx ends (ErrNotServed). When the channel's worker is known dead (its
// rings are left over from a killed process) it fails at once with an
// error matching both ErrNotServed and ErrPeerGone, instead of waiting for
// ctx. It subscribes to the replies before it can send anything
// (LAYOUT.md §12.1). A second client process is refused with ErrBusy.
func Dial(ctx context.Context, name string) (*Client, error) {
	return DialWith(ctx, name, Options{})
}

// Options tune a Client; the zero value is what Dial uses.
type Options struct {
	// Wait is how the client waits for replies: ring.Blocking (spin
	// briefly, then park on the futex) or ring.Spin (never park: the
	// lowest round-trip latency, for latency-critical callers, at the cost
	// of one busy core for as long as the client is open).
	Wait ring.WaitStrategy
	// ZeroCopy makes Call return result records read in place: their
	// buffers are views of the reply slot, which stays held until the
	// record's last array is released (no copy of the reply). Release
	// results promptly: the reply ring has the worker's slot count, and
	// while the client holds that many results a further reply waits for
	// space (the worker drops it after its reply timeout). Such results
	// are read-only (consumers map the payload pages PROT_READ: a write
	// crashes the process), and strings or byte slices taken from them
	// (String.Value, ValueBytes) are views of the slot that change once
	// the record is released and the slot reused: strings.Clone what must
	// outlive the record (doc/README.md "Holding batches"). Dictionaries
	// are copied. Results still held after Client.Close keep their slots,
	// so a next client's replies wait until they are released. Without
	// ZeroCopy, each reply is copied out of its slot and the slot freed
	// at once.
	ZeroCopy bool
}

// DialWith is Dial with options.
func DialWith(ctx context.Context, name string, opts Options) (*Client, error) {
	var rep *ring.Ring
	var cons *ring.Consumer
	for {
		var err error
		rep, cons, err = trySubscribe(name, opts)
		if err != nil {
			return nil, err
		}
		if cons != nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %q: %w", ErrNotServed, name, ctx.Err())
		case <-time.After(dialPoll):
		}
	}
	req, err := ring.Open(RequestRing(name))
	if err != nil {
		cons.Close()
		rep.Close()
		return nil, err
	}
	// Fail, not Block: a full request ring is waited on in Call, in slices
	// that honour the caller's context.
	prod, err := req.NewProducer(ring.ProducerOptions{Backpressure: ring.Backpressure{Kind: ring.Fail}})
	if err != nil {
		cons.Close()
		rep.Close()
		req.Close()
		if errors.Is(err, ring.ErrProducerExists) {
			return nil, fmt.Errorf("%w: %q: %w", ErrBusy, name, err)
		}
		return nil, err
	}
	dctx, stop := context.WithCancel(context.Background())
	c := &Client{
		name: name, req: req, rep: rep, prod: prod, cons: cons,
		session: newSession(), mem: memory.DefaultAllocator, opts: opts,
		send:    make(chan struct{}, 1),
		pending: make(map[uint64]chan delivery),
		stop:    stop, demuxDone: make(chan struct{}),
	}
	go c.demux(dctx)
	return c, nil
}

// trySubscribe returns the reply ring and our subscription once the channel
// is ready (a live, open reply producer), nils while it is not.
func trySubscribe(name string, opts Options) (*ring.Ring, *ring.Consumer, error) {
	rep, err := ring.Open(ReplyRing(name))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, ring.ErrNotInitialized) || errors.Is(err, ring.ErrTruncated) {
		return nil, nil, nil // not created yet, or being created
	}
	if err != nil {
		return nil, nil, err
	}
	pid := rep.ProducerPid()
	if pid != 0 && !rep.ProducerAlive() {
		// A dead worker's rings: no point waiting for it (a new worker
		// would remove them first).
		rep.Close()
		return nil, nil, fmt.Errorf("%w: %q: its worker (pid %d) is dead: %w", ErrNotServed, name, pid, ErrPeerGone)
	}
	if pid == 0 || rep.IsClosed() {
		rep.Close() // the worker is still starting, or stopping
		return nil, nil, nil
	}
	// Held zero-copy results are the caller's: they stall nothing but the
	// worker's replies (bounded by its reply timeout), so the demultiplexer
	// never gives up on them.
	co := ring.ConsumerOptions{Wait: opts.Wait}
	if opts.ZeroCopy {
		co.HeldLeaseTimeout = ring.NoHeldLeaseTimeout
	}
	cons, err := rep.Subscribe(co)
	if err != nil {
		rep.Close()
		return nil, nil, err
	}
	return rep, cons, nil
}

func newSession() uint64 {
	var b [8]byte
	rand.Read(b[:]) // never fails on Linux (crypto/rand docs)
	return max(binary.LittleEndian.Uint64(b[:]), 1)
}

// Session is this client's session id (LAYOUT.md §12.2).
func (c *Client) Session() uint64 { return c.session }

// Pending is the number of calls waiting for a reply.
func (c *Client) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// Call sends rec to the worker and waits for its answer: the result record
// (the caller releases it), a *RemoteError (errors.Is ErrRemote) for an
// error reply, ctx.Err() when ctx ends first (context.DeadlineExceeded for
// a deadline, which is also sent to the worker so it can skip the request),
// ErrPeerGone once the worker is gone, ring.ErrMessageTooLarge for a record
// larger than a request slot. A reply that arrives after its call gave up
// is dropped.
func (c *Client) Call(ctx context.Context, rec arrow.RecordBatch) (arrow.RecordBatch, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	env := envelope{kind: kindRequest, session: c.session, id: c.nextID.Add(1)}
	if d, ok := ctx.Deadline(); ok {
		env.deadlineNs = proc.MonoNs() + uint64(max(time.Until(d), 0))
	}
	ch := make(chan delivery, 1)
	c.mu.Lock()
	if c.gone != nil {
		err := c.gone
		c.mu.Unlock()
		return nil, err
	}
	c.pending[env.id] = ch
	c.mu.Unlock()
	if err := c.publish(ctx, env, rec); err != nil {
		c.forget(env.id, ch)
		return nil, err
	}
	select {
	case d, ok := <-ch:
		if !ok {
			return nil, c.goneErr()
		}
		if d.env.kind == kindReply && c.opts.ZeroCopy {
			// The record takes over the lease (released on error).
			return decodeReplyInPlace(d.lease, d.env, c.mem)
		}
		defer d.lease.Release()
		if d.env.kind == kindError {
			text := d.lease.Bytes()[envLen : envLen+int(d.env.textLen)]
			return nil, &RemoteError{Status: d.env.status, Text: string(text)}
		}
		return decodeReply(d.lease.Bytes(), d.env, c.mem)
	case <-ctx.Done():
		c.forget(env.id, ch)
		return nil, ctx.Err()
	}
}

// forget removes a call from the table; a reply routed to it meanwhile is
// released.
func (c *Client) forget(id uint64, ch chan delivery) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
	// The demultiplexer sends only under mu to calls still in the table,
	// so after the delete nothing more arrives.
	select {
	case d, ok := <-ch:
		if ok {
			d.lease.Release()
		}
	default:
	}
}

func (c *Client) goneErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gone
}

// fullWait bounds one sleep while the request ring is full.
const fullWait = time.Millisecond

// publish encodes rec and writes it into the next request slot.
func (c *Client) publish(ctx context.Context, env envelope, rec arrow.RecordBatch) error {
	dicts, err := dictMessages(rec, c.mem)
	if err != nil {
		return err
	}
	msg, err := encodeBatch(rec, c.mem)
	if err != nil {
		return err
	}
	defer msg.release()
	dictLen := 0
	for _, d := range dicts {
		dictLen += len(d)
	}
	select {
	case c.send <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.send }()
	// Cached by identity: Schema.Equal ignores metadata, which must travel.
	if c.lastSchema != rec.Schema() {
		c.lastSchema, c.lastFramed = rec.Schema(), framedSchema(rec.Schema(), c.mem)
	}
	env.schemaLen, env.batchLen = uint32(len(c.lastFramed)), uint32(dictLen+int(msg.size()))
	total := env.messageLen()
	wait := 20 * time.Microsecond
	var slot []byte
	for {
		if slot, err = c.prod.Reserve(total); err == nil {
			break
		}
		if !errors.Is(err, ring.ErrFull) {
			return err
		}
		// The worker is a whole ring behind: wait in short slices.
		if err := c.goneErr(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(wait)
		wait = min(2*wait, fullWait)
	}
	env.put(slot)
	copy(slot[envLen:], c.lastFramed)
	at := envLen + len(c.lastFramed)
	for _, d := range dicts {
		at += copy(slot[at:], d)
	}
	if err := msg.write(slot[at:total]); err != nil {
		return err // the reservation is reused by the next message
	}
	return c.prod.Publish(total, Flag)
}

// demux routes replies to their callers, drops the others, and turns the
// worker's death or close into ErrPeerGone for every call.
func (c *Client) demux(ctx context.Context) {
	defer close(c.demuxDone)
	for {
		l, err := c.cons.RecvContext(ctx)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			c.fail(ErrClosed)
			return
		case errors.Is(err, io.EOF):
			c.fail(fmt.Errorf("%w: the worker closed channel %q", ErrPeerGone, c.name))
			return
		case errors.Is(err, ring.ErrProducerGone):
			c.fail(fmt.Errorf("%w: %w", ErrPeerGone, err))
			return
		default:
			continue // a damaged slot (ErrCorrupt) was skipped
		}
		env, err := c.readReply(l)
		if err != nil || env.session != c.session {
			l.Release() // damaged, or a reply to an earlier client
			continue
		}
		c.mu.Lock()
		ch, ok := c.pending[env.id]
		if ok {
			delete(c.pending, env.id)
			ch <- delivery{env, l} // buffered: never blocks
		}
		c.mu.Unlock()
		if !ok {
			l.Release() // a late reply to a call that gave up
		}
	}
}

func (c *Client) readReply(l *ring.Lease) (envelope, error) {
	if l.Flags() != Flag {
		return envelope{}, fmt.Errorf("%w: slot flags %#x", ErrBadMessage, l.Flags())
	}
	env, err := parseEnvelope(l.Bytes())
	if err != nil {
		return env, err
	}
	if err := env.checkLen(len(l.Bytes())); err != nil {
		return env, err
	}
	if env.kind != kindReply && env.kind != kindError {
		return env, fmt.Errorf("%w: kind %d on the reply ring", ErrBadMessage, env.kind)
	}
	return env, nil
}

// fail ends every pending call with err, and every later one.
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone == nil {
		c.gone = err
	}
	for id, ch := range c.pending {
		delete(c.pending, id)
		close(ch)
	}
}

// Close ends the client: pending calls fail with ErrClosed, the request
// ring is left open for the next client (LAYOUT.md §12.1).
func (c *Client) Close() error {
	err := ErrClosed
	c.closeOnce.Do(func() {
		err = nil
		c.stop()
		<-c.demuxDone
		c.fail(ErrClosed)
		c.send <- struct{}{} // wait for a publish in progress (it sees gone)
		err = errors.Join(c.prod.Detach(), c.cons.Close(), c.req.Close(), c.rep.Close())
	})
	return err
}
