package main

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Paired ratios. On a small virtual machine the latency of one burst is
// bimodal: the same row lands near one of two values depending on where
// the scheduler has put the two threads at that moment (a core of its own,
// or a hyper-thread sibling), and that changes over seconds. A floor
// (atomic-pingpong) measured at one moment of the run and a subject (shm-go)
// measured at another give a ratio that depends on which mode each caught.
// A paired ratio measures both in rounds instead: each round runs one burst
// of the floor and one of every subject back to back (the order rotates from
// round to round, so neither side always goes first), takes the ratio of the
// p50s within the round, and the report publishes the median over the
// rounds with its spread (Spread). The single rows of the latency tables
// are measured as before; only the ratio comes from the rounds.

// Spread is the distribution of one ratio's per-round values: report.json
// "ratio_spreads", keyed by the ratio's name; "ratios" holds its Median.
type Spread struct {
	// Rounds is the number of rounds; Values their ratios, in round order.
	Rounds int       `json:"rounds"`
	Values []float64 `json:"values"`
	// Median (the middle value; the mean of the two middle ones for an even
	// count), Q1, Q3 (nearest rank), Min and Max summarise Values.
	Median float64 `json:"median"`
	Q1     float64 `json:"q1"`
	Q3     float64 `json:"q3"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	// Pinned names the CPUs producer and consumer were pinned to
	// ("producer,consumer"), empty when the scheduler placed them.
	Pinned string `json:"pinned,omitempty"`
}

// newSpread summarises per-round ratios.
func newSpread(values []float64, pinned string) *Spread {
	s := slices.Clone(values)
	slices.Sort(s)
	q := func(p float64) float64 {
		k := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(0, min(k, len(s)-1))]
	}
	// The median of an even count is the mean of the two middle values
	// (nearest rank would take the lower one, flattering "≤ goal" checks).
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return &Spread{Rounds: len(values), Values: values, Median: med, Q1: q(0.25), Q3: q(0.75), Min: s[0], Max: s[len(s)-1], Pinned: pinned}
}

// String is the spread as the goal tables print it.
func (s *Spread) String() string {
	return fmt.Sprintf("median of %d paired rounds; IQR %.3f–%.3f, range %.3f–%.3f", s.Rounds, s.Q1, s.Q3, s.Min, s.Max)
}

// burst measures one transport for iters messages.
type burst struct {
	transport string
	run       func(iters int) (Result, error)
}

// subject is a burst and the name of its ratio to the group's floor.
type subject struct {
	ratio string
	burst
}

// pinCPUs is --pin: "PRODUCER,CONSUMER" CPUs for the paired rounds, or
// empty to leave placement to the scheduler.
var pinCPUs string

// paired runs rounds of floor and subjects (those --only and --sections
// want) with iters messages a burst, and records each subject's Spread.
func (s *suite) paired(floor burst, iters int, subjects ...subject) {
	if s.err != nil || !s.want(floor.transport) {
		return
	}
	var subs []subject
	for _, x := range subjects {
		if s.want(x.transport) {
			subs = append(subs, x)
		}
	}
	if len(subs) == 0 {
		return
	}
	rounds := max(1, s.g.pairRounds)
	t0 := time.Now()
	values := make([][]float64, len(subs))
	bursts := append([]burst{floor}, make([]burst, len(subs))...)
	for i, x := range subs {
		bursts[i+1] = x.burst
	}
	err := withPin(pinCPUs, func() error {
		for r := range rounds {
			p50s := make([]float64, len(bursts))
			for k := range bursts {
				j := (k + r) % len(bursts) // rotate who goes first
				res, err := bursts[j].run(iters)
				if err != nil {
					return fmt.Errorf("round %d, %s: %w", r, bursts[j].transport, err)
				}
				p50s[j] = *res.P50NS
			}
			for i := range subs {
				if p50s[0] <= 0 {
					return fmt.Errorf("round %d: %s p50 is %v", r, floor.transport, p50s[0])
				}
				values[i] = append(values[i], p50s[i+1]/p50s[0])
			}
		}
		return nil
	})
	if err != nil {
		s.err = fmt.Errorf("paired ratios against %s: %w", floor.transport, err)
		return
	}
	if s.rep.Spreads == nil {
		s.rep.Spreads = map[string]*Spread{}
	}
	for i, x := range subs {
		sp := newSpread(values[i], pinCPUs)
		s.rep.Spreads[x.ratio] = sp
		fmt.Fprintf(os.Stderr, "  %-16s %-34s %6.1fs  %s = %.3f (%s)\n", "paired", fmt.Sprintf("%d rounds ×%d", rounds, iters),
			time.Since(t0).Seconds(), x.ratio, sp.Median, sp)
	}
}

// withPin runs f with the calling goroutine locked to its thread and, when
// cpus is "P,C", that thread pinned to CPU P and every peer started meanwhile
// told (ALLOY_BENCH_CPUS, read by bench_peer) to pin its producer roles to P
// and its consumer roles to C. The thread's mask is restored afterwards.
func withPin(cpus string, f func() error) error {
	if cpus == "" {
		return f()
	}
	p, _, ok := strings.Cut(cpus, ",")
	cpu, err := strconv.Atoi(p)
	if !ok || err != nil {
		return fmt.Errorf("--pin %q: want PRODUCER,CONSUMER", cpus)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	restore, err := pinThread(cpu)
	if err != nil {
		return err
	}
	defer restore()
	peerEnv = []string{"ALLOY_BENCH_CPUS=" + cpus}
	defer func() { peerEnv = nil }()
	return f()
}

// pairedLatency adds the paired ratios of the latency section: the raw
// 64 B rows against the atomic ping-pong, the parked rows against the futex
// ping-pong, and shm-go against iceoryx2 when it is built.
func (s *suite) pairedLatency() {
	g, h := s.g, s.helper
	n := func(total int) int { return max(g.latMin, total/max(1, g.pairRounds)) }
	pp := burst{"atomic-pingpong", func(i int) (Result, error) { return runPeer(h, "pingpong", "--iters", strconv.Itoa(i)) }}
	rustLat := func(args ...string) func(int) (Result, error) {
		return func(i int) (Result, error) {
			return runPeer(append([]string{h, "lat", "--size", "64", "--iters", strconv.Itoa(i)}, args...)...)
		}
	}
	goLat := func(busy bool, pause time.Duration) func(int) (Result, error) {
		return func(i int) (Result, error) { return shmGoLatency(h, 64, i, busy, pause) }
	}
	// The floor's bursts are as long as the subjects' in messages: a
	// ping-pong message is a few times cheaper, so its burst is shorter.
	lat := g.iters(64)
	s.paired(pp, n(lat),
		subject{"shm-go/atomic-pingpong p50 64 B busy", burst{"shm-go", goLat(true, 0)}},
		subject{"shm-rust/atomic-pingpong p50 64 B busy", burst{"shm-rust", rustLat("--spin")}})
	pause := strconv.FormatInt(parkPause.Microseconds(), 10)
	fp := burst{"futex-pingpong", func(i int) (Result, error) {
		return runPeer(h, "futex-pingpong", "--iters", strconv.Itoa(i), "--pause-us", pause)
	}}
	s.paired(fp, n(g.parkIters),
		subject{"shm-go parked/futex-pingpong p50 64 B", burst{"shm-go", goLat(false, parkPause)}},
		subject{"shm-rust parked/futex-pingpong p50 64 B", burst{"shm-rust", rustLat("--pause-us", pause)}})
	if (!s.want("iceoryx2") && !s.want("iceoryx2-event")) || !s.iceoryx2Built() {
		return
	}
	ice := func(event bool) func(int) (Result, error) {
		return func(i int) (Result, error) {
			args := []string{iceoryx2Bin, "lat", "--size", "64", "--iters", strconv.Itoa(i)}
			if event {
				args = append(args, "--event")
			}
			return runPeer(args...)
		}
	}
	s.paired(burst{"iceoryx2", ice(false)}, n(lat),
		subject{"shm-go/iceoryx2 p50 64 B busy", burst{"shm-go", goLat(true, 0)}})
	s.paired(burst{"iceoryx2-event", ice(true)}, n(lat),
		subject{"shm-go blocking/iceoryx2-event p50 64 B", burst{"shm-go", goLat(false, 0)}})
}

// pairedArrow adds the paired ratios of the Arrow section: the 1-row
// batch against the raw 64 B message (Go → Rust IPC and C-Data-offsets
// Write, Rust → Go IPC and C-Data-offsets read in place), and the
// request/reply round trip against the cgo call.
func (s *suite) pairedArrow() {
	g, h := s.g, s.helper
	if !slices.Contains(g.arrowShapes, "1-row") {
		return
	}
	sh := shapeByID("1-row")
	n := max(g.latMin, min(g.iters(sh.payload()*4), max(g.latMin, g.latMax/4))/max(1, g.pairRounds))
	goRust := func(tr string) burst {
		return burst{tr, func(i int) (Result, error) { return arrowGoRust(h, tr, sh, i, true, false) }}
	}
	rustGo := func(tr string) burst {
		return burst{tr, func(i int) (Result, error) { return arrowRustGo(h, tr, sh, i, true, true) }}
	}
	s.paired(burst{"shm-go", func(i int) (Result, error) { return shmGoLatency(h, 64, i, true, 0) }}, n,
		subject{"shm-go-ipc/shm-go p50 1 row busy", goRust("shm-go-ipc")},
		subject{"shm-go-cdata-write/shm-go p50 1 row busy", goRust("shm-go-cdata-write")},
		subject{"shm-rust-ipc in place/shm-go p50 1 row busy", rustGo("shm-rust-ipc")},
		subject{"shm-rust-cdata in place/shm-go p50 1 row busy", rustGo("shm-rust-cdata")})
	var subs []subject
	for _, busy := range []bool{true, false} {
		subs = append(subs, subject{"shm-rr/cgo-oneshot round trip p50 1 row " + modeName(busy), burst{"shm-rr", func(i int) (Result, error) {
			return ringRoundTrip(h, sh, i, busy)
		}}})
	}
	s.paired(burst{"cgo-oneshot", func(i int) (Result, error) { return cgoRoundTrip(sh, i) }}, n, subs...)
}

// spreadNote is " (median of … rounds; IQR …, range …)" for a paired
// ratio, empty for a ratio of single rows.
func (rep *Report) spreadNote(key string) string {
	if sp := rep.Spreads[key]; sp != nil {
		return " (" + sp.String() + ")"
	}
	return ""
}

// applySpreads replaces each paired ratio by the median of its rounds.
func applySpreads(rep *Report) {
	for k, sp := range rep.Spreads {
		rep.Ratios[k] = f64(sp.Median)
	}
}

// spreadsTable writes report.md's table of the paired ratios.
func spreadsTable(b *strings.Builder, rep *Report) {
	if len(rep.Spreads) == 0 {
		return
	}
	b.WriteString("\n## Paired ratios (floor and subject interleaved)\n\n" +
		"Each round measures one burst of the floor and one of the subject back to back; the ratio is taken within the round. " +
		"The Ratios table above holds the median.\n\n" +
		"| ratio | rounds | median | Q1 | Q3 | min | max | pinned |\n|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, k := range slices.Sorted(mapsKeys(rep.Spreads)) {
		sp := rep.Spreads[k]
		pin := "no"
		if sp.Pinned != "" {
			pin = "CPUs " + sp.Pinned
		}
		fmt.Fprintf(b, "| %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %s |\n", k, sp.Rounds, sp.Median, sp.Q1, sp.Q3, sp.Min, sp.Max, pin)
	}
}
