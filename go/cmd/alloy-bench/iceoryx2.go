package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// iceoryx2Bin is the iceoryx2 side of the suite (examples/bench_iceoryx2.rs),
// built only by `make bench-iceoryx2`: the iceoryx2 crate stays out of the
// default build and CI, so a missing binary is a skip, not an error.
var iceoryx2Bin = "target/release/examples/bench_iceoryx2"

// iceoryx2NotBuilt is the report's reason when the binary is missing.
const iceoryx2NotBuilt = "not built: run make bench-iceoryx2 (builds examples/bench_iceoryx2.rs with the cargo feature bench-iceoryx2)"

// iceoryx2Name is the transport measured against the ring's mode: polling
// subscribers against busy consumers, event listeners against blocking ones.
func iceoryx2Name(busy bool) string {
	if busy {
		return "iceoryx2"
	}
	return "iceoryx2-event"
}

// iceoryx2Built reports whether the binary exists; when it does not, it
// lists the wanted iceoryx2 transports as not measured (once per run).
func (s *suite) iceoryx2Built() bool {
	if _, err := os.Stat(iceoryx2Bin); err == nil {
		return true
	}
	for _, t := range []string{"iceoryx2", "iceoryx2-event"} {
		if s.want(t) && !s.listed(t) {
			s.rep.Unavailable = append(s.rep.Unavailable, Unavailable{t, iceoryx2NotBuilt})
		}
	}
	return false
}

func (s *suite) listed(transport string) bool {
	for _, u := range s.rep.Unavailable {
		if u.Transport == transport {
			return true
		}
	}
	return false
}

// iceoryx2Latency is one latency point of iceoryx2 (busy: polling) or
// iceoryx2-event (blocking), measured like shm-rust's: clock stamp in the
// payload, one sample in flight, 10% warm-up (see bench_iceoryx2.rs).
func (s *suite) iceoryx2Latency(size int64, n int, busy bool, what string) {
	t := iceoryx2Name(busy)
	if !s.want(t) || !s.iceoryx2Built() {
		return
	}
	s.step(t, what, func() (Result, error) {
		args := []string{iceoryx2Bin, "lat", "--size", strconv.FormatInt(size, 10), "--iters", strconv.Itoa(n)}
		if !busy {
			args = append(args, "--event")
		}
		return runPeer(args...)
	})
}

// iceoryx2Pairs are the Alloy/iceoryx2 comparisons of the report: the
// ring's busy consumers against polling subscribers, its futex wake-up
// against iceoryx2's event listener.
var iceoryx2Pairs = []struct{ alloy, alloyMode, ice, iceMode string }{
	{"shm-rust", "busy", "iceoryx2", "busy"},
	{"shm-rust", "blocking", "iceoryx2-event", "blocking"},
	{"shm-go", "busy", "iceoryx2", "busy"},
	{"shm-go", "blocking", "iceoryx2-event", "blocking"},
}

// iceoryx2Ratios adds the p50 and p99 ratios Alloy/iceoryx2 at every
// latency payload, when the run measured iceoryx2 (a run without it keeps
// only the two 64 B ratios of the targets).
func iceoryx2Ratios(rep *Report, g grid, add func(string, *Result, *Result, func(*Result) *float64)) {
	if rep.find("iceoryx2", "busy", "latency", g.latSizes[0], 0) == nil &&
		rep.find("iceoryx2-event", "blocking", "latency", g.latSizes[0], 0) == nil {
		return
	}
	for _, p := range iceoryx2Pairs {
		if p.alloy == "shm-go" {
			continue // the 64 B ones are defined with the targets
		}
		for _, size := range g.latSizes {
			num := rep.find(p.alloy, p.alloyMode, "latency", size, 0)
			den := rep.find(p.ice, p.iceMode, "latency", size, 0)
			name := fmt.Sprintf("%s %s/%s %%s %s", p.alloy, p.alloyMode, p.ice, sizeName(size))
			add(fmt.Sprintf(name, "p50"), num, den, p50)
			add(fmt.Sprintf(name, "p99"), num, den, func(r *Result) *float64 { return r.P99NS })
		}
	}
}

// iceoryx2Table writes report.md's side-by-side table: per payload, p50 /
// p99 of each Alloy mode and its iceoryx2 counterpart, and the ratios
// (below 1: Alloy is faster).
func iceoryx2Table(b *strings.Builder, rep *Report) {
	lat := collect(rep, "latency")
	var ice bool
	for _, s := range lat {
		ice = ice || strings.HasPrefix(s.transport, "iceoryx2")
	}
	if !ice {
		return
	}
	b.WriteString("\n## Alloy against iceoryx2 (same run)\n\n" +
		"One-way latency p50 / p99, measured the same way for both (clock stamp in the payload, one message in flight). " +
		"Ratio = Alloy / iceoryx2, p50 and p99: below 1 Alloy is faster.\n\n" +
		"| payload | Alloy | Alloy p50 / p99 | iceoryx2 | iceoryx2 p50 / p99 | ratio p50 | ratio p99 |\n|---:|---|---:|---|---:|---:|---:|\n")
	for _, size := range sizesOf(lat) {
		for _, p := range iceoryx2Pairs {
			a := rep.find(p.alloy, p.alloyMode, "latency", size, 0)
			i := rep.find(p.ice, p.iceMode, "latency", size, 0)
			if a == nil || i == nil {
				continue
			}
			fmt.Fprintf(b, "| %s | %s %s | %s / %s | %s | %s / %s | %.2f | %.2f |\n", sizeName(size),
				p.alloy, p.alloyMode, ns(*a.P50NS), ns(*a.P99NS), p.ice, ns(*i.P50NS), ns(*i.P99NS),
				*a.P50NS / *i.P50NS, *a.P99NS / *i.P99NS)
		}
	}
}
