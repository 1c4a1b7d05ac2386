package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress is a live line on stderr for a long send or recv: batches, rows,
// bytes and throughput. It is drawn only when stderr is a terminal, so
// scripts and tests see exactly the output they always did. The bar is
// made at the first update, so the rate counts from the first batch: the
// wait for a producer (or for a slow input) before it does not dilute it.
type progress struct {
	bar  *progressbar.ProgressBar // nil when not drawing (yet)
	verb string
	w    io.Writer
	tty  bool
}

func newProgress(verb string) *progress {
	return newProgressTo(verb, os.Stderr, term.IsTerminal(int(os.Stderr.Fd())))
}

func newProgressTo(verb string, w io.Writer, tty bool) *progress {
	return &progress{verb: verb, w: w, tty: tty}
}

func (p *progress) update(batches, rows, bytes uint64) {
	if !p.tty {
		return
	}
	if p.bar == nil {
		p.bar = progressbar.NewOptions64(-1, // unknown total: a spinner
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription(p.verb+" 0 batches, 0 rows"),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSpinnerType(14),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionClearOnFinish(),
		)
	}
	p.bar.Describe(fmt.Sprintf("%s %d batches, %d rows, %s", p.verb, batches, rows, mib(bytes)))
	p.bar.Set64(int64(bytes))
}

// mib formats a byte count in MiB.
func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// done clears the line before the summary is printed.
func (p *progress) done() {
	if p.bar != nil {
		p.bar.Finish()
		p.bar = nil
	}
	p.tty = false
}
