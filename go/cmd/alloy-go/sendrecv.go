package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/ignalina/alloy/go/arrowshm"
	"github.com/ignalina/alloy/go/ring"
)

// eachRecord calls f for every record of an Arrow IPC file (ARROW1 magic)
// or stream at path; "-" is standard input. Compressed files and streams
// (LZ4 frame, ZSTD) are decompressed by arrow-go's readers. A pipe, FIFO or
// terminal is read as it arrives, record by record (an IPC file arriving
// through one is read as the stream it embeds after its 8-byte magic).
func eachRecord(path string, f func(*arrow.Schema, arrow.RecordBatch) error) (*arrow.Schema, error) {
	name := path
	var file *os.File
	if path == "-" {
		name, file = "standard input", os.Stdin
	} else {
		var err error
		if file, err = os.Open(path); err != nil {
			return nil, err
		}
		defer file.Close()
	}
	fi, err := file.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%s: is a directory, not an Arrow IPC file or stream", name)
	}
	in := bufio.NewReaderSize(file, 1<<16)
	head, err := in.Peek(8)
	if len(head) == 0 {
		return nil, fmt.Errorf("%s: empty input: not an Arrow IPC file or stream", name)
	}
	isFile := bytes.HasPrefix(head, []byte("ARROW1"))
	seekable := fi.Mode().IsRegular()
	if isFile && seekable {
		if _, err := file.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		fr, err := ipc.NewFileReader(file)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		defer fr.Close()
		for i := 0; i < fr.NumRecords(); i++ {
			rec, err := fr.RecordBatch(i)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if err := f(fr.Schema(), rec); err != nil {
				return nil, err
			}
		}
		return fr.Schema(), nil
	}
	if isFile && len(head) == 8 {
		in.Discard(8) // the stream format follows the magic and padding
	}
	sr, err := ipc.NewReader(in)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer sr.Release()
	for sr.Next() {
		if err := f(sr.Schema(), sr.RecordBatch()); err != nil {
			return nil, err
		}
	}
	if err := sr.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return sr.Schema(), nil
}

// checkCanSend refuses a ring whose stream was closed (unless newStream) or
// holds a stream left open by a producer that stopped (unless resume or
// newStream), with the Rust tool's messages. A live producer is refused by
// the attach itself.
func checkCanSend(name string, r *ring.Ring, resume, newStream bool) error {
	published := r.Stat().Published
	switch {
	case newStream:
		return nil
	case r.IsClosed():
		return fmt.Errorf("the stream on ring %q ended at sequence %d (its producer closed it): "+
			"pass --new-stream to start a new stream on it, or create a new ring", name, published)
	case published > 0 && !r.ProducerAlive() && !resume:
		return fmt.Errorf("ring %q holds an unfinished stream (%d messages, whose producer stopped "+
			"without closing it, e.g. a failed send): pass --resume to append to it (its receivers get "+
			"the new batches after the old ones), --new-stream to end it and start a new one, or create a new ring",
			name, published)
	}
	return nil
}

