package main

import (
	"math"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
)

// Result is one measured point: a row of report.json "results". Fields that
// do not apply to the row's kind are null (latency fields of a throughput
// row, for example).
type Result struct {
	// Transport is one of the names of doc/BENCHMARKS.md (shm-go, uds-ipc…).
	Transport string `json:"transport"`
	// Mode is how the consumer waits: busy, blocking, parked (blocking,
	// with a pause before each message so the consumer sleeps), call
	// (in-process cgo) or copy (memcpy).
	Mode string `json:"mode"`
	// Kind is latency, throughput, broadcast (fan-out), queue (work-queue
	// fan-out), syscalls, arrow-latency (one-way, Arrow batches of a Shape)
	// or roundtrip (a batch there and back, timed by the sender).
	Kind string `json:"kind"`
	// PayloadBytes is the message or batch size (Arrow: int64 values bytes).
	PayloadBytes int64 `json:"payload_bytes"`
	// Consumers is the number of consumer processes.
	Consumers int `json:"consumers"`
	// P50NS … MaxNS are one-way latency quantiles in nanoseconds.
	P50NS  *float64 `json:"p50_ns"`
	P99NS  *float64 `json:"p99_ns"`
	P999NS *float64 `json:"p999_ns"`
	MaxNS  *float64 `json:"max_ns"`
	// ThroughputBytesPerS is payload bytes published per second.
	ThroughputBytesPerS *float64 `json:"throughput_bytes_per_s"`
	// RowsPerS is ThroughputBytesPerS / 8: int64 rows (or u64 words).
	RowsPerS *float64 `json:"rows_per_s"`
	// Messages is how many messages the numbers are computed from.
	Messages int64 `json:"messages"`
	// SyscallsPerMessage is set on rows of kind syscalls only.
	SyscallsPerMessage *float64 `json:"syscalls_per_message,omitempty"`
	// Measured says which processes SyscallsPerMessage counts and how.
	Measured string `json:"measured,omitempty"`
	// Shape names the batch of arrow-latency and roundtrip rows ("1 row",
	// "1,024 rows", "1 MiB int64", "mixed 1,024 rows").
	Shape string `json:"shape,omitempty"`
	// ParkedFraction (mode parked rows) is the share of measured messages
	// for which the consumer had gone to sleep before the message came.
	ParkedFraction *float64 `json:"parked_fraction,omitempty"`
	// Variant is how the row's reader or writer is set up: validated or
	// unchecked (Rust reader), in place or copied (Go reader), bufio
	// (uds-ipc with a buffered writer and socket buffers sized to the
	// batch), echo (round trips).
	Variant string `json:"variant,omitempty"`
}

// Unavailable names a transport of the suite that this run did not measure.
type Unavailable struct {
	Transport string `json:"transport"`
	Reason    string `json:"reason"`
}

// Env describes the machine and the build measured.
type Env struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	Rustc  string `json:"rustc"`
	Commit string `json:"commit"`
	Grid   string `json:"grid"`
	Date   string `json:"date"`
	Load   string `json:"loadavg_at_start"`
}

// Report is report.json.
type Report struct {
	Env     Env                 `json:"env"`
	Results []Result            `json:"results"`
	Ratios  map[string]*float64 `json:"ratios"`
	// Spreads are the paired ratios' per-round values (paired.go), keyed
	// like Ratios, which holds their medians.
	Spreads     map[string]*Spread `json:"ratio_spreads,omitempty"`
	Unavailable []Unavailable      `json:"unavailable"`
	Seconds     float64            `json:"seconds"`
}

func f64(v float64) *float64 { return &v }

func readEnv(grid string, date string) Env {
	e := Env{Cores: runtime.NumCPU(), Go: runtime.Version(), Grid: grid, Date: date}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				e.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		e.Load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	if b, err := exec.Command("rustc", "--version").Output(); err == nil {
		e.Rustc = strings.TrimSpace(string(b))
	}
	if b, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		e.Commit = strings.TrimSpace(string(b))
		if err := exec.Command("git", "diff", "--quiet", "HEAD").Run(); err != nil {
			e.Commit += "-dirty"
		}
	}
	return e
}

// quantiles fills the latency fields of r from unsorted ns samples
// (nearest-rank quantiles, like hdrhistogram's value_at_quantile).
func quantiles(r *Result, ns []int64) {
	sort.Slice(ns, func(i, j int) bool { return ns[i] < ns[j] })
	q := func(p float64) *float64 {
		k := int(math.Ceil(p*float64(len(ns)))) - 1
		k = max(0, min(k, len(ns)-1))
		return f64(float64(ns[k]))
	}
	r.P50NS, r.P99NS, r.P999NS = q(0.5), q(0.99), q(0.999)
	r.MaxNS = f64(float64(ns[len(ns)-1]))
	r.Messages = int64(len(ns))
}

// setThroughput fills the throughput fields from bytes moved in ns.
func setThroughput(r *Result, bytes int64, ns int64) {
	s := float64(ns) / 1e9
	r.ThroughputBytesPerS = f64(float64(bytes) / s)
	r.RowsPerS = f64(float64(bytes) / 8 / s)
}

// find returns the first result matching all given fields (consumers 0:
// any), or nil.
func (rep *Report) find(transport, mode, kind string, size int64, consumers int) *Result {
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Transport == transport && r.Mode == mode && r.Kind == kind && r.PayloadBytes == size &&
			(consumers == 0 || r.Consumers == consumers) {
			return r
		}
	}
	return nil
}

// findShape returns the row of an arrow-latency or roundtrip kind for one
// transport, mode, shape and variant, or nil.
func (rep *Report) findShape(transport, mode, kind, shape, variant string) *Result {
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Transport == transport && r.Mode == mode && r.Kind == kind && r.Shape == shape && r.Variant == variant {
			return r
		}
	}
	return nil
}
