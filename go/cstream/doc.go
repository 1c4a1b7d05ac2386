// Package cstream hands Alloy ring streams to any Arrow engine through the
// Arrow C stream interface (ArrowArrayStream), and publishes any engine's
// C stream into a ring: the Go half of issue #16, beside Rust's
// alloy_shm::arrow::RingStream.
//
// Export turns an arrowshm.Reader into a cdata.CArrowArrayStream (arrow-go's
// cdata.ExportRecordReader underneath) that a cgo consumer — DuckDB,
// pyarrow, arrow-rs, arrow-go's own cdata.ImportCRecordReader — reads with
// get_schema/get_next. With arrowshm.WithZeroCopy the arrays it hands out
// point into the ring's shared memory, and each batch's slot stays leased
// until the consumer calls the release callback of the exported array
// (and of every array it moved out of it): the lease is released by that
// callback, not by the next get_next. A consumer that keeps more batches
// than the ring has slots stalls the producer; get_next then fails with the
// text of ring.ErrRetentionStall (doc/README.md "Holding batches").
//
// Publish is the reverse: it imports a C stream (from arrow-rs, DuckDB,
// pyarrow, …) and writes every batch into a ring through arrowshm.Writer
// (IPC mode) or arrowshm.CDataWriter (C-Data-offsets mode), then ends the
// ring's stream.
//
// Both need cgo (arrow-go's cdata package is cgo): without it this package
// is only this documentation, so pure-Go and cross builds of the module
// still work.
package cstream
