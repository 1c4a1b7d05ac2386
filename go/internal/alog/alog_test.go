package alog

import (
	"bytes"
	"log/slog"
	"regexp"
	"testing"
)

func TestLineFormat(t *testing.T) {
	var buf bytes.Buffer
	lv := new(slog.LevelVar)
	log := slog.New(NewHandler(&buf, lv, "Go"))
	log.Info("Exporting ArrowSchema and ArrowArray #1 to C")
	log.Debug("hidden")
	log.With("n", 3).WithGroup("g").Warn("careful", "k", "v")
	lv.Set(slog.LevelDebug)
	log.Debug("shown")
	want := regexp.MustCompile(`^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] \[INFO\] \[Go\]\tExporting ArrowSchema and ArrowArray #1 to C
\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] \[WARN\] \[Go\]\tcareful n=3 g\.k=v
\[[^]]+\] \[DEBUG\] \[Go\]\tshown
$`)
	if !want.Match(buf.Bytes()) {
		t.Fatalf("unexpected log output:\n%s", buf.String())
	}
}
