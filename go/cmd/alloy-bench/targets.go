package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// target is one goal of an issue with this run's figure and verdict.
type target struct{ what, value, verdict string }

// verdict is met/missed, or "not measured" when v is nil.
func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

// ratioTarget judges a named ratio of the run.
func ratioTarget(rep *Report, what, key string, ok func(float64) bool) target {
	v, found := rep.Ratios[key]
	if !found || v == nil {
		return target{what, "not measured", "not measured"}
	}
	return target{what, fmt.Sprintf("%s = %.3f%s", key, *v, rep.spreadNote(key)), verdict(ok(*v))}
}

// worstRatio is the largest ratio whose name starts with prefix (a ratio
// "other/ours": the largest is our worst).
func worstRatio(rep *Report, prefix string) (string, *float64) {
	var worst *float64
	var key string
	names := slices.Sorted(mapsKeys(rep.Ratios))
	for _, k := range names {
		if v := rep.Ratios[k]; strings.HasPrefix(k, prefix) && v != nil && (worst == nil || *v > *worst) {
			worst, key = v, k
		}
	}
	return key, worst
}

// goals13 are the goals of issue 13 (Arrow-level, like for like).
func goals13(rep *Report) []target {
	one := shapeByID("1-row").name
	var out []target
	ipc := rep.findShape("shm-go-ipc", "busy", "arrow-latency", one, "validated")
	rk := "shm-go-ipc/shm-go p50 1 row busy"
	if r := rep.Ratios[rk]; ipc != nil && r != nil {
		out = append(out, target{"1-row Arrow batch Go → Rust one-way p50, busy, IPC mode (validated): ≤ 1.0 µs and ≤ 6× the raw 64 B ring p50",
			fmt.Sprintf("p50 %s; %s = %.3f%s", ns(*ipc.P50NS), rk, *r, rep.spreadNote(rk)), verdict(*ipc.P50NS <= 1000 && *r <= 6)})
	} else {
		out = append(out, target{"1-row Arrow batch Go → Rust one-way p50, busy, IPC mode (validated): ≤ 1.0 µs and ≤ 6× the raw 64 B ring p50", "not measured", "not measured"})
	}
	for _, c := range []struct{ tr, name string }{{"shm-go-cdata", "CDataWriter.Build"}, {"shm-go-cdata-write", "CDataWriter.Write"}} {
		what := "same, C-Data-offsets mode (" + c.name + "): ≤ 0.5 µs"
		if r := rep.findShape(c.tr, "busy", "arrow-latency", one, "validated"); r != nil {
			out = append(out, target{what, "p50 " + ns(*r.P50NS), verdict(*r.P50NS <= 500)})
		} else {
			out = append(out, target{what, "not measured", "not measured"})
		}
	}
	what := "Arrow over the ring ≥ 5× the throughput of Unix-socket Arrow IPC (buffered), 64 KiB–16 MiB"
	if k, v := worstRatio(rep, "uds-ipc/shm-go-ipc throughput"); v != nil {
		out = append(out, target{what, fmt.Sprintf("worst: %s = %.3f (ring %.1f×)", k, *v, 1 / *v), verdict(1 / *v >= 5)})
	} else {
		out = append(out, target{what, "not measured", "not measured"})
	}
	out = append(out,
		ratioTarget(rep, "Arrow over the ring ≥ 10× lower p50 than Unix-socket Arrow IPC (buffered), 1 row", "uds-ipc/shm-go-ipc p50 1 row", func(v float64) bool { return v >= 10 }),
		ratioTarget(rep, "request/reply round trip over the ring, 1 row, busy ≤ cgo one-shot call p50", "shm-rr/cgo-oneshot round trip p50 1 row busy", func(v float64) bool { return v <= 1 }),
		wakeTarget(rep),
	)
	return out
}

