package crosstest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/arrowshm"
	"github.com/ignalina/alloy/go/ring"
)

// serveFlight starts `alloy serve-flight` on an ephemeral loopback port and
// returns its URL from the "listening on grpc://ADDR" line.
func serveFlight(t *testing.T, ctx context.Context) string {
	t.Helper()
	p := start(t, ctx, rustBin, "serve-flight", "--listen", "127.0.0.1:0", "--slots", "16", "--slot-size", "65536")
	line, err := p.out.ReadString('\n')
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if !ok || !strings.HasPrefix(url, "grpc://127.0.0.1:") {
		t.Fatalf("serve-flight: first line %q, %v; stderr: %s", line, err, p.errb.String())
	}
	return url
}

// flightRing creates a ring of 16 × 64 KiB slots (so the larger records are
// split by the gateway) with room for an Arrow schema.
func flightRing(t *testing.T, tag string) (string, *ring.Ring) {
	t.Helper()
	name := fmt.Sprintf("alloy-cross-flight-%d-%s", os.Getpid(), tag)
	ring.Remove(name)
	r, err := ring.Create(name, ring.Config{SlotCount: 16, SlotSize: 64 << 10, MaxSubscribers: 4, MaxMembers: 4, SchemaCapacity: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); ring.Remove(name) })
	return name, r
}

// flightRecords writes records of several types (one of 20000 rows, larger
// than a slot) to an Arrow IPC stream file.
func flightRecords(t *testing.T) (string, *arrow.Schema, []arrow.RecordBatch) {
	t.Helper()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "score", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "ok", Type: arrow.FixedWidthTypes.Boolean},
		{Name: "at", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}},
		{Name: "tags", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32), Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	var recs []arrow.RecordBatch
	for _, n := range []int{0, 1, 100, 20000, 7} {
		for i := range n {
			b.Field(0).(*array.Int64Builder).Append(int64(i))
			if i%5 == 0 {
				b.Field(1).(*array.StringBuilder).AppendNull()
				b.Field(2).(*array.Float64Builder).AppendNull()
			} else {
				b.Field(1).(*array.StringBuilder).Append(fmt.Sprintf("name-%d-é", i))
				b.Field(2).(*array.Float64Builder).Append(float64(i) / 3)
			}
			b.Field(3).(*array.BooleanBuilder).Append(i%2 == 0)
			b.Field(4).(*array.TimestampBuilder).Append(arrow.Timestamp(1_700_000_000_000_000 + int64(i)))
			lb := b.Field(5).(*array.ListBuilder)
			lb.Append(true)
			for j := range i % 4 {
				lb.ValueBuilder().(*array.Int32Builder).Append(int32(i + j))
			}
		}
		recs = append(recs, b.NewRecordBatch())
	}
	path := filepath.Join(t.TempDir(), "in.arrows")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := ipc.NewWriter(f, ipc.WithSchema(schema))
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path, schema, recs
}

// readStream reads every record of an Arrow IPC stream file.
func readStream(t *testing.T, path string) []arrow.RecordBatch {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := ipc.NewReader(bufio.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	var out []arrow.RecordBatch
	for r.Next() {
		rec := r.RecordBatch()
		rec.Retain()
		out = append(out, rec)
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameRows compares two record lists as tables (the gateway splits records
// larger than a slot, so batch boundaries differ).
func sameRows(t *testing.T, what string, schema *arrow.Schema, got, want []arrow.RecordBatch) {
	t.Helper()
	g, w := array.NewTableFromRecords(schema, got), array.NewTableFromRecords(schema, want)
	defer g.Release()
	defer w.Release()
	if g.NumRows() != w.NumRows() || !array.TableEqual(g, w) {
		t.Fatalf("%s: %d rows differ from the %d sent", what, g.NumRows(), w.NumRows())
	}
}

// goConsume reads ring name with arrowshm.Reader in this process.
func goConsume(t *testing.T, r *ring.Ring) <-chan []arrow.RecordBatch {
	t.Helper()
	c, err := r.Subscribe(ring.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rd := arrowshm.NewReader(c)
	done := make(chan []arrow.RecordBatch, 1)
	go func() {
		defer rd.Release()
		defer c.Close()
		var out []arrow.RecordBatch
		for rd.Next() {
			rec := rd.RecordBatch()
			rec.Retain()
			out = append(out, rec)
		}
		if err := rd.Err(); err != nil {
			t.Error(err)
		}
		done <- out
	}()
	return done
}

// TestFlightGoToRust: alloy-go send --flight → alloy serve-flight → ring →
// both consumer types (alloy recv in Rust, arrowshm.Reader in Go) get the
// records; then alloy send --flight (Rust) → ring → Go consumer.
func TestFlightGoToRust(t *testing.T) {
	needRust(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url := serveFlight(t, ctx)
	input, schema, recs := flightRecords(t)
	var rows uint64
	for _, r := range recs {
		rows += uint64(r.NumRows())
	}

	name, r := flightRing(t, "go")
	out := filepath.Join(t.TempDir(), "out.arrows")
	rust := start(t, ctx, rustBin, "recv", "--ring", name, "--out", out)
	rust.ready(t)
	goSide := goConsume(t, r)
	sent := start(t, ctx, goBin, "send", "--flight", url, "--ring", name, input).result(t)
	if sent["rows"] != rows || sent["batches"] != uint64(len(recs)) {
		t.Errorf("alloy-go send --flight: %v, want %d rows in %d batches", sent, rows, len(recs))
	}
	got := rust.result(t)
	if got["rows"] != rows || got["batches"] <= uint64(len(recs)) {
		t.Errorf("alloy recv: %v, want %d rows in more than %d batches (split)", got, rows, len(recs))
	}
	sameRows(t, "alloy recv", schema, readStream(t, out), recs)
	sameRows(t, "arrowshm.Reader", schema, <-goSide, recs)

	// The Rust sender, to a ring the gateway creates (consumer joins first
	// on a ring we create to see the whole stream).
	name2, r2 := flightRing(t, "rust")
	goSide2 := goConsume(t, r2)
	sent2 := start(t, ctx, rustBin, "send", "--flight", url, "--ring", name2, input).result(t)
	if sent2["rows"] != rows {
		t.Errorf("alloy send --flight: %v, want %d rows", sent2, rows)
	}
	sameRows(t, "arrowshm.Reader (Rust sender)", schema, <-goSide2, recs)

	// Errors: a bad ring name (refused by each client before connecting),
	// and a ring whose stream is closed (refused by the gateway).
	for _, bin := range []string{goBin, rustBin} {
		for _, c := range []struct{ ring, want string }{{"bad/name", "invalid ring name"}, {name, "closed"}} {
			cmd := exec.CommandContext(ctx, bin, "send", "--flight", url, "--ring", c.ring, input)
			msg, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(msg), c.want) {
				t.Errorf("%s send --flight --ring %s: %v, output %q; want a failure mentioning %q", filepath.Base(bin), c.ring, err, msg, c.want)
			}
		}
	}
	cmd := exec.CommandContext(ctx, goBin, "send", "--flight", "grpc://127.0.0.1", "--ring", "x", input)
	if msg, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(msg), "HOST:PORT") {
		t.Errorf("bad URL: %v, %q", err, msg)
	}
}
