//go:build cgo

package cstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/cdata"

	"github.com/ignalina/alloy/go/arrowshm"
)

// ErrTimeout means a wait of an exported stream (for the schema, or for
// one batch) took longer than Options.Timeout. The error returned wraps
// context.DeadlineExceeded too.
var ErrTimeout = errors.New("cstream: wait timed out")

// Options configures Export.
type Options struct {
	// Context, when done, ends the wait in progress (for the schema, or
	// for a batch): get_next fails with its error. nil is
	// context.Background().
	Context context.Context
	// Timeout bounds each wait: Export's wait for the schema and each
	// get_next's wait for a batch. A wait that runs out fails with
	// ErrTimeout. 0 (the default) waits for as long as the stream is open
	// and its producer alive.
	Timeout time.Duration
}

// Export hands rd to a C consumer as an Arrow C stream: it waits for the
// stream's schema (within opts), then fills out, which must be zero
// initialized (arrow-go's rule for C structures written by Go), through
// arrow-go's cdata.ExportRecordReader.
//
// Export takes rd over, also when it fails (rd is then closed). The stream
// owns it from then on: the stream's release callback closes rd, and so
// its consumer, which leaves the ring. Arrays already handed out stay
// valid after that, each until its own release callback.
//
// Each get_next is one rd.Next. With arrowshm.WithZeroCopy the array it
// returns points into the ring's mapping, and the batch's slot stays
// leased until the consumer releases that array (every array moved out of
// it included): the release callback, not the next get_next, gives the
// slot back to the producer. Without it the Reader's copies are handed
// out and the slots are released at once.
//
// At the end of the stream get_next returns 0 with a released array (the
// C stream's end marker). On an error — the producer died
// (ring.ErrProducerGone), a corrupt message (arrowshm.ErrCorrupt), the
// consumer was stalled by the batches it keeps (ring.ErrRetentionStall),
// ErrTimeout, the context's error — get_next returns EIO (arrow-go's
// export reports every error so) and get_last_error the error's text,
// which names the cause; the stream is then done (only release is valid).
func Export(rd *arrowshm.Reader, out *cdata.CArrowArrayStream, opts Options) error {
	e := &exported{rd: rd, ctx: opts.Context, timeout: opts.Timeout}
	if e.ctx == nil {
		e.ctx = context.Background()
	}
	e.refs.Store(1)
	ctx, cancel := e.wait()
	_, err := rd.SchemaContext(ctx)
	cancel()
	if err != nil {
		err = e.explain(err)
		e.Release()
		return err
	}
	cdata.ExportRecordReader(e, out) // retains e: the stream's reference
	e.Release()
	return nil
}

// exported is the array.RecordReader arrow-go's C stream calls: an
// arrowshm.Reader whose waits follow Options and whose last Release closes
// it.
type exported struct {
	mu      sync.Mutex // the C stream's callbacks may come from any thread
	refs    atomic.Int64
	rd      *arrowshm.Reader
	ctx     context.Context
	timeout time.Duration
	err     error
}

var _ array.RecordReader = (*exported)(nil)

// wait is the context of one wait.
func (e *exported) wait() (context.Context, context.CancelFunc) {
	if e.timeout > 0 {
		return context.WithTimeout(e.ctx, e.timeout)
	}
	return context.WithCancel(e.ctx)
}

// explain turns the deadline of one wait into ErrTimeout.
func (e *exported) explain(err error) error {
	if errors.Is(err, context.DeadlineExceeded) && e.timeout > 0 && e.ctx.Err() == nil {
		return fmt.Errorf("%w: nothing arrived within %v (cstream.Options.Timeout): %w", ErrTimeout, e.timeout, err)
	}
	return err
}

func (e *exported) Retain() { e.refs.Add(1) }

// Release drops a reference; the last one (the C stream's release
// callback) closes the Reader.
func (e *exported) Release() {
	if e.refs.Add(-1) == 0 {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.rd.Close() // the consumer leaves the ring; leased arrays stay valid
		e.rd.Release()
	}
}

// Schema is the schema Export waited for.
func (e *exported) Schema() *arrow.Schema {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, err := e.rd.SchemaContext(e.ctx)
	if err != nil {
		e.err = err
	}
	return s
}

func (e *exported) Next() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		return false
	}
	ctx, cancel := e.wait()
	defer cancel()
	if e.rd.NextContext(ctx) {
		return true
	}
	if err := e.rd.Err(); err != nil {
		e.err = e.explain(err)
	}
	return false
}

func (e *exported) RecordBatch() arrow.RecordBatch {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rd.RecordBatch()
}

// Record is RecordBatch, for array.RecordReader.
//
// Deprecated: use RecordBatch.
func (e *exported) Record() arrow.RecordBatch { return e.RecordBatch() }

func (e *exported) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}
