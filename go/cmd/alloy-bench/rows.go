package main

import (
	"flag"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Row flags narrow a run to single rows of the suite: with --only and
// --sections they pick one transport × mode × size (or shape) × variant,
// and --iters fixes its message count, so a profiler can watch exactly that
// row (scripts/profile-goals.sh, make profile-goals). Unset, the grid and
// every mode and variant run as before.
var (
	sizesFlag, shapesFlag, modesFlag, variantsFlag string
	itersFlag, repsFlag                            int
)

// rowFlags registers the row flags on the default flag set.
func rowFlags() {
	flag.StringVar(&sizesFlag, "sizes", "", "comma-separated payload sizes (64, 4KiB, 1MiB, …) replacing the grid's latency and throughput sizes")
	flag.StringVar(&shapesFlag, "shapes", "", "comma-separated Arrow shapes replacing the grid's: "+strings.Join(shapeIDs(), ", "))
	flag.StringVar(&modesFlag, "modes", "", "comma-separated consumer modes to run: busy, blocking, parked (default all)")
	flag.StringVar(&variantsFlag, "variants", "", "comma-separated Arrow variants to run: validated, unchecked, in-place, copied (default all)")
	flag.IntVar(&itersFlag, "iters", 0, "messages per latency, Arrow, ping-pong and throughput point (0: the grid's)")
	flag.IntVar(&repsFlag, "reps", 0, "runs per throughput point, the median kept (0: the grid's)")
}

func shapeIDs() []string {
	var ids []string
	for _, s := range arrowShapes {
		ids = append(ids, s.id)
	}
	return ids
}

// list splits a comma-separated flag value, dropping empty items.
func list(v string) []string {
	var out []string
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// parseSize reads a byte count with an optional KiB or MiB suffix.
func parseSize(v string) (int64, error) {
	unit := int64(1)
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"KiB", kib}, {"MiB", mib}} {
		if num, ok := strings.CutSuffix(v, u.suffix); ok {
			v, unit = strings.TrimSpace(num), u.n
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/unit {
		return 0, fmt.Errorf("size %q: want a positive byte count, optionally with KiB or MiB", v)
	}
	return n * unit, nil
}

// narrow applies the row flags to g and checks the mode and variant names.
func narrow(g grid) (grid, error) {
	if v := list(sizesFlag); len(v) > 0 {
		var sizes []int64
		for _, x := range v {
			n, err := parseSize(x)
			if err != nil {
				return g, fmt.Errorf("--sizes: %w", err)
			}
			sizes = append(sizes, n)
		}
		g.latSizes, g.tputSizes = sizes, sizes
	}
	if v := list(shapesFlag); len(v) > 0 {
		for _, id := range v {
			if !slices.Contains(shapeIDs(), id) {
				return g, fmt.Errorf("--shapes: unknown shape %q (want %s)", id, strings.Join(shapeIDs(), ", "))
			}
		}
		g.arrowShapes = v
	}
	for _, m := range list(modesFlag) {
		if !slices.Contains([]string{"busy", "blocking", "parked"}, m) {
			return g, fmt.Errorf("--modes: unknown mode %q (want busy, blocking, parked)", m)
		}
	}
	for _, v := range list(variantsFlag) {
		if !slices.Contains([]string{"validated", "unchecked", "in-place", "copied"}, v) {
			return g, fmt.Errorf("--variants: unknown variant %q (want validated, unchecked, in-place, copied)", v)
		}
	}
	if n := itersFlag; n > 0 {
		// iters() and the Arrow rows' count both come out as n; a
		// throughput point streams n messages (total = n × size).
		g.latMin, g.latMax, g.pingIters, g.parkIters = n, n, n, n
		g.tputTotal, g.tputMaxMsgs = math.MaxInt64, int64(n)
	} else if itersFlag < 0 {
		return g, fmt.Errorf("--iters %d: want a positive count", itersFlag)
	}
	if repsFlag > 0 {
		g.reps = repsFlag
	}
	return g, nil
}

// wantMode says whether --modes lets rows of mode m (busy, blocking,
// parked) run.
func wantMode(m string) bool {
	want := list(modesFlag)
	return len(want) == 0 || slices.Contains(want, m)
}

// wantModes are the consumer modes to run, busy (true) first.
func wantModes() []bool {
	var out []bool
	for _, busy := range []bool{true, false} {
		if wantMode(modeName(busy)) {
			out = append(out, busy)
		}
	}
	return out
}

// wantVariant says whether --variants lets a row of variant v (" in
// place", "validated", …: the suite's spelling) run.
func wantVariant(v string) bool {
	want := list(variantsFlag)
	return len(want) == 0 || slices.Contains(want, strings.ReplaceAll(strings.TrimSpace(v), " ", "-"))
}
