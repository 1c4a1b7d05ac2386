// Command alloy-bench runs Alloy's microbenchmark suite: every transport in
// one run on one machine, written as target/bench/report.json, report.md and
// SVG plots (latency.svg, throughput.svg, fanout.svg). See
// doc/BENCHMARKS.md for what is measured and how to read it.
//
// Usage (from the repository root, after `make build` and
// `cargo build --release --example bench_peer`):
//
//	alloy-bench [--grid full|quick|smoke] [--out DIR] [--peer PATH] [--only a,b]
//	            [--sections floors,latency,…] [--iceoryx2 PATH] [--pin P,C]
//	            [--sizes 64,4MiB] [--shapes 1-row] [--modes busy] [--variants in-place]
//	            [--iters N] [--reps N]
//	alloy-bench doc [--check] [--doc doc/BENCHMARKS.md] [--root .]
//
// `doc` re-renders the generated regions of doc/BENCHMARKS.md from the
// committed reports they name (docgen.go); --check fails instead of
// writing when the doc differs.
//
// The Rust side of each transport is the helper examples/bench_peer.rs; the
// Go side (shm-go, cgo-oneshot, uds-ipc) runs in this process.
package main

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// grid is the set of points a run measures.
type grid struct {
	latSizes           []int64 // one-way latency payloads
	latBudget          int64   // bytes per latency point: iterations = budget / size …
	latMin, latMax     int     // … clamped to [latMin, latMax]
	tputSizes          []int64 // streaming batch sizes
	tputTotal          int64   // bytes streamed per throughput point
	fanSize, fanTotal  int64   // fan-out message size and bytes per point
	pingIters          int     // atomic ping-pong round trips
	sysLow, sysHigh    int64   // messages of the two strace runs (syscalls/message)
	syscallSize        int64   // message size of the strace runs
	withFanoutBlocking bool
	arrowShapes        []string // shapes of the Arrow latency and round-trip rows
	parkIters          int      // messages of the parked wake-up rows (each after parkPause)
	tputMaxMsgs        int64    // cap on messages per throughput point (small sizes)
	reps               int      // throughput/fan-out runs per point; the median is kept
	pairRounds         int      // rounds of the paired ratios (paired.go)
}

// total is the bytes to stream at size: tputTotal, capped at tputMaxMsgs
// messages.
func (g grid) total(size int64) int64 { return min(g.tputTotal, g.tputMaxMsgs*size) }

const (
	kib = int64(1) << 10
	mib = int64(1) << 20
)

var grids = map[string]grid{
	"smoke": {
		latSizes: []int64{64, 4 * kib}, latBudget: 8 * mib, latMin: 20, latMax: 200,
		tputSizes: []int64{4 * kib, 64 * kib}, tputTotal: 8 * mib,
		fanSize: 64 * kib, fanTotal: 8 * mib, pingIters: 2000,
		sysLow: 100, sysHigh: 20100, syscallSize: 4 * kib, tputMaxMsgs: 10000, reps: 1,
		arrowShapes: []string{"1-row", "mixed"}, parkIters: 30, pairRounds: 3,
	},
	"quick": {
		latSizes: []int64{64, 4 * kib, 64 * kib, mib, 16 * mib, 64 * mib}, latBudget: 2048 * mib, latMin: 30, latMax: 20000,
		tputSizes: []int64{4 * kib, 64 * kib, mib, 16 * mib, 64 * mib}, tputTotal: 2048 * mib,
		fanSize: mib, fanTotal: 1024 * mib, pingIters: 200000,
		sysLow: 1000, sysHigh: 101000, syscallSize: 4 * kib, withFanoutBlocking: true,
		tputMaxMsgs: 100000, reps: 3, arrowShapes: allShapes, parkIters: 2000, pairRounds: 9,
	},
	"full": {
		latSizes: []int64{64, 512, 4 * kib, 32 * kib, 256 * kib, mib, 4 * mib, 16 * mib, 64 * mib}, latBudget: 16384 * mib, latMin: 200, latMax: 200000,
		tputSizes: []int64{4 * kib, 16 * kib, 64 * kib, 256 * kib, mib, 4 * mib, 16 * mib, 64 * mib}, tputTotal: 8192 * mib,
		fanSize: mib, fanTotal: 4096 * mib, pingIters: 2000000,
		sysLow: 10000, sysHigh: 1010000, syscallSize: 4 * kib, withFanoutBlocking: true,
		tputMaxMsgs: 1000000, reps: 3, arrowShapes: allShapes, parkIters: 10000, pairRounds: 15,
	},
}

var allShapes = []string{"1-row", "1024-rows", "1-mib", "mixed"}

