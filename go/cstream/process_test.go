//go:build cgo && linux

package cstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"golang.org/x/sys/unix"

	"github.com/ignalina/alloy/go/arrowshm"
	"github.com/ignalina/alloy/go/internal/testbin"
	"github.com/ignalina/alloy/go/ring"
)

// The seed and count of the batches the child producer sends.
const childSeed, childBatches = 21, 3

// TestChildProducer is the producer TestExportProducerKilled kills: run
// in a child with the ring as fd 3 (CSTREAM_CHILD set), it sends its
// batches, says "sent" and waits to be killed.
func TestChildProducer(t *testing.T) {
	if os.Getenv("CSTREAM_CHILD") == "" {
		t.Skip("the child of TestExportProducerKilled")
	}
	fd, err := ring.FdFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	r, err := ring.OpenFd(fd)
	if err != nil {
		t.Fatal(err)
	}
	recs := makeBatches(childSeed, childBatches, 50)
	w := arrowshm.NewWriter(producer(t, r), schema)
	for _, rec := range recs {
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Println("sent")
	time.Sleep(time.Minute) // never ends the stream: the parent kills us
}

// A producer killed mid-stream: the batches it published come through the
// exported stream, then get_next fails with EIO and get_last_error names
// the dead producer (ring.ErrProducerGone).
func TestExportProducerKilled(t *testing.T) {
	r := newRing(t, 16, 1<<18)
	rd := arrowshm.NewReader(subscribe(t, r, ring.ConsumerOptions{}), arrowshm.WithZeroCopy())
	dup, err := unix.FcntlInt(uintptr(r.Fd()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	region := os.NewFile(uintptr(dup), "region")
	defer region.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildProducer$", "-test.count=1")
	cmd.ExtraFiles = []*os.File{region} // fd 3 in the child
	cmd.Env = append(os.Environ(), "ALLOY_FD=3", "CSTREAM_CHILD=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "sent" {
		t.Fatalf("the child did not send: %q %s", lines.Text(), stderr.String())
	}
	rr := importStream(t, rd, Options{Timeout: 30 * time.Second})
	want := makeBatches(childSeed, childBatches, 50)
	defer release(want)
	for i := range want {
		if !rr.Next() {
			t.Fatalf("batch %d: %v", i, rr.Err())
		}
		if !array.RecordEqual(rr.RecordBatch(), want[i]) {
			t.Fatalf("batch %d differs", i)
		}
	}
	pid := cmd.Process.Pid
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	start := time.Now()
	if rr.Next() {
		t.Fatal("a batch after the producer was killed")
	}
	err = rr.Err()
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), ring.ErrProducerGone.Error()) ||
		!strings.Contains(err.Error(), fmt.Sprint(pid)) {
		t.Fatalf("get_next after the producer's death: %v, want EIO naming the dead producer %d", err, pid)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the dead producer was noticed after %v", d)
	}
}

// A ring written by the Rust CLI (`alloy send`, arrow-rs's IpcWriter or
// CDataWriter) read through the exported stream: the batches equal the
// IPC stream file it sent, and in place they lie inside the mapping.
func TestExportAlloySend(t *testing.T) {
	bin := testbin.Need(t, "ALLOY_RUST_BIN", "bin/alloy")
	want := makeBatches(23, 20, 300)
	defer release(want)
	in := filepath.Join(t.TempDir(), "in.arrows")
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	sw := ipc.NewWriter(f, ipc.WithSchema(schema))
	for _, rec := range want {
		if err := sw.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(sw.Close(), f.Close()); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"ipc", "cdata"} {
		t.Run(mode, func(t *testing.T) {
			cfg := ring.DefaultConfig()
			cfg.SlotCount, cfg.SlotSize = 8, 1<<18
			name := fmt.Sprintf("cstream-x-%d-%d", os.Getpid(), time.Now().UnixNano())
			r, err := ring.Create(name, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close(); ring.Remove(name) })
			rd := arrowshm.NewReader(subscribe(t, r, ring.ConsumerOptions{}), arrowshm.WithZeroCopy())
			var out bytes.Buffer
			cmd := exec.Command(bin, "send", "--ring", name, "--mode", mode, in)
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			rr := importStream(t, rd, Options{Timeout: time.Minute})
			i := 0
			for ; rr.Next(); i++ { // concurrently: the stream does not fit in the ring
				rec := rr.RecordBatch()
				if i >= len(want) || !array.RecordEqual(rec, want[i]) {
					t.Fatalf("batch %d differs or is one too many", i)
				}
				for j, col := range rec.Columns() {
					if !inRing(r, col.Data(), mode == "cdata") {
						t.Fatalf("batch %d column %d (%s) was copied", i, j, col.DataType())
					}
				}
			}
			if err := rr.Err(); err != nil {
				t.Fatal(err)
			}
			if i != len(want) {
				t.Fatalf("%d batches, want %d", i, len(want))
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("alloy send --mode %s: %v: %s", mode, err, out.String())
			}
		})
	}
}
