package arrowshm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/ring"
)

// TestKilledRustConsumerFailsTheGoProducer is issue #19's scenario: a Go
// producer streams 2,000 batches to a Rust consumer (`alloy recv`) that is
// SIGKILLed mid-stream. Built with RequireConsumers, the producer's Write
// fails with ErrNoConsumers soon after the death instead of publishing the
// rest into the void and reporting success. A producer without the option
// still publishes everything, but ConsumersLost shows the death.
func TestKilledRustConsumerFailsTheGoProducer(t *testing.T) {
	bin := alloyBin(t)
	for _, require := range []bool{true, false} {
		t.Run(fmt.Sprintf("require=%v", require), func(t *testing.T) {
			cfg := ring.DefaultConfig()
			cfg.SlotCount, cfg.SlotSize = 16, 64<<10
			name := fmt.Sprintf("arrowshm-kill-%d-%d", os.Getpid(), time.Now().UnixNano())
			r, err := ring.Create(name, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close(); ring.Remove(name) })
			cmd := exec.Command(bin, "recv", "--ring", name, "--out", filepath.Join(t.TempDir(), "out.arrows"))
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			if lines := bufio.NewScanner(stdout); !lines.Scan() || lines.Text() != "ready" {
				t.Fatalf("alloy recv did not say ready: %q", lines.Text())
			}
			p, err := r.NewProducer(ring.ProducerOptions{
				Backpressure:     ring.Backpressure{Kind: ring.Block, Timeout: 10 * time.Second},
				ReclaimAfter:     100 * time.Millisecond,
				RequireConsumers: require,
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := p.WaitForConsumers(ctx, 1); err != nil {
				t.Fatal(err)
			}
			schema := arrow.NewSchema([]arrow.Field{{Name: "n", Type: arrow.PrimitiveTypes.Int64}}, nil)
			b := array.NewInt64Builder(memory.DefaultAllocator)
			defer b.Release()
			w := NewWriter(p, schema)
			var killed time.Time
			sent, total := 0, 2000
			for i := range total {
				if i == 500 {
					if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
					cmd.Wait()
					killed = time.Now()
				}
				for j := range 100 {
					b.Append(int64(i*100 + j))
				}
				col := b.NewArray()
				rec := array.NewRecordBatch(schema, []arrow.Array{col}, 100)
				err := w.Write(rec)
				rec.Release()
				col.Release()
				if err != nil {
					if !require || !errors.Is(err, ring.ErrNoConsumers) {
						t.Fatalf("batch %d: %v", i, err)
					}
					t.Logf("Write failed %v after the kill, at batch %d: %v", time.Since(killed), i, err)
					break
				}
				sent++
			}
			if require {
				if sent == total || time.Since(killed) > 5*time.Second {
					t.Fatalf("sent %d of %d batches, %v after the kill", sent, total, time.Since(killed))
				}
				return
			}
			// Without RequireConsumers the rest goes into the void; the death
			// is still counted once a reclaim ran (the ring fills within 16
			// batches and the producer blocks ReclaimAfter).
			if sent != total || p.ConsumersLost() != 1 {
				t.Fatalf("sent %d, lost %d", sent, p.ConsumersLost())
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
