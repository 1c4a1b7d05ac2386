package main

import (
	"fmt"
	"os"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/arrowshm"
	"github.com/ignalina/alloy/go/ring"
)

// Arrow-level latency: what users send is record batches, so next to the
// raw-byte rows the suite measures Arrow batches one way over the ring with
// the same method (clock stamp in value 0 of column 0, one batch in flight,
// acknowledged on a second ring, 10% warm-up stamped -1 and not recorded),
// in both directions and with every writer and reader, for four batch
// shapes; and request/reply round trips, to compare with a cgo call.
//
// Go → Rust (kind arrow-latency, variant validated / unchecked: the Rust
// IpcReader in place with or without validation):
//
//	shm-go-ipc          arrowshm.Writer (IPC), one pre-built record
//	shm-go-cdata-write  arrowshm.CDataWriter.Write, the same record
//	shm-go-cdata        arrowshm.CDataWriter.Build, built in the slot
//
// Rust → Go (variant in place: Reader WithZeroCopy; copied: the default):
//
//	shm-rust-ipc        IpcWriter
//	shm-rust-cdata      CDataWriter
//
// and uds-ipc (variant bufio): arrow-go ipc.Writer over a bufio.Writer
// flushed once per batch, socket buffers sized to the batch → Rust
// StreamReader.

// arrowShape is one batch shape of the Arrow rows.
type arrowShape struct {
	id, name string
	rows     int
}

var arrowShapes = []arrowShape{
	{"1-row", "1 row", 1},
	{"1024-rows", "1,024 rows", 1024},
	{"1-mib", "1 MiB int64", 131072},
	{"mixed", "mixed 1,024 rows", 1024},
}

func shapeByID(id string) arrowShape {
	for _, s := range arrowShapes {
		if s.id == id {
			return s
		}
	}
	panic("unknown shape " + id)
}

// payload is the int64 value bytes of the shape (report.json payload_bytes).
func (s arrowShape) payload() int64 { return int64(s.rows) * 8 }

// slotBytes bounds the shape's message in either mode: values, validity,
// the mixed shape's strings (12 bytes), offsets and keys, metadata.
func (s arrowShape) slotBytes() uint32 { return uint32(s.rows*48 + 128<<10) }

var dictType = &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}

// schema is the shape's schema, made once: the Build row builds its batch
// in the timed region (that is what Build is), but a schema is not
// per-batch work, and the IPC and Write rows reuse their record's.
func (s arrowShape) schema() *arrow.Schema {
	if s.id == "mixed" {
		return shapeSchemas[1]
	}
	return shapeSchemas[0]
}

var shapeSchemas = func() [2]*arrow.Schema {
	f := []arrow.Field{{Name: "v", Type: arrow.PrimitiveTypes.Int64}}
	mixed := append(f, arrow.Field{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: "d", Type: dictType, Nullable: true})
	return [2]*arrow.Schema{arrow.NewSchema(f, nil), arrow.NewSchema(mixed, nil)}
}()

var colors = []string{"red", "green", "blue", "cyan"}

// rowValues are the int64 values 0..131071 after the stamp.
var rowValues = func() []int64 {
	v := make([]int64, 131072)
	for i := range v {
		v[i] = int64(i)
	}
	return v
}()

// rowStrings are the mixed shape's utf8 values (12 bytes each), formatted
// once so that building a batch appends them and formats nothing.
var rowStrings = func() []string {
	v := make([]string, 1024)
	for i := range v {
		v[i] = fmt.Sprintf("row-%08d", i)
	}
	return v
}()

// build builds the shape with mem, value 0 = stamp. Builders are sized
// exactly, so a slot allocator (CDataWriter.Build) is not outgrown.
func (s arrowShape) build(mem memory.Allocator, stamp int64) (arrow.RecordBatch, error) {
	vb := array.NewInt64Builder(mem)
	defer vb.Release()
	vb.Resize(s.rows)
	vb.UnsafeAppend(stamp)
	vb.AppendValues(rowValues[1:s.rows], nil) // one copy, not a loop of appends
	cols := []arrow.Array{vb.NewArray()}
	if s.id == "mixed" {
		sb := array.NewStringBuilder(mem)
		defer sb.Release()
		sb.Resize(s.rows)
		sb.ReserveData(s.rows * 12)
		for _, v := range rowStrings[:s.rows] {
			sb.Append(v)
		}
		db := array.NewDictionaryBuilder(mem, dictType).(*array.BinaryDictionaryBuilder)
		defer db.Release()
		for i := range s.rows {
			if err := db.AppendString(colors[i%4]); err != nil {
				return nil, err
			}
		}
		cols = append(cols, sb.NewArray(), db.NewArray())
	}
	defer func() {
		for _, c := range cols {
			c.Release()
		}
	}()
	return array.NewRecordBatch(s.schema(), cols, int64(s.rows)), nil
}

