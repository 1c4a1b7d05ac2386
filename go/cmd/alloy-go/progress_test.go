package main

import (
	"strings"
	"testing"
)

// Nothing is written unless the output is a terminal; on one, the line
// shows the counts and is cleared at the end.
func TestProgressOnlyOnATerminal(t *testing.T) {
	var quiet strings.Builder
	p := newProgressTo("sending", &quiet, false)
	p.update(3, 300, 1<<20)
	p.done()
	if quiet.Len() != 0 {
		t.Fatalf("wrote %q without a terminal", quiet.String())
	}
	var tty strings.Builder
	p = newProgressTo("sending", &tty, true)
	if p.bar != nil {
		t.Fatal("bar made before the first update: its rate would count the wait before it")
	}
	p.update(3, 300, 1<<20)
	p.bar.RenderBlank()
	if !strings.Contains(tty.String(), "sending 3 batches, 300 rows, 1.0 MiB") {
		t.Fatalf("terminal output %q", tty.String())
	}
	p.done()
}