// goals14 are the goals of issue 14 (speed where users feel it), each
// judged on rows and ratios of this run only.
func goals14(rep *Report) []target {
	one, mib := shapeByID("1-row").name, shapeByID("1-mib").name
	var out []target
	p50 := func(what string, r *Result, max float64) target {
		if r == nil || r.P50NS == nil {
			return target{what, "not measured", "not measured"}
		}
		return target{what, "p50 " + ns(*r.P50NS), verdict(*r.P50NS <= max)}
	}
	out = append(out,
		p50("1-row batch one-way p50, busy, IPC: Go → Rust (validated) ≤ 1.0 µs", rep.findShape("shm-go-ipc", "busy", "arrow-latency", one, "validated"), 1000),
		p50("same, Rust → Go (Go reader in place) ≤ 1.0 µs", rep.findShape("shm-rust-ipc", "busy", "arrow-latency", one, "in place"), 1000),
		p50("1-row batch one-way p50, busy, C-Data-offsets: Go → Rust (CDataWriter.Write) ≤ 0.5 µs", rep.findShape("shm-go-cdata-write", "busy", "arrow-latency", one, "validated"), 500),
		p50("same, Rust → Go (Go reader in place) ≤ 0.5 µs", rep.findShape("shm-rust-cdata", "busy", "arrow-latency", one, "in place"), 500),
	)
	what := "4 KiB batches Go → Rust, IPC ≥ 0.5× the raw ring's throughput at the same size (busy)"
	ipc, raw := rep.find("shm-go-ipc", "busy", "throughput", 4096, 1), rep.find("shm-go", "busy", "throughput", 4096, 1)
	if ipc != nil && raw != nil && ipc.ThroughputBytesPerS != nil && raw.ThroughputBytesPerS != nil && *raw.ThroughputBytesPerS > 0 {
		v := *ipc.ThroughputBytesPerS / *raw.ThroughputBytesPerS
		out = append(out, target{what, fmt.Sprintf("shm-go-ipc / shm-go throughput 4 KiB busy = %.3f", v), verdict(v >= 0.5)})
	} else {
		out = append(out, target{what, "not measured", "not measured"})
	}
	out = append(out, ratioTarget(rep, "request/reply round trip, 1 row, busy ≤ the cgo call p50", "shm-rr/cgo-oneshot round trip p50 1 row busy", func(v float64) bool { return v <= 1 }))
	what = "request/reply round trip, " + mib + ", busy ≤ 2× the cgo call p50"
	rr, cgo := rep.findShape("shm-rr", "busy", "roundtrip", mib, "echo"), rep.findShape("cgo-oneshot", "call", "roundtrip", mib, "echo")
	if rr != nil && cgo != nil && rr.P50NS != nil && cgo.P50NS != nil && *cgo.P50NS > 0 {
		v := *rr.P50NS / *cgo.P50NS
		out = append(out, target{what, fmt.Sprintf("p50 %s vs %s = %.2f×", ns(*rr.P50NS), ns(*cgo.P50NS), v), verdict(v <= 2)})
	} else {
		out = append(out, target{what, "not measured", "not measured"})
	}
	// One-way latency against iceoryx2 and Rust against Go throughput, at
	// every payload of the run: the worst size decides.
	var lat, tput []string
	worstLat, worstTput := 0.0, math.Inf(1)
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Transport == "shm-rust" && r.Mode == "busy" && r.Kind == "latency" && r.P50NS != nil {
			if ice := rep.find("iceoryx2", "busy", "latency", r.PayloadBytes, 0); ice != nil && ice.P50NS != nil && *ice.P50NS > 0 {
				v := *r.P50NS / *ice.P50NS
				lat = append(lat, fmt.Sprintf("%s %.2f", sizeName(r.PayloadBytes), v))
				worstLat = math.Max(worstLat, v)
			}
		}
		if r.Transport == "shm-rust" && r.Mode == "busy" && r.Kind == "throughput" && r.Consumers == 1 && r.ThroughputBytesPerS != nil {
			if g := rep.find("shm-go", "busy", "throughput", r.PayloadBytes, 1); g != nil && g.ThroughputBytesPerS != nil && *g.ThroughputBytesPerS > 0 {
				v := *r.ThroughputBytesPerS / *g.ThroughputBytesPerS
				tput = append(tput, fmt.Sprintf("%s %.2f", sizeName(r.PayloadBytes), v))
				worstTput = math.Min(worstTput, v)
			}
		}
	}
	what = "one-way latency ≤ 1.0× iceoryx2 at every payload (shm-rust / iceoryx2 p50, busy)"
	if len(lat) == 0 {
		out = append(out, target{what, "not measured", "not measured"})
	} else {
		out = append(out, target{what, strings.Join(lat, ", "), verdict(worstLat <= 1)})
	}
	what = "Rust slot-copy bandwidth ≥ 0.9× Go's (shm-rust / shm-go throughput, busy, 1 consumer)"
	if len(tput) == 0 {
		out = append(out, target{what, "not measured", "not measured"})
	} else {
		out = append(out, target{what, strings.Join(tput, ", "), verdict(worstTput >= 0.9)})
	}
	out = append(out,
		ratioTarget(rep, "64 B one-way busy ≤ 1.5× the atomic ping-pong (Go producer)", "shm-go/atomic-pingpong p50 64 B busy", func(v float64) bool { return v <= 1.5 }),
		ratioTarget(rep, "same, Rust producer", "shm-rust/atomic-pingpong p50 64 B busy", func(v float64) bool { return v <= 1.5 }),
	)
	return out
}