// arrowRing creates a 4-slot ring for the shape, like the raw latency rows.
func arrowRing(sh arrowShape) (string, *ring.Ring, func(), error) {
	ringSeq++
	name := fmt.Sprintf("alloy-bench-arrowlat-%d-%d", os.Getpid(), ringSeq)
	ring.Remove(name)
	r, err := ring.Create(name, ring.Config{SlotCount: 4, SlotSize: slotSize(sh.slotBytes()), MaxSubscribers: 2, MaxMembers: 2, SchemaCapacity: 4096})
	if err != nil {
		return "", nil, nil, err
	}
	return name, r, func() { r.Close(); ring.Remove(name) }, nil
}

func waitOf(busy bool) ring.WaitStrategy {
	if busy {
		return ring.Spin
	}
	return ring.Blocking
}

func warmOf(iters int) int { return max(8, iters/10) }

// arrowGoRust: Go writer → Rust arrow-lat-consumer, one-way.
func arrowGoRust(helper, transport string, sh arrowShape, iters int, busy, unchecked bool) (Result, error) {
	dataName, data, doneData, err := arrowRing(sh)
	if err != nil {
		return Result{}, err
	}
	defer doneData()
	ackName, ack, doneAck, err := newRing(4, 64, 1)
	if err != nil {
		return Result{}, err
	}
	defer doneAck()
	back, err := ack.Subscribe(ring.ConsumerOptions{Wait: waitOf(busy)})
	if err != nil {
		return Result{}, err
	}
	defer back.Close()
	args := append([]string{helper, "arrow-lat-consumer", "--ring", dataName, "--ack", ackName}, spinArg(busy)...)
	if unchecked {
		args = append(args, "--unchecked")
	}
	p, err := startPeer(true, args...)
	if err != nil {
		return Result{}, err
	}
	prod, err := data.NewProducer(ring.ProducerOptions{Wait: waitOf(busy)})
	if err != nil {
		p.kill()
		return Result{}, err
	}
	rec, err := sh.build(memory.NewGoAllocator(), 0)
	if err != nil {
		p.kill()
		return Result{}, err
	}
	defer rec.Release()
	vals := rec.Column(0).(*array.Int64).Int64Values()
	var send func(stamp int64) error
	var closeW func() error
	switch transport {
	case "shm-go-ipc":
		w := arrowshm.NewWriter(prod, rec.Schema())
		send = func(stamp int64) error { vals[0] = stamp; return w.Write(rec) }
		closeW = w.Close
	case "shm-go-cdata-write", "shm-go-cdata":
		w, err := arrowshm.NewCDataWriter(prod, rec.Schema())
		if err != nil {
			p.kill()
			return Result{}, err
		}
		if transport == "shm-go-cdata-write" {
			send = func(stamp int64) error { vals[0] = stamp; return w.Write(rec) }
		} else {
			// One callback for every batch (no closure made per send).
			var cur int64
			build := func(mem memory.Allocator) (arrow.RecordBatch, error) { return sh.build(mem, cur) }
			send = func(stamp int64) error { cur = stamp; return w.Build(build) }
		}
		closeW = func() error {
			err := w.Close()
			// The int64 shapes are built in the slot entirely.
			if n := w.CopiedBytes(); err == nil && transport == "shm-go-cdata" && sh.id != "mixed" && n != 0 {
				err = fmt.Errorf("cdata build copied %d bytes", n)
			}
			return err
		}
	default:
		p.kill()
		return Result{}, fmt.Errorf("unknown transport %q", transport)
	}
	warm := warmOf(iters)
	for i := 0; i < iters+warm; i++ {
		t0 := nanotime()
		stamp := t0
		if i < warm {
			stamp = -1
		}
		if err := send(stamp); err != nil {
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
	if err := closeW(); err != nil {
		p.kill()
		return Result{}, err
	}
	var out struct {
		Result
		Batches int64 `json:"batches"`
		Rows    int64 `json:"rows"`
	}
	if err := p.finish(&out); err != nil {
		return Result{}, err
	}
	if n := int64(iters + warm); out.Batches != n || out.Rows != n*int64(sh.rows) {
		return Result{}, fmt.Errorf("consumer saw %d batches / %d rows, want %d / %d", out.Batches, out.Rows, n, n*int64(sh.rows))
	}
	r := out.Result
	variant := "validated"
	if unchecked {
		variant = "unchecked"
	}
	r.Transport, r.Mode, r.Kind, r.PayloadBytes, r.Consumers, r.Shape, r.Variant = transport, modeName(busy), "arrow-latency", sh.payload(), 1, sh.name, variant
	return r, nil
}

// arrowRustGo: Rust arrow-lat-producer (IpcWriter or CDataWriter) → Go
// arrowshm.Reader, in place (WithZeroCopy) or copied, one-way.
func arrowRustGo(helper, transport string, sh arrowShape, iters int, busy, inPlace bool) (Result, error) {
	dataName, data, doneData, err := arrowRing(sh)
	if err != nil {
		return Result{}, err
	}
	defer doneData()
	ackName, ack, doneAck, err := newRing(4, 64, 1)
	if err != nil {
		return Result{}, err
	}
	defer doneAck()
	c, err := data.Subscribe(ring.ConsumerOptions{Wait: waitOf(busy)})
	if err != nil {
		return Result{}, err
	}
	var opts []arrowshm.ReaderOption
	if inPlace {
		opts = append(opts, arrowshm.WithZeroCopy())
	}
	rd := arrowshm.NewReader(c, opts...)
	defer rd.Release()
	mode := map[string]string{"shm-rust-ipc": "ipc", "shm-rust-cdata": "cdata"}[transport]
	p, err := startPeer(true, append([]string{helper, "arrow-lat-producer", "--ring", dataName, "--ack", ackName,
		"--mode", mode, "--shape", sh.id, "--iters", fmt.Sprint(iters)}, spinArg(busy)...)...)
	if err != nil {
		return Result{}, err
	}
	prod, err := ack.NewProducer(ring.ProducerOptions{Wait: waitOf(busy)})
	if err != nil {
		p.kill()
		return Result{}, err
	}
	ns := make([]int64, 0, iters)
	n := 0
	for rd.Next() {
		t1 := nanotime()
		rec := rd.RecordBatch()
		if t0 := rec.Column(0).(*array.Int64).Value(0); t0 > 0 {
			ns = append(ns, t1-t0)
		}
		if rec.NumRows() != int64(sh.rows) {
			p.kill()
			return Result{}, fmt.Errorf("batch of %d rows, want %d", rec.NumRows(), sh.rows)
		}
		n++
		buf, err := prod.Reserve(8)
		if err == nil {
			clear(buf[:8])
			err = prod.Publish(8, 0)
		}
		if err != nil {
			p.kill()
			return Result{}, err
		}
	}
	prod.Close()
	if err := rd.Err(); err != nil {
		p.kill()
		return Result{}, err
	}
	var none struct{}
	if err := p.finish(&none); err != nil {
		return Result{}, err
	}
	if n != iters+warmOf(iters) || len(ns) != iters {
		return Result{}, fmt.Errorf("read %d batches (%d stamped), want %d (%d)", n, len(ns), iters+warmOf(iters), iters)
	}
	variant := "copied"
	if inPlace {
		variant = "in place"
	}
	r := Result{Transport: transport, Mode: modeName(busy), Kind: "arrow-latency", PayloadBytes: sh.payload(), Consumers: 1, Shape: sh.name, Variant: variant}
	quantiles(&r, ns)
	return r, nil
}

// ringRoundTrip: one batch Go → Rust → Go over two rings (arrowshm.Writer
// → Rust arrow-echo: IpcReader in place, validated, IpcWriter back → Go
// Reader in place), timed by Go around the whole exchange: the ring's
// counterpart of a cgo call.
func ringRoundTrip(helper string, sh arrowShape, iters int, busy bool) (Result, error) {
	reqName, req, doneReq, err := arrowRing(sh)
	if err != nil {
		return Result{}, err
	}
	defer doneReq()
	repName, rep, doneRep, err := arrowRing(sh)
	if err != nil {
		return Result{}, err
	}
	defer doneRep()
	c, err := rep.Subscribe(ring.ConsumerOptions{Wait: waitOf(busy)})
	if err != nil {
		return Result{}, err
	}
	rd := arrowshm.NewReader(c, arrowshm.WithZeroCopy())
	defer rd.Release()
	p, err := startPeer(true, append([]string{helper, "arrow-echo", "--ring", reqName, "--reply", repName}, spinArg(busy)...)...)
	if err != nil {
		return Result{}, err
	}
	prod, err := req.NewProducer(ring.ProducerOptions{Wait: waitOf(busy)})
	if err != nil {
		p.kill()
		return Result{}, err
	}
	rec, err := sh.build(memory.NewGoAllocator(), 1)
	if err != nil {
		p.kill()
		return Result{}, err
	}
	defer rec.Release()
	w := arrowshm.NewWriter(prod, rec.Schema())
	warm := warmOf(iters)
	ns := make([]int64, 0, iters)
	for i := 0; i < iters+warm; i++ {
		t0 := nanotime()
		if err := w.Write(rec); err != nil {
			p.kill()
			return Result{}, err
		}
		if !rd.Next() {
			p.kill()
			return Result{}, fmt.Errorf("no reply: %v", rd.Err())
		}
		if got := rd.RecordBatch().NumRows(); got != int64(sh.rows) {
			p.kill()
			return Result{}, fmt.Errorf("reply of %d rows, want %d", got, sh.rows)
		}
		if i >= warm {
			ns = append(ns, nanotime()-t0)
		}
	}
	if err := w.Close(); err != nil {
		p.kill()
		return Result{}, err
	}
	if rd.Next() {
		p.kill()
		return Result{}, fmt.Errorf("an extra reply")
	}
	var out sinkResult
	if err := p.finish(&out); err != nil {
		return Result{}, err
	}
	if out.Messages != int64(iters+warm) {
		return Result{}, fmt.Errorf("echo saw %d batches, want %d", out.Messages, iters+warm)
	}
	r := Result{Transport: "shm-rr", Mode: modeName(busy), Kind: "roundtrip", PayloadBytes: sh.payload(), Consumers: 1, Shape: sh.name, Variant: "echo"}
	quantiles(&r, ns)
	return r, nil
}
