package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// doc/BENCHMARKS.md quotes no number by hand: every figure, ratio and
// verdict in it sits in a generated region rendered from a committed run
// report (doc/bench/…/report.json):
//
//	<!-- generated:KIND path/to/report.json -->
//	… rendered text …
//	<!-- end -->
//
// `alloy-bench doc` rewrites the regions in place; `alloy-bench doc --check`
// (and TestDocGenerated, part of make test) fails when the committed doc
// differs from what its committed reports render, or when prose outside the
// regions quotes a figure. Paths are relative to the repository root.

// regionKinds renders one region from its report.
var regionKinds = map[string]func(rep *Report) string{
	"run":          docRun,
	"report":       docReport,
	"summary":      docSummary,
	"targets":      docTargets,
	"iceoryx2":     docIceoryx2,
	"flight":       docFlight,
	"json-example": docJSONExample,
}

var (
	regionStart = regexp.MustCompile(`^<!-- generated:([a-z0-9-]+) (\S+) -->$`)
	regionEnd   = "<!-- end -->"
)

// loadReport reads a report.json.
func loadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &rep, nil
}

// renderDoc returns doc with every generated region re-rendered from the
// reports it names (relative to root).
func renderDoc(doc, root string) (string, error) {
	lines := strings.Split(doc, "\n")
	var out []string
	for i := 0; i < len(lines); i++ {
		m := regionStart.FindStringSubmatch(lines[i])
		out = append(out, lines[i])
		if m == nil {
			continue
		}
		f, ok := regionKinds[m[1]]
		if !ok {
			return "", fmt.Errorf("line %d: unknown region kind %q", i+1, m[1])
		}
		j := i + 1
		for j < len(lines) && lines[j] != regionEnd {
			if regionStart.MatchString(lines[j]) {
				return "", fmt.Errorf("line %d: region opened at line %d has no %s", j+1, i+1, regionEnd)
			}
			j++
		}
		if j == len(lines) {
			return "", fmt.Errorf("line %d: region has no %s", i+1, regionEnd)
		}
		rep, err := loadReport(filepath.Join(root, m[2]))
		if err != nil {
			return "", fmt.Errorf("line %d: %w", i+1, err)
		}
		out = append(out, strings.TrimRight(f(rep), "\n"), regionEnd)
		i = j
	}
	return strings.Join(out, "\n"), nil
}

// figure matches a quoted measurement: a number with a unit of time, rate or
// ratio, a percentage, or a decimal number (not a version like 0.10.0).
var figure = regexp.MustCompile(`\d[\d.,]*\s?(ns|µs|us|ms|s|GB/s|MB/s|Mrows/s|×|%)(\W|$)|(^|[^\d.])\d+\.\d+(\.?[^\d.]|\.?$)`)

// handFigures lists the lines of doc outside generated regions and fenced
// code that quote a figure.
func handFigures(doc string) []string {
	var bad []string
	in, fence := false, false
	for i, l := range strings.Split(doc, "\n") {
		switch {
		case regionStart.MatchString(l):
			in = true
			continue
		case l == regionEnd:
			in = false
			continue
		case strings.HasPrefix(l, "```"):
			fence = !fence
			continue
		}
		if in || fence {
			continue
		}
		// Inline code quotes commands and names, not results.
		plain := regexp.MustCompile("`[^`]*`").ReplaceAllString(l, "")
		if m := figure.FindString(plain); m != "" {
			bad = append(bad, fmt.Sprintf("line %d: %q in %q", i+1, strings.TrimSpace(m), l))
		}
	}
	return bad
}

// docCommand is `alloy-bench doc [--check] [--doc PATH] [--root DIR]`.
func docCommand(args []string) error {
	path, root, check := "doc/BENCHMARKS.md", ".", false
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--check":
			check = true
		case "--doc", "--root":
			if i+1 == len(args) {
				return fmt.Errorf("%s needs a value", args[i])
			}
			if args[i] == "--doc" {
				path = args[i+1]
			} else {
				root = args[i+1]
			}
			i++
		default:
			return fmt.Errorf("doc: unknown argument %q", args[i])
		}
	}
	b, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		return err
	}
	got, err := renderDoc(string(b), root)
	if err != nil {
		return err
	}
	if bad := handFigures(got); len(bad) > 0 {
		return fmt.Errorf("%s quotes figures outside generated regions:\n  %s", path, strings.Join(bad, "\n  "))
	}
	if check {
		if got != string(b) {
			return fmt.Errorf("%s differs from its reports: run `bin/alloy-bench doc` and commit", path)
		}
		return nil
	}
	return os.WriteFile(filepath.Join(root, path), []byte(got), 0o644)
}

// ---- region renderers ----

