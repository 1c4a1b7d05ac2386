package arrowshm

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"pgregory.net/rapid"

	"github.com/ignalina/alloy/go/internal/testbin"
	"github.com/ignalina/alloy/go/ring"
)

// alloyBin is the Rust CLI built by `make build` (testbin.Need: a skip,
// or a failure under CI / ALLOY_REQUIRE_CROSS, when it is missing).
func alloyBin(t *testing.T) string {
	return testbin.Need(t, "ALLOY_RUST_BIN", "bin/alloy")
}

func namedRing(t tb) *ring.Ring {
	cfg := ring.DefaultConfig()
	cfg.SlotCount, cfg.SlotSize = 8, 1<<20
	name := fmt.Sprintf("arrowshm-x-%d-%d", os.Getpid(), time.Now().UnixNano())
	r, err := ring.Create(name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); ring.Remove(name) })
	return r
}

// randomCase draws a schema and a few records from seed.
func randomCase(seed uint64) []arrow.RecordBatch {
	r := rand.New(rand.NewPCG(seed, 7))
	kinds := make([]int, 1+r.IntN(8))
	for i := range kinds {
		kinds[i] = r.IntN(len(columnTypes))
	}
	nulls := r.IntN(3) > 0
	recs := make([]arrow.RecordBatch, 1+r.IntN(4))
	for i := range recs {
		recs[i] = randomRecord(memory.DefaultAllocator, seed*31+uint64(i), kinds, r.IntN(500), r.IntN(30), nulls)
	}
	return recs
}

// TestGoToRust sends random records with Writer to `alloy recv`, which
// decodes them zero-copy and writes an IPC stream file; Go compares it.
func TestGoToRust(t *testing.T) {
	bin := alloyBin(t)
	for seed := range uint64(12) {
		want := randomCase(seed)
		r := namedRing(t)
		out := filepath.Join(t.TempDir(), "out.arrows")
		cmd := exec.Command(bin, "recv", "--ring", r.Name(), "--out", out)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(stdout)
		if !lines.Scan() || lines.Text() != "ready" {
			cmd.Process.Kill()
			t.Fatalf("alloy recv did not say ready: %q %s", lines.Text(), stderr.String())
		}
		if err := <-sendAll(NewWriter(producer(t, r), want[0].Schema()), want); err != nil {
			t.Fatal(err)
		}
		lines.Scan()
		summary := lines.Text()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("seed %d: alloy recv: %v: %s", seed, err, stderr.String())
		}
		var rows int64
		for _, rec := range want {
			rows += rec.NumRows()
		}
		if !strings.Contains(summary, fmt.Sprintf(`"batches":%d,"rows":%d`, len(want), rows)) {
			t.Errorf("seed %d: summary %s", seed, summary)
		}
		got := readStream(t, out)
		if err := sameRecords(want, got); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		release(got)
		release(want)
	}
}

// writeStreamFile writes recs to path as an Arrow IPC stream (a stream,
// not a file: streams allow dictionary replacement).
func writeStreamFile(t interface{ Fatal(...any) }, path string, recs []arrow.RecordBatch) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sw := ipc.NewWriter(f, ipc.WithSchema(recs[0].Schema()))
	for _, rec := range recs {
		if err := sw.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.Close(); err != nil {
		t.Fatal(err)
	}
}

func readStream(t *testing.T, path string) []arrow.RecordBatch {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := ipc.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Release()
	var out []arrow.RecordBatch
	for rd.Next() {
		rec := rd.RecordBatch()
		rec.Retain()
		out = append(out, rec)
	}
	if err := rd.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRustToGo writes random records to an IPC stream file, has `alloy
// send` put them on the ring with the Rust IpcWriter, and reads them with
// Reader, in place or copied.
func TestRustToGo(t *testing.T) { checkRustToGo(t, "ipc") }

// checkRustToGo is the Rust → Go property test of one --mode: random
// records (rapid) go through an IPC stream file and `alloy send --mode`,
// and Reader must return them equal, with every record batch buffer inside
// the mapping when reading in place (dictionaries too in cdata mode; IPC
// mode's reader copies them by design).
func checkRustToGo(t *testing.T, mode string) {
	bin := alloyBin(t)
	rapid.Check(t, func(rt *rapid.T) {
		kinds := rapid.SliceOfN(rapid.IntRange(0, len(columnTypes)-1), 0, 6).Draw(rt, "kinds")
		nrec := rapid.IntRange(1, 3).Draw(rt, "records")
		nulls := rapid.Bool().Draw(rt, "nulls")
		zeroCopy := rapid.Bool().Draw(rt, "zeroCopy")
		want := make([]arrow.RecordBatch, nrec)
		for i := range want {
			want[i] = randomRecord(memory.DefaultAllocator, rapid.Uint64().Draw(rt, "seed"), kinds,
				rapid.IntRange(0, 400).Draw(rt, "rows"), rapid.IntRange(0, 30).Draw(rt, "offset"), nulls)
		}
		defer release(want)
		in := filepath.Join(t.TempDir(), "in.arrows")
		writeStreamFile(rt, in, want)
		r := namedRing(t)
		var opts []ReaderOption
		if zeroCopy {
			opts = append(opts, WithZeroCopy())
		}
		rd := NewReader(subscribe(rt, r), opts...)
		defer rd.Release()
		var out bytes.Buffer
		cmd := exec.Command(bin, "send", "--ring", r.Name(), "--mode", mode, in)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			rt.Fatal(err)
		}
		var got []arrow.RecordBatch
		for rd.Next() { // concurrently: the stream may not fit in the ring
			rec := rd.RecordBatch()
			for j, col := range rec.Columns() {
				inPlace := inRingAll(r, col.Data())
				if mode == "ipc" {
					inPlace = col.DataType().ID() == arrow.DICTIONARY || inRing(r, col.Data())
				}
				if zeroCopy && !inPlace {
					rt.Errorf("record %d column %d (%s) was copied", len(got), j, col.DataType())
				}
			}
			rec.Retain()
			got = append(got, rec)
		}
		defer release(got)
		if err := cmd.Wait(); err != nil {
			rt.Fatalf("alloy send --mode %s: %v: %s", mode, err, out.String())
		}
		if err := rd.Err(); err != nil {
			rt.Fatal(err)
		}
		if err := sameRecords(want, got); err != nil {
			rt.Fatal(err)
		}
	})
}
