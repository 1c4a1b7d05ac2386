package arrowshm

import (
	"fmt"
	"math/rand/v2"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// columnTypes are the types the random records draw from.
var columnTypes = []arrow.DataType{
	arrow.PrimitiveTypes.Int8, arrow.PrimitiveTypes.Int16, arrow.PrimitiveTypes.Int32, arrow.PrimitiveTypes.Int64,
	arrow.PrimitiveTypes.Uint8, arrow.PrimitiveTypes.Uint16, arrow.PrimitiveTypes.Uint32, arrow.PrimitiveTypes.Uint64,
	arrow.PrimitiveTypes.Float32, arrow.PrimitiveTypes.Float64, arrow.FixedWidthTypes.Boolean,
	arrow.BinaryTypes.String, arrow.BinaryTypes.LargeString, arrow.BinaryTypes.Binary,
	arrow.FixedWidthTypes.Date32, arrow.FixedWidthTypes.Date64,
	arrow.FixedWidthTypes.Time32ms, arrow.FixedWidthTypes.Time64us,
	&arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"},
	&arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "+02:00"},
	&arrow.Decimal128Type{Precision: 38, Scale: 3},
	arrow.ListOf(arrow.PrimitiveTypes.Int32),
	arrow.StructOf(
		arrow.Field{Name: "x", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		arrow.Field{Name: "y", Type: arrow.BinaryTypes.String, Nullable: true},
	),
	&arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String},
}

var words = []string{"red", "green", "", "ünïcode", "a somewhat longer string value"}

// appendValue appends one random non-null value to b.
func appendValue(b array.Builder, r *rand.Rand, nulls bool) {
	switch b := b.(type) {
	case *array.Int8Builder:
		b.Append(int8(r.Uint64()))
	case *array.Int16Builder:
		b.Append(int16(r.Uint64()))
	case *array.Int32Builder:
		b.Append(int32(r.Uint64()))
	case *array.Int64Builder:
		b.Append(int64(r.Uint64()))
	case *array.Uint8Builder:
		b.Append(uint8(r.Uint64()))
	case *array.Uint16Builder:
		b.Append(uint16(r.Uint64()))
	case *array.Uint32Builder:
		b.Append(uint32(r.Uint64()))
	case *array.Uint64Builder:
		b.Append(r.Uint64())
	case *array.Float32Builder:
		b.Append(float32(int32(r.Uint64())) / 7)
	case *array.Float64Builder:
		b.Append(float64(int64(r.Uint64())) / 3)
	case *array.BooleanBuilder:
		b.Append(r.IntN(2) == 1)
	case *array.StringBuilder:
		b.Append(words[r.IntN(len(words))])
	case *array.LargeStringBuilder:
		b.Append(words[r.IntN(len(words))])
	case *array.BinaryBuilder:
		b.Append([]byte(words[r.IntN(len(words))]))
	case *array.Date32Builder:
		b.Append(arrow.Date32(r.IntN(40000) - 10000))
	case *array.Date64Builder:
		b.Append(arrow.Date64(int64(r.IntN(40000)-10000) * 86_400_000))
	case *array.Time32Builder:
		b.Append(arrow.Time32(r.IntN(86_400_000)))
	case *array.Time64Builder:
		b.Append(arrow.Time64(r.Int64N(86_400_000_000)))
	case *array.TimestampBuilder:
		b.Append(arrow.Timestamp(int64(r.Uint64()) >> 12))
	case *array.Decimal128Builder:
		b.Append(decimal128.FromI64(int64(r.Uint64()) >> 8))
	case *array.ListBuilder:
		b.Append(true)
		for range r.IntN(4) {
			appendMaybeNull(b.ValueBuilder(), r, nulls)
		}
	case *array.StructBuilder:
		b.Append(true)
		for i := range b.NumField() {
			appendMaybeNull(b.FieldBuilder(i), r, nulls)
		}
	case *array.BinaryDictionaryBuilder:
		if err := b.AppendString(words[r.IntN(len(words))]); err != nil {
			panic(err)
		}
	default:
		panic(fmt.Sprintf("no generator for %T", b))
	}
}

func appendMaybeNull(b array.Builder, r *rand.Rand, nulls bool) {
	if nulls && r.IntN(5) == 0 {
		b.AppendNull()
		return
	}
	appendValue(b, r, nulls)
}

// randomRecord builds a record with one column per entry of kinds (indices
// into columnTypes), rows+offset rows, then sliced to rows rows from offset.
func randomRecord(mem memory.Allocator, seed uint64, kinds []int, rows, offset int, nulls bool) arrow.RecordBatch {
	r := rand.New(rand.NewPCG(seed, 42))
	fields := make([]arrow.Field, len(kinds))
	cols := make([]arrow.Array, len(kinds))
	for i, k := range kinds {
		dt := columnTypes[k%len(columnTypes)]
		fields[i] = arrow.Field{Name: fmt.Sprintf("c%d_%d", i, k), Type: dt, Nullable: true}
		b := array.NewBuilder(mem, dt)
		for range rows + offset {
			appendMaybeNull(b, r, nulls)
		}
		cols[i] = b.NewArray()
		b.Release()
	}
	full := array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, int64(rows+offset))
	for _, c := range cols {
		c.Release()
	}
	defer full.Release()
	return full.NewSlice(int64(offset), int64(offset+rows))
}
