package flightshm

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// recorder is a Flight server that keeps what each DoPut sends (the
// cross-language tests in internal/crosstest use the real gateway).
type recorder struct {
	flight.BaseFlightServer
	mu  sync.Mutex
	got map[string][]arrow.RecordBatch
}

func (s *recorder) DoPut(stream flight.FlightService_DoPutServer) error {
	rd, err := flight.NewRecordReader(stream)
	if err != nil {
		return err
	}
	defer rd.Release()
	d := rd.LatestFlightDescriptor()
	if d == nil || d.Type != flight.DescriptorPATH || len(d.Path) != 1 {
		return status.Errorf(codes.InvalidArgument, "want the descriptor path [RING], got %v", d)
	}
	if d.Path[0] == "refuse" {
		return status.Error(codes.AlreadyExists, "ring is busy")
	}
	var recs []arrow.RecordBatch
	var sum Summary
	for rd.Next() {
		r := rd.RecordBatch()
		r.Retain()
		recs = append(recs, r)
		sum.Batches++
		sum.Rows += uint64(r.NumRows())
	}
	if err := rd.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	s.got[d.Path[0]] = recs
	s.mu.Unlock()
	sum.Bytes = 42
	meta, _ := json.Marshal(sum)
	return stream.Send(&flight.PutResult{AppMetadata: meta})
}

func serve(t *testing.T) (*recorder, string) {
	t.Helper()
	rec := &recorder{got: map[string][]arrow.RecordBatch{}}
	s := flight.NewServerWithMiddleware(nil)
	if err := s.Init("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	s.RegisterFlightService(rec)
	go s.Serve()
	t.Cleanup(s.Shutdown)
	return rec, "grpc://" + s.Addr().String()
}

func records(t *testing.T, n int) (*arrow.Schema, []arrow.RecordBatch) {
	t.Helper()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "tag", Type: &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}, Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	var out []arrow.RecordBatch
	for i := range n {
		for j := range 10 * i {
			b.Field(0).(*array.Int64Builder).Append(int64(j))
			if j%3 == 0 {
				b.Field(1).(*array.StringBuilder).AppendNull()
			} else {
				b.Field(1).(*array.StringBuilder).Append("v" + string(rune('a'+j%26)))
			}
			if err := b.Field(2).(*array.BinaryDictionaryBuilder).AppendString([]string{"red", "green"}[j%2]); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, b.NewRecordBatch())
	}
	return schema, out
}

func TestRoundTrip(t *testing.T) {
	srv, url := serve(t)
	schema, recs := records(t, 5)
	w, err := NewWriter(context.Background(), url, "ring-a", schema)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := w.Summary(); got != (Summary{Batches: 5, Rows: 100, Bytes: 42}) {
		t.Fatalf("summary %+v", got)
	}
	if w.Batches() != 5 {
		t.Fatalf("Batches() = %d", w.Batches())
	}
	got := srv.got["ring-a"]
	if len(got) != len(recs) {
		t.Fatalf("server got %d records, want %d", len(got), len(recs))
	}
	for i := range recs {
		if !array.RecordEqual(got[i], recs[i]) {
			t.Fatalf("record %d differs:\n%v\n%v", i, got[i], recs[i])
		}
	}
	if err := w.Write(recs[0]); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
}

func TestEmptyStreamSendsSchema(t *testing.T) {
	srv, url := serve(t)
	schema, _ := records(t, 0)
	w, err := NewWriter(context.Background(), url, "empty", schema)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, ok := srv.got["empty"]; !ok || len(got) != 0 {
		t.Fatalf("server got %v (present %v)", got, ok)
	}
}

func TestRefusalKeepsStatus(t *testing.T) {
	_, url := serve(t)
	schema, recs := records(t, 3)
	w, err := NewWriter(context.Background(), url, "refuse", schema)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err = w.Write(r); err != nil {
			break
		}
	}
	if err == nil {
		err = w.Close()
	}
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("got %v (code %v), want ALREADY_EXISTS", err, status.Code(err))
	}
	if err := w.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Close after failure: %v", err)
	}

	// Done tells of the refusal: the next Write fails at once.
	w, err = NewWriter(context.Background(), url, "refuse", schema)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(recs[1]); err != nil && status.Code(err) != codes.AlreadyExists {
		t.Fatal(err)
	}
	select {
	case <-w.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after the gateway refused the stream")
	}
	if err := w.Write(recs[1]); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("Write after refusal: %v", err)
	}
}

func TestCancelledContext(t *testing.T) {
	_, url := serve(t)
	schema, recs := records(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	w, err := NewWriter(ctx, url, "cancelled", schema)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(recs[1]); err != nil {
		t.Fatal(err)
	}
	cancel()
	// gRPC tears the call down asynchronously: until it has, a Write and a
	// Close may still complete the stream (the gateway then answers OK,
	// rightly: it got everything). Once Done is closed, the cancellation
	// has ended the call and every later Write reports it.
	select {
	case <-w.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after the context was cancelled")
	}
	err = w.Write(recs[1])
	if err == nil {
		err = w.Close()
	}
	if status.Code(err) != codes.Canceled {
		t.Fatalf("got %v (code %v), want CANCELED", err, status.Code(err))
	}
}

func TestBadInput(t *testing.T) {
	for _, u := range []string{"127.0.0.1:5", "grpc://h", "grpc://:5", "grpc://h:x", "ftp://h:1", "grpc://h:1/a", "grpc+tls://h:1"} {
		if _, err := Target(u); !errors.Is(err, ErrBadURL) {
			t.Errorf("Target(%q) = %v, want ErrBadURL", u, err)
		}
	}
	for u, want := range map[string]string{"grpc://127.0.0.1:5": "127.0.0.1:5", "grpc+tcp://h:80/": "h:80", "http://[::1]:9": "[::1]:9"} {
		if got, err := Target(u); err != nil || got != want {
			t.Errorf("Target(%q) = %q, %v; want %q", u, got, err, want)
		}
	}
	for _, n := range []string{"", ".hidden", "a/b", "../etc", "sp ace", string(make([]byte, 201))} {
		if err := CheckName(n); !errors.Is(err, ErrInvalidName) {
			t.Errorf("CheckName(%q) = %v", n, err)
		}
	}
	schema, recs := records(t, 2)
	if _, err := NewWriter(context.Background(), "grpc://127.0.0.1:1", "../x", schema); !errors.Is(err, ErrInvalidName) {
		t.Errorf("bad name: %v", err)
	}
	if _, err := NewWriter(context.Background(), "localhost:1", "x", schema); !errors.Is(err, ErrBadURL) {
		t.Errorf("bad url: %v", err)
	}
	_, url := serve(t)
	other := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int32}}, nil)
	w, err := NewWriter(context.Background(), url, "mismatch", other)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Write(recs[1]); err == nil {
		t.Fatal("a record of another schema was accepted")
	}
}
