// Package flightshm sends Arrow record batches to an Alloy ring on another
// machine over Arrow Flight: the network counterpart of arrowshm.Writer.
//
// The receiving machine runs the gateway `alloy serve-flight --listen
// ADDR`, which republishes every Flight DoPut stream whose descriptor is
// the path [NAME] into its local shared-memory ring NAME; consumers there
// use the ordinary ring readers (Rust alloy_shm::arrow::IpcReader, Go
// arrowshm.Reader). Writer is that DoPut stream, built on arrow-go's
// arrow/flight package: NewWriter connects and sends the schema with the
// descriptor, Write sends a record, Close ends the stream, which closes
// the ring's stream on the gateway once everything is in the ring.
//
// Errors wrap sentinels (ErrBadURL, ErrInvalidName, ErrClosed) for
// errors.Is; refusals by the gateway (a malformed descriptor, a ring
// already receiving or already closed, a ring holding another schema) keep
// their gRPC status, so status.Code(err) tells them apart
// (codes.InvalidArgument, codes.AlreadyExists, codes.FailedPrecondition…).
package flightshm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ignalina/alloy/go/arrowshm"
)

var (
	// ErrBadURL: the URL is not grpc://HOST:PORT (or grpc+tcp://, http://).
	ErrBadURL = errors.New("flightshm: bad Flight URL")
	// ErrInvalidName: the ring name is not 1-200 bytes of [A-Za-z0-9._-]
	// not starting with '.' (doc/LAYOUT.md §1).
	ErrInvalidName = errors.New("flightshm: invalid ring name")
	// ErrClosed: the writer was closed, or failed earlier.
	ErrClosed = errors.New("flightshm: writer closed")
)

// Summary is what the gateway reports when it closes the ring's stream.
type Summary struct {
	// Batches is the number of records received (a record larger than a
	// slot is split into several ring messages but counts once).
	Batches uint64 `json:"batches"`
	// Rows is the number of rows over all records.
	Rows uint64 `json:"rows"`
	// Messages is the number of ring messages published (the schema,
	// dictionary batches, and every piece of a split record, one each).
	Messages uint64 `json:"messages"`
	// Bytes is the Arrow IPC bytes published into the ring (schema,
	// dictionaries, batches).
	Bytes uint64 `json:"bytes"`
}

// Writer sends records to one ring of a remote gateway as one Flight DoPut
// stream. It is not safe for concurrent use.
type Writer struct {
	ring   string
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	stream flight.FlightService_DoPutClient
	w      *flight.Writer
	// dicts gives the Flight writer, which keeps the last dictionary of
	// each field, copies: a record read in place from a ring must not have
	// its slot kept by this writer.
	dicts   *arrowshm.DictionaryCopier
	schema  *arrow.Schema
	batches uint64
	summary Summary
	done    bool
	// failed is the error that ended the writer early; later Writes
	// return it again.
	failed error
	// ended is closed when the call has ended on the server side; then
	// result/resultErr hold its PutResult (nil if none) or status.
	ended     chan struct{}
	result    *flight.PutResult
	resultErr error
}

// Target returns the gRPC target (HOST:PORT) of a Flight URL: grpc://,
// grpc+tcp:// and http:// are accepted; TLS is not built in.
func Target(url string) (string, error) {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return "", fmt.Errorf("%w %q: expected grpc://HOST:PORT", ErrBadURL, url)
	}
	switch scheme {
	case "grpc", "grpc+tcp", "http":
	case "grpc+tls", "https":
		return "", fmt.Errorf("%w %q: TLS is not built in; use grpc:// inside a trusted network or tunnel", ErrBadURL, url)
	default:
		return "", fmt.Errorf("%w %q: the scheme must be grpc:// (or grpc+tcp://, http://)", ErrBadURL, url)
	}
	hostport := strings.TrimSuffix(rest, "/")
	i := strings.LastIndexByte(hostport, ':')
	if i <= 0 || strings.Contains(hostport, "/") {
		return "", fmt.Errorf("%w %q: expected HOST:PORT after the scheme", ErrBadURL, url)
	}
	if _, err := strconv.ParseUint(hostport[i+1:], 10, 16); err != nil {
		return "", fmt.Errorf("%w %q: bad port", ErrBadURL, url)
	}
	return hostport, nil
}

// CheckName reports whether name is a valid ring name (doc/LAYOUT.md §1).
func CheckName(name string) error {
	ok := len(name) >= 1 && len(name) <= 200 && name[0] != '.'
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
	}
	if !ok {
		return fmt.Errorf("%w %q: use 1-200 characters of [A-Za-z0-9._-], not starting with '.'", ErrInvalidName, name)
	}
	return nil
}

