package main

import (
	"encoding/json"
	"encoding/xml"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ignalina/alloy/go/internal/testbin"
)

// helperPath is the Rust side of the suite, built by
// `cargo build --release --example bench_peer` (make bench-smoke, make
// test-go); $ALLOY_BENCH_PEER overrides it. Missing: a skip, or a failure
// under CI / ALLOY_REQUIRE_CROSS / ALLOY_BENCH_REQUIRE=1.
func helperPath(t *testing.T) string {
	p := testbin.Path("ALLOY_BENCH_PEER", "target/release/examples/bench_peer")
	if _, err := os.Stat(p); err != nil && os.Getenv("ALLOY_BENCH_REQUIRE") == "1" {
		t.Fatalf("bench helper missing: %v", err)
	}
	return testbin.Need(t, "ALLOY_BENCH_PEER", "target/release/examples/bench_peer")
}

// TestSmoke runs the whole suite on the tiny grid and checks that every
// output is well formed and complete. It checks no timing: performance
// claims live in the reports only.
func TestSmoke(t *testing.T) {
	helper := helperPath(t)
	if !bridgeBuilt {
		// The suite includes cgo-oneshot, which this binary lacks.
		if os.Getenv("ALLOY_BENCH_REQUIRE") == "1" {
			t.Fatal("built without -tags alloy_ffi: the cgo-oneshot transport is missing")
		}
		testbin.Skip(t, "built without -tags alloy_ffi (the cgo bridge): run with -tags alloy_ffi after make build")
	}
	// The Python peer (shm-go-ipc-python) needs the alloy_shm package.
	pythonSink = "python_sink.py"
	withPython := pythonMissing() == ""
	if !withPython && os.Getenv("ALLOY_BENCH_REQUIRE") == "1" {
		t.Fatalf("shm-go-ipc-python: %s", pythonMissing())
	}
	rep, err := run(grids["smoke"], "smoke", helper, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := write(rep, dir); err != nil {
		t.Fatal(err)
	}
	checkJSON(t, filepath.Join(dir, "report.json"))
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	if withPython {
		if rep.find(pythonTransport, "blocking", "throughput", pythonSize(grids["smoke"]), 0) == nil {
			t.Errorf("no %s result", pythonTransport)
		}
		if r := rep.Ratios["shm-go-ipc-python/shm-go-ipc throughput 64 KiB blocking"]; r == nil || *r <= 0 {
			t.Errorf("ratio shm-go-ipc-python/shm-go-ipc missing: %v", rep.Ratios)
		}
	} else if !strings.Contains(string(mustRead(t, dir, "report.md")), pythonTransport) {
		t.Errorf("report.md does not list %s as not measured", pythonTransport)
	}
	for _, want := range append(measured, "| transport | mode |", "## Ratios", "## Targets of issue 6", "## Goals of issue 13", "## Arrow one-way latency", "## Round trips", "shm-go-ipc", "shm-go-cdata") {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	for name, want := range map[string][]string{
		"latency.svg":    {"polyline", "shm-go busy p50", "uds-ipc blocking p99", "atomic-pingpong busy p50", "flight-localhost blocking p50"},
		"throughput.svg": {"polyline", "memcpy copy", "shm-rust busy", "cgo-oneshot call", "flight-localhost blocking"},
		"fanout.svg":     {"<rect", "shm-go busy", "queue ×4", "broadcast ×4"},
	} {
		checkSVG(t, filepath.Join(dir, name), want)
	}
}

// measured are the transports this driver runs (the others are listed as
// not measured yet).
var measured = []string{"memcpy", "atomic-pingpong", "shm-rust", "shm-go", "cgo-oneshot", "uds-ipc", "flight-localhost",
	"shm-go-ipc", "shm-go-cdata-write", "shm-go-cdata", "shm-rust-ipc", "shm-rust-cdata", "shm-rr", "futex-pingpong"}

func mustRead(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkJSON(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Env         map[string]any      `json:"env"`
		Results     []map[string]any    `json:"results"`
		Ratios      map[string]*float64 `json:"ratios"`
		Spreads     map[string]Spread   `json:"ratio_spreads"`
		Unavailable []map[string]string `json:"unavailable"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"cpu", "cores", "kernel", "go", "rustc", "commit"} {
		if _, ok := raw.Env[k]; !ok {
			t.Errorf("env lacks %q", k)
		}
	}
	if c, _ := raw.Env["cores"].(float64); c < 1 {
		t.Errorf("env.cores = %v", raw.Env["cores"])
	}
	fields := []string{"transport", "mode", "payload_bytes", "consumers", "p50_ns", "p99_ns", "p999_ns", "max_ns", "throughput_bytes_per_s", "rows_per_s", "messages"}
	seen := map[string]bool{}
	kinds := map[string]bool{}
	for i, r := range raw.Results {
		for _, f := range fields {
			if _, ok := r[f]; !ok {
				t.Errorf("result %d lacks %q: %v", i, f, r)
			}
		}
		seen[r["transport"].(string)] = true
		kind := r["kind"].(string)
		kinds[kind] = true
		if n, _ := r["messages"].(float64); n < 1 {
			t.Errorf("result %d: messages = %v", i, r["messages"])
		}
		switch kind {
		case "latency", "arrow-latency", "roundtrip":
			var prev float64
			for _, f := range []string{"p50_ns", "p99_ns", "p999_ns", "max_ns"} {
				v, ok := r[f].(float64)
				if !ok || v < prev || v <= 0 {
					t.Errorf("result %d: %s = %v (quantiles must be positive and ordered)", i, f, r[f])
				}
				prev = v
			}
		case "throughput", "broadcast", "queue":
			tp, ok1 := r["throughput_bytes_per_s"].(float64)
			rows, ok2 := r["rows_per_s"].(float64)
			if !ok1 || !ok2 || !(tp > 0) || math.IsInf(tp, 0) || math.Abs(rows*8-tp) > tp*1e-6 {
				t.Errorf("result %d: throughput %v, rows/s %v", i, r["throughput_bytes_per_s"], r["rows_per_s"])
			}
		case "syscalls":
			if v, ok := r["syscalls_per_message"].(float64); !ok || v < 0 {
				t.Errorf("result %d: syscalls_per_message = %v", i, r["syscalls_per_message"])
			}
		default:
			t.Errorf("result %d: unknown kind %q", i, kind)
		}
	}
	for _, tr := range measured {
		if !seen[tr] {
			t.Errorf("no results for transport %s", tr)
		}
	}
	want := []string{"latency", "throughput", "broadcast", "queue", "arrow-latency", "roundtrip"}
	if _, err := exec.LookPath("strace"); err == nil {
		want = append(want, "syscalls")
	}
	for _, k := range want {
		if !kinds[k] {
			t.Errorf("no results of kind %s", k)
		}
	}
	for _, k := range []string{"shm-go/atomic-pingpong p50 64 B busy", "shm-go broadcast×4/broadcast×1 throughput 64 KiB busy",
		"shm-go-ipc/shm-go p50 1 row busy", "uds-ipc/shm-go-ipc p50 1 row", "uds-ipc/shm-go-ipc throughput 64 KiB busy",
		"shm-rr/cgo-oneshot round trip p50 1 row busy", "shm-rr/cgo-oneshot round trip p50 1 row blocking",
		"shm-go parked/futex-pingpong p50 64 B", "shm-rust parked/futex-pingpong p50 64 B",
		"shm-go-ipc/memcpy throughput 64 KiB", "shm-go-cdata/memcpy throughput 64 KiB",
		"flight-localhost/shm-go-ipc throughput 64 KiB blocking", "flight-localhost/uds-ipc p50 64 B"} {
		if v, ok := raw.Ratios[k]; !ok || v == nil || !(*v > 0) {
			t.Errorf("ratio %q = %v, want a positive number", k, v)
		}
	}
	checkArrowRows(t, raw.Results)
	// The paired ratios: every round measured, the summary ordered, and
	// "ratios" holding the median.
	for _, k := range []string{"shm-go/atomic-pingpong p50 64 B busy", "shm-rust/atomic-pingpong p50 64 B busy",
		"shm-go parked/futex-pingpong p50 64 B", "shm-rust parked/futex-pingpong p50 64 B",
		"shm-go-ipc/shm-go p50 1 row busy", "shm-rr/cgo-oneshot round trip p50 1 row busy", "shm-rr/cgo-oneshot round trip p50 1 row blocking"} {
		sp, ok := raw.Spreads[k]
		switch {
		case !ok:
			t.Errorf("no ratio_spreads entry %q", k)
		case sp.Rounds != grids["smoke"].pairRounds || len(sp.Values) != sp.Rounds:
			t.Errorf("%s: %d rounds, %d values, want %d", k, sp.Rounds, len(sp.Values), grids["smoke"].pairRounds)
		case !(sp.Min > 0 && sp.Min <= sp.Q1 && sp.Q1 <= sp.Median && sp.Median <= sp.Q3 && sp.Q3 <= sp.Max):
			t.Errorf("%s: spread not ordered: %+v", k, sp)
		case raw.Ratios[k] == nil || *raw.Ratios[k] != sp.Median:
			t.Errorf("%s: ratio %v, want the median %v", k, raw.Ratios[k], sp.Median)
		}
	}
	for _, tr := range []string{"futex-pingpong", "shm-go", "shm-rust"} {
		n := 0
		for _, r := range raw.Results {
			if r["transport"] == tr && r["mode"] == "parked" {
				n++
				if f, ok := r["parked_fraction"].(float64); !ok || f < 0 || f > 1 {
					t.Errorf("%s parked: parked_fraction = %v", tr, r["parked_fraction"])
				}
			}
		}
		if n != 1 {
			t.Errorf("%d parked rows of %s, want 1", n, tr)
		}
	}
	un := map[string]bool{}
	for _, u := range raw.Unavailable {
		un[u["transport"]] = u["reason"] != ""
	}
	for _, tr := range []string{"shm-go-ipc", "shm-go-cdata"} {
		if _, listed := un[tr]; listed {
			t.Errorf("%s is measured now but listed as unavailable", tr)
		}
	}
	if _, listed := un["flight-localhost"]; listed {
		t.Errorf("flight-localhost is measured now but listed as unavailable")
	}
}

func checkSVG(t *testing.T, path string, want []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(strings.NewReader(string(b)))
	root := ""
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: not well-formed XML: %v", path, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			// encoding/xml accepts repeated attributes; SVG viewers do not.
			names := map[string]bool{}
			for _, a := range se.Attr {
				if names[a.Name.Local] {
					t.Errorf("%s: <%s> repeats attribute %s", filepath.Base(path), se.Name.Local, a.Name.Local)
				}
				names[a.Name.Local] = true
			}
		}
	}
	if root != "svg" {
		t.Errorf("%s: root element %q, want svg", path, root)
	}
	for _, w := range want {
		if !strings.Contains(string(b), w) {
			t.Errorf("%s lacks %q", filepath.Base(path), w)
		}
	}
	if strings.Contains(string(b), "NaN") || strings.Contains(string(b), "Inf") {
		t.Errorf("%s has NaN/Inf coordinates", filepath.Base(path))
	}
}

func TestStraceTotal(t *testing.T) {
	f := filepath.Join(t.TempDir(), "s")
	summary := `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 60.00    0.000060           6        10           futex
 40.00    0.000040           1        31         2 read
------ ----------- ----------- --------- --------- ----------------
100.00    0.000100           2        41         2 total
`
	if err := os.WriteFile(f, []byte(summary), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := straceTotal(f); err != nil || n != 41 {
		t.Fatalf("straceTotal = %d, %v; want 41", n, err)
	}
	if err := os.WriteFile(f, []byte("nothing\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := straceTotal(f); err == nil {
		t.Fatal("straceTotal accepted a file without a total line")
	}
}

func TestQuantiles(t *testing.T) {
	var r Result
	ns := make([]int64, 1000)
	for i := range ns {
		ns[i] = int64(1000 - i) // 1..1000, unsorted
	}
	quantiles(&r, ns)
	if *r.P50NS != 500 || *r.P99NS != 990 || *r.P999NS != 999 || *r.MaxNS != 1000 || r.Messages != 1000 {
		t.Fatalf("quantiles: p50 %v p99 %v p999 %v max %v n %d", *r.P50NS, *r.P99NS, *r.P999NS, *r.MaxNS, r.Messages)
	}
}

// TestSpread: nearest-rank quartiles of per-round ratios, kept in round
// order.
func TestSpread(t *testing.T) {
	sp := newSpread([]float64{5, 1, 4, 2, 3}, "")
	if sp.Rounds != 5 || sp.Min != 1 || sp.Q1 != 2 || sp.Median != 3 || sp.Q3 != 4 || sp.Max != 5 || sp.Values[0] != 5 {
		t.Fatalf("spread %+v", sp)
	}
	if got := sp.String(); got != "median of 5 paired rounds; IQR 2.000–4.000, range 1.000–5.000" {
		t.Fatalf("String() = %q", got)
	} // An even count: the mean of the two middle values, not the lower one.
	if sp := newSpread([]float64{4, 1, 3, 2}, ""); sp.Median != 2.5 {
		t.Fatalf("median of 1..4 = %v, want 2.5", sp.Median)
	}
}

// TestRenderEmpty: a report without results still renders valid outputs.
func TestRenderEmpty(t *testing.T) {
	rep := &Report{Unavailable: notYet}
	rep.Ratios = ratios(rep, grids["smoke"])
	dir := t.TempDir()
	if err := write(rep, dir); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"latency.svg", "throughput.svg", "fanout.svg"} {
		checkSVG(t, filepath.Join(dir, n), []string{"<svg"})
	}
	for _, v := range rep.Ratios {
		if v != nil {
			t.Fatalf("ratio without data: %v", *v)
		}
	}
}

// checkArrowRows: every Arrow latency and round-trip combination of the
// smoke grid was measured, once.
func checkArrowRows(t *testing.T, results []map[string]any) {
	t.Helper()
	got := map[string]int{}
	for _, r := range results {
		if k := r["kind"].(string); k == "arrow-latency" || k == "roundtrip" {
			sh, _ := r["shape"].(string)
			v, _ := r["variant"].(string)
			got[strings.Join([]string{k, r["transport"].(string), v, r["mode"].(string), sh}, "|")]++
		}
	}
	var want []string
	for _, id := range grids["smoke"].arrowShapes {
		sh := shapeByID(id).name
		for _, m := range []string{"busy", "blocking"} {
			for _, tr := range []string{"shm-go-ipc", "shm-go-cdata-write", "shm-go-cdata"} {
				for _, v := range []string{"validated", "unchecked"} {
					want = append(want, "arrow-latency|"+tr+"|"+v+"|"+m+"|"+sh)
				}
			}
			for _, tr := range []string{"shm-rust-ipc", "shm-rust-cdata"} {
				for _, v := range []string{"in place", "copied"} {
					want = append(want, "arrow-latency|"+tr+"|"+v+"|"+m+"|"+sh)
				}
			}
			want = append(want, "roundtrip|shm-rr|echo|"+m+"|"+sh)
		}
		want = append(want, "arrow-latency|uds-ipc|bufio|blocking|"+sh, "roundtrip|cgo-oneshot|echo|call|"+sh)
	}
	for _, w := range want {
		if got[w] != 1 {
			t.Errorf("%d rows of %s, want 1", got[w], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d Arrow row kinds, want %d: %v", len(got), len(want), got)
	}
}