// send writes every record of an Arrow file or stream to a ring, then
// closes the stream.
func send(args []string) (err error) {
	fs := newFlags("send")
	name := fs.String("ring", "", "ring name")
	mode := fs.String("mode", "ipc", "encoding: ipc, or cdata (C-Data-offsets; each batch must fit in one slot)")
	flightURL := fs.String("flight", "", "send to ring --ring of the alloy serve-flight gateway at this URL (grpc://HOST:PORT)")
	resume := fs.Bool("resume", false, "append to the unfinished stream of a send that failed or was interrupted")
	newStream := fs.Bool("new-stream", false, "start a new stream on a ring whose stream ended (or was left unfinished)")
	fs.BoolVar(&dictionaryDeltas, "dictionary-deltas", false, "send grown dictionaries as delta dictionary batches (ipc mode)")
	pos := parseFlags(fs, args, 1)
	if err := requireRing(*name); err != nil {
		return err
	}
	if err := checkMode(*mode); err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("exactly one input FILE is required (- for standard input)")
	}
	path := pos[0]
	if path != "-" {
		if _, err := os.Stat(path); err != nil {
			return err
		}
	}
	if *flightURL != "" {
		return sendFlight(*flightURL, *name, *mode, path)
	}
	r, err := ring.Open(*name)
	if err != nil {
		return ringError(*name, err)
	}
	defer r.Close()
	// A truncated ring is the error, whatever failed (ring/fault.go).
	defer r.CatchFault(ring.TrapFaults(), &err)
	// The producer attaches once the input's schema was read (an
	// unreadable input is the error to report), if the ring can take the
	// stream.
	var p *ring.Producer
	var first uint64
	attach := func(schema *arrow.Schema) (recordWriter, error) {
		if err := checkCanSend(*name, r, *resume, *newStream); err != nil {
			return nil, err
		}
		var err error
		p, err = r.NewProducer(ring.ProducerOptions{Backpressure: ring.Backpressure{Kind: ring.Block}, NewStream: *newStream})
		if err != nil {
			return nil, err
		}
		first = r.Stat().Published
		return newRecordWriter(*mode, p, schema)
	}
	var w recordWriter
	var s summary
	bar := newProgress("sending")
	schema, err := eachRecord(path, func(schema *arrow.Schema, rec arrow.RecordBatch) error {
		if w == nil {
			var err error
			if w, err = attach(schema); err != nil {
				return err
			}
		}
		s.Batches++
		s.Rows += uint64(rec.NumRows())
		err := w.Write(rec)
		bar.update(s.Batches, s.Rows, w.BytesSent())
		return err
	})
	bar.done()
	if err == nil && w == nil { // no records: still publish the schema
		w, err = attach(schema)
	}
	if w == nil || err != nil {
		// A failed send does not end the stream as if it were complete:
		// the producer detaches (as the Rust CLI's does), so consumers
		// keep waiting for a producer to attach again (send --resume).
		if p != nil {
			p.Detach()
		}
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	s.Messages, s.Bytes = r.Stat().Published-first, w.BytesSent()
	return printJSON(s)
}

// recvEnd is why a receive ended before the end of the stream.
type recvEnd struct {
	cause string
	code  int
}

func (e recvEnd) Error() string { return e.cause }

// sink is recv's output: a temporary file renamed into place at the end,
// or standard output.
type sink struct {
	out, tmp string // tmp "" for standard output
	file     *os.File
	bw       *bufio.Writer
	iw       *ipc.Writer
	opts     []ipc.Option
	done     bool
}

func newSink(out string, opts []ipc.Option) (*sink, error) {
	s := &sink{out: out, opts: opts}
	if out == "-" {
		s.file = os.Stdout
	} else {
		if fi, err := os.Stat(out); err == nil && fi.IsDir() {
			return nil, fmt.Errorf("--out %s: is a directory", out)
		}
		s.tmp = out + ".partial"
		f, err := os.Create(s.tmp)
		if err != nil {
			return nil, fmt.Errorf("--out %s: %w", out, err)
		}
		s.file = f
	}
	s.bw = bufio.NewWriterSize(s.file, 1<<20)
	return s, nil
}

func (s *sink) name() string {
	if s.tmp == "" {
		return "standard output"
	}
	return s.out
}

func (s *sink) failed(err error) error {
	if s.tmp == "" {
		return fmt.Errorf("cannot write to standard output: %w", err)
	}
	return fmt.Errorf("cannot write %s: %w; no file written", s.out, err)
}

func (s *sink) write(schema *arrow.Schema, rec arrow.RecordBatch) error {
	if s.iw == nil {
		s.iw = ipc.NewWriter(s.bw, append([]ipc.Option{ipc.WithSchema(schema)}, s.opts...)...)
	}
	if err := s.iw.Write(rec); err != nil {
		return s.failed(err)
	}
	return nil
}

