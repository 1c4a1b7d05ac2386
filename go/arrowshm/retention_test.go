package arrowshm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"pgregory.net/rapid"

	"github.com/ignalina/alloy/go/ring"
)

// Dictionary patterns of the retention tests.
const (
	dictNone    = iota // no dictionary column
	dictSame           // one dictionary array for every batch
	dictReplace        // a new dictionary every batch
	dictDelta          // a dictionary that grows every batch (IPC: delta batches)
	dictPatterns
)

var patternNames = []string{"none", "same", "replace", "delta"}

// dictStream is a stream of records with an int64 column and, unless the
// pattern is dictNone, a dictionary<int32, utf8> column and a
// list<dictionary<int16, utf8>> column (a dictionary below the top level),
// else a plain utf8 column.
type dictStream struct {
	schema  *arrow.Schema
	records []arrow.RecordBatch
}

func (s dictStream) release() { release(s.records) }

// makeDictStream builds n records of up to maxRows rows with dictionary
// pattern pattern, nulls (or none) in every column, from seed.
func makeDictStream(seed uint64, n, maxRows, pattern int, nulls bool) dictStream {
	r := rand.New(rand.NewPCG(seed, 12))
	mem := memory.DefaultAllocator
	top := &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}
	inner := &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int16, ValueType: arrow.BinaryTypes.String}
	fields := []arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true}}
	if pattern == dictNone {
		fields = append(fields, arrow.Field{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true})
	} else {
		fields = append(fields,
			arrow.Field{Name: "s", Type: top, Nullable: true},
			arrow.Field{Name: "l", Type: arrow.ListOf(inner), Nullable: true})
	}
	schema := arrow.NewSchema(fields, nil)
	values := func(i int) []string { // the dictionary of batch i
		switch pattern {
		case dictSame:
			return []string{"red", "green", "", "ünïcode"}
		case dictReplace:
			out := make([]string, 1+r.IntN(6))
			for j := range out {
				out[j] = fmt.Sprintf("batch %d value %d", i, j)
			}
			return out
		default: // dictDelta
			out := make([]string, 2+3*i)
			for j := range out {
				out[j] = fmt.Sprintf("v%d", j)
			}
			return out
		}
	}
	dictArray := func(vals []string) arrow.Array {
		b := array.NewStringBuilder(mem)
		defer b.Release()
		b.AppendValues(vals, nil)
		return b.NewArray()
	}
	var same arrow.Array
	if pattern == dictSame {
		same = dictArray(values(0))
		defer same.Release()
	}
	null := func() bool { return nulls && r.IntN(5) == 0 }
	s := dictStream{schema: schema}
	for i := range n {
		rows := r.IntN(maxRows + 1)
		var cols []arrow.Array
		ib := array.NewInt64Builder(mem)
		for j := range rows {
			if null() {
				ib.AppendNull()
			} else {
				ib.Append(int64(i*1000 + j))
			}
		}
		cols = append(cols, ib.NewArray())
		ib.Release()
		if pattern == dictNone {
			sb := array.NewStringBuilder(mem)
			for j := range rows {
				if null() {
					sb.AppendNull()
				} else {
					sb.Append(fmt.Sprintf("row %d", j))
				}
			}
			cols = append(cols, sb.NewArray())
			sb.Release()
		} else {
			dict := same
			if dict == nil {
				dict = dictArray(values(i))
			} else {
				dict.Retain()
			}
			// keys draws n keys into the dictionary (some null).
			keys := func(n int, b interface {
				AppendNull()
			}, add func(int)) {
				for range n {
					if null() {
						b.AppendNull()
					} else {
						add(r.IntN(dict.Len()))
					}
				}
			}
			kb := array.NewInt32Builder(mem)
			keys(rows, kb, func(k int) { kb.Append(int32(k)) })
			k32 := kb.NewArray()
			kb.Release()
			cols = append(cols, array.NewDictionaryArray(top, k32, dict))
			k32.Release()
			// The list column: 0–3 keys per row into the same values.
			offs := []int32{0}
			for range rows {
				offs = append(offs, offs[len(offs)-1]+int32(r.IntN(4)))
			}
			kb16 := array.NewInt16Builder(mem)
			keys(int(offs[rows]), kb16, func(k int) { kb16.Append(int16(k)) })
			k16 := kb16.NewArray()
			kb16.Release()
			child := array.NewDictionaryArray(inner, k16, dict)
			k16.Release()
			ld := array.NewData(arrow.ListOf(inner), rows,
				[]*memory.Buffer{nil, memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(offs))},
				[]arrow.ArrayData{child.Data()}, 0, 0)
			cols = append(cols, array.MakeFromData(ld))
			ld.Release()
			child.Release()
			dict.Release()
		}
		s.records = append(s.records, array.NewRecordBatch(schema, cols, int64(rows)))
		for _, c := range cols {
			c.Release()
		}
	}
	return s
}

