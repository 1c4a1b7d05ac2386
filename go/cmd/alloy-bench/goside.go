package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
	_ "unsafe" // for go:linkname

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/ignalina/alloy/go/ring"
	"golang.org/x/sys/unix"
)

// nanotime is the runtime's vDSO CLOCK_MONOTONIC reading, the clock the
// Rust side stamps with (alloy_shm::ring::monotonic_ns). The runtime keeps
// this linkname for outside packages; checkClock verifies the two agree.
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64

// checkClock fails when nanotime is not CLOCK_MONOTONIC.
func checkClock() error {
	var ts unix.Timespec
	a := nanotime()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return err
	}
	b := nanotime()
	m := ts.Nano()
	if m < a || m > b {
		return fmt.Errorf("runtime.nanotime is not CLOCK_MONOTONIC (%d not in [%d, %d])", m, a, b)
	}
	return nil
}

var ringSeq int

// newRing creates a uniquely named ring; the caller removes it with done.
func newRing(slots, size uint32, consumers int) (string, *ring.Ring, func(), error) {
	ringSeq++
	name := fmt.Sprintf("alloy-bench-go-%d-%d", os.Getpid(), ringSeq)
	ring.Remove(name)
	n := uint32(consumers + 1)
	r, err := ring.Create(name, ring.Config{SlotCount: slots, SlotSize: slotSize(size), MaxSubscribers: n, MaxMembers: n, SchemaCapacity: 64})
	if err != nil {
		return "", nil, nil, err
	}
	return name, r, func() { r.Close(); ring.Remove(name) }, nil
}

func slotSize(size uint32) uint32 { return max(64, (size+63)/64*64) }

// streamSlots mirrors the helper: about 32 MiB of buffering, 4..1024 slots.
func streamSlots(size int64) uint32 {
	n := max(4, min(1024, (32<<20)/size))
	p := uint32(1)
	for int64(p) < n {
		p <<= 1
	}
	return p
}