// parkPause is the pause before each message of the parked rows: far
// longer than a blocking consumer's spin phase, so it sleeps every time.
const parkPause = time.Millisecond

func (g grid) iters(size int64) int {
	return int(max(int64(g.latMin), min(int64(g.latMax), g.latBudget/size)))
}

// notYet are the suite's transports this driver cannot measure yet, with
// the reason; report.md lists them instead of inventing numbers.
var notYet = []Unavailable{}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "doc" {
		if err := docCommand(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "alloy-bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	gridName := flag.String("grid", "quick", "grid: full, quick or smoke")
	out := flag.String("out", "target/bench", "output directory")
	helper := flag.String("peer", "target/release/examples/bench_peer", "the Rust helper binary")
	only := flag.String("only", "", "comma-separated transports to run (default all)")
	flag.StringVar(&iceoryx2Bin, "iceoryx2", iceoryx2Bin, "the iceoryx2 helper binary (make bench-iceoryx2); missing: iceoryx2 is skipped")
	flag.StringVar(&pinCPUs, "pin", pinCPUs, "PRODUCER,CONSUMER: CPUs the paired ratios' producer and consumer threads are pinned to (empty: not pinned)")
	flag.StringVar(&sectionsFlag, "sections", "", "comma-separated sections to run: floors, latency, arrow, throughput, fanout, syscalls (default all)")
	rowFlags()
	flag.Parse()
	g, ok := grids[*gridName]
	if !ok {
		fmt.Fprintf(os.Stderr, "alloy-bench: unknown grid %q\n", *gridName)
		os.Exit(2)
	}
	g, err := narrow(g)
	if err != nil {
		fmt.Fprintf(os.Stderr, "alloy-bench: %v\n", err)
		os.Exit(2)
	}
	rep, err := run(g, *gridName, *helper, *only)
	if err == nil {
		err = write(rep, *out)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "alloy-bench: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "alloy-bench: wrote %s/report.{json,md}, latency.svg, throughput.svg, fanout.svg in %.0f s\n", *out, rep.Seconds)
}

// suite accumulates results; step logs and runs one measurement.
type suite struct {
	rep    *Report
	g      grid
	helper string
	only   map[string]bool
	err    error
	// section is the part of run() under way; sections, when not empty,
	// are the parts to run (--sections).
	section  string
	sections map[string]bool
}

// sectionsFlag is --sections (make bench-iceoryx2 runs floors,latency).
var sectionsFlag string

func (s *suite) want(transport string) bool {
	return (len(s.only) == 0 || s.only[transport]) && (len(s.sections) == 0 || s.sections[s.section])
}

// enter starts a section of run(): logs it and says whether it runs.
func (s *suite) enter(section, title string) bool {
	s.section = section
	if len(s.sections) > 0 && !s.sections[section] {
		return false
	}
	fmt.Fprintln(os.Stderr, "alloy-bench: "+title)
	return true
}

func (s *suite) step(transport, what string, f func() (Result, error)) {
	if s.err != nil || !s.want(transport) {
		return
	}
	t0 := time.Now()
	r, err := f()
	if err != nil {
		s.err = fmt.Errorf("%s %s: %w", transport, what, err)
		return
	}
	fmt.Fprintf(os.Stderr, "  %-16s %-34s %6.1fs  %s\n", transport, what, time.Since(t0).Seconds(), brief(r))
	s.rep.Results = append(s.rep.Results, r)
}

// stepMedian runs f reps times and keeps the run of median throughput.
func (s *suite) stepMedian(transport, what string, f func() (Result, error)) {
	s.step(transport, what, func() (Result, error) {
		var rs []Result
		for range max(1, s.g.reps) {
			r, err := f()
			if err != nil {
				return r, err
			}
			rs = append(rs, r)
		}
		slices.SortFunc(rs, func(a, b Result) int { return cmp.Compare(*a.ThroughputBytesPerS, *b.ThroughputBytesPerS) })
		return rs[len(rs)/2], nil
	})
}

func brief(r Result) string {
	switch {
	case r.SyscallsPerMessage != nil:
		return fmt.Sprintf("%.3f syscalls/msg", *r.SyscallsPerMessage)
	case r.P50NS != nil:
		return fmt.Sprintf("p50 %s p99 %s", ns(*r.P50NS), ns(*r.P99NS))
	case r.ThroughputBytesPerS != nil:
		return fmt.Sprintf("%.2f GB/s", *r.ThroughputBytesPerS/1e9)
	}
	return ""
}

func run(g grid, gridName, helper, only string) (*Report, error) {
	if _, err := os.Stat(helper); err != nil {
		return nil, fmt.Errorf("Rust helper missing (cargo build --release --example bench_peer): %w", err)
	}
	if err := checkClock(); err != nil {
		return nil, err
	}
	start := time.Now()
	rep := &Report{Env: readEnv(gridName, start.UTC().Format(time.RFC3339)), Unavailable: append([]Unavailable{}, notYet...)}
	s := &suite{rep: rep, g: g, helper: helper, only: map[string]bool{}, sections: map[string]bool{}}
	for _, t := range strings.Split(only, ",") {
		if t != "" {
			s.only[t] = true
		}
	}
	for _, t := range strings.Split(sectionsFlag, ",") {
		if t != "" {
			s.sections[t] = true
		}
	}
	h := helper
	itoa := func(v int64) string { return strconv.FormatInt(v, 10) }
	spin := func(busy bool) []string { return spinArg(busy) }

	s.enter("floors", "floors")
	s.step("atomic-pingpong", "64 B", func() (Result, error) {
		return runPeer(h, "pingpong", "--iters", strconv.Itoa(g.pingIters))
	})
	for _, size := range g.tputSizes {
		s.stepMedian("memcpy", sizeName(size), func() (Result, error) {
			return runPeer(h, "memcpy", "--size", itoa(size), "--total", itoa(g.total(size)))
		})
		s.stepMedian("memcpy", sizeName(size)+" (Go)", func() (Result, error) { return goMemcpy(size, g.total(size)) })
	}

	s.enter("latency", "one-way latency")
	for _, size := range g.latSizes {
		n := g.iters(size)
		for _, busy := range wantModes() {
			what := fmt.Sprintf("%s %s ×%d", sizeName(size), modeName(busy), n)
			s.step("shm-rust", what, func() (Result, error) {
				return runPeer(append([]string{h, "lat", "--size", itoa(size), "--iters", strconv.Itoa(n)}, spin(busy)...)...)
			})
			s.step("shm-go", what, func() (Result, error) { return shmGoLatency(h, size, n, busy, 0) })
			s.iceoryx2Latency(size, n, busy, what)
		}
		what := fmt.Sprintf("%s ×%d", sizeName(size), n)
		s.step("uds-ipc", what, func() (Result, error) { return udsLatency(h, size, n) })
		s.step("cgo-oneshot", what, func() (Result, error) { return cgoLatency(size, n) })
		fn := g.flightIters(size)
		s.step("flight-localhost", fmt.Sprintf("%s ×%d", sizeName(size), fn), func() (Result, error) { return flightLatency(h, size, fn) })
	}

	// The wake-up of a consumer that is really asleep: a pause before each
	// message, against the raw futex ping-pong with the same pause.
	pi, pause := g.parkIters, parkPause
	what := fmt.Sprintf("64 B parked ×%d (pause %v)", pi, pause)
	if wantMode("parked") {
		s.step("futex-pingpong", what, func() (Result, error) {
			return runPeer(h, "futex-pingpong", "--iters", strconv.Itoa(pi), "--pause-us", itoa(pause.Microseconds()))
		})
		s.step("shm-rust", what, func() (Result, error) {
			return runPeer(h, "lat", "--size", "64", "--iters", strconv.Itoa(pi), "--pause-us", itoa(pause.Microseconds()))
		})
		s.step("shm-go", what, func() (Result, error) { return shmGoLatency(h, 64, pi, false, pause) })
	}
	s.pairedLatency()

	s.enter("arrow", "Arrow one-way latency and round trips")
	for _, id := range g.arrowShapes {
		sh := shapeByID(id)
		// The mixed shape's strings and keys count too; a quarter of the raw
		// rows' cap keeps the section to minutes (24 points a shape).
		n := min(g.iters(sh.payload()*4), max(g.latMin, g.latMax/4))
		for _, busy := range wantModes() {
			what := fmt.Sprintf("%s %s ×%d", sh.name, modeName(busy), n)
			for _, tr := range []string{"shm-go-ipc", "shm-go-cdata-write", "shm-go-cdata"} {
				for _, unchecked := range []bool{false, true} {
					v := map[bool]string{false: " validated", true: " unchecked"}[unchecked]
					if !wantVariant(v) {
						continue
					}
					s.step(tr, what+v, func() (Result, error) { return arrowGoRust(h, tr, sh, n, busy, unchecked) })
				}
			}
			for _, tr := range []string{"shm-rust-ipc", "shm-rust-cdata"} {
				for _, inPlace := range []bool{true, false} {
					v := map[bool]string{true: " in place", false: " copied"}[inPlace]
					if !wantVariant(v) {
						continue
					}
					s.step(tr, what+v, func() (Result, error) { return arrowRustGo(h, tr, sh, n, busy, inPlace) })
				}
			}
			s.step("shm-rr", what+" round trip", func() (Result, error) { return ringRoundTrip(h, sh, n, busy) })
		}
		what := fmt.Sprintf("%s ×%d", sh.name, n)
		s.step("uds-ipc", what, func() (Result, error) {
			rec, err := sh.build(memory.NewGoAllocator(), 0)
			if err != nil {
				return Result{}, err
			}
			defer rec.Release()
			r, err := udsLatencyOf(h, rec, sh.payload()*4, n)
			r.Kind, r.PayloadBytes, r.Shape = "arrow-latency", sh.payload(), sh.name
			return r, err
		})
		s.step("cgo-oneshot", what+" round trip", func() (Result, error) { return cgoRoundTrip(sh, n) })
	}
	s.pairedArrow()

	s.enter("throughput", "streaming throughput")
	for _, size := range g.tputSizes {
		for _, busy := range wantModes() {
			what := sizeName(size) + " " + modeName(busy)
			s.stepMedian("shm-rust", what, func() (Result, error) {
				return runPeer(append([]string{h, "tput", "--size", itoa(size), "--total", itoa(g.total(size))}, spin(busy)...)...)
			})
			s.stepMedian("shm-go", what, func() (Result, error) { return shmGoStream(h, size, g.total(size), 1, false, busy, nil) })
		}
		for _, busy := range wantModes() {
			for _, tr := range []string{"shm-go-ipc", "shm-go-cdata"} {
				s.stepMedian(tr, sizeName(size)+" "+modeName(busy), func() (Result, error) {
					return shmGoArrow(h, tr, size, g.total(size), busy)
				})
			}
		}
		if size == pythonSize(g) && s.want(pythonTransport) && s.pythonReady() {
			s.stepMedian(pythonTransport, sizeName(size)+" blocking", func() (Result, error) {
				return shmGoArrow(h, pythonTransport, size, g.total(size), false)
			})
		}
		s.stepMedian("uds-ipc", sizeName(size), func() (Result, error) { return udsThroughput(h, size, g.total(size), nil) })
		s.stepMedian("cgo-oneshot", sizeName(size), func() (Result, error) { return cgoThroughput(size, g.total(size)) })
		s.stepMedian("flight-localhost", sizeName(size), func() (Result, error) { return flightThroughput(h, size, g.flightTotal(size)) })
	}

	s.enter("fanout", "fan-out")
	modes := []bool{true}
	if g.withFanoutBlocking {
		modes = append(modes, false)
	}
	for _, busy := range modes {
		for _, fc := range fanConfigs {
			what := fmt.Sprintf("%s %s %s", sizeName(g.fanSize), fc.name(), modeName(busy))
			s.stepMedian("shm-go", what, func() (Result, error) {
				r, err := shmGoStream(h, g.fanSize, g.fanTotal, fc.n, fc.queue, busy, nil)
				if err == nil && !fc.queue {
					r.Kind = "broadcast"
				}
				return r, err
			})
			s.stepMedian("shm-rust", what, func() (Result, error) {
				args := []string{h, "tput", "--size", itoa(g.fanSize), "--total", itoa(g.fanTotal), "--consumers", strconv.Itoa(fc.n)}
				if fc.queue {
					args = append(args, "--queue")
				}
				r, err := runPeer(append(args, spin(busy)...)...)
				if err == nil && !fc.queue {
					r.Kind = "broadcast"
				}
				return r, err
			})
		}
	}

	if s.enter("syscalls", "syscalls per message (strace -c -f)") {
		if _, err := exec.LookPath("strace"); err != nil {
			rep.Unavailable = append(rep.Unavailable, Unavailable{"syscalls", "strace not installed (scripts/deps.sh installs it for make bench)"})
		} else {
			syscallSteps(s)
		}
	}
	rep.Ratios = ratios(rep, g)
	applySpreads(rep)
	rep.Seconds = time.Since(start).Seconds()
	return rep, s.err
}

// fanConfig is one fan-out shape: n broadcast subscribers, or a work-queue
// group of n members.
type fanConfig struct {
	n     int
	queue bool
}

func (f fanConfig) name() string {
	if f.queue {
		return fmt.Sprintf("queue×%d", f.n)
	}
	return fmt.Sprintf("broadcast×%d", f.n)
}

var fanConfigs = []fanConfig{{1, false}, {2, false}, {4, false}, {2, true}, {4, true}}

// write stores report.json, report.md and the three plots under dir.
func write(rep *Report, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"report.json":    append(js, '\n'),
		"report.md":      []byte(markdown(rep)),
		"latency.svg":    []byte(latencySVG(rep)),
		"throughput.svg": []byte(throughputSVG(rep)),
		"fanout.svg":     []byte(fanoutSVG(rep)),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
