package main

import (
	"slices"
	"testing"
)

// setRowFlags sets the row flags for one test and restores them after.
func setRowFlags(t *testing.T, sizes, shapes, modes, variants string, iters, reps int) {
	t.Helper()
	old := []string{sizesFlag, shapesFlag, modesFlag, variantsFlag}
	oldIters, oldReps := itersFlag, repsFlag
	t.Cleanup(func() {
		sizesFlag, shapesFlag, modesFlag, variantsFlag = old[0], old[1], old[2], old[3]
		itersFlag, repsFlag = oldIters, oldReps
	})
	sizesFlag, shapesFlag, modesFlag, variantsFlag = sizes, shapes, modes, variants
	itersFlag, repsFlag = iters, reps
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"64": 64, "4KiB": 4 * kib, "1MiB": mib, "64 MiB": 64 * mib} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "4GiB", "4kb", "MiB"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}

// TestNarrowOneRow: the flags of one profile row leave exactly that row's
// sizes, shapes, modes and variants, with the fixed message count.
func TestNarrowOneRow(t *testing.T) {
	setRowFlags(t, "4MiB,64", "1-mib", "busy", "in-place", 5000, 1)
	g, err := narrow(grids["full"])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(g.latSizes, []int64{4 * mib, 64}) || !slices.Equal(g.tputSizes, g.latSizes) {
		t.Errorf("sizes %v / %v", g.latSizes, g.tputSizes)
	}
	if !slices.Equal(g.arrowShapes, []string{"1-mib"}) {
		t.Errorf("shapes %v", g.arrowShapes)
	}
	for _, size := range []int64{64, 64 * kib, 64 * mib} {
		if n := g.iters(size); n != 5000 {
			t.Errorf("iters(%d) = %d, want 5000", size, n)
		}
		if tot := g.total(size); tot != 5000*size {
			t.Errorf("total(%d) = %d, want %d", size, tot, 5000*size)
		}
	}
	if g.pingIters != 5000 || g.parkIters != 5000 || g.reps != 1 {
		t.Errorf("ping %d park %d reps %d", g.pingIters, g.parkIters, g.reps)
	}
	if m := wantModes(); !slices.Equal(m, []bool{true}) || wantMode("parked") {
		t.Errorf("modes %v, parked %v", m, wantMode("parked"))
	}
	if !wantVariant(" in place") || wantVariant(" copied") || wantVariant(" validated") {
		t.Error("--variants in-place should keep only the in-place rows")
	}
}

func TestNarrowDefaultsAndErrors(t *testing.T) {
	setRowFlags(t, "", "", "", "", 0, 0)
	g, err := narrow(grids["quick"])
	if err != nil {
		t.Fatal(err)
	}
	q := grids["quick"]
	if !slices.Equal(g.latSizes, q.latSizes) || g.iters(64) != q.iters(64) || g.reps != q.reps {
		t.Error("no row flags should leave the grid as it is")
	}
	if !slices.Equal(wantModes(), []bool{true, false}) || !wantMode("parked") || !wantVariant(" unchecked") {
		t.Error("no row flags should run every mode and variant")
	}
	for _, c := range []struct{ sizes, shapes, modes, variants string }{
		{"4GiB", "", "", ""}, {"", "2-rows", "", ""}, {"", "", "spin", ""}, {"", "", "", "in place"},
	} {
		setRowFlags(t, c.sizes, c.shapes, c.modes, c.variants, 0, 0)
		if _, err := narrow(q); err == nil {
			t.Errorf("%+v: want an error", c)
		}
	}
	setRowFlags(t, "", "", "", "", -1, 0)
	if _, err := narrow(q); err == nil {
		t.Error("--iters -1: want an error")
	}
}