// wordSum is the wrapping sum of b's little-endian u64 words (the sinks'
// checksum; a trailing partial word is ignored, as by the sinks).
func wordSum(b []byte) uint64 {
	var s uint64
	for i := 0; i+8 <= len(b); i += 8 {
		s += binary.LittleEndian.Uint64(b[i:])
	}
	return s
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func spinArg(busy bool) []string {
	if busy {
		return []string{"--spin"}
	}
	return nil
}

func modeName(busy bool) string {
	if busy {
		return "busy"
	}
	return "blocking"
}

// shmGoLatency: Go producer → Rust lat-consumer process, acknowledged on a
// second ring that Go reads with the same wait strategy. A pause > 0 sleeps
// that long before each message (outside the timed span) so the blocking
// consumer has parked: mode "parked", with the consumer's parked_fraction.
func shmGoLatency(helper string, size int64, iters int, busy bool, pause time.Duration) (Result, error) {
	size = max(size, 8)
	dataName, data, doneData, err := newRing(4, uint32(size), 1)
	if err != nil {
		return Result{}, err
	}
	defer doneData()
	ackName, ack, doneAck, err := newRing(4, 64, 1)
	if err != nil {
		return Result{}, err
	}
	defer doneAck()
	wait := ring.Blocking
	if busy {
		wait = ring.Spin
	}
	back, err := ack.Subscribe(ring.ConsumerOptions{Wait: wait})
	if err != nil {
		return Result{}, err
	}
	defer back.Close()
	args := append([]string{helper, "lat-consumer", "--ring", dataName, "--ack", ackName}, spinArg(busy)...)
	if pause > 0 {
		args = append(args, "--count-parks")
	}
	p, err := startPeer(true, args...)
	if err != nil {
		return Result{}, err
	}
	prod, err := data.NewProducer(ring.ProducerOptions{Wait: wait})
	if err != nil {
		p.kill()
		return Result{}, err
	}
	src := pattern(int(size))
	warm := max(8, iters/10) // not recorded: first-touch page faults, cold caches
	for i := 0; i < iters+warm; i++ {
		if pause > 0 {
			time.Sleep(pause)
		}
		t0 := nanotime()
		buf, err := prod.Reserve(int(size))
		if err != nil {
			p.kill()
			return Result{}, err
		}
		copy(buf, src)
		binary.LittleEndian.PutUint64(buf, uint64(t0))
		var flags uint32
		if i < warm {
			flags = 1
		}
		if err := prod.Publish(int(size), flags); err != nil {
			p.kill()
			return Result{}, err
		}
		l, err := back.Recv()
		if err != nil || l == nil {
			p.kill()
			return Result{}, fmt.Errorf("ack: %v", err)
		}
		l.Release()
	}
	prod.Close()
	var r Result
	if err := p.finish(&r); err != nil {
		return Result{}, err
	}
	r.Transport, r.Mode, r.Kind, r.PayloadBytes, r.Consumers = "shm-go", modeName(busy), "latency", size, 1
	if pause > 0 {
		r.Mode = "parked"
	}
	return r, nil
}

// shmGoStream: Go producer copying each message into its slot → consumers
// Rust sink processes (broadcast subscribers, or one work-queue group).
// Throughput is published bytes over the time until the last consumer has
// read its last message. wrap prefixes each sink's command (strace).
func shmGoStream(helper string, size, total int64, consumers int, queue, busy bool, wrap []string) (Result, error) {
	if size < 8 {
		return Result{}, fmt.Errorf("size %d: a message holds at least its 8-byte index", size)
	}
	name, rg, done, err := newRing(streamSlots(size), uint32(size), consumers)
	if err != nil {
		return Result{}, err
	}
	defer done()
	args := append(append([]string{}, wrap...), helper, "sink", "--ring", name)
	if queue {
		args = append(args, "--queue")
	}
	args = append(args, spinArg(busy)...)
	var peers []*peer
	defer func() {
		for _, p := range peers {
			p.kill()
		}
	}()
	for range consumers {
		p, err := startPeer(true, args...)
		if err != nil {
			return Result{}, err
		}
		peers = append(peers, p)
	}
	// Busy mode: the producer spins for space too (no futex system calls).
	pwait := ring.Blocking
	if busy {
		pwait = ring.Spin
	}
	prod, err := rg.NewProducer(ring.ProducerOptions{Wait: pwait})
	if err != nil {
		return Result{}, err
	}
	src := pattern(int(size))
	count := max(1, total/size)
	t0 := nanotime()
	for i := range count {
		buf, err := prod.Reserve(int(size))
		if err != nil {
			return Result{}, err
		}
		copy(buf, src)
		// The message's index in its first word: every message differs,
		// so a sink that read a stale or torn slot gets a different sum.
		binary.LittleEndian.PutUint64(buf, uint64(i))
		if err := prod.Publish(int(size), 0); err != nil {
			return Result{}, err
		}
	}
	prod.Close()
	var got, last int64
	var sum uint64
	for _, p := range peers {
		var s struct {
			sinkResult
			Sum uint64 `json:"sum"`
		}
		if err := p.finish(&s); err != nil {
			return Result{}, err
		}
		got += s.Messages
		sum += s.Sum
		last = max(last, s.LastNS)
	}
	peers = nil
	want := count * int64(consumers)
	if queue {
		want = count
	}
	if got != want {
		return Result{}, fmt.Errorf("sinks saw %d messages, want %d", got, want)
	}
	// Each sink sums the u64 words of every message it read (wrapping): the
	// pattern's words after the first plus the message's index, for each
	// message (a broadcast's consumers read them all, a queue's members
	// split them).
	c := uint64(count)
	if w := (wordSum(src[8:])*c + c*(c-1)/2) * uint64(want/count); sum != w {
		return Result{}, fmt.Errorf("sinks' sum %d, want %d", sum, w)
	}
	kind := "throughput"
	if queue {
		kind = "queue"
	}
	r := Result{Transport: "shm-go", Mode: modeName(busy), Kind: kind, PayloadBytes: size, Consumers: consumers, Messages: count}
	setThroughput(&r, count*size, last-t0)
	return r, nil
}

// int64Record is a one-column Int64 record with size bytes of values.
func int64Record(size int64) arrow.RecordBatch {
	n := int(max(1, size/8))
	bld := array.NewInt64Builder(memory.NewGoAllocator())
	defer bld.Release()
	bld.Reserve(n)
	for i := 0; i < n; i++ {
		bld.UnsafeAppend(int64(i))
	}
	col := bld.NewArray()
	defer col.Release()
	schema := arrow.NewSchema([]arrow.Field{{Name: "v", Type: arrow.PrimitiveTypes.Int64}}, nil)
	return array.NewRecordBatch(schema, []arrow.Array{col}, int64(n))
}

// udsBuf is the socket and stream buffer size for batches of size bytes:
// the batch and its IPC framing fit in one buffer, so one batch is one
// write(2) (a competent user's settings; SO_SNDBUF/SO_RCVBUF are capped by
// net.core.wmem_max/rmem_max).
func udsBuf(size int64) int { return int(max(64*kib, size+64*kib)) }

// udsConn starts the helper's uds-sink and connects to it, with socket
// buffers of buf bytes on both ends.
func udsConn(helper string, ack bool, buf int, wrap []string) (*peer, *net.UnixConn, error) {
	dir, err := os.MkdirTemp("", "alloy-bench")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s")
	args := append(append([]string{}, wrap...), helper, "uds-sink", "--socket", sock, "--buf", strconv.Itoa(buf))
	if ack {
		args = append(args, "--ack")
	}
	p, err := startPeer(true, args...)
	if err != nil {
		return nil, nil, err
	}
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err == nil {
		err = c.SetWriteBuffer(buf)
	}
	if err == nil {
		err = c.SetReadBuffer(buf)
	}
	if err != nil {
		p.kill()
		return nil, nil, err
	}
	return p, c, nil
}

// udsWriter is arrow-go's IPC stream writer over a buffered socket, flushed
// after every batch.
type udsWriter struct {
	bw *bufio.Writer
	w  *ipc.Writer
}

func newUDSWriter(c *net.UnixConn, schema *arrow.Schema, buf int) *udsWriter {
	bw := bufio.NewWriterSize(c, buf)
	return &udsWriter{bw, ipc.NewWriter(bw, ipc.WithSchema(schema))}
}

func (u *udsWriter) write(rec arrow.RecordBatch) error {
	if err := u.w.Write(rec); err != nil {
		return err
	}
	return u.bw.Flush()
}

func (u *udsWriter) close() error {
	if err := u.w.Close(); err != nil {
		return err
	}
	return u.bw.Flush()
}

// udsLatency: Go writes one Arrow IPC record batch (value 0 = send stamp)
// to the socket; the Rust StreamReader decodes it, records the latency and
// answers 8 bytes, which Go waits for before the next batch.
func udsLatency(helper string, size int64, iters int) (Result, error) {
	size = max(size, 8)
	rec := int64Record(size)
	defer rec.Release()
	r, err := udsLatencyOf(helper, rec, size, iters)
	r.Kind, r.PayloadBytes = "latency", size
	return r, err
}

// udsLatencyOf measures rec (int64 column 0 carries the stamp) over the
// socket, with buffers sized for size bytes.
func udsLatencyOf(helper string, rec arrow.RecordBatch, size int64, iters int) (Result, error) {
	vals := rec.Column(0).(*array.Int64).Int64Values()
	buf := udsBuf(size)
	p, c, err := udsConn(helper, true, buf, nil)
	if err != nil {
		return Result{}, err
	}
	defer c.Close()
	w := newUDSWriter(c, rec.Schema(), buf)
	warm := max(8, iters/10) // not recorded: first-touch page faults, cold caches
	var ackb [8]byte
	for i := 0; i < iters+warm; i++ {
		t0 := nanotime()
		vals[0] = t0
		if i < warm {
			vals[0] = -1
		}
		if err := w.write(rec); err != nil {
			p.kill()
			return Result{}, err
		}
		if _, err := io.ReadFull(c, ackb[:]); err != nil {
			p.kill()
			return Result{}, err
		}
	}
	if err := w.close(); err != nil {
		p.kill()
		return Result{}, err
	}
	c.CloseWrite()
	var r Result
	if err := p.finish(&r); err != nil {
		return Result{}, err
	}
	r.Transport, r.Mode, r.Consumers, r.Variant = "uds-ipc", "blocking", 1, "bufio"
	return r, nil
}

// udsThroughput streams the same batch total/size times; the Rust side sums
// the int64 column of every decoded batch, and the driver checks the sum.
func udsThroughput(helper string, size, total int64, wrap []string) (Result, error) {
	rec := int64Record(size)
	defer rec.Release()
	buf := udsBuf(size)
	p, c, err := udsConn(helper, false, buf, wrap)
	if err != nil {
		return Result{}, err
	}
	defer c.Close()
	w := newUDSWriter(c, rec.Schema(), buf)
	count := max(1, total/size)
	t0 := nanotime()
	for range count {
		if err := w.write(rec); err != nil {
			p.kill()
			return Result{}, err
		}
	}
	if err := w.close(); err != nil {
		p.kill()
		return Result{}, err
	}
	c.CloseWrite()
	var s struct {
		sinkResult
		Sum int64 `json:"sum"`
	}
	if err := p.finish(&s); err != nil {
		return Result{}, err
	}
	rows := rec.NumRows()
	if want := rows * (rows - 1) / 2 * count; s.Messages != count || s.Rows != count*rows || s.Sum != want {
		return Result{}, fmt.Errorf("uds-sink saw %d batches / %d rows / sum %d, want %d / %d / %d", s.Messages, s.Rows, s.Sum, count, count*rows, want)
	}
	r := Result{Transport: "uds-ipc", Mode: "blocking", Kind: "throughput", PayloadBytes: size, Consumers: 1, Messages: count, Variant: "bufio"}
	setThroughput(&r, count*size, s.LastNS-t0)
	return r, nil
}

// goMemcpy is the memcpy floor measured in Go (the runtime's memmove, which
// the shm-go producer uses to fill slots), over the same rotating footprint
// as the Rust helper's memcpy.
func goMemcpy(size, total int64) (Result, error) {
	src := pattern(int(size))
	n := int64(streamSlots(size))
	dst := make([]byte, n*size)
	for i := range dst {
		dst[i] = 1 // fault the pages in before the clock starts
	}
	count := max(1, total/size)
	t0 := nanotime()
	for i := range count {
		copy(dst[(i%n)*size:][:size], src)
	}
	r := Result{Transport: "memcpy", Mode: "copy-go", Kind: "throughput", PayloadBytes: size, Consumers: 1, Messages: count}
	setThroughput(&r, count*size, nanotime()-t0)
	return r, nil
}