// retentionCase is one run of the retention property: a stream longer than
// the ring, read while the reader keeps up to window records.
type retentionCase struct {
	slots, batches, pattern int
	nulls, zeroCopy, cdata  bool
	window                  int
	seed                    uint64
}

// drawRetentionCase draws a case: slot count 2–16 (powers of two, as ring
// configurations must be), up to 10× as many
// batches, and a window of kept records that cannot stall the ring by
// itself (read in place, the records kept plus the dictionary batches
// between them must leave the producer a slot; copied records hold none).
func drawRetentionCase(t *rapid.T) retentionCase {
	c := retentionCase{
		slots:    rapid.SampledFrom([]int{2, 4, 8, 16}).Draw(t, "slots"),
		pattern:  rapid.IntRange(0, dictPatterns-1).Draw(t, "pattern"),
		nulls:    rapid.Bool().Draw(t, "nulls"),
		zeroCopy: rapid.Bool().Draw(t, "zeroCopy"),
		cdata:    rapid.Bool().Draw(t, "cdata"),
		seed:     rapid.Uint64().Draw(t, "seed"),
	}
	c.batches = rapid.IntRange(1, 10*c.slots).Draw(t, "batches")
	perRecord := 1 // messages per record in the ring
	if !c.cdata && (c.pattern == dictReplace || c.pattern == dictDelta) {
		perRecord = 3 // two dictionary batches before each record
	}
	maxWindow := (c.slots - 1) / perRecord
	if !c.zeroCopy {
		maxWindow = c.batches
	}
	c.window = rapid.IntRange(0, maxWindow).Draw(t, "window")
	return c
}

// fatalT is what runRetentionCase needs of *testing.T and *rapid.T.
type fatalT interface {
	tb
	Fatalf(format string, args ...any)
}

// startSend writes s's records to p on a goroutine, in C-Data-offsets or
// IPC mode (deltas: WithDictionaryDeltas), then closes. wait returns its
// error once it has ended (any number of times); cancelling ctx ends it.
func startSend(ctx context.Context, p *ring.Producer, s dictStream, cdata, deltas bool) (wait func() error) {
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		var write func(context.Context, arrow.RecordBatch) error
		var closeW func() error
		if cdata {
			w, werr := NewCDataWriter(p, s.schema)
			if werr != nil {
				err = werr
				return
			}
			write, closeW = w.WriteContext, w.Close
		} else {
			w := NewWriter(p, s.schema, WithDictionaryDeltas(deltas))
			write, closeW = w.WriteContext, w.Close
		}
		for _, rec := range s.records {
			if err = write(ctx, rec); err != nil {
				closeW()
				return
			}
		}
		err = closeW()
	}()
	return func() error {
		<-done
		return err
	}
}

