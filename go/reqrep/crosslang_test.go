package reqrep

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/internal/testbin"
	"github.com/ignalina/alloy/go/ring"
)

// These tests call the real Rust worker, examples/reqrep_worker.rs, built
// by `make build` (or `cargo build --release --example reqrep_worker`);
// $ALLOY_REQREP_WORKER overrides its path.

func workerBin(t testing.TB) string {
	return testbin.Need(t, "ALLOY_REQREP_WORKER", "target/release/examples/reqrep_worker")
}

type worker struct {
	name string
	cmd  *exec.Cmd
	errb strings.Builder
}

// startWorker runs the Rust worker on a fresh channel and waits until it
// serves; the test's cleanup kills it and removes its rings.
func startWorker(t testing.TB, threads int, extra ...string) *worker {
	t.Helper()
	name := strings.ReplaceAll(fmt.Sprintf("alloy-rr-go-%d-%s", os.Getpid(), t.Name()), "/", "_")
	w := &worker{name: name}
	args := append([]string{"--name", name, "--threads", strconv.Itoa(threads)}, extra...)
	w.cmd = exec.Command(workerBin(t), args...)
	w.cmd.Stderr = &w.errb
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if w.cmd.ProcessState == nil {
			w.cmd.Process.Kill()
			w.cmd.Wait()
		}
		ring.Remove(RequestRing(name))
		ring.Remove(ReplyRing(name))
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("worker: first line %q, %v; stderr: %s", line, err, w.errb.String())
	}
	return w
}

func dial(t testing.TB, name string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// xRecord is a one-column int64 record "x", with optional schema metadata.
func xRecord(xs []int64, meta map[string]string) arrow.RecordBatch {
	b := array.NewInt64Builder(memory.DefaultAllocator)
	defer b.Release()
	b.AppendValues(xs, nil)
	col := b.NewArray()
	defer col.Release()
	var md *arrow.Metadata
	if meta != nil {
		m := arrow.MetadataFrom(meta)
		md = &m
	}
	schema := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64, Nullable: true}}, md)
	return array.NewRecordBatch(schema, []arrow.Array{col}, int64(len(xs)))
}

// checkSquares checks the worker's x -> (x, x2, sum) answer.
func checkSquares(t testing.TB, xs []int64, out arrow.RecordBatch) {
	t.Helper()
	if out.NumCols() != 2 || out.NumRows() != int64(len(xs)) {
		t.Fatalf("reply %v", out)
	}
	x, x2 := out.Column(0).(*array.Int64), out.Column(1).(*array.Int64)
	var sum int64
	for i, v := range xs {
		if x.Value(i) != v || x2.Value(i) != v*v {
			t.Fatalf("row %d: (%d, %d) for x=%d", i, x.Value(i), x2.Value(i), v)
		}
		sum += v
	}
	if got, _ := out.Schema().Metadata().GetValue("sum"); got != strconv.FormatInt(sum, 10) {
		t.Fatalf("sum %q, want %d", got, sum)
	}
}

func TestManyConcurrentCallsAreMatched(t *testing.T) {
	w := startWorker(t, 2)
	c := dial(t, w.name)
	const goroutines, perG = 32, 40 // 1280 calls
	var inFlight, maxInFlight atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perG {
				xs := make([]int64, 1+(g+i)%9)
				for k := range xs {
					xs[k] = int64(g*100000 + i*10 + k)
				}
				rec := xRecord(xs, nil)
				n := inFlight.Add(1)
				for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				out, err := c.Call(ctx, rec)
				cancel()
				inFlight.Add(-1)
				rec.Release()
				if err != nil {
					errs <- fmt.Errorf("goroutine %d call %d: %w", g, i, err)
					return
				}
				checkSquares(t, xs, out)
				out.Release()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if m := maxInFlight.Load(); m < 16 {
		t.Errorf("at most %d calls were outstanding, want >= 16", m)
	}
	if n := c.Pending(); n != 0 {
		t.Errorf("%d calls still pending", n)
	}
}

func TestDeadlineThenLaterCallsWork(t *testing.T) {
	w := startWorker(t, 2)
	c := dial(t, w.name)
	slow := xRecord([]int64{1, 2}, map[string]string{"sleep_ms": "500"})
	defer slow.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	start := time.Now()
	out, err := c.Call(ctx, slow)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, %v; want DeadlineExceeded", out, err)
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("the timed-out call returned after %v", d)
	}
	check := func(n int) {
		start := time.Now()
		defer func() {
			// Each call must not inherit the slow one's metadata (sleep_ms).
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("%d calls took %v", n, d)
			}
		}()
		for i := range n {
			rec := xRecord([]int64{int64(i), 7}, nil)
			out, err := c.Call(context.Background(), rec)
			rec.Release()
			if err != nil {
				t.Fatal(err)
			}
			checkSquares(t, []int64{int64(i), 7}, out)
			out.Release()
		}
	}
	check(50) // while the slow request still runs on the other thread
	time.Sleep(600 * time.Millisecond)
	check(50) // after its late reply arrived and was dropped
	if n := c.Pending(); n != 0 {
		t.Errorf("%d calls still pending", n)
	}
	// An already expired context never sends.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := c.Call(ctx, slow); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}

