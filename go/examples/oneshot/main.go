//go:build alloy_ffi

// Command oneshot is the original Alloy's usage example: it exports three
// Int32 arrays through the Arrow C Data Interface, calls Rust's default
// echo handler through cgo, and logs what both sides did (on stderr).
//
// It links the Rust library through package bridge, so it builds only with
// the build tag alloy_ffi, after the Rust build (make build does both):
//
//	cd go && go run -tags alloy_ffi ./examples/oneshot
package main

import (
	"fmt"
	"os"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/ignalina/alloy/go/bridge"
)

func main() {
	mem := memory.NewGoAllocator()
	values := [][]int32{
		{1, 2, 3, -4},
		{2, 3, 4, 5},
		{3, 4, 5, 6},
	}

	goBridge := bridge.GoBridge{GoAllocator: mem}
	arrays := goBridge.BuildInt32s(values)
	defer func() {
		for _, a := range arrays {
			a.Release()
		}
	}()

	ret, err := goBridge.FromChunks(arrays)
	if err != nil {
		bridge.Error(err.Error())
		os.Exit(1)
	}
	bridge.Info(fmt.Sprintf("Rust counted %v arrays sent through ffi", ret))
}
