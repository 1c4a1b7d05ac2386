package main

import (
	"fmt"
	"slices"
	"strings"
)

func sizeName(b int64) string {
	switch {
	case b >= mib && b%mib == 0:
		return fmt.Sprintf("%d MiB", b/mib)
	case b >= kib && b%kib == 0:
		return fmt.Sprintf("%d KiB", b/kib)
	}
	return fmt.Sprintf("%d B", b)
}

func ns(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2f ms", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1f µs", v/1e3)
	}
	return fmt.Sprintf("%.0f ns", v)
}

// ratioDef is one named ratio of the report: num / den, or nil when either
// side was not measured in this run.
type ratioDef struct {
	name     string
	num, den *Result
	value    func(*Result) *float64
}

func p50(r *Result) *float64  { return r.P50NS }
func tput(r *Result) *float64 { return r.ThroughputBytesPerS }

// refSizes picks the sizes the ratios are taken at: 64 B latency and 1 MiB
// throughput when the grid has them (else its smallest / largest).
func refSizes(g grid) (lat, tp int64) {
	lat, tp = g.latSizes[0], g.tputSizes[len(g.tputSizes)-1]
	if slices.Contains(g.tputSizes, mib) {
		tp = mib
	}
	return lat, tp
}

func ratioDefs(rep *Report, g grid) []ratioDef {
	lat, tp := refSizes(g)
	L, T := sizeName(lat), sizeName(tp)
	var d []ratioDef
	add := func(name string, num, den *Result, v func(*Result) *float64) {
		d = append(d, ratioDef{name, num, den, v})
	}
	pp := rep.find("atomic-pingpong", "busy", "latency", 64, 0)
	// The floor is the faster of the two languages' copies.
	mc := rep.find("memcpy", "copy", "throughput", tp, 0)
	if g := rep.find("memcpy", "copy-go", "throughput", tp, 0); mc == nil || (g != nil && *g.ThroughputBytesPerS > *mc.ThroughputBytesPerS) {
		mc = g
	}
	goLat := rep.find("shm-go", "busy", "latency", lat, 0)
	goTp := rep.find("shm-go", "busy", "throughput", tp, 0)
	add("shm-rust/atomic-pingpong p50 "+L+" busy", rep.find("shm-rust", "busy", "latency", lat, 0), pp, p50)
	add("shm-go/atomic-pingpong p50 "+L+" busy", goLat, pp, p50)
	add("shm-go/iceoryx2 p50 "+L+" busy", goLat, rep.find("iceoryx2", "busy", "latency", lat, 0), p50)
	add("shm-go blocking/iceoryx2-event p50 "+L, rep.find("shm-go", "blocking", "latency", lat, 0), rep.find("iceoryx2-event", "blocking", "latency", lat, 0), p50)
	add("shm-rust/memcpy throughput "+T+" busy", rep.find("shm-rust", "busy", "throughput", tp, 0), mc, tput)
	add("shm-go/memcpy throughput "+T+" busy", goTp, mc, tput)
	add("shm-go-ipc/memcpy throughput "+T, rep.find("shm-go-ipc", "busy", "throughput", tp, 0), mc, tput)
	add("shm-go-cdata/memcpy throughput "+T, rep.find("shm-go-cdata", "busy", "throughput", tp, 0), mc, tput)
	// Go → Python (pyarrow, in place) against Go → Rust, issue #16's goal ≥ 0.8×.
	py := sizeName(pythonSize(g))
	add("shm-go-ipc-python/shm-go-ipc throughput "+py+" blocking", rep.find(pythonTransport, "blocking", "throughput", pythonSize(g), 0), rep.find("shm-go-ipc", "blocking", "throughput", pythonSize(g), 0), tput)
	// Arrow against Arrow: uds-ipc with a buffered writer and socket
	// buffers sized to the batch (variant bufio) against shm-go-ipc.
	for _, s := range g.tputSizes {
		if s >= 64*kib && s <= 16*mib {
			add("uds-ipc/shm-go-ipc throughput "+sizeName(s)+" busy", rep.bufio(rep.find("uds-ipc", "blocking", "throughput", s, 0)), rep.find("shm-go-ipc", "busy", "throughput", s, 0), tput)
		}
	}
	for _, t := range []string{"shm-go", "shm-rust"} {
		parked := rep.find(t, "parked", "latency", 64, 0)
		add(t+" parked/futex-pingpong p50 64 B", parked, rep.find("futex-pingpong", "parked", "latency", 64, 0), p50)
		add(t+" parked/iceoryx2-event p50 64 B", parked, rep.find("iceoryx2-event", "blocking", "latency", 64, 0), p50)
	}
	one := shapeByID("1-row").name
	goIPC1 := rep.findShape("shm-go-ipc", "busy", "arrow-latency", one, "validated")
	add("shm-go-ipc/shm-go p50 1 row busy", goIPC1, rep.find("shm-go", "busy", "latency", 64, 0), p50)
	add("uds-ipc/shm-go-ipc p50 1 row", rep.findShape("uds-ipc", "blocking", "arrow-latency", one, "bufio"), goIPC1, p50)
	for _, m := range []string{"busy", "blocking"} {
		add("shm-rr/cgo-oneshot round trip p50 1 row "+m, rep.findShape("shm-rr", m, "roundtrip", one, "echo"), rep.findShape("cgo-oneshot", "call", "roundtrip", one, "echo"), p50)
	}
	iceoryx2Ratios(rep, g, add)
	add("flight-localhost/shm-go throughput "+T, rep.find("flight-localhost", "blocking", "throughput", tp, 0), goTp, tput)
	add("flight-localhost/shm-go-ipc throughput "+T+" blocking", rep.find("flight-localhost", "blocking", "throughput", tp, 0), rep.find("shm-go-ipc", "blocking", "throughput", tp, 0), tput)
	add("flight-localhost/uds-ipc p50 "+L, rep.find("flight-localhost", "blocking", "latency", lat, 0), rep.find("uds-ipc", "blocking", "latency", lat, 0), p50)
	for _, t := range []string{"shm-go", "shm-rust"} {
		for _, m := range []string{"busy", "blocking"} {
			add(fmt.Sprintf("%s broadcast×4/broadcast×1 throughput %s %s", t, sizeName(g.fanSize), m),
				rep.find(t, m, "broadcast", g.fanSize, 4), rep.find(t, m, "broadcast", g.fanSize, 1), tput)
		}
	}
	return d
}

