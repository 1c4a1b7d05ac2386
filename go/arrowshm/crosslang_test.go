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

	"github.com/ignalina/alloy/go/ring"
)

// alloyBin is the Rust CLI built by `make build`; the cross-language tests
// skip when it is missing.
func alloyBin(t *testing.T) string {
	p, err := filepath.Abs("../../bin/alloy")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s missing (run make build): %v", p, err)
	}
	return p
}

func namedRing(t *testing.T) *ring.Ring {
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

// TestRustToGo writes random records to an IPC stream file, has `alloy send` put
// them on the ring with the Rust IpcWriter, and reads them with Reader.
func TestRustToGo(t *testing.T) {
	bin := alloyBin(t)
	for seed := range uint64(12) {
		want := randomCase(100 + seed)
		in := filepath.Join(t.TempDir(), "in.arrows")
		writeStreamFile(t, in, want)
		r := namedRing(t)
		rd := NewReader(r, subscribe(t, r))
		var out bytes.Buffer
		cmd := exec.Command(bin, "send", "--ring", r.Name(), in)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		got, err := receiveAll(rd) // concurrently: the stream may not fit in the ring
		if werr := cmd.Wait(); werr != nil {
			t.Fatalf("seed %d: alloy send: %v: %s", seed, werr, out.String())
		}
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if err := sameRecords(want, got); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		release(got)
		release(want)
		rd.Release()
	}
}