// goals16 are the goals of issue 16 (a live ring read by any Arrow engine).
func goals16(rep *Report) []target {
	_, tp := refSizesOf(rep)
	T := sizeName(tp)
	return []target{ratioTarget(rep, T+" batches Go → Python (pyarrow, in place) ≥ 0.8× Go → Rust, blocking, same run",
		"shm-go-ipc-python/shm-go-ipc throughput "+T+" blocking", func(v float64) bool { return v >= 0.8 })}
}

// wakeTarget judges the wake-up of a parked consumer (shm-go, mode parked)
// against the futex ping-pong floor and iceoryx2's event, all of one run;
// a row whose consumer was not asleep for nearly every message does not
// count.
func wakeTarget(rep *Report) target {
	what := "blocking wake-up of a parked consumer (64 B, Go → Rust) ≤ 1.2× the raw futex ping-pong, < iceoryx2 event"
	r := rep.find("shm-go", "parked", "latency", 64, 0)
	floor := rep.Ratios["shm-go parked/futex-pingpong p50 64 B"]
	if r == nil || floor == nil {
		return target{what, "not measured", "not measured"}
	}
	if r.ParkedFraction == nil || *r.ParkedFraction < 0.9 {
		return target{what, "the consumer was asleep for too few messages", "not measured"}
	}
	v := fmt.Sprintf("p50 %s, asleep for %.0f%% of messages; shm-go parked/futex-pingpong p50 64 B = %.3f%s", ns(*r.P50NS), 100**r.ParkedFraction, *floor, rep.spreadNote("shm-go parked/futex-pingpong p50 64 B"))
	ok := *floor <= 1.2
	ice := rep.Ratios["shm-go parked/iceoryx2-event p50 64 B"]
	if ice == nil {
		return target{what, v + "; iceoryx2-event not in this run", verdict(ok) + " (floor part only)"}
	}
	return target{what, v + fmt.Sprintf("; shm-go parked/iceoryx2-event p50 64 B = %.3f%s", *ice, rep.spreadNote("shm-go parked/iceoryx2-event p50 64 B")), verdict(ok && *ice < 1)}
}

// targets6 are issue 6's targets (the ring's raw-byte and streaming goals).
func targets6(rep *Report) []target {
	out := []target{
		ratioTarget(rep, "64 B Go→Rust busy ≤ 2× atomic-pingpong", "shm-go/atomic-pingpong p50 64 B busy", func(v float64) bool { return v <= 2 }),
		ratioTarget(rep, "64 B Go→Rust busy ≤ 1.2× iceoryx2", "shm-go/iceoryx2 p50 64 B busy", func(v float64) bool { return v <= 1.2 }),
	}
	_, tp := refSizesOf(rep)
	T := sizeName(tp)
	out = append(out,
		ratioTarget(rep, T+" IPC mode ≥ 0.8× memcpy", "shm-go-ipc/memcpy throughput "+T, func(v float64) bool { return v >= 0.8 }),
		ratioTarget(rep, T+" C-Data mode ≥ 1× memcpy", "shm-go-cdata/memcpy throughput "+T, func(v float64) bool { return v >= 1 }),
		ratioTarget(rep, "(reference, raw bytes) "+T+" shm-go vs memcpy", "shm-go/memcpy throughput "+T+" busy", func(v float64) bool { return v >= 0.8 }),
		ratioTarget(rep, "64 B blocking p50 ≤ iceoryx2-event (the consumer's spin phase, not a parked wake-up)", "shm-go blocking/iceoryx2-event p50 64 B", func(v float64) bool { return v <= 1 }),
	)
	for _, t := range []string{"shm-go", "shm-rust"} {
		var r *Result
		for i := range rep.Results {
			if x := &rep.Results[i]; x.Transport == t && x.Mode == "busy" && x.Kind == "syscalls" {
				r = x
			}
		}
		if r == nil {
			out = append(out, target{"0 syscalls/message, busy (" + t + ")", "not measured", "not measured"})
			continue
		}
		out = append(out, target{"0 syscalls/message, busy (" + t + ")", fmt.Sprintf("%.4f (%s)", *r.SyscallsPerMessage, r.Measured), verdict(*r.SyscallsPerMessage < 0.001)})
	}
	out = append(out, ratioTarget(rep, "4-consumer broadcast ≥ 0.9× 1 consumer (busy)",
		fmt.Sprintf("shm-go broadcast×4/broadcast×1 throughput %s busy", sizeName(rep.fanSize())), func(v float64) bool { return v >= 0.9 }))
	return out
}