func TestErrorReplyCarriesText(t *testing.T) {
	w := startWorker(t, 1)
	c := dial(t, w.name)
	b := array.NewFloat64Builder(memory.DefaultAllocator)
	b.AppendValues([]float64{1.5}, nil)
	col := b.NewArray()
	b.Release()
	rec := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "y", Type: arrow.PrimitiveTypes.Float64}}, nil), []arrow.Array{col}, 1)
	col.Release()
	defer rec.Release()
	_, err := c.Call(context.Background(), rec)
	var re *RemoteError
	if !errors.As(err, &re) || !errors.Is(err, ErrRemote) {
		t.Fatalf("got %v, want a RemoteError", err)
	}
	if re.Status != StatusHandler || re.Text != `request has no int64 column "x"` {
		t.Errorf("got status %d text %q", re.Status, re.Text)
	}
	ok := xRecord([]int64{3}, nil)
	defer ok.Release()
	out, err := c.Call(context.Background(), ok)
	if err != nil {
		t.Fatal(err)
	}
	checkSquares(t, []int64{3}, out)
	out.Release()
}

func TestWorkerKilledFailsPendingAndNewCalls(t *testing.T) {
	w := startWorker(t, 2)
	c := dial(t, w.name)
	slow := xRecord([]int64{1}, map[string]string{"sleep_ms": "5000"})
	defer slow.Release()
	const n = 8
	results := make(chan error, n)
	for range n {
		go func() {
			out, err := c.Call(context.Background(), slow)
			if out != nil {
				out.Release()
			}
			results <- err
		}()
	}
	for c.Pending() < n {
		time.Sleep(time.Millisecond)
	}
	// Kill while the worker has requests in hand (claimed, not released).
	testbin.WaitFor(t, 10*time.Second, "the worker to claim a request", func() bool {
		st, err := ring.StatNamed(RequestRing(w.name))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range st.Consumers {
			if c.LeasesHeld > 0 {
				return true
			}
		}
		return false
	})
	killed := time.Now()
	if err := w.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for range n {
		select {
		case err := <-results:
			if !errors.Is(err, ErrPeerGone) || !errors.Is(err, ring.ErrProducerGone) {
				t.Fatalf("pending call: %v, want ErrPeerGone (and ring.ErrProducerGone)", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("pending calls still waiting 2 s after SIGKILL")
		}
	}
	if d := time.Since(killed); d > time.Second {
		t.Errorf("pending calls failed %v after SIGKILL, want < 1 s", d)
	}
	start := time.Now()
	if _, err := c.Call(context.Background(), slow); !errors.Is(err, ErrPeerGone) {
		t.Errorf("new call: %v, want ErrPeerGone", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("new call failed after %v", d)
	}
}

func TestSecondClientIsRefused(t *testing.T) {
	w := startWorker(t, 1)
	c := dial(t, w.name)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := Dial(ctx, w.name); !errors.Is(err, ErrBusy) || !errors.Is(err, ring.ErrProducerExists) {
		t.Fatalf("second client: %v, want ErrBusy", err)
	}
	// Once the first leaves, another client may take the channel.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2 := dial(t, w.name)
	rec := xRecord([]int64{4}, nil)
	defer rec.Release()
	out, err := c2.Call(context.Background(), rec)
	if err != nil {
		t.Fatal(err)
	}
	checkSquares(t, []int64{4}, out)
	out.Release()
	if _, err := c.Call(context.Background(), rec); !errors.Is(err, ErrClosed) {
		t.Errorf("call on a closed client: %v", err)
	}
}

func TestDialWithoutWorker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := Dial(ctx, fmt.Sprintf("alloy-rr-none-%d", os.Getpid())); !errors.Is(err, ErrNotServed) {
		t.Fatalf("got %v, want ErrNotServed", err)
	}
}

// TestDialDeadWorkerFailsAtOnce: the rings of a SIGKILLed worker make
// Dial fail at once (ErrNotServed and ErrPeerGone), not when its context
// ends; a worker stopped with SIGTERM removes its rings, exits 0 and its
// client sees ErrPeerGone.
func TestDialDeadWorkerFailsAtOnce(t *testing.T) {
	w := startWorker(t, 1)
	pid := w.cmd.Process.Pid
	if err := w.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	w.cmd.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := Dial(ctx, w.name)
	took := time.Since(start)
	if !errors.Is(err, ErrNotServed) || !errors.Is(err, ErrPeerGone) {
		t.Fatalf("Dial to a dead worker: %v, want ErrNotServed and ErrPeerGone", err)
	}
	if !strings.Contains(err.Error(), strconv.Itoa(pid)) {
		t.Errorf("the error does not name pid %d: %v", pid, err)
	}
	if took > time.Second {
		t.Fatalf("Dial took %v of its 5 s", took)
	}
	t.Logf("Dial to a dead worker failed after %v: %v", took, err)
}

func TestWorkerSIGTERMRemovesRings(t *testing.T) {
	w := startWorker(t, 2)
	c := dial(t, w.name)
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("worker exit: %v; stderr: %s", err, w.errb.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the worker did not exit within 5 s of SIGTERM")
	}
	for _, r := range []string{RequestRing(w.name), ReplyRing(w.name)} {
		if _, err := os.Stat("/dev/shm/" + r); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (%v)", r, err)
		}
	}
	rec := xRecord([]int64{1}, nil)
	defer rec.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := c.Call(ctx, rec); !errors.Is(err, ErrPeerGone) {
		t.Fatalf("call after SIGTERM: %v, want ErrPeerGone", err)
	}
}

// TestDictionaryColumnsRoundTrip: records with dictionary columns (one
// nested in a list), whose dictionaries change from call to call, go to
// the Rust worker's echo and come back equal: every message carries its
// own dictionaries, in both directions.
func TestDictionaryColumnsRoundTrip(t *testing.T) {
	w := startWorker(t, 2)
	c := dial(t, w.name)
	mem := memory.DefaultAllocator
	dt := &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}
	md := arrow.MetadataFrom(map[string]string{"op": "echo"})
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "region", Type: dt, Nullable: true},
		{Name: "tags", Type: arrow.ListOf(dt), Nullable: true},
		{Name: "x", Type: arrow.PrimitiveTypes.Int64},
	}, &md)
	for k := range 6 {
		words := [][]string{{"apac", "eu", "us"}, {"north", "south", "east", "west"}}[k%2]
		bld := array.NewRecordBuilder(mem, schema)
		for i := range 20 + k {
			rb := bld.Field(0).(*array.BinaryDictionaryBuilder)
			if i%7 == 5 {
				rb.AppendNull()
			} else if err := rb.AppendString(words[i%len(words)]); err != nil {
				t.Fatal(err)
			}
			lb := bld.Field(1).(*array.ListBuilder)
			lb.Append(true)
			for j := range i % 3 {
				if err := lb.ValueBuilder().(*array.BinaryDictionaryBuilder).AppendString(words[(i+j)%len(words)]); err != nil {
					t.Fatal(err)
				}
			}
			bld.Field(2).(*array.Int64Builder).Append(int64(i))
		}
		rec := bld.NewRecordBatch()
		bld.Release()
		out, err := c.Call(context.Background(), rec)
		if err != nil {
			t.Fatalf("call %d: %v", k, err)
		}
		if !array.RecordEqual(rec, out) {
			t.Fatalf("call %d: sent\n%v\ngot\n%v", k, rec, out)
		}
		region := out.Column(0).(*array.Dictionary)
		if got := region.Dictionary().(*array.String).Value(region.GetValueIndex(0)); got != words[0] {
			t.Fatalf("call %d: first region %q, want %q", k, got, words[0])
		}
		out.Release()
		rec.Release()
	}
}

