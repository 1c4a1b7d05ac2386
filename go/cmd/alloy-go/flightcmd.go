package main

import (
	"context"
	"errors"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/ignalina/alloy/go/flightshm"
)

// sendFlight is `send --flight URL`: every record of the Arrow file or
// stream at path goes to ring name of the gateway at url (alloy
// serve-flight) over one Flight DoPut stream, which the gateway turns into
// the ring's stream and closes at the end. On a read error the call is
// cancelled, not ended, so the gateway leaves the ring's stream open
// instead of taking the truncated stream for a complete one.
func sendFlight(url, name, mode, path string) error {
	if mode != "ipc" {
		return errors.New("--flight sends Arrow IPC (Flight's encoding); --mode must be ipc")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var w *flightshm.Writer
	var rows uint64
	bar := newProgress("sending")
	schema, err := eachRecord(path, func(schema *arrow.Schema, rec arrow.RecordBatch) error {
		if w == nil {
			var err error
			if w, err = flightshm.NewWriter(ctx, url, name, schema); err != nil {
				return err
			}
		}
		rows += uint64(rec.NumRows())
		err := w.Write(rec)
		bar.update(w.Batches(), rows, 0)
		return err
	})
	bar.done()
	if err == nil && w == nil { // no records: still send the schema
		w, err = flightshm.NewWriter(ctx, url, name, schema)
	}
	if err != nil {
		return err // the deferred cancel resets the stream
	}
	if err := w.Close(); err != nil {
		return err
	}
	s := w.Summary()
	return printJSON(summary{Batches: s.Batches, Rows: s.Rows, Messages: s.Messages, Bytes: s.Bytes})
}