// docRun says which run a region's numbers come from.
func docRun(rep *Report) string {
	e := rep.Env
	s := fmt.Sprintf("Run: `%s` grid at commit %s, %s; %s, %d cores, kernel %s; %s, %s; load average at start %s; %.0f s.",
		e.Grid, e.Commit, e.Date, e.CPU, e.Cores, e.Kernel, e.Go, e.Rustc, e.Load, rep.Seconds)
	if strings.HasSuffix(e.Commit, "-dirty") {
		s += " The tree had uncommitted changes."
	}
	if len(rep.Unavailable) > 0 {
		var ts []string
		for _, u := range rep.Unavailable {
			ts = append(ts, "`"+u.Transport+"`")
		}
		s += " Not measured in this run: " + strings.Join(ts, ", ") + "."
	}
	return s
}

// docReport is the run's report.md below its title, one heading level down.
func docReport(rep *Report) string {
	md := markdown(rep)
	_, body, _ := strings.Cut(md, "\n\n")
	return demote(body)
}

// docTargets is the goals table of the run.
func docTargets(rep *Report) string {
	var b strings.Builder
	targetsTable(&b, rep)
	return demote(strings.TrimLeft(b.String(), "\n"))
}

// demote moves every Markdown heading of md one level down.
func demote(md string) string {
	var out []string
	for _, l := range strings.Split(md, "\n") {
		if strings.HasPrefix(l, "#") {
			l = "#" + l
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// docJSONExample shows the shape of report.json with one row and two ratios
// of the run.
func docJSONExample(rep *Report) string {
	ex := struct {
		Env     Env                 `json:"env"`
		Results []Result            `json:"results"`
		Ratios  map[string]*float64 `json:"ratios"`
		Seconds float64             `json:"seconds"`
	}{Env: rep.Env, Ratios: map[string]*float64{}, Seconds: rep.Seconds}
	if r := rep.find("shm-go", "busy", "latency", 64, 0); r != nil {
		ex.Results = append(ex.Results, *r)
	}
	names := slices.Sorted(mapsKeys(rep.Ratios))
	for _, k := range names[:min(2, len(names))] {
		ex.Ratios[k] = rep.Ratios[k]
	}
	js, _ := json.MarshalIndent(ex, "", "  ")
	return "```json\n" + string(js) + "\n```"
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// fig formats a latency quantile of r, or "not measured".
func fig(r *Result, q func(*Result) *float64) string {
	if r == nil || q(r) == nil {
		return "not measured"
	}
	return ns(*q(r))
}

func gb(r *Result) string {
	if r == nil || r.ThroughputBytesPerS == nil {
		return "not measured"
	}
	return fmt.Sprintf("%.2f GB/s", *r.ThroughputBytesPerS/1e9)
}

func ratioOf(a, b *Result, v func(*Result) *float64) string {
	if a == nil || b == nil || v(a) == nil || v(b) == nil || *v(b) == 0 {
		return "not measured"
	}
	return fmtRatio(*v(a) / *v(b))
}

// fmtRatio keeps two significant digits of small ratios.
func fmtRatio(r float64) string {
	if r < 0.1 {
		return fmt.Sprintf("%.2g×", r)
	}
	return fmt.Sprintf("%.2f×", r)
}

// span is "lo–hi (at size a … size b)" of f over rows.
func span(rows []*Result, f func(*Result) *float64, unit func(float64) string) string {
	var lo, hi *Result
	for _, r := range rows {
		if f(r) == nil {
			continue
		}
		if lo == nil || *f(r) < *f(lo) {
			lo = r
		}
		if hi == nil || *f(r) > *f(hi) {
			hi = r
		}
	}
	if lo == nil {
		return "not measured"
	}
	return fmt.Sprintf("%s (%s) to %s (%s)", unit(*f(lo)), sizeName(lo.PayloadBytes), unit(*f(hi)), sizeName(hi.PayloadBytes))
}

func gbUnit(v float64) string { return fmt.Sprintf("%.2f GB/s", v/1e9) }

// rows returns the results of one transport, mode and kind.
func (rep *Report) rows(transport, mode, kind string) []*Result {
	var out []*Result
	for i := range rep.Results {
		if r := &rep.Results[i]; r.Transport == transport && r.Mode == mode && r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

// docSummary is "what the numbers mean", each figure from the run.
func docSummary(rep *Report) string {
	var b strings.Builder
	lat := func(t, m string, size int64) *Result { return rep.find(t, m, "latency", size, 0) }
	go64, go64b := lat("shm-go", "busy", 64), lat("shm-go", "blocking", 64)
	pp := lat("atomic-pingpong", "busy", 64)
	uds := lat("uds-ipc", "blocking", 64)
	cgo := lat("cgo-oneshot", "call", 64)
	fmt.Fprintf(&b, "* **Small messages, latency-bound: the ring.** A 64 B raw message Go → Rust arrives in %s p50 (p99 %s) with busy consumers: %s the two-process cache-line ping-pong (%s) of the same run. "+
		"Arrow IPC over a Unix socket%s takes %s p50 for a 64 B batch, %s the raw ring; the like-for-like Arrow comparison (`shm-go-ipc` against `uds-ipc`, one batch) is in the Arrow latency table and the goals. "+
		"A cgo one-shot call takes %s p50 at 64 B; it is a whole call, so it is compared with a request/reply round trip, not with these one-way figures.\n",
		fig(go64, p50), fig(go64, func(r *Result) *float64 { return r.P99NS }), ratioOf(go64, pp, p50), fig(pp, p50),
		udsNote([]*Result{uds}), fig(uds, p50), ratioOf(uds, go64, p50), fig(cgo, p50))
	one := shapeByID("1-row").name
	al := func(t, m, v string) *Result { return rep.findShape(t, m, "arrow-latency", one, v) }
	goIPC := al("shm-go-ipc", "busy", "validated")
	rrB := rep.findShape("shm-rr", "busy", "roundtrip", one, "echo")
	cgoRT := rep.findShape("cgo-oneshot", "call", "roundtrip", one, "echo")
	udsA := al("uds-ipc", "blocking", "bufio")
	if goIPC == nil {
		b.WriteString("* **Arrow batches, one way:** this run has no Arrow latency or round-trip rows (the suite gained them after it).\n")
	} else {
		fmt.Fprintf(&b, "* **Arrow batches, one way (1 row, busy).** Go → Rust with the Rust reader validating in place: IPC mode %s p50 (%s the raw 64 B message), C-Data-offsets `Write` %s, `Build` %s. Rust → Go with the Go reader in place: IPC mode %s, C-Data-offsets %s. "+
			"Unix-socket Arrow IPC with a buffered writer: %s, %s IPC mode over the ring. A round trip over the ring takes %s (busy) against %s for a cgo call with a batch each way.\n",
			fig(goIPC, p50), ratioOf(goIPC, go64, p50), fig(al("shm-go-cdata-write", "busy", "validated"), p50), fig(al("shm-go-cdata", "busy", "validated"), p50),
			fig(al("shm-rust-ipc", "busy", "in place"), p50), fig(al("shm-rust-cdata", "busy", "in place"), p50),
			fig(udsA, p50), ratioOf(udsA, goIPC, p50), fig(rrB, p50), fig(cgoRT, p50))
	}
	fmt.Fprintf(&b, "* **Blocking consumers** (spin briefly, then park on the futex): 64 B p50 %s, p99 %s. The p50 is the spin phase catching the message; a consumer that has parked pays a futex wake-up, visible in the p99 and in the blocking rows of larger payloads.\n",
		fig(go64b, p50), fig(go64b, func(r *Result) *float64 { return r.P99NS }))
	_, tp := refSizesOf(rep)
	goTp := rep.find("shm-go", "busy", "throughput", tp, 0)
	mc := rep.find("memcpy", "copy-go", "throughput", tp, 0)
	fmt.Fprintf(&b, "* **Streaming between processes: the ring.** `shm-go` busy ran at %s across batch sizes; at %s it reached %s, %s Go's memcpy floor over the same footprint (%s). "+
		"Arrow IPC over a Unix socket (`uds-ipc`)%s ran at %s; Arrow over the ring in IPC mode (`shm-go-ipc` busy) at %s.\n",
		span(rep.rows("shm-go", "busy", "throughput"), tput, gbUnit), sizeName(tp), gb(goTp), ratioOf(goTp, mc, tput), gb(mc),
		udsNote(rep.rows("uds-ipc", "blocking", "throughput")), span(rep.rows("uds-ipc", "blocking", "throughput"), tput, gbUnit), span(rep.rows("shm-go-ipc", "busy", "throughput"), tput, gbUnit))
	cg := rep.rows("cgo-oneshot", "call", "throughput")
	fmt.Fprintf(&b, "* **Large batches inside one process: the cgo bridge** hands over buffers without copying them (the `sum` handler reads every value): %s across batch sizes; at small batches the fixed cost of a call dominates.\n",
		span(cg, tput, gbUnit))
	var fan []string
	for _, m := range []string{"busy", "blocking"} {
		one := rep.find("shm-go", m, "broadcast", rep.fanSize(), 1)
		fan = append(fan, fmt.Sprintf("%s: broadcast×4 %s and queue×4 %s of broadcast×1", m,
			ratioOf(rep.find("shm-go", m, "broadcast", rep.fanSize(), 4), one, tput),
			ratioOf(rep.find("shm-go", m, "queue", rep.fanSize(), 4), one, tput)))
	}
	fmt.Fprintf(&b, "* **Fan-out on %d cores: prefer a work-queue group to broadcast.** Every broadcast subscriber reads every byte; a queue member reads its share (`shm-go` at %s, %s).\n",
		rep.Env.Cores, sizeName(rep.fanSize()), strings.Join(fan, "; "))
	return b.String()
}

// refSizesOf is refSizes for a report read back from JSON: 64 B latency
// and 1 MiB throughput when measured, else the smallest / largest.
func refSizesOf(rep *Report) (lat, tp int64) {
	if g, ok := grids[rep.Env.Grid]; ok {
		return refSizes(g)
	}
	return 64, mib
}

func (rep *Report) fanSize() int64 {
	for _, r := range rep.Results {
		if r.Kind == "broadcast" {
			return r.PayloadBytes
		}
	}
	return mib
}

// docIceoryx2 is one iceoryx2 run: the ring's Rust consumers against
// iceoryx2 per payload, and the floor and Go producer of the same run.
func docIceoryx2(rep *Report) string {
	var b strings.Builder
	b.WriteString(docRun(rep) + "\n\n")
	b.WriteString("| payload | iceoryx2 (busy) | shm-rust busy | ratio p50 / p99 | iceoryx2-event | shm-rust blocking | ratio p50 / p99 |\n|---:|---:|---:|---:|---:|---:|---:|\n")
	p99 := func(r *Result) *float64 { return r.P99NS }
	pair := func(r *Result) string { return fig(r, p50) + " / " + fig(r, p99) }
	for _, size := range sizesOf(collect(rep, "latency")) {
		ib, rb := rep.find("iceoryx2", "busy", "latency", size, 0), rep.find("shm-rust", "busy", "latency", size, 0)
		ie, re := rep.find("iceoryx2-event", "blocking", "latency", size, 0), rep.find("shm-rust", "blocking", "latency", size, 0)
		if ib == nil && ie == nil {
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %s | **%s** / %s | %s | %s | **%s** / %s |\n", sizeName(size),
			pair(ib), pair(rb), ratioOf(rb, ib, p50), ratioOf(rb, ib, p99), pair(ie), pair(re), ratioOf(re, ie, p50), ratioOf(re, ie, p99))
	}
	pp := rep.find("atomic-pingpong", "busy", "latency", 64, 0)
	gb, gbl := rep.find("shm-go", "busy", "latency", 64, 0), rep.find("shm-go", "blocking", "latency", 64, 0)
	fmt.Fprintf(&b, "\nFloor and Go producer in the same run: atomic-pingpong p50 %s; shm-go busy 64 B %s (shm-go/iceoryx2 p50 %s); shm-go blocking 64 B %s (shm-go blocking/iceoryx2-event p50 %s).\n",
		fig(pp, p50), pair(gb), ratioOf(gb, rep.find("iceoryx2", "busy", "latency", 64, 0), p50),
		pair(gbl), ratioOf(gbl, rep.find("iceoryx2-event", "blocking", "latency", 64, 0), p50))
	return b.String()
}

// docFlight compares flight-localhost with uds-ipc (latency) and with
// shm-go-ipc and uds-ipc (throughput) in one run.
func docFlight(rep *Report) string {
	var b strings.Builder
	p99 := func(r *Result) *float64 { return r.P99NS }
	b.WriteString(docRun(rep) + "\n\n| payload | flight-localhost p50 / p99 | uds-ipc p50 / p99 | flight / uds-ipc p50 |\n|---:|---:|---:|---:|\n")
	for _, r := range rep.rows("flight-localhost", "blocking", "latency") {
		u := rep.find("uds-ipc", "blocking", "latency", r.PayloadBytes, 0)
		fmt.Fprintf(&b, "| %s | %s / %s | %s / %s | %s |\n", sizeName(r.PayloadBytes), fig(r, p50), fig(r, p99), fig(u, p50), fig(u, p99), ratioOf(r, u, p50))
	}
	b.WriteString("\n| batch | flight-localhost | shm-go-ipc blocking | uds-ipc | flight / shm-go-ipc |\n|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.rows("flight-localhost", "blocking", "throughput") {
		s := rep.find("shm-go-ipc", "blocking", "throughput", r.PayloadBytes, 0)
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", sizeName(r.PayloadBytes), gb(r), gb(s), gb(rep.find("uds-ipc", "blocking", "throughput", r.PayloadBytes, 0)), ratioOf(r, s, tput))
	}
	return b.String()
}

// udsNote marks uds-ipc figures measured before the buffered writer
// (variant bufio): one write(2) per IPC message part, default buffers.
func udsNote(rows []*Result) string {
	for _, r := range rows {
		if r != nil && r.Variant != "bufio" {
			return " (an unbuffered writer: the run predates the buffered one)"
		}
	}
	return ""
}