// TestEchoKeepsEveryType sends records of several types, sliced and with
// nulls, to the worker's echo operation: Go's aligned encoding must decode
// in place in Rust (which refuses misaligned buffers), and Rust's reply
// must decode in Go to the same record.
func TestEchoKeepsEveryType(t *testing.T) {
	w := startWorker(t, 2)
	echoEveryType(t, dial(t, w.name), nil)
}

// everyTypeRecord is the 1,000-row record of the echo tests: several
// types, with nulls.
func everyTypeRecord(t testing.TB) arrow.RecordBatch {
	mem := memory.DefaultAllocator
	md := arrow.MetadataFrom(map[string]string{"op": "echo"})
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "x", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "f", Type: arrow.PrimitiveTypes.Float64},
		{Name: "b", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
		{Name: "l", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32), Nullable: true},
	}, &md)
	bld := array.NewRecordBuilder(mem, schema)
	defer bld.Release()
	for i := range 1000 {
		valid := i%7 != 3
		bld.Field(0).(*array.Int64Builder).AppendValues([]int64{int64(i) * 3}, []bool{valid})
		if valid {
			bld.Field(1).(*array.StringBuilder).Append(strings.Repeat("é", i%5))
		} else {
			bld.Field(1).(*array.StringBuilder).AppendNull()
		}
		bld.Field(2).(*array.Float64Builder).Append(float64(i) / 4)
		bld.Field(3).(*array.BooleanBuilder).AppendValues([]bool{i%2 == 0}, []bool{valid})
		lb := bld.Field(4).(*array.ListBuilder)
		lb.Append(true)
		for k := range i % 4 {
			lb.ValueBuilder().(*array.Int32Builder).Append(int32(k))
		}
	}
	return bld.NewRecordBatch()
}