// bufio returns r when it was measured with the buffered uds-ipc writer
// (runs before it wrote one write(2) per IPC message part).
func (rep *Report) bufio(r *Result) *Result {
	if r == nil || r.Variant != "bufio" {
		return nil
	}
	return r
}

func ratios(rep *Report, g grid) map[string]*float64 {
	m := map[string]*float64{}
	for _, d := range ratioDefs(rep, g) {
		m[d.name] = nil
		if d.num != nil && d.den != nil && d.value(d.num) != nil && d.value(d.den) != nil && *d.value(d.den) != 0 {
			m[d.name] = f64(*d.value(d.num) / *d.value(d.den))
		}
	}
	return m
}

// series is one transport+mode of one kind, in payload order.
type series struct {
	transport, mode string
	points          []*Result
}

func (s series) label() string { return s.transport + " " + s.mode }

func collect(rep *Report, kind string) []series {
	var out []series
	idx := map[string]int{}
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Kind != kind {
			continue
		}
		k := r.Transport + "/" + r.Mode
		j, ok := idx[k]
		if !ok {
			j = len(out)
			idx[k] = j
			out = append(out, series{transport: r.Transport, mode: r.Mode})
		}
		out[j].points = append(out[j].points, r)
	}
	for _, s := range out {
		slices.SortFunc(s.points, func(a, b *Result) int {
			if a.PayloadBytes != b.PayloadBytes {
				return int(a.PayloadBytes - b.PayloadBytes)
			}
			return a.Consumers - b.Consumers
		})
	}
	return out
}

func sizesOf(ss []series) []int64 {
	var v []int64
	for _, s := range ss {
		for _, p := range s.points {
			if !slices.Contains(v, p.PayloadBytes) {
				v = append(v, p.PayloadBytes)
			}
		}
	}
	slices.Sort(v)
	return v
}

// matrix renders a series × payload table with cell(r) in each cell.
func matrix(b *strings.Builder, ss []series, cell func(*Result) string) {
	sizes := sizesOf(ss)
	b.WriteString("| transport | mode |")
	for _, s := range sizes {
		fmt.Fprintf(b, " %s |", sizeName(s))
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---:|", len(sizes)) + "\n")
	for _, s := range ss {
		fmt.Fprintf(b, "| %s | %s |", s.transport, s.mode)
		for _, size := range sizes {
			c := "–"
			for _, p := range s.points {
				if p.PayloadBytes == size {
					c = cell(p)
				}
			}
			fmt.Fprintf(b, " %s |", c)
		}
		b.WriteString("\n")
	}
}

func gbps(v *float64) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprintf("%.2f", *v/1e9)
}

