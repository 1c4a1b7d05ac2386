//go:build cgo && linux

package cstream

import (
	"fmt"
	"math/rand/v2"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/arrowshm"
	"github.com/ignalina/alloy/go/ring"
)

// tb is what the helpers need of *testing.T.
type tb interface {
	Helper()
	Fatal(args ...any)
	Cleanup(func())
}

func newRing(t tb, slots, size uint32) *ring.Ring {
	t.Helper()
	cfg := ring.DefaultConfig()
	cfg.SlotCount, cfg.SlotSize, cfg.SchemaCapacity = slots, size, 1<<14
	r, err := ring.CreateAnonymous("cstream-test", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func producer(t tb, r *ring.Ring) *ring.Producer {
	t.Helper()
	p, err := r.NewProducer(ring.ProducerOptions{Backpressure: ring.Backpressure{Kind: ring.Block}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func subscribe(t tb, r *ring.Ring, opts ring.ConsumerOptions) *ring.Consumer {
	t.Helper()
	c, err := r.Subscribe(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// schema of the generated batches: every layout family the exports cross
// (fixed width, boolean, variable width, list, struct, dictionaries at the
// top level and inside a list), all nullable.
var schema = arrow.NewSchema([]arrow.Field{
	{Name: "i64", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "f64", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "ok", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
	{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "ls", Type: arrow.BinaryTypes.LargeString, Nullable: true},
	{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
	{Name: "l", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32), Nullable: true},
	{Name: "st", Type: arrow.StructOf(
		arrow.Field{Name: "x", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		arrow.Field{Name: "y", Type: arrow.BinaryTypes.String, Nullable: true},
	), Nullable: true},
	{Name: "d", Type: &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}, Nullable: true},
	{Name: "ld", Type: arrow.ListOf(&arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int16, ValueType: arrow.BinaryTypes.String}), Nullable: true},
}, nil)

var words = []string{"red", "green", "", "ünïcode", "a somewhat longer string value"}

// makeBatches builds n batches of schema with 1 to maxRows rows each and
// nulls in every column; batch i's dictionaries hold values only it uses
// half of the time, so some batches replace the dictionaries.
func makeBatches(seed uint64, n, maxRows int) []arrow.RecordBatch {
	r := rand.New(rand.NewPCG(seed, 16))
	out := make([]arrow.RecordBatch, n)
	for i := range out {
		b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
		word := func() string {
			if r.IntN(2) == 0 {
				return fmt.Sprintf("batch %d word %d", i, r.IntN(3))
			}
			return words[r.IntN(len(words))]
		}
		for range 1 + r.IntN(maxRows) {
			for j := range schema.NumFields() {
				fb := b.Field(j)
				if r.IntN(6) == 0 {
					fb.AppendNull()
					continue
				}
				appendValue(fb, r, word)
			}
		}
		out[i] = b.NewRecordBatch()
		b.Release()
	}
	return out
}

func appendValue(b array.Builder, r *rand.Rand, word func() string) {
	switch b := b.(type) {
	case *array.Int64Builder:
		b.Append(int64(r.Uint64()))
	case *array.Int32Builder:
		b.Append(int32(r.Uint64()))
	case *array.Float64Builder:
		b.Append(float64(int64(r.Uint64())) / 3)
	case *array.BooleanBuilder:
		b.Append(r.IntN(2) == 1)
	case *array.StringBuilder:
		b.Append(word())
	case *array.LargeStringBuilder:
		b.Append(word())
	case *array.TimestampBuilder:
		b.Append(arrow.Timestamp(int64(r.Uint64()) >> 12))
	case *array.ListBuilder:
		b.Append(true)
		for range r.IntN(4) {
			appendValue(b.ValueBuilder(), r, word)
		}
	case *array.StructBuilder:
		b.Append(true)
		for i := range b.NumField() {
			appendValue(b.FieldBuilder(i), r, word)
		}
	case *array.BinaryDictionaryBuilder:
		if err := b.AppendString(word()); err != nil {
			panic(err)
		}
	default:
		panic(fmt.Sprintf("no generator for %T", b))
	}
}

func release(recs []arrow.RecordBatch) {
	for _, r := range recs {
		r.Release()
	}
}

// sendAll writes recs in mode on a goroutine and closes the writer; the
// error arrives on the returned channel.
func sendAll(p *ring.Producer, mode Mode, recs []arrow.RecordBatch) chan error {
	done := make(chan error, 1)
	go func() {
		var w interface {
			Write(arrow.RecordBatch) error
			Close() error
		}
		if mode == CData {
			cw, err := arrowshm.NewCDataWriter(p, schema)
			if err != nil {
				p.Close()
				done <- err
				return
			}
			w = cw
		} else {
			w = arrowshm.NewWriter(p, schema)
		}
		for _, rec := range recs {
			if err := w.Write(rec); err != nil {
				w.Close()
				done <- err
				return
			}
		}
		done <- w.Close()
	}()
	return done
}

// inRing reports whether every buffer of d lies inside r's mapping,
// children included, and dictionaries when withDicts.
func inRing(r *ring.Ring, d arrow.ArrayData, withDicts bool) bool {
	if d.DataType().ID() == arrow.DICTIONARY && withDicts {
		if dict, ok := d.Dictionary().(*array.Data); ok && dict != nil && !inRing(r, dict, true) {
			return false
		}
	}
	for _, b := range d.Buffers() {
		if b != nil && !r.Contains(b.Bytes()) {
			return false
		}
	}
	for _, c := range d.Children() {
		if !inRing(r, c, withDicts) {
			return false
		}
	}
	return true
}

// leasesHeld is the number of leases the ring's first consumer holds.
func leasesHeld(r *ring.Ring) uint64 { return r.Stat().Consumers[0].LeasesHeld }
