package crosstest

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ignalina/alloy/go/internal/testbin"
	"github.com/ignalina/alloy/go/ring"
)

// crossCount is the number of checked messages per cross-language run
// (sizes 16..4096).
const crossCount = 1_000_000

// rustBin is the Rust CLI: bin/alloy at the repository root, or
// $ALLOY_RUST_BIN (e.g. target/release/alloy during development).
var rustBin = testbin.Path("ALLOY_RUST_BIN", "bin/alloy")

// goBin is alloy-go, built once by TestMain without the race detector
// (testbin.BuildGoCLI).
var goBin string

func TestMain(m *testing.M) {
	bin, dir, err := testbin.BuildGoCLI()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	goBin = bin
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needRust ends the test (skip, or failure under CI / ALLOY_REQUIRE_CROSS)
// when the Rust CLI is not built.
func needRust(t testing.TB) {
	t.Helper()
	testbin.Need(t, "ALLOY_RUST_BIN", "bin/alloy")
}

// newRing creates a uniquely named ring of 256 slots × 4096 bytes and
// removes it when the test ends, whatever happens.
func newRing(t testing.TB) string {
	name := fmt.Sprintf("alloy-cross-%d-%s", os.Getpid(), t.Name())
	name = strings.ReplaceAll(name, "/", "_")
	r, err := ring.Create(name, ring.Config{SlotCount: 256, SlotSize: 4096, MaxSubscribers: 8, MaxMembers: 8, SchemaCapacity: 64})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	t.Cleanup(func() { ring.Remove(name) })
	return name
}

// openRing opens the named ring to watch it (Stat), closed when the test
// ends.
func openRing(t testing.TB, name string) *ring.Ring {
	t.Helper()
	r, err := ring.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// proc is one CLI process whose stdout is collected.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *bufio.Reader
	errb strings.Builder
}

func start(t testing.TB, ctx context.Context, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: filepath.Base(bin) + " " + strings.Join(args, " ")}
	p.cmd = exec.CommandContext(ctx, bin, args...)
	p.cmd.Stderr = &p.errb
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.out = bufio.NewReader(stdout)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	return p
}

// ready waits for a consumer's "ready" line, so it has joined before the
// producer starts and sees every message.
func (p *proc) ready(t testing.TB) {
	t.Helper()
	line, err := p.out.ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("%s: first line %q, %v; stderr: %s", p.name, line, err, p.errb.String())
	}
}

// result waits for the process and decodes its JSON summary line.
func (p *proc) result(t testing.TB) map[string]uint64 {
	t.Helper()
	rest, _ := io.ReadAll(p.out)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", p.name, err, rest, p.errb.String())
	}
	var m map[string]uint64
	if err := json.Unmarshal(rest, &m); err != nil {
		t.Fatalf("%s: summary %q: %v", p.name, rest, err)
	}
	return m
}

type side struct {
	bin  string
	lang string
}

func sides() (goSide, rustSide side) {
	return side{goBin, "go"}, side{rustBin, "rust"}
}

// run starts the consumers, waits until all joined, runs the producer and
// checks that every broadcast consumer got every byte and that the queue
// members' index files partition 0..count-1.
func run(t testing.TB, count uint64, producer side, broadcast []side, queue []side) {
	runOn(t, newRing(t), count, producer, broadcast, queue)
}

func runOn(t testing.TB, name string, count uint64, producer side, broadcast []side, queue []side) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var bps, qps []*proc
	var outs []string
	for _, s := range broadcast {
		bps = append(bps, start(t, ctx, s.bin, "test-consume", "--ring", name, "--broadcast"))
	}
	for i, s := range queue {
		out := filepath.Join(t.TempDir(), fmt.Sprintf("member%d-%s.idx", i, s.lang))
		outs = append(outs, out)
		qps = append(qps, start(t, ctx, s.bin, "test-consume", "--ring", name, "--queue", "7", "--out", out))
	}
	for _, p := range append(append([]*proc{}, bps...), qps...) {
		p.ready(t)
	}
	begin := time.Now()
	prod := start(t, ctx, producer.bin, "test-produce", "--ring", name, "--count", fmt.Sprint(count))
	sent := prod.result(t)
	if sent["sent"] != count {
		t.Fatalf("producer summary %v", sent)
	}
	for _, p := range bps {
		if got := p.result(t); got["received"] != count || got["bytes"] != sent["bytes"] {
			t.Errorf("%s: %v, want %d messages and %d bytes", p.name, got, count, sent["bytes"])
		}
	}
	var qbytes uint64
	for _, p := range qps {
		qbytes += p.result(t)["bytes"]
	}
	if len(qps) > 0 {
		if qbytes != sent["bytes"] {
			t.Errorf("queue members received %d bytes, %d were sent", qbytes, sent["bytes"])
		}
		checkPartition(t, count, outs)
	}
	t.Logf("%d messages, %d bytes in %v", count, sent["bytes"], time.Since(begin))
}