// runRetentionCase sends the case's stream Go → Go and reads it with a
// consumer whose held-lease timeout is short: a slot kept by the library
// would stall the ring and fail the run with ErrRetentionStall; the whole
// run must end within a bound.
func runRetentionCase(t fatalT, c retentionCase) {
	s := makeDictStream(c.seed, c.batches, 40, c.pattern, c.nulls)
	defer s.release()
	r := newRing(t, uint32(c.slots), 1<<16)
	cons, err := r.Subscribe(ring.ConsumerOptions{HeldLeaseTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var opts []ReaderOption
	if c.zeroCopy {
		opts = append(opts, WithZeroCopy())
	}
	rd := NewReader(cons, opts...)
	defer rd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	wait := startSend(ctx, producer(t, r), s, c.cdata, c.pattern == dictDelta)
	defer func() { cancel(); wait() }() // before s is released
	var kept []arrow.RecordBatch        // the window, oldest first
	defer func() { release(kept) }()
	n := 0
	for rd.NextContext(ctx) {
		rec := rd.RecordBatch()
		if n >= len(s.records) {
			t.Fatalf("more records than sent")
		}
		if err := sameRecords(s.records[n:n+1], []arrow.RecordBatch{rec}); err != nil {
			t.Fatalf("record %d: %v", n, err)
		}
		held := cons.LeasesHeld()
		if bound := int64(len(kept) + 1); !c.zeroCopy && held != 0 || held > bound {
			t.Fatalf("record %d: %d leases held with %d records kept (in place: %v)", n, held, len(kept), c.zeroCopy)
		}
		if c.window > 0 {
			rec.Retain()
			kept = append(kept, rec)
			if len(kept) > c.window {
				kept[0].Release()
				kept = kept[1:]
			}
		}
		n++
	}
	if err := rd.Err(); err != nil {
		t.Fatalf("after %d of %d records: %v", n, len(s.records), err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if n != len(s.records) {
		t.Fatalf("%d records, want %d", n, len(s.records))
	}
	release(kept)
	kept = nil
	if held := cons.LeasesHeld(); held != 0 {
		t.Fatalf("%d leases held after every record was released", held)
	}
}

// TestRetentionGoToGo is the retention property Go → Go over slot count,
// stream length, dictionary pattern, nulls, in place or copied, IPC or
// C-Data-offsets: every run ends, with the records equal, and the reader
// holds no slot beyond the records kept.
func TestRetentionGoToGo(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) { runRetentionCase(t, drawRetentionCase(t)) })
}

// TestRetentionEveryPattern runs each dictionary pattern in both modes, in
// place, with the largest safe window and a stream ten times the ring.
func TestRetentionEveryPattern(t *testing.T) {
	for pattern := range dictPatterns {
		for _, cdata := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/cdata=%v", patternNames[pattern], cdata), func(t *testing.T) {
				c := retentionCase{slots: 4, batches: 40, pattern: pattern, nulls: true, zeroCopy: true, cdata: cdata, seed: 1}
				c.window = 3
				if !cdata && (pattern == dictReplace || pattern == dictDelta) {
					c.window = 1
				}
				runRetentionCase(t, c)
			})
		}
	}
}

