// Package arrowshm moves Arrow record batches through an Alloy ring
// (package ring) in IPC mode: each slot holds one Arrow IPC message laid
// out so that every body buffer is 64-byte aligned (doc/LAYOUT.md §8), which
// lets the Rust reader (alloy_shm::arrow::IpcReader) point its arrays
// straight into the shared mapping.
//
// Writer encodes arrow.RecordBatch values with arrow-go's IPC encoder and
// writes each message directly into its reserved slot. Reader decodes the
// messages a consumer receives (for example from the Rust IpcWriter) back
// into records (C-Data-offsets messages too, see below); by default it
// copies each message out of its slot and releases the slot at once, so
// records stay valid for as long as the caller retains them, and
// WithZeroCopy reads record batches in place instead.
//
// Reader implements arrow-go's array.RecordReader (Retain, Release,
// Schema, Next, RecordBatch, Err), so it plugs into anything that consumes
// one; SchemaContext, NextContext and Writer.WriteContext give up with
// ctx.Err() promptly when their context is done (Schema and Next wait for
// as long as the stream is open and its producer alive).
//
// # Zero-copy strings change after release
//
// With WithZeroCopy, a string taken from a string, binary or dictionary
// column (String.Value, the values of a Dictionary, ValueStr) is a view of
// the slot, not a copy. Once the record is released, the producer reuses
// the slot and the bytes under the string change, with no error: a map
// keyed by dict.Value(i) ends up with keys like "aceu" for "eu". Go code
// assumes strings never change, so either copy what you keep,
//
//	region := strings.Clone(dict.Value(regions.GetValueIndex(i))) // safe to keep
//
// or read with WithCopiedStrings, which copies the data of string and
// binary arrays when the record is decoded and reads everything else in
// place. The default Reader (no option) copies whole messages and has no
// such hazard. Reader and Writer implement io.Closer:
// closing a Writer ends the stream, closing a Reader closes its consumer.
//
// Errors wrap sentinels, so test for them with errors.Is: this package's
// ErrCorrupt, ErrUnknownFlags, ErrNoSchema and
// ErrSchemaChanged for what a Reader receives, and package ring's
// sentinels (ring.ErrMessageTooLarge, ring.ErrProducerGone, ring.ErrClosed,
// …) for the ring underneath.
//
// CDataWriter sends records in the C-Data-offsets mode (flag 3,
// LAYOUT.md §8.3): its Build method hands arrow-go builders an allocator
// over the reserved slot, so the record is built in shared memory and
// published with a small descriptor and no copy; the Rust IpcReader
// rebuilds the arrays in place. Reader decodes this mode too (from the Go
// CDataWriter or the Rust alloy_shm::arrow::CDataWriter): it checks the
// descriptor against the slot and the schema, rebuilds the arrays over
// the payload (over the slot itself with WithZeroCopy, dictionaries
// included) and validates them in full (array.ValidateFull), so a damaged
// message is an ErrCorrupt error naming its slot and sequence.
package arrowshm

import "errors"

// Slot flags of the Arrow layer (LAYOUT.md §8): bits 0–7 name the encoding,
// bits 8–31 must be zero.
const (
	// FlagRaw marks application bytes that are not Arrow.
	FlagRaw uint32 = 0
	// FlagIPCRecordBatch marks one IPC message with a RecordBatch header.
	FlagIPCRecordBatch uint32 = 1
	// FlagIPCDictionaryBatch marks one IPC message with a DictionaryBatch header.
	FlagIPCDictionaryBatch uint32 = 2
	// FlagCDataOffsets marks one record batch in C-Data-offsets mode
	// (see CDataWriter).
	FlagCDataOffsets uint32 = 3
	// FlagIPCSchema marks one IPC message with a Schema header (no body).
	FlagIPCSchema uint32 = 4
	// EncodingMask selects the encoding bits of a slot's flags.
	EncodingMask uint32 = 0xFF
)

var (
	// ErrCorrupt means a received message breaks the slot format.
	ErrCorrupt = errors.New("arrowshm: corrupt Arrow message")
	// ErrUnknownFlags means a message's flags are not an Arrow IPC encoding.
	ErrUnknownFlags = errors.New("arrowshm: not an Arrow IPC message")
	// ErrNoSchema means no schema message was received and the ring's
	// schema area is empty.
	ErrNoSchema = errors.New("arrowshm: no schema published")
	// ErrSchemaChanged means the producer published a different schema
	// mid-stream, which LAYOUT.md §8.2 forbids.
	ErrSchemaChanged = errors.New("arrowshm: schema changed mid-stream")
)
