package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/ring"
)

// dictRecords is the issue #12 reproduction's stream: n batches of 100 rows
// of a dictionary-encoded string column and an int64 column; the batches
// share one dictionary (as pyarrow's dictionary_encode then to_batches
// gives), or each has its own (replace).
func dictRecords(n int, replace bool) []arrow.RecordBatch {
	mem := memory.DefaultAllocator
	dt := &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "s", Type: dt, Nullable: true},
		{Name: "i", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	}, nil)
	dictionary := func(batch int) arrow.Array {
		b := array.NewStringBuilder(mem)
		defer b.Release()
		for j := range 7 {
			b.Append(fmt.Sprintf("value %d of %d", j, batch))
		}
		return b.NewArray()
	}
	shared := dictionary(-1)
	defer shared.Release()
	var out []arrow.RecordBatch
	for i := range n {
		kb := array.NewInt32Builder(mem)
		ib := array.NewInt64Builder(mem)
		for j := range 100 {
			if j%13 == 0 {
				kb.AppendNull()
			} else {
				kb.Append(int32((i + j) % 7))
			}
			ib.Append(int64(i*100 + j))
		}
		keys, ints := kb.NewArray(), ib.NewArray()
		kb.Release()
		ib.Release()
		dict := shared
		if replace {
			dict = dictionary(i)
		} else {
			dict.Retain()
		}
		col := array.NewDictionaryArray(dt, keys, dict)
		out = append(out, array.NewRecordBatch(schema, []arrow.Array{col, ints}, 100))
		for _, a := range []arrow.Array{keys, ints, dict, col} {
			a.Release()
		}
	}
	return out
}

// Issue #12's reproduction, Go → Go through the CLI: alloy-go recv (which
// reads in place and writes an IPC stream file) of a dictionary stream
// three times longer than the ring, sent by alloy-go send in both modes.
// recv's ipc.Writer keeps the last dictionary it wrote; before the fix it
// kept the first batch's slot in C-Data-offsets mode and both commands hung.
func TestRecvKeepsNoSlot(t *testing.T) {
	for _, mode := range []string{"ipc", "cdata"} {
		for _, replace := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/replace=%v", mode, replace), func(t *testing.T) {
				recs := dictRecords(30, replace)
				defer func() {
					for _, r := range recs {
						r.Release()
					}
				}()
				dir := t.TempDir()
				in, out := filepath.Join(dir, "in.arrows"), filepath.Join(dir, "out.arrows")
				f, err := os.Create(in)
				if err != nil {
					t.Fatal(err)
				}
				w := ipc.NewWriter(f, ipc.WithSchema(recs[0].Schema()))
				for _, r := range recs {
					if err := w.Write(r); err != nil {
						t.Fatal(err)
					}
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				f.Close()
				name := fmt.Sprintf("alloy-go-retention-%d-%d", os.Getpid(), time.Now().UnixNano())
				cfg := ring.DefaultConfig()
				cfg.SlotCount, cfg.SlotSize = 8, 1<<20
				r, err := ring.Create(name, cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { r.Close(); ring.Remove(name) }()
				recvDone := make(chan error, 1)
				go func() { recvDone <- recv([]string{"--ring", name, "--out", out}) }()
				for deadline := time.Now().Add(5 * time.Second); len(r.Stat().Consumers) == 0; {
					if time.Now().After(deadline) {
						t.Fatal("recv did not subscribe")
					}
					time.Sleep(5 * time.Millisecond)
				}
				sendDone := make(chan error, 1)
				go func() { sendDone <- send([]string{"--ring", name, "--mode", mode, in}) }()
				timeout := time.After(20 * time.Second)
				for range 2 {
					select {
					case err := <-sendDone:
						if err != nil {
							t.Fatalf("send: %v", err)
						}
					case err := <-recvDone:
						if err != nil {
							t.Fatalf("recv: %v", err)
						}
					case <-timeout:
						t.Fatalf("hung: %+v", r.Stat())
					}
				}
				f, err = os.Open(out)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				rd, err := ipc.NewReader(f)
				if err != nil {
					t.Fatal(err)
				}
				defer rd.Release()
				n := 0
				for ; rd.Next(); n++ {
					if n >= len(recs) || !array.RecordEqual(rd.RecordBatch(), recs[n]) {
						t.Fatalf("record %d differs (or is one too many)", n)
					}
				}
				if rd.Err() != nil || n != len(recs) {
					t.Fatalf("%d records, want %d: %v", n, len(recs), rd.Err())
				}
			})
		}
	}
}