// A reader that keeps every record read in place gets ErrRetentionStall
// once the ring is full behind them, not a hang; releasing them lets a
// later Next go on, and the rest of the stream arrives equal.
func TestReaderRetentionStall(t *testing.T) {
	for _, cdata := range []bool{false, true} {
		t.Run(fmt.Sprintf("cdata=%v", cdata), func(t *testing.T) {
			const slots = 4
			s := makeDictStream(5, 3*slots, 20, dictReplace, true)
			defer s.release()
			r := newRing(t, slots, 1<<16)
			cons, err := r.Subscribe(ring.ConsumerOptions{HeldLeaseTimeout: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			rd := NewReader(cons, WithZeroCopy())
			defer rd.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			wait := startSend(ctx, producer(t, r), s, cdata, false)
			defer func() { cancel(); wait() }() // before s is released
			var kept []arrow.RecordBatch
			got, stalls := 0, 0
			for {
				start := time.Now()
				if rd.NextContext(ctx) {
					rec := rd.RecordBatch()
					if got >= len(s.records) || !array.RecordEqual(rec, s.records[got]) {
						t.Fatalf("record %d differs or is one too many", got)
					}
					got++
					rec.Retain()
					kept = append(kept, rec)
					continue
				}
				err := rd.Err()
				if err == nil {
					break
				}
				if !errors.Is(err, ring.ErrRetentionStall) {
					t.Fatalf("after %d records: %v", got, err)
				}
				stalls++
				t.Logf("after %d records, %v: %v", got, time.Since(start), err)
				if stalls > len(s.records) || len(kept) == 0 {
					t.Fatalf("stalled with %d records kept", len(kept))
				}
				// The user drops the batches it kept; reading goes on.
				release(kept)
				kept = nil
			}
			if got != len(s.records) {
				t.Fatalf("%d records, want %d", got, len(s.records))
			}
			if err := wait(); err != nil {
				t.Fatal(err)
			}
			if stalls == 0 {
				t.Fatal("keeping every record never stalled the ring")
			}
			release(kept)
			if held := cons.LeasesHeld(); held != 0 {
				t.Fatalf("%d leases held at the end", held)
			}
		})
	}
}

// A Writer fed with records read in place from another ring (a relay)
// keeps copies of their dictionaries, not the records' slots: arrow-go's
// ipc.Writer keeps the last dictionary of each field, and in
// C-Data-offsets mode a dictionary read in place lives in its batch's slot.
func TestRelayKeepsNoSlotOfItsInput(t *testing.T) {
	for _, pattern := range []int{dictSame, dictReplace, dictDelta} {
		t.Run(patternNames[pattern], func(t *testing.T) {
			s := makeDictStream(9, 24, 30, pattern, true)
			defer s.release()
			in, out := newRing(t, 4, 1<<16), newRing(t, 4, 1<<16)
			cin, err := in.Subscribe(ring.ConsumerOptions{HeldLeaseTimeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			src := NewReader(cin, WithZeroCopy())
			defer src.Close()
			dst := NewReader(subscribe(t, out))
			defer dst.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			wait := startSend(ctx, producer(t, in), s, true, false)
			defer func() { cancel(); wait() }() // before s is released
			relayed := make(chan error, 1)
			go func() {
				w := NewWriter(producer(t, out), s.schema, WithDictionaryDeltas(pattern == dictDelta))
				for src.NextContext(ctx) {
					if err := w.WriteContext(ctx, src.RecordBatch()); err != nil {
						w.Close()
						relayed <- err
						return
					}
				}
				err := src.Err()
				if cerr := w.Close(); err == nil {
					err = cerr
				}
				relayed <- err
			}()
			n := 0
			for ; dst.NextContext(ctx); n++ {
				if err := sameRecords(s.records[n:n+1], []arrow.RecordBatch{dst.RecordBatch()}); err != nil {
					t.Fatalf("record %d: %v", n, err)
				}
			}
			if err := dst.Err(); err != nil {
				t.Fatal(err)
			}
			if err := <-relayed; err != nil {
				t.Fatalf("relay: %v", err)
			}
			if err := wait(); err != nil {
				t.Fatal(err)
			}
			if n != len(s.records) {
				t.Fatalf("%d records, want %d", n, len(s.records))
			}
		})
	}
}

// DictionaryCopier copies dictionaries at every depth, shares the other
// buffers, copies a dictionary seen in the previous record once, and
// passes records without dictionaries through.
func TestDictionaryCopier(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	c := NewDictionaryCopier(mem)
	s := makeDictStream(3, 3, 10, dictSame, true)
	defer s.release()
	var copies []arrow.RecordBatch
	for _, rec := range s.records {
		cp := c.Copy(rec)
		copies = append(copies, cp)
		if !array.RecordEqual(cp, rec) {
			t.Fatal("the copy differs")
		}
		top := cp.Column(1).Data()
		nested := cp.Column(2).Data().Children()[0]
		for _, d := range []arrow.ArrayData{top, nested} {
			dict := d.Dictionary().(*array.Data)
			src := rec.Column(1).Data().Dictionary()
			if &dict.Buffers()[2].Bytes()[0] == &src.Buffers()[2].Bytes()[0] {
				t.Fatal("a dictionary was not copied")
			}
		}
		if &top.Buffers()[1].Bytes()[0] != &rec.Column(1).Data().Buffers()[1].Bytes()[0] {
			t.Fatal("the keys were copied")
		}
	}
	// One shared source dictionary: the same copy in every record.
	if copies[0].Column(1).Data().Dictionary() != copies[2].Column(1).Data().Dictionary() {
		t.Fatal("an unchanged dictionary was copied again")
	}
	plain := makeDictStream(3, 1, 10, dictNone, true)
	defer plain.release()
	if cp := c.Copy(plain.records[0]); cp != plain.records[0] {
		t.Fatal("a record without dictionaries was rebuilt")
	} else {
		cp.Release()
	}
	release(copies)
	c.Release()
	if n := mem.CurrentAlloc(); n != 0 {
		t.Fatalf("%d bytes still allocated", n)
	}
}
