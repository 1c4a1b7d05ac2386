package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// withIceoryx2 runs f with the iceoryx2 binary and --sections set, and
// restores both.
func withIceoryx2(t *testing.T, bin, sections string, f func()) {
	t.Helper()
	oldBin, oldSec := iceoryx2Bin, sectionsFlag
	defer func() { iceoryx2Bin, sectionsFlag = oldBin, oldSec }()
	iceoryx2Bin, sectionsFlag = bin, sections
	f()
}

// TestIceoryx2NotBuilt: without the binary the iceoryx2 transports are a
// "not built" line of the report, never an error (make bench-smoke and CI
// never build iceoryx2).
func TestIceoryx2NotBuilt(t *testing.T) {
	helper := helperPath(t)
	withIceoryx2(t, filepath.Join(t.TempDir(), "missing"), "latency", func() {
		rep, err := run(grids["smoke"], "smoke", helper, "iceoryx2,iceoryx2-event")
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Results) != 0 {
			t.Errorf("results without the binary: %+v", rep.Results)
		}
		md := markdown(rep)
		for _, tr := range []string{"iceoryx2", "iceoryx2-event"} {
			if !strings.Contains(md, "* `"+tr+"`: not built: run make bench-iceoryx2") {
				t.Errorf("report.md does not list %s as not built:\n%s", tr, md)
			}
		}
	})
}

// TestIceoryx2Smoke runs the iceoryx2 comparison on the tiny grid when
// `make bench-iceoryx2` has built the binary (skipped otherwise): rows for
// both transports at every payload, the side-by-side table and the ratios.
// It checks no timing.
func TestIceoryx2Smoke(t *testing.T) {
	helper := helperPath(t)
	bin := "../../../target/release/examples/bench_iceoryx2"
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("iceoryx2 comparison not built (make bench-iceoryx2): %v", err)
	}
	g := grids["smoke"]
	withIceoryx2(t, bin, "floors,latency", func() {
		rep, err := run(g, "smoke", helper, "iceoryx2,iceoryx2-event,shm-rust,atomic-pingpong")
		if err != nil {
			t.Fatal(err)
		}
		for _, size := range g.latSizes {
			for _, want := range []struct{ tr, mode string }{{"iceoryx2", "busy"}, {"iceoryx2-event", "blocking"}, {"shm-rust", "busy"}, {"shm-rust", "blocking"}} {
				r := rep.find(want.tr, want.mode, "latency", size, 1)
				if r == nil {
					t.Fatalf("no %s %s row at %d B", want.tr, want.mode, size)
				}
				if *r.P50NS <= 0 || *r.P50NS > *r.P99NS || *r.P99NS > *r.MaxNS || r.Messages != int64(g.iters(size)) {
					t.Errorf("bad quantiles or count: %+v", *r)
				}
			}
			for _, k := range []string{"shm-rust busy/iceoryx2 p50 ", "shm-rust blocking/iceoryx2-event p99 "} {
				if v, ok := rep.Ratios[k+sizeName(size)]; !ok || v == nil {
					t.Errorf("ratio %q missing or null", k+sizeName(size))
				}
			}
		}
		if r := rep.find("shm-rust", "busy", "throughput", g.tputSizes[0], 0); r != nil {
			t.Errorf("--sections floors,latency ran throughput: %+v", *r)
		}
		md := markdown(rep)
		if !strings.Contains(md, "## Alloy against iceoryx2 (same run)") || !strings.Contains(md, "| 64 B | shm-rust busy |") {
			t.Errorf("report.md lacks the iceoryx2 table:\n%s", md)
		}
	})
}
