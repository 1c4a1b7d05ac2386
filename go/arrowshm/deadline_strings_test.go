package arrowshm

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/ring"
)

// TestSchemaContext: the schema wait has a deadline, giving up leaves the
// Reader usable, and a schema published later is read.
func TestSchemaContext(t *testing.T) {
	r := newRing(t, 4, 1<<14)
	rd := NewReader(subscribe(t, r))
	defer rd.Close()

	// No producer ever attached: the deadline, not a hang.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	s, err := rd.SchemaContext(ctx)
	waited := time.Since(start)
	if s != nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("SchemaContext = %v, %v; want DeadlineExceeded", s, err)
	}
	if waited < 50*time.Millisecond || waited > 2*time.Second {
		t.Fatalf("gave up after %v, want about 50ms", waited)
	}
	if rd.Err() != nil {
		t.Fatalf("a timed-out schema wait ended the Reader: %v", rd.Err())
	}

	// A producer attached but silent: the same.
	rec := intRecord(t, 1, 2, 3)
	defer rec.Release()
	w := NewWriter(producer(t, r), rec.Schema())
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel2()
	if _, err := rd.SchemaContext(ctx2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("silent producer: %v", err)
	}

	// Published later: the Reader goes on.
	done := sendAll(w, []arrow.RecordBatch{rec})
	ctx3, cancel3 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel3()
	s, err = rd.SchemaContext(ctx3)
	if err != nil || !s.Equal(rec.Schema()) {
		t.Fatalf("SchemaContext = %v, %v", s, err)
	}
	got, err := receiveAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := sameRecords([]arrow.RecordBatch{rec}, got); err != nil {
		t.Fatal(err)
	}
	for _, g := range got {
		g.Release()
	}
}

func intRecord(t *testing.T, vs ...int64) arrow.RecordBatch {
	t.Helper()
	b := array.NewInt64Builder(memory.DefaultAllocator)
	defer b.Release()
	b.AppendValues(vs, nil)
	col := b.NewArray()
	defer col.Release()
	schema := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64}}, nil)
	return array.NewRecordBatch(schema, []arrow.Array{col}, int64(len(vs)))
}

// regionRecord is record k of the strings tests: a dictionary column
// "region" whose dictionary differs from record to record, a string column
// "name" and an int64 column "n", 8 rows.
func regionRecord(k int) arrow.RecordBatch {
	mem := memory.DefaultAllocator
	dt := &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}
	db := array.NewDictionaryBuilder(mem, dt).(*array.BinaryDictionaryBuilder)
	defer db.Release()
	words := []string{"apac", "eu", "us"}
	if k > 0 {
		// Same lengths, other bytes: what a reused slot shows.
		words = []string{fmt.Sprintf("w%03d", k), fmt.Sprintf("%02d", k%100), fmt.Sprintf("%02x", k%256)}
	}
	sb := array.NewStringBuilder(mem)
	defer sb.Release()
	nb := array.NewInt64Builder(mem)
	defer nb.Release()
	for i := range 8 {
		db.AppendString(words[i%3])
		sb.Append(fmt.Sprintf("name-%03d-%d", k, i))
		nb.Append(int64(k*8 + i))
	}
	cols := []arrow.Array{db.NewArray(), sb.NewArray(), nb.NewArray()}
	defer func() {
		for _, c := range cols {
			c.Release()
		}
	}()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "region", Type: dt, Nullable: true},
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "n", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	}, nil)
	return array.NewRecordBatch(schema, cols, 8)
}

// inMapping reports whether s's bytes lie in r's shared memory.
func inMapping(r *ring.Ring, s string) bool {
	return len(s) > 0 && r.Contains(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// TestCopiedStrings is issue #19's reproduction: a map keyed by the
// strings of the first record (dictionary values and a string column) must
// keep its keys after the record is released and its slot is reused 10
// times over. With WithZeroCopy the strings are views of the slot (the
// documented hazard); WithCopiedStrings copies them and still reads the
// numbers in place. Both IPC and C-Data-offsets mode.
func TestCopiedStrings(t *testing.T) {
	for _, mode := range []string{"ipc", "cdata"} {
		for _, copied := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/copied=%v", mode, copied), func(t *testing.T) {
				testStrings(t, mode, copied)
			})
		}
	}
}

func testStrings(t *testing.T, mode string, copied bool) {
	const n = 40
	r := newRing(t, 4, 1<<14)
	opt := WithZeroCopy()
	if copied {
		opt = WithCopiedStrings()
	}
	rd := NewReader(subscribe(t, r), opt)
	defer rd.Close()
	recs := make([]arrow.RecordBatch, n)
	for k := range recs {
		recs[k] = regionRecord(k)
		defer recs[k].Release()
	}
	done := make(chan error, 1)
	p := producer(t, r)
	go func() {
		var write func(arrow.RecordBatch) error
		var closeW func() error
		if mode == "ipc" {
			w := NewWriter(p, recs[0].Schema())
			write, closeW = w.Write, w.Close
		} else {
			w, err := NewCDataWriter(p, recs[0].Schema())
			if err != nil {
				p.Close()
				done <- err
				return
			}
			write, closeW = w.Write, w.Close
		}
		for _, rec := range recs {
			if err := write(rec); err != nil {
				closeW()
				done <- err
				return
			}
		}
		done <- closeW()
	}()

	if !rd.Next() {
		t.Fatalf("no first record: %v", rd.Err())
	}
	first := rd.RecordBatch()
	regions := first.Column(0).(*array.Dictionary)
	dict := regions.Dictionary().(*array.String)
	names := first.Column(1).(*array.String)
	nums := first.Column(2).(*array.Int64)
	byRegion := map[string]int{}
	byName := map[string]int{}
	for i := range int(first.NumRows()) {
		byRegion[dict.Value(regions.GetValueIndex(i))]++
		byName[names.Value(i)]++
	}
	// Where the bytes are: numbers in place in both modes; strings in
	// place unless copied.
	if !r.Contains(unsafe.Slice((*byte)(unsafe.Pointer(&nums.Int64Values()[0])), 8)) {
		t.Fatal("the int64 column was copied")
	}
	if got := inMapping(r, names.Value(0)); got == copied {
		t.Fatalf("copied=%v but the string column in the mapping: %v", copied, got)
	}
	if copied && inMapping(r, dict.Value(0)) {
		t.Fatal("a dictionary value lies in the mapping under WithCopiedStrings")
	}
	// Release the first record and read the rest: the producer reuses its
	// slot about n/4 times.
	rest := 0
	for rd.Next() {
		rest++
	}
	if err := rd.Err(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if rest != n-1 {
		t.Fatalf("read %d more records, want %d", rest, n-1)
	}
	if !copied {
		return // the keys are views of a reused slot: see WithZeroCopy
	}
	if got := sortedKeys(byRegion); fmt.Sprint(got) != "[apac eu us]" {
		t.Fatalf("dictionary keys changed after release: %v", got)
	}
	want := make([]string, 8)
	for i := range want {
		want[i] = fmt.Sprintf("name-000-%d", i)
	}
	if got := sortedKeys(byName); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("string keys changed after release: %v", got)
	}
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
