//go:build alloy_ffi

package bridge

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// TestNoLeakOver100kCalls makes 100,000 calls, half with a record answered
// by Rust and half with plain arrays, and checks that nothing stays alive:
// Rust's live counters are back to zero, every Go buffer was freed, and the
// resident set did not grow with the number of calls.
func TestNoLeakOver100kCalls(t *testing.T) {
	const calls = 100_000
	// A leak of one ~1.4 KiB record per call would be ~140 MiB.
	const maxGrowth = 24 << 20
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	b := GoBridge{GoAllocator: mem}
	rec := testRecord(mem, 100)
	arrays := b.BuildInt32s([][]int32{{1, 2, 3, -4}})
	step := func() {
		out, err := b.SendRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		out.Release()
		if _, _, err := b.CallArrays(Echo, arrays); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2_000; i++ { // warm up allocator pools and heap
		step()
	}
	settle := func() int64 {
		runtime.GC()
		debug.FreeOSMemory()
		return rssBytes(t)
	}
	before := settle()
	for i := 0; i < calls/2; i++ {
		step()
	}
	after := settle()
	t.Logf("RSS before %d KiB, after %d KiB (%d calls)", before>>10, after>>10, calls)
	if after-before > maxGrowth {
		t.Errorf("RSS grew by %d KiB over %d calls", (after-before)>>10, calls)
	}
	assertNothingLive(t)
	rec.Release()
	arrays[0].Release()
	mem.AssertSize(t, 0)
}
