//go:build alloy_ffi

package bridge_test

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/ignalina/alloy/go/bridge"
)

// The original Alloy's example: three Int32 arrays to Rust's echo handler,
// which logs them (on stderr) and counts them.
func ExampleGoBridge_FromChunks() {
	mem := memory.NewGoAllocator()
	goBridge := bridge.GoBridge{GoAllocator: mem}
	arrays := goBridge.BuildInt32s([][]int32{{1, 2, 3, -4}, {2, 3, 4, 5}, {3, 4, 5, 6}})
	defer func() {
		for _, a := range arrays {
			a.Release()
		}
	}()
	ret, err := goBridge.FromChunks(arrays)
	if err != nil {
		panic(err)
	}
	fmt.Printf("Rust counted %v arrays sent through ffi\n", ret)
	// Output: Rust counted 3 arrays sent through ffi
}

// Sending Int32 arrays to Rust's built-in sum handler, which answers with a
// record computed in Rust and imported without a copy.
func ExampleGoBridge_CallArrays() {
	goBridge := bridge.GoBridge{}
	arrays := goBridge.BuildInt32s([][]int32{{1, 2, 3, -4}, {10, 20}})
	defer arrays[0].Release()
	defer arrays[1].Release()
	n, sum, err := goBridge.CallArrays(bridge.Sum, arrays)
	if err != nil {
		panic(err)
	}
	defer sum.Release()
	fmt.Println(n, sum.Column(0).(*array.Int64).Value(0), sum.Column(1).(*array.Int64).Value(0))
	// Output: 2 2 30
}