// finish ends the stream (end-of-stream marker) and renames the file into
// place; with no record written, schema (if known) makes a stream of no
// records, and without it no file is left. It returns where the stream
// went ("" for no file).
func (s *sink) finish(schema *arrow.Schema) (string, error) {
	if s.iw == nil {
		if schema == nil {
			return "", nil // abandon removes the temporary file
		}
		s.iw = ipc.NewWriter(s.bw, append([]ipc.Option{ipc.WithSchema(schema)}, s.opts...)...)
	}
	if err := s.iw.Close(); err != nil {
		return "", s.failed(err)
	}
	if err := s.bw.Flush(); err != nil {
		return "", s.failed(err)
	}
	if s.tmp != "" {
		if err := s.file.Close(); err != nil {
			return "", s.failed(err)
		}
		if err := os.Rename(s.tmp, s.out); err != nil {
			return "", s.failed(err)
		}
	}
	s.done = true
	return s.name(), nil
}

// abandon removes the temporary file unless finish put it in place.
func (s *sink) abandon() {
	if !s.done && s.tmp != "" {
		s.file.Close()
		os.Remove(s.tmp)
	}
}

// recvSlice is how often recv looks at the ring's file (removed or
// re-created under the same name).
const recvSlice = 200 * time.Millisecond

var (
	errRemoved  = errors.New("was removed")
	errReplaced = errors.New("was removed and a new ring created under its name")
)

// stopSignal is the cause recv's context carries after SIGINT or SIGTERM.
type stopSignal struct{ sig syscall.Signal }

func (s stopSignal) Error() string { return "interrupted by " + signalName(s.sig) }

func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return fmt.Sprintf("signal %d", int(s))
}

