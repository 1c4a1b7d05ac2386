package arrowshm

import (
	"fmt"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// planRecord is the record the read plans (read_plan.go, cdata_plan.go)
// hand out: arrow-go's simple record (array.NewRecordBatch) with its column
// slice in the same allocation for up to planRecordInline columns, and
// without NewRecordBatch's checks of the columns against the schema, which
// the plans' own checks make redundant (every column is built with the
// schema's type and the batch's length). It behaves as the simple record
// does (TestPlanRecordBehavesAsArrowGos); the operations that make a new
// record (SetColumn, NewSlice) make arrow-go's.
type planRecord struct {
	refs   atomic.Int64
	schema *arrow.Schema
	rows   int64
	arrs   []arrow.Array
	inline [planRecordInline]arrow.Array
}

// planRecordInline is how many columns a planRecord holds without a second
// allocation.
const planRecordInline = 4

var _ arrow.RecordBatchWithMetadata = (*planRecord)(nil)

// newPlanRecord returns a record of schema's cols (whose references it
// takes over: the caller does not release them) and rows rows.
func newPlanRecord(schema *arrow.Schema, cols []arrow.Array, rows int64) *planRecord {
	r := &planRecord{schema: schema, rows: rows}
	if len(cols) <= len(r.inline) {
		r.arrs = r.inline[:len(cols):len(cols)]
	} else {
		r.arrs = make([]arrow.Array, len(cols))
	}
	copy(r.arrs, cols)
	r.refs.Store(1)
	return r
}

// simple returns arrow-go's record of the same columns (retained: release
// it), for the operations that make new records.
func (r *planRecord) simple() arrow.RecordBatch {
	return array.NewRecordBatch(r.schema, r.arrs, r.rows)
}

// Retain adds a reference; safe for concurrent use.
func (r *planRecord) Retain() { r.refs.Add(1) }

// Release drops a reference; the last one releases the columns. Safe for
// concurrent use.
func (r *planRecord) Release() {
	if r.refs.Add(-1) == 0 {
		for _, a := range r.arrs {
			a.Release()
		}
		r.arrs, r.inline = nil, [planRecordInline]arrow.Array{}
	}
}

// Schema is the record's schema.
func (r *planRecord) Schema() *arrow.Schema { return r.schema }

// Metadata is empty: the plans leave batches with custom metadata to
// arrow-go.
func (r *planRecord) Metadata() arrow.Metadata { return arrow.Metadata{} }

// NumRows is the number of rows.
func (r *planRecord) NumRows() int64 { return r.rows }

// NumCols is the number of columns.
func (r *planRecord) NumCols() int64 { return int64(len(r.arrs)) }

// Columns are the columns (the record's slice: do not modify it).
func (r *planRecord) Columns() []arrow.Array { return r.arrs }

// Column is column i.
func (r *planRecord) Column(i int) arrow.Array { return r.arrs[i] }

// ColumnName is the name of column i.
func (r *planRecord) ColumnName(i int) string { return r.schema.Field(i).Name }

// SetColumn returns a new record with column i replaced by col, as
// arrow-go's record does.
func (r *planRecord) SetColumn(i int, col arrow.Array) (arrow.RecordBatch, error) {
	s := r.simple()
	defer s.Release()
	return s.SetColumn(i, col)
}

// NewSlice returns the rows [i, j) as a new record (zero-copy), as
// arrow-go's record does; release it.
func (r *planRecord) NewSlice(i, j int64) arrow.RecordBatch {
	s := r.simple()
	defer s.Release()
	return s.NewSlice(i, j)
}

// String prints the record as arrow-go's record does.
func (r *planRecord) String() string {
	s := r.simple()
	defer s.Release()
	return fmt.Sprint(s)
}

// MarshalJSON encodes the rows as arrow-go's record does.
func (r *planRecord) MarshalJSON() ([]byte, error) {
	arr := array.RecordToStructArray(r)
	defer arr.Release()
	return arr.MarshalJSON()
}