// targetsTable writes both goal tables (report.md and doc/BENCHMARKS.md).
func targetsTable(b *strings.Builder, rep *Report) {
	for _, sec := range []struct {
		title string
		ts    []target
	}{{"Goals of issue 13 (Arrow, like for like)", goals13(rep)}, {"Goals of issue 14 (speed where users feel it)", goals14(rep)}, {"Goals of issue 16 (any Arrow engine)", goals16(rep)}, {"Targets of issue 6", targets6(rep)}} {
		fmt.Fprintf(b, "\n## %s\n\n| goal | this run | verdict |\n|---|---|---|\n", sec.title)
		for _, t := range sec.ts {
			fmt.Fprintf(b, "| %s | %s | %s |\n", t.what, t.value, t.verdict)
		}
	}
}

// arrowTables writes the Arrow one-way latency and round-trip tables:
// one row per transport, variant and mode, one column per batch shape.
func arrowTables(b *strings.Builder, rep *Report) {
	for _, k := range []struct{ kind, title string }{
		{"arrow-latency", "Arrow one-way latency, p50 / p99\n\nOne record batch in flight, clock stamp in value 0 of the int64 column, from before the writer is called until the reader has decoded the batch (Go → Rust: variant validated or unchecked Rust IpcReader in place; Rust → Go: Go Reader in place or copied; uds-ipc: buffered arrow-go writer → Rust StreamReader)."},
		{"roundtrip", "Round trips, p50 / p99\n\nOne batch Go → Rust → Go, timed by Go around the exchange: shm-rr over two rings (arrowshm.Writer → Rust IpcReader in place → IpcWriter → Go Reader in place); cgo-oneshot is bridge.SendRecord with Rust's echo handler."},
	} {
		var rows []*Result
		var shapes []string
		for i := range rep.Results {
			if r := &rep.Results[i]; r.Kind == k.kind {
				rows = append(rows, r)
			}
		}
		if len(rows) == 0 {
			continue
		}
		for _, sh := range arrowShapes {
			for _, r := range rows {
				if r.Shape == sh.name && !slices.Contains(shapes, sh.name) {
					shapes = append(shapes, sh.name)
				}
			}
		}
		fmt.Fprintf(b, "\n## %s\n\n| transport | variant | mode |", k.title)
		for _, s := range shapes {
			fmt.Fprintf(b, " %s |", s)
		}
		b.WriteString("\n|---|---|---|" + strings.Repeat("---:|", len(shapes)) + "\n")
		var keys []string
		for _, r := range rows {
			if key := r.Transport + "|" + r.Variant + "|" + r.Mode; !slices.Contains(keys, key) {
				keys = append(keys, key)
			}
		}
		for _, key := range keys {
			f := strings.Split(key, "|")
			fmt.Fprintf(b, "| %s | %s | %s |", f[0], f[1], f[2])
			for _, s := range shapes {
				c := "–"
				if r := rep.findShape(f[0], f[2], k.kind, s, f[1]); r != nil {
					c = ns(*r.P50NS) + " / " + ns(*r.P99NS)
				}
				fmt.Fprintf(b, " %s |", c)
			}
			b.WriteString("\n")
		}
	}
}