// recv joins a ring, says "ready" once every check passed, and writes the
// records it receives to an Arrow IPC stream until the stream ends or
// something else ends the receive; every ending leaves a complete stream
// of the records received whole, or no file (see usageText).
func recv(args []string) (err error) {
	fs := newFlags("recv")
	name := fs.String("ring", "", "ring name")
	out := fs.String("out", "", "output Arrow IPC stream `FILE` (- : standard output; ready and the summary then go to standard error)")
	var timeout timeoutFlag
	fs.Var(&timeout, "timeout", "stop (exit 124) after this `DURATION` without a message: 500ms, 2s, 1.5m, 1h; a bare number is seconds")
	compression := fs.String("compression", "none", "compress the record batches written: lz4, zstd or none")
	parseFlags(fs, args, 0)
	if err := requireRing(*name); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("--out FILE is required (- for standard output)")
	}
	var opts []ipc.Option
	switch *compression {
	case "lz4":
		opts = append(opts, ipc.WithLZ4())
	case "zstd":
		opts = append(opts, ipc.WithZstd())
	case "none":
	default:
		return fmt.Errorf("unknown --compression %q (expected lz4, zstd or none)", *compression)
	}
	toStdout := *out == "-"
	info := os.Stdout // ready and the summary
	if toStdout {
		info = os.Stderr
	}
	r, err := ring.Open(*name)
	if err != nil {
		return ringError(*name, err)
	}
	defer r.Close()
	// A truncated ring is the error, whatever failed (ring/fault.go), e.g.
	// arrow-go writing out a record read in place.
	defer r.CatchFault(ring.TrapFaults(), &err)
	ino, _ := inode(*name)
	ended := func() error {
		return fmt.Errorf("the stream on ring %q ended at sequence %d (its producer closed it): "+
			"a sender can start a new one (send --new-stream), or create a new ring", *name, r.Stat().Published)
	}
	if r.IsClosed() {
		return ended()
	}
	sk, err := newSink(*out, opts)
	if err != nil {
		return err
	}
	defer sk.abandon()
	before := r.Stat().Published
	c, err := r.Subscribe(ring.ConsumerOptions{})
	if err != nil {
		return err
	}
	defer c.Close()
	if r.IsClosed() && r.Stat().Published == before {
		return ended()
	}

	// Signals and the ring's file end the receive through ctx's cause.
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		tick := time.NewTicker(recvSlice)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-sigs:
				cancel(stopSignal{s.(syscall.Signal)})
				return
			case <-tick.C:
				// The mapping outlives an unlink: look at the file itself.
				if now, ok := inode(*name); !ok {
					cancel(errRemoved)
					return
				} else if now != ino {
					cancel(errReplaced)
					return
				}
			}
		}
	}()

	fmt.Fprintln(info, "ready")
	rd := arrowshm.NewReader(c, arrowshm.WithZeroCopy()) // each record is written out, then released
	defer rd.Release()
	// The ipc.Writer keeps the last dictionary of each field: it gets
	// copies, as a dictionary read in place holds its batch's slot.
	dicts := arrowshm.NewDictionaryCopier(nil)
	defer dicts.Release()
	var s summary
	bar := newProgress("receiving")
	defer bar.done()
	for {
		next := ctx
		stop := func() {}
		if timeout.d > 0 {
			next, stop = context.WithTimeout(ctx, timeout.d)
		}
		ok := rd.NextContext(next)
		stop()
		if !ok {
			break
		}
		rec := dicts.Copy(rd.RecordBatch())
		err := sk.write(rd.Schema(), rec)
		rec.Release()
		if err != nil {
			return err
		}
		s.Batches++
		s.Rows += uint64(rd.RecordBatch().NumRows())
		bar.update(s.Batches, s.Rows, rd.BytesReceived())
	}
	bar.done()
	s.Messages, s.Bytes = rd.MessagesReceived(), rd.BytesReceived()

	// Why it ended.
	var end *recvEnd
	if e := rd.Err(); e != nil {
		switch cause := context.Cause(ctx); {
		case cause != nil && errors.As(cause, new(stopSignal)):
			var sig stopSignal
			errors.As(cause, &sig)
			end = &recvEnd{cause.Error(), 128 + int(sig.sig)}
		case cause != nil:
			end = &recvEnd{fmt.Sprintf("ring %q %v", *name, cause), 1}
		case errors.Is(e, context.DeadlineExceeded):
			end = &recvEnd{fmt.Sprintf("no message on ring %q for %v (--timeout)", *name, timeout.d), 124}
		case errors.Is(e, ring.ErrProducerGone):
			// The Rust tool's line: the pid from "producer gone: pid N".
			var pid int
			if i := strings.LastIndex(e.Error(), "pid "); i >= 0 {
				fmt.Sscanf(e.Error()[i:], "pid %d", &pid)
			}
			end = &recvEnd{fmt.Sprintf("the producer (pid %d) of ring %q died without closing the stream", pid, *name), 1}
		default:
			end = &recvEnd{fmt.Sprintf("refused a message: %v", e), 1}
		}
	}
	// The schema of a stream of no records: the one received, else the
	// ring's schema area (a producer attached but sent no record yet).
	done, cancelled := context.WithCancel(context.Background())
	cancelled()
	schema, _ := rd.SchemaContext(done)
	if schema == nil {
		schema = schemaArea(r)
	}
	written, err := sk.finish(schema)
	if err != nil {
		return err
	}
	if end == nil {
		enc := printJSON
		if toStdout {
			enc = printJSONTo(os.Stderr)
		}
		return enc(s)
	}
	batches := "batches"
	if s.Batches == 1 {
		batches = "batch"
	}
	if written == "" {
		end.cause += ": no schema was received, so no file was written"
	} else {
		end.cause += fmt.Sprintf(": wrote %d %s (%d rows) to %s, a complete Arrow IPC stream", s.Batches, batches, s.Rows, written)
	}
	return exitError{end.cause, end.code}
}

// schemaArea decodes the ring's schema area, nil if there is none.
func schemaArea(r *ring.Ring) *arrow.Schema {
	b, err := r.Schema()
	if err != nil || len(b) == 0 {
		return nil
	}
	sr, err := ipc.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil
	}
	defer sr.Release()
	return sr.Schema()
}
