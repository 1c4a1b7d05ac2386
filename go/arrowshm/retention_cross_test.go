package arrowshm

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/ignalina/alloy/go/ring"
)

// TestRetentionRustToGo is the retention property Rust → Go in both
// modes: dictionary streams (none, same, replacement, deltas; nulls) up to
// ten times longer than rings of 2–16 slots go through `alloy send` to a
// Reader that reads in place or copied and keeps a window of records; every
// run must end within a bound with the records equal and no lease left.
func TestRetentionRustToGo(t *testing.T) {
	bin := alloyBin(t)
	rnd := rand.New(rand.NewPCG(12, 1))
	for i := range 16 {
		c := retentionCase{
			slots:    []int{2, 4, 8, 16}[rnd.IntN(4)],
			pattern:  i % dictPatterns,
			nulls:    rnd.IntN(2) == 0,
			zeroCopy: rnd.IntN(3) > 0,
			cdata:    i/dictPatterns%2 == 1,
			seed:     rnd.Uint64(),
		}
		c.batches = 1 + rnd.IntN(10*c.slots)
		switch {
		case !c.zeroCopy:
			c.window = rnd.IntN(c.batches + 1)
		case c.cdata: // one message per record
			c.window = rnd.IntN(c.slots)
		}
		name := fmt.Sprintf("%d/%s/cdata=%v/slots=%d/batches=%d/inplace=%v/window=%d",
			i, patternNames[c.pattern], c.cdata, c.slots, c.batches, c.zeroCopy, c.window)
		t.Run(name, func(t *testing.T) { runRustToGo(t, bin, c) })
	}
}

func runRustToGo(t *testing.T, bin string, c retentionCase) {
	s := makeDictStream(c.seed, c.batches, 40, c.pattern, c.nulls)
	defer s.release()
	in := filepath.Join(t.TempDir(), "in.arrows")
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	fw := ipc.NewWriter(f, ipc.WithSchema(s.schema), ipc.WithDictionaryDeltas(c.pattern == dictDelta))
	for _, rec := range s.records {
		if err := fw.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	cfg := ring.DefaultConfig()
	cfg.SlotCount, cfg.SlotSize = uint32(c.slots), 1<<16
	name := fmt.Sprintf("arrowshm-ret-%d-%d", os.Getpid(), time.Now().UnixNano())
	r, err := ring.Create(name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { r.Close(); ring.Remove(name) }()
	cons, err := r.Subscribe(ring.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var opts []ReaderOption
	if c.zeroCopy {
		opts = append(opts, WithZeroCopy())
	}
	rd := NewReader(cons, opts...)
	defer rd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mode := "ipc"
	if c.cdata {
		mode = "cdata"
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "send", "--ring", name, "--mode", mode, in)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	var kept []arrow.RecordBatch
	defer func() { release(kept) }()
	n := 0
	for ; rd.NextContext(ctx); n++ {
		if n >= len(s.records) {
			t.Fatal("more records than sent")
		}
		if err := sameRecords(s.records[n:n+1], []arrow.RecordBatch{rd.RecordBatch()}); err != nil {
			t.Fatalf("record %d: %v", n, err)
		}
		if c.window > 0 {
			rec := rd.RecordBatch()
			rec.Retain()
			kept = append(kept, rec)
			if len(kept) > c.window {
				kept[0].Release()
				kept = kept[1:]
			}
		}
	}
	if err := rd.Err(); err != nil {
		t.Fatalf("after %d of %d records: %v (alloy send: %s)", n, len(s.records), err, out.String())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("alloy send --mode %s: %v: %s", mode, err, out.String())
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