// checkPartition verifies the union of the members' index files is exactly
// 0..count-1 with no duplicate.
func checkPartition(t testing.TB, count uint64, files []string) {
	t.Helper()
	seen := make([]bool, count)
	total := uint64(0)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(b)%8 != 0 {
			t.Fatalf("%s: %d bytes is not a whole number of u64s", f, len(b))
		}
		for i := 0; i < len(b); i += 8 {
			j := binary.LittleEndian.Uint64(b[i:])
			if j >= count {
				t.Fatalf("%s: index %d out of range", f, j)
			}
			if seen[j] {
				t.Fatalf("message %d delivered twice", j)
			}
			seen[j] = true
			total++
		}
	}
	if total != count {
		t.Fatalf("queue members received %d distinct messages, want %d", total, count)
	}
}

func TestGoProducerRustBroadcast(t *testing.T) {
	g, r := sides()
	needRust(t)
	run(t, crossCount, g, []side{r, r}, nil)
}

func TestGoProducerRustQueue(t *testing.T) {
	g, r := sides()
	needRust(t)
	run(t, crossCount, g, nil, []side{r, r})
}

func TestRustProducerGoBroadcast(t *testing.T) {
	g, r := sides()
	needRust(t)
	run(t, crossCount, r, []side{g, g}, nil)
}

func TestRustProducerGoQueue(t *testing.T) {
	g, r := sides()
	needRust(t)
	run(t, crossCount, r, nil, []side{g, g})
}

// A Go and a Rust consumer on one ring at once both see every message, and
// a queue group with one member of each language splits the stream.
func TestMixedConsumers(t *testing.T) {
	g, r := sides()
	needRust(t)
	t.Run("broadcast", func(t *testing.T) { run(t, crossCount, r, []side{g, r}, nil) })
	t.Run("queue", func(t *testing.T) { run(t, crossCount, g, nil, []side{g, r}) })
}

// The checks can fail: a consumer expecting another seed must reject the
// first message with exit status 1, in both languages.
func TestConsumersRejectForeignMessages(t *testing.T) {
	g, r := sides()
	needRust(t)
	for _, pair := range [][2]side{{g, r}, {r, g}} {
		producer, consumer := pair[0], pair[1]
		t.Run(producer.lang+"-to-"+consumer.lang, func(t *testing.T) {
			needRust(t)
			name := newRing(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c := start(t, ctx, consumer.bin, "test-consume", "--ring", name, "--broadcast", "--seed", "1")
			c.ready(t)
			p := start(t, ctx, producer.bin, "test-produce", "--ring", name, "--count", "100", "--seed", "2")
			p.result(t)
			io.ReadAll(c.out)
			err := c.cmd.Wait()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("consumer with the wrong seed: %v, want exit status 1; stderr: %s", err, c.errb.String())
			}
		})
	}
}

// The Go CLI on its own, which needs no Rust build: create, a Go producer
// to Go broadcast and queue consumers in separate processes, rm.
func TestGoCLI(t *testing.T) {
	name := fmt.Sprintf("alloy-cross-%d-gocli", os.Getpid())
	create := exec.Command(goBin, "create", "--ring", name, "--slots", "16", "--slot-size", "4096")
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("create: %v: %s", err, out)
	}
	t.Cleanup(func() { ring.Remove(name) })
	r, err := ring.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	if l := r.Layout(); l.SlotCount != 16 || l.SlotSize != 4096 {
		t.Fatalf("created %+v", l.Config)
	}
	r.Close()

	g, _ := sides()
	runOn(t, name, 20000, g, []side{g}, []side{g, g})

	if out, err := exec.Command(goBin, "rm", "--ring", name).CombinedOutput(); err != nil {
		t.Fatalf("rm: %v: %s", err, out)
	}
	if _, err := os.Stat("/dev/shm/" + name); !os.IsNotExist(err) {
		t.Fatalf("ring still exists after rm: %v", err)
	}
}

// BenchmarkCLIThroughput streams b.N checked 4 KiB messages between the two
// CLIs, one consumer. The checked format's FNV-1a on both ends, not the
// ring, bounds this number; it is an end-to-end figure.
func BenchmarkCLIThroughput(b *testing.B) {
	needRust(b)
	g, r := sides()
	for _, pair := range [][2]side{{g, r}, {r, g}, {g, g}} {
		b.Run(pair[0].lang+"-to-"+pair[1].lang, func(b *testing.B) {
			b.SetBytes(4096)
			name := newRing(b)
			ctx := context.Background()
			c := start(b, ctx, pair[1].bin, "test-consume", "--ring", name, "--broadcast", "--min-size", "4096", "--max-size", "4096")
			c.ready(b)
			b.ResetTimer()
			p := start(b, ctx, pair[0].bin, "test-produce", "--ring", name, "--count", fmt.Sprint(b.N), "--min-size", "4096", "--max-size", "4096")
			p.result(b)
			if got := c.result(b); got["received"] != uint64(b.N) {
				b.Fatalf("received %v of %d", got, b.N)
			}
		})
	}
}
