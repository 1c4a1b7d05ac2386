package arrowshm

import (
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ignalina/alloy/go/ring"
)

// Strings read in place (WithZeroCopy) alias the slot: arrow-go's
// String.Value, Binary.Value and the values of dictionaries return views of
// the array's buffers without copying, and once the record is released the
// slot goes back to the producer, which overwrites it. A Go string is
// assumed never to change, so a string kept past the record (a map key, a
// field of a struct) silently changes with the slot. WithCopiedStrings
// reads everything else in place and copies the data of string and binary
// arrays out of the slot.

// isStringLike reports whether the buffers of an array of type t hold the
// bytes of string or binary values (views included: their view buffer
// holds short values inline).
func isStringLike(t arrow.DataType) bool {
	switch t.ID() {
	case arrow.STRING, arrow.LARGE_STRING, arrow.STRING_VIEW,
		arrow.BINARY, arrow.LARGE_BINARY, arrow.BINARY_VIEW, arrow.FIXED_SIZE_BINARY:
		return true
	case arrow.EXTENSION:
		return isStringLike(t.(arrow.ExtensionType).StorageType())
	}
	return false
}

// copyStrings returns rec (its reference taken over) with every buffer of
// its string and binary arrays that lies in r's mapping replaced by a copy,
// at any depth, dictionary values included.
func copyStrings(r *ring.Ring, rec arrow.RecordBatch, mem memory.Allocator) arrow.RecordBatch {
	changed := false
	cols := make([]arrow.Array, rec.NumCols())
	for i, col := range rec.Columns() {
		d := copyStringData(r, col.Data(), mem)
		if d != col.Data() {
			changed = true
		}
		cols[i] = array.MakeFromData(d)
		d.Release()
	}
	defer func() {
		for _, c := range cols {
			c.Release()
		}
	}()
	if !changed {
		return rec
	}
	out := array.NewRecordBatch(rec.Schema(), cols, rec.NumRows())
	rec.Release()
	return out
}

// copyStringData is copyStrings for one array: d itself (retained) when
// nothing changes.
func copyStringData(r *ring.Ring, d arrow.ArrayData, mem memory.Allocator) arrow.ArrayData {
	return mapBuffers(d, func(dt arrow.DataType, b *memory.Buffer) *memory.Buffer {
		if !isStringLike(dt) || b == nil || b.Len() == 0 || !r.Contains(b.Bytes()) {
			return nil
		}
		// The default allocator aligns to 64 bytes, as slot buffers are.
		c := memory.NewResizableBuffer(mem)
		c.Resize(b.Len())
		copy(c.Bytes(), b.Bytes())
		return c
	})
}
