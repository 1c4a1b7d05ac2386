package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocGenerated re-renders every generated region of doc/BENCHMARKS.md
// from the committed reports and fails when the committed doc differs, or
// when its prose quotes a figure outside the regions: the doc's numbers
// are always those of the reports it names.
func TestDocGenerated(t *testing.T) {
	if err := docCommand([]string{"--check", "--root", "../../.."}); err != nil {
		t.Fatal(err)
	}
}

func TestRenderDocRegions(t *testing.T) {
	root := t.TempDir()
	rep := &Report{Env: Env{Grid: "smoke", Commit: "abc1234", Date: "2026-01-02T03:04:05Z", Cores: 2}, Seconds: 12}
	rep.Results = append(rep.Results, Result{Transport: "shm-go", Mode: "busy", Kind: "latency", PayloadBytes: 64, P50NS: f64(150), P99NS: f64(300), P999NS: f64(400), MaxNS: f64(500), Messages: 10})
	rep.Ratios = ratios(rep, grids["smoke"])
	dir := filepath.Join(root, "r")
	if err := write(rep, dir); err != nil {
		t.Fatal(err)
	}
	doc := "# T\n\nProse.\n\n<!-- generated:run r/report.json -->\nstale text 9.99 µs\n<!-- end -->\n\n<!-- generated:report r/report.json -->\n<!-- end -->\n"
	got, err := renderDoc(doc, root)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"commit abc1234", "2026-01-02T03:04:05Z", "| shm-go | busy | 150 ns / 300 ns |", "### One-way latency", "## Goals of issue 13"} {
		if !strings.Contains(got, want) {
			t.Errorf("rendered doc lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "9.99") {
		t.Error("stale region text kept")
	}
	again, err := renderDoc(got, root)
	if err != nil || again != got {
		t.Errorf("rendering is not idempotent: %v", err)
	}
	// --check fails on a stale doc, passes once written.
	if err := os.WriteFile(filepath.Join(root, "D.md"), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := docCommand([]string{"--check", "--root", root, "--doc", "D.md"}); err == nil {
		t.Error("--check accepted a stale doc")
	}
	if err := docCommand([]string{"--root", root, "--doc", "D.md"}); err != nil {
		t.Fatal(err)
	}
	if err := docCommand([]string{"--check", "--root", root, "--doc", "D.md"}); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"<!-- generated:nope r/report.json -->\n<!-- end -->\n", "<!-- generated:run r/report.json -->\nno end\n", "<!-- generated:run r/missing.json -->\n<!-- end -->\n"} {
		if _, err := renderDoc(bad, root); err == nil {
			t.Errorf("renderDoc accepted %q", bad)
		}
	}
}

func TestHandFigures(t *testing.T) {
	doc := strings.Join([]string{
		"A 64 B message takes 140 ns.",         // figure
		"It is 1.4× the floor.",                // ratio
		"Throughput 4.4 GB/s at 1 MiB.",        // rate
		"About 30% of runs.",                   // percentage
		"The ratio was 0.69.",                  // bare decimal
		"Sizes 4 KiB to 64 MiB, 4–1024 slots.", // sizes and counts: fine
		"iceoryx2 0.10.0 from the registry.",   // a version: fine
		"Run `bench --iters 2000 --wait 5ms`.", // inline code: fine
		"```", "p50 126 ns", "```",             // fenced: fine
		"<!-- generated:run x.json -->", "p50 126 ns", "<!-- end -->", // generated: fine
	}, "\n")
	bad := handFigures(doc)
	if len(bad) != 5 {
		t.Fatalf("handFigures found %d lines, want 5: %q", len(bad), bad)
	}
	for i, b := range bad {
		if !strings.HasPrefix(b, "line "+string(rune('1'+i))+":") {
			t.Errorf("finding %d: %s", i, b)
		}
	}
}