// echoEveryType echoes slices of everyTypeRecord through c and compares;
// check, when set, looks at each reply too.
func echoEveryType(t *testing.T, c *Client, check func(rows [2]int64, out arrow.RecordBatch)) {
	t.Helper()
	rec := everyTypeRecord(t)
	defer rec.Release()
	for _, r := range [][2]int64{{0, 1000}, {0, 1}, {13, 14}, {3, 700}, {999, 1000}} {
		part := rec.NewSlice(r[0], r[1])
		out, err := c.Call(context.Background(), part)
		if err != nil {
			t.Fatalf("rows %v: %v", r, err)
		}
		if !array.RecordEqual(out, part) {
			t.Fatalf("rows %v: echo differs:\n%v\n%v", r, out, part)
		}
		if check != nil {
			check(r, out)
		}
		out.Release()
		part.Release()
	}
}

// With ZeroCopy, replies are read in place: every buffer of the result
// lies in the reply ring's mapping; a held result holds its slot (the ring
// cannot go round it, and its values stay intact while the ring fills);
// the slot goes back when the record is released — three times more calls
// than the ring has slots go through afterwards.
func TestZeroCopyRepliesAreReadInPlace(t *testing.T) {
	const slots = 8
	w := startWorker(t, 2, "--slots", strconv.Itoa(slots))
	for _, wait := range []ring.WaitStrategy{ring.Blocking, ring.Spin} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := DialWith(ctx, w.name, Options{ZeroCopy: true, Wait: wait})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		inSlot := func(what string, out arrow.RecordBatch) {
			t.Helper()
			for i, col := range out.Columns() {
				for k, b := range col.Data().Buffers() {
					if b != nil && b.Len() > 0 && !c.rep.Contains(b.Bytes()) {
						t.Fatalf("%s: column %d buffer %d is not in the reply slot", what, i, k)
					}
				}
			}
		}
		echoEveryType(t, c, func(r [2]int64, out arrow.RecordBatch) {
			inSlot(fmt.Sprint("rows ", r), out)
		})
		call := func(xs []int64, d time.Duration) (arrow.RecordBatch, error) {
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			rec := xRecord(xs, nil)
			defer rec.Release()
			return c.Call(ctx, rec)
		}
		// Held results hold their slots: with half the ring held and the
		// other half filled (and released), the next reply cannot be
		// published until a held result is released.
		var held []arrow.RecordBatch
		for i := range slots / 2 {
			out, err := call([]int64{int64(i), 7}, 10*time.Second)
			if err != nil {
				t.Fatalf("wait %v, held call %d: %v", wait, i, err)
			}
			inSlot("held", out)
			held = append(held, out)
		}
		if n := c.cons.LeasesHeld(); n != int64(len(held)) {
			t.Fatalf("wait %v: %d leases held with %d results held", wait, n, len(held))
		}
		for i := range slots / 2 {
			out, err := call([]int64{int64(100 + i)}, 10*time.Second)
			if err != nil {
				t.Fatalf("wait %v, call %d with %d results held: %v", wait, i, len(held), err)
			}
			checkSquares(t, []int64{int64(100 + i)}, out)
			out.Release()
		}
		if out, err := call([]int64{42}, 500*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
			if out != nil {
				out.Release()
			}
			t.Fatalf("wait %v: a call with %d of %d reply slots held: %v, want DeadlineExceeded (held results do not hold their slots)", wait, len(held), slots, err)
		}
		// Intact after the ring went round them; releasing frees the ring.
		for k, h := range held {
			checkSquares(t, []int64{int64(k), 7}, h)
			h.Release()
		}
		for i := range 3 * slots {
			xs := []int64{int64(1000 + i), -int64(i)}
			out, err := call(xs, 10*time.Second)
			if err != nil {
				t.Fatalf("wait %v, call %d after the release: %v (a released reply slot was not freed?)", wait, i, err)
			}
			checkSquares(t, xs, out)
			out.Release()
		}
		if n := c.cons.LeasesHeld(); n != 0 {
			t.Fatalf("wait %v: %d leases held with no result held", wait, n)
		}
		// An error reply is still a RemoteError, not a record.
		bad := xRecord([]int64{1}, map[string]string{"sleep_ms": "x"})
		if _, err := c.Call(context.Background(), bad); !errors.Is(err, ErrRemote) {
			t.Fatalf("bad request: %v, want ErrRemote", err)
		}
		bad.Release()
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
