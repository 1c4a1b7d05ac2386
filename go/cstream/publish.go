//go:build cgo

package cstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/cdata"

	"github.com/ignalina/alloy/go/arrowshm"
	"github.com/ignalina/alloy/go/ring"
)

// Mode is the slot encoding Publish writes (LAYOUT.md §8).
type Mode int

const (
	// IPC writes Arrow IPC messages through arrowshm.Writer: records too
	// large for a slot are split, dictionaries are sent as dictionary
	// batches. The default.
	IPC Mode = iota
	// CData writes C-Data-offsets messages through arrowshm.CDataWriter:
	// each batch must fit in one slot.
	CData
)

// PublishOptions configures Publish.
type PublishOptions struct {
	// Context, when done, ends Publish while it waits for a free slot;
	// nil is context.Background(). (A wait inside the C stream's get_next
	// is the producing engine's and cannot be interrupted from here.)
	Context context.Context
	// Mode is the encoding written into the ring; IPC by default.
	Mode Mode
	// Writer are options of the IPC Writer (e.g.
	// arrowshm.WithDictionaryDeltas).
	Writer []arrowshm.WriterOption
}

// Counts is what Publish wrote.
type Counts struct {
	// Batches is the number of record batches read from the C stream.
	Batches int64
	// Rows is their total number of rows.
	Rows int64
	// Messages is the number of record batch messages published (IPC mode
	// splits a batch larger than a slot into several).
	Messages uint64
	// Bytes is the total payload published, schema and dictionaries
	// included.
	Bytes uint64
}

// writer is what Publish needs of arrowshm.Writer and CDataWriter.
type writer interface {
	WriteContext(context.Context, arrow.RecordBatch) error
	Close() error
	BytesSent() uint64
	Batches() uint64
}

// Publish reads the C stream stream (made by any engine: arrow-rs,
// DuckDB, pyarrow, arrow-go) and writes every batch into the ring of p,
// in opts.Mode, then ends the ring's stream. It takes stream over (moved
// out with arrow-go's cdata.ImportCRecordReader) and releases it before
// returning, also on error; each imported batch is released once it is
// in its slot.
//
// The ring's stream is ended (the Writer's Close) whatever happens:
// consumers see the batches published before an error, then the end of
// stream. The error (the C stream's get_last_error text for a failed
// get_next, a ring error such as ring.ErrConsumerLost, the context's
// error) is returned with the counts so far.
func Publish(p *ring.Producer, stream *cdata.CArrowArrayStream, opts PublishOptions) (Counts, error) {
	var n Counts
	ctx := opts.Context
	if ctx == nil {
		ctx = context.Background()
	}
	imported, err := cdata.ImportCRecordReader(stream, nil)
	if err != nil {
		return n, errors.Join(fmt.Errorf("cstream: importing the C stream: %w", err), p.Close())
	}
	// arrow-go's stream importer is an array.RecordReader behind the
	// narrower arrio.Reader it is declared as.
	rr := imported.(array.RecordReader)
	defer rr.Release()
	var w writer
	switch opts.Mode {
	case IPC:
		w = arrowshm.NewWriter(p, rr.Schema(), opts.Writer...)
	case CData:
		cw, err := arrowshm.NewCDataWriter(p, rr.Schema())
		if err != nil {
			return n, errors.Join(err, p.Close())
		}
		w = cw
	default:
		return n, errors.Join(fmt.Errorf("cstream: unknown mode %d", opts.Mode), p.Close())
	}
	for rr.Next() {
		rec := rr.RecordBatch()
		if err = w.WriteContext(ctx, rec); err != nil {
			break
		}
		n.Batches++
		n.Rows += rec.NumRows()
	}
	if err == nil {
		if err = rr.Err(); err != nil {
			err = fmt.Errorf("cstream: the C stream failed after %d batches: %w", n.Batches, err)
		}
	}
	// The C-Data writer sends the schema on Close when no batch got out:
	// with the caller's context, or a ring full when the context ended
	// would block Close for ever.
	var cerr error
	if cw, ok := w.(interface{ CloseContext(context.Context) error }); ok {
		cerr = cw.CloseContext(ctx)
	} else {
		cerr = w.Close()
	}
	n.Messages, n.Bytes = w.Batches(), w.BytesSent()
	if err != nil {
		return n, err // Close repeats a Write's failure
	}
	return n, cerr
}