// NewWriter connects to the gateway at url (grpc://HOST:PORT) and opens a
// DoPut stream into its ring name for records of schema; the schema goes
// out with the descriptor path [name] in the first message, at the first
// Write (or Close). The stream lives until Close or until ctx is done
// (which cancels it, so the gateway leaves the ring's stream open). The
// gateway's refusals surface from Write, Close and Done.
func NewWriter(ctx context.Context, url, name string, schema *arrow.Schema) (*Writer, error) {
	target, err := Target(url)
	if err != nil {
		return nil, err
	}
	if err := CheckName(name); err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("flightshm: %s: %w", url, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	stream, err := flight.NewFlightServiceClient(conn).DoPut(ctx)
	if err != nil {
		cancel()
		conn.Close()
		return nil, fmt.Errorf("flightshm: DoPut to %s: %w", url, err)
	}
	fw := flight.NewRecordWriter(stream, ipc.WithSchema(schema))
	fw.SetFlightDescriptor(&flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{name}})
	w := &Writer{ring: name, conn: conn, cancel: cancel, stream: stream, w: fw, schema: schema, ended: make(chan struct{}),
		dicts: arrowshm.NewDictionaryCopier(memory.DefaultAllocator)}
	// The gateway answers once, at the end of the call (a PutResult, or an
	// error status as soon as it refuses the stream): wait for it here, so
	// a refusal is seen by the next Write and by Done, not only at Close.
	go func() {
		defer close(w.ended)
		for {
			res, err := stream.Recv()
			if err != nil {
				if err != io.EOF {
					w.resultErr = err
				}
				return
			}
			if w.result == nil {
				w.result = res
			}
		}
	}()
	return w, nil
}

// Schema is the stream's schema.
func (w *Writer) Schema() *arrow.Schema { return w.schema }

// Batches is the number of records written so far.
func (w *Writer) Batches() uint64 { return w.batches }

// Summary is the gateway's report, valid after a successful Close.
func (w *Writer) Summary() Summary { return w.summary }

// Done is closed when the call has ended on the gateway's side: after
// Close, or early when the gateway refused or failed the stream (the next
// Write or Close then returns its status; after that, every Write returns
// it again and Close returns ErrClosed).
func (w *Writer) Done() <-chan struct{} { return w.ended }

// Write sends rec. A record with another schema is refused. When the
// gateway has ended the stream, its status is returned (status.Code tells
// the reason), and every later Write returns the same error; Close then
// returns ErrClosed.
func (w *Writer) Write(rec arrow.RecordBatch) error {
	if w.failed != nil {
		return w.failed
	}
	if w.done {
		return ErrClosed
	}
	select {
	case <-w.ended:
		return w.fail(io.EOF)
	default:
	}
	if !rec.Schema().Equal(w.schema) {
		return fmt.Errorf("flightshm: record schema %v differs from the stream's %v", rec.Schema(), w.schema)
	}
	rec = w.dicts.Copy(rec)
	defer rec.Release()
	if err := w.w.Write(rec); err != nil {
		return w.fail(err)
	}
	w.batches++
	return nil
}

// fail turns a send error into the gateway's status when it has one.
func (w *Writer) fail(err error) error {
	w.done = true
	if errors.Is(err, io.EOF) {
		// The server ended the call; its status comes with Recv.
		<-w.ended
		if w.resultErr != nil {
			err = w.resultErr
		}
	}
	w.release()
	w.failed = fmt.Errorf("flightshm: ring %q: %w", w.ring, err)
	return w.failed
}

func (w *Writer) release() {
	w.cancel()
	w.conn.Close()
	w.dicts.Release()
}

// Close ends the stream (sending the schema if no record was written) and
// waits until the gateway has put everything into the ring and closed the
// ring's stream; the gateway's Summary is then available.
func (w *Writer) Close() error {
	if w.done {
		return ErrClosed
	}
	if err := w.w.Close(); err != nil {
		return w.fail(err)
	}
	if err := w.stream.CloseSend(); err != nil {
		return w.fail(err)
	}
	w.done = true
	defer w.release()
	<-w.ended
	if w.resultErr != nil {
		return fmt.Errorf("flightshm: ring %q: %w", w.ring, w.resultErr)
	}
	if res := w.result; res != nil && len(res.AppMetadata) > 0 {
		if err := json.Unmarshal(res.AppMetadata, &w.summary); err != nil {
			return fmt.Errorf("flightshm: ring %q: bad PutResult metadata %q: %w", w.ring, res.AppMetadata, err)
		}
	}
	return nil
}
