//go:build alloy_ffi

package bridge

import (
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// BuildInt32s builds one Int32 array per slice of values with the bridge's
// allocator. The caller releases the arrays.
func (b GoBridge) BuildInt32s(values [][]int32) []arrow.Array {
	bld := array.NewInt32Builder(b.allocator())
	defer bld.Release()
	out := make([]arrow.Array, len(values))
	for i, v := range values {
		bld.AppendValues(v, nil)
		out[i] = bld.NewArray()
	}
	return out
}
