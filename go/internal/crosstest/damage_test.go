package crosstest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/arrowshm"
	"github.com/ignalina/alloy/go/internal/ipcframe"
	"github.com/ignalina/alloy/go/ring"
)

// The reproduction, in IPC mode: random bytes are written into a
// slot while `alloy-go recv` waits on the ring. It must refuse the message
// (exit 1, one line naming the slot and sequence), not write a file that
// pyarrow's full validation rejects.
func TestGoRecvRefusesRandomBytesInASlot(t *testing.T) {
	for _, c := range []struct {
		name string
		// damage overwrites part of a record batch message with random
		// bytes.
		damage func(msg []byte, r *rand.Rand)
	}{
		{"body", func(msg []byte, r *rand.Rand) {
			metaLen := binary.LittleEndian.Uint32(msg[4:])
			info, err := ipcframe.Parse(msg[8 : 8+metaLen])
			if err != nil {
				t.Fatal(err)
			}
			fill(msg[8+int64(metaLen):8+int64(metaLen)+info.BodyLen], r)
		}},
		{"whole slot", func(msg []byte, r *rand.Rand) { fill(msg, r) }},
	} {
		for seed := range uint64(3) {
			t.Run(fmt.Sprintf("%s/%d", c.name, seed), func(t *testing.T) {
				name := fmt.Sprintf("alloy-damage-%d-%d", os.Getpid(), time.Now().UnixNano())
				r, err := ring.Create(name, ring.Config{SlotCount: 8, SlotSize: 1 << 16, MaxSubscribers: 4, MaxMembers: 4, SchemaCapacity: 4096})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { r.Close(); ring.Remove(name) })
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				out := filepath.Join(t.TempDir(), "out.arrows")
				rx := start(t, ctx, goBin, "recv", "--ring", name, "--out", out)
				rx.ready(t)
				p, err := r.NewProducer(ring.ProducerOptions{})
				if err != nil {
					t.Fatal(err)
				}
				rec := stringRecord(200)
				defer rec.Release()
				schema, batch := encode(t, rec)
				if err := p.Send(schema, arrowshm.FlagIPCSchema); err != nil {
					t.Fatal(err)
				}
				c.damage(batch, rand.New(rand.NewPCG(seed, 9)))
				if err := p.Send(batch, arrowshm.FlagIPCRecordBatch); err != nil {
					t.Fatal(err)
				}
				p.Close()
				io.ReadAll(rx.out)
				err = rx.cmd.Wait()
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != 1 {
					t.Fatalf("alloy-go recv: %v, want exit status 1; stderr: %s", err, rx.errb.String())
				}
				lines := strings.Split(strings.TrimSpace(rx.errb.String()), "\n")
				if len(lines) != 1 || !strings.Contains(lines[0], "slot 1 (sequence 1)") || !strings.Contains(lines[0], "corrupt") {
					t.Fatalf("stderr is not one line naming slot 1 (sequence 1) and the corruption:\n%s", rx.errb.String())
				}
			})
		}
	}
}

func fill(b []byte, r *rand.Rand) {
	for i := range b {
		b[i] = byte(r.Uint32())
	}
}

// stringRecord has a string and a list column of n rows: random bytes in
// their offsets are (all but certainly) out of range or decreasing.
func stringRecord(n int) arrow.RecordBatch {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "s", Type: arrow.BinaryTypes.String},
		{Name: "l", Type: arrow.ListOf(arrow.PrimitiveTypes.Int64)},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for i := range n {
		b.Field(0).(*array.StringBuilder).Append(strings.Repeat("x", i%7))
		lb := b.Field(1).(*array.ListBuilder)
		lb.Append(true)
		for j := range i % 3 {
			lb.ValueBuilder().(*array.Int64Builder).Append(int64(j))
		}
	}
	return b.NewRecordBatch()
}

// encode returns the schema and record batch messages an arrowshm.Writer
// publishes for rec.
func encode(t *testing.T, rec arrow.RecordBatch) (schema, batch []byte) {
	r, err := ring.CreateAnonymous("damage-encode", ring.Config{SlotCount: 4, SlotSize: 1 << 16, MaxSubscribers: 1, MaxMembers: 1, SchemaCapacity: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, err := r.Subscribe(ring.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := r.NewProducer(ring.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := arrowshm.NewWriter(p, rec.Schema())
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var msgs [][]byte
	for {
		l, err := c.Recv()
		if err != nil {
			break
		}
		msgs = append(msgs, append([]byte(nil), l.Bytes()...))
		l.Release()
	}
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want a schema and a record batch", len(msgs))
	}
	return msgs[0], msgs[1]
}