func markdown(rep *Report) string {
	var b strings.Builder
	e := rep.Env
	fmt.Fprintf(&b, "# Alloy benchmark report (%s grid)\n\n", e.Grid)
	fmt.Fprintf(&b, "| cpu | cores | kernel | go | rustc | commit | date | load at start | run time |\n|---|---|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %.0f s |\n\n", e.CPU, e.Cores, e.Kernel, e.Go, e.Rustc, e.Commit, e.Date, e.Load, rep.Seconds)

	b.WriteString("## One-way latency, p50 / p99\n\nProducer starts writing the payload → consumer holds the message (clock stamps, one message in flight; cgo-oneshot: a whole call).\n\n")
	lat := collect(rep, "latency")
	matrix(&b, lat, func(r *Result) string { return ns(*r.P50NS) + " / " + ns(*r.P99NS) })
	b.WriteString("\n### All quantiles\n\n| transport | mode | payload | p50 | p99 | p99.9 | max | messages |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range lat {
		for _, r := range s.points {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %d |\n", r.Transport, r.Mode, sizeName(r.PayloadBytes), ns(*r.P50NS), ns(*r.P99NS), ns(*r.P999NS), ns(*r.MaxNS), r.Messages)
		}
	}

	iceoryx2Table(&b, rep)
	arrowTables(&b, rep)

	b.WriteString("\n## Streaming throughput, GB/s\n\nThe consumer reads every byte (sums u64 words / the int64 column); memcpy is one thread copying the same blocks.\n\n")
	tp := collect(rep, "throughput")
	matrix(&b, tp, func(r *Result) string { return gbps(r.ThroughputBytesPerS) })
	b.WriteString("\n### Rows per second (millions of int64 rows)\n\n")
	matrix(&b, tp, func(r *Result) string { return fmt.Sprintf("%.0f", *r.RowsPerS/1e6) })

	b.WriteString("\n## Fan-out, GB/s of published stream\n\nBroadcast: every consumer reads every message. Queue: one work-queue group, each message goes to one member.\n\n")
	fan := append(collect(rep, "broadcast"), collect(rep, "queue")...)
	if len(fan) > 0 {
		b.WriteString("| transport | mode | shape | size | GB/s | messages |\n|---|---|---|---:|---:|---:|\n")
		for _, s := range fan {
			for _, r := range s.points {
				fmt.Fprintf(&b, "| %s | %s | %s×%d | %s | %s | %d |\n", r.Transport, r.Mode, r.Kind, r.Consumers, sizeName(r.PayloadBytes), gbps(r.ThroughputBytesPerS), r.Messages)
			}
		}
	}

	b.WriteString("\n## Syscalls per message\n\n")
	sys := collect(rep, "syscalls")
	if len(sys) > 0 {
		b.WriteString("| transport | mode | size | syscalls / message | counted |\n|---|---|---:|---:|---|\n")
		for _, s := range sys {
			for _, r := range s.points {
				fmt.Fprintf(&b, "| %s | %s | %s | %.3f | %s |\n", r.Transport, r.Mode, sizeName(r.PayloadBytes), *r.SyscallsPerMessage, r.Measured)
			}
		}
	}

	b.WriteString("\n## Ratios (same run)\n\n| ratio | value |\n|---|---:|\n")
	names := make([]string, 0, len(rep.Ratios))
	for k := range rep.Ratios {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		v := "not measured"
		if p := rep.Ratios[k]; p != nil {
			v = fmt.Sprintf("%.3f", *p)
		}
		fmt.Fprintf(&b, "| %s | %s |\n", k, v)
	}

	spreadsTable(&b, rep)
	targetsTable(&b, rep)

	if len(rep.Unavailable) > 0 {
		b.WriteString("\n## Not measured in this run\n\n")
		for _, u := range rep.Unavailable {
			fmt.Fprintf(&b, "* `%s`: %s\n", u.Transport, u.Reason)
		}
	}
	b.WriteString("\nPlots: latency.svg, throughput.svg, fanout.svg. Field definitions: doc/BENCHMARKS.md.\n")
	return b.String()
}
