// Package alog is the Go half of Alloy's shared log format:
//
//	[2022-10-17 18:09:34] [INFO] [Go]	message key=value
//
// The Rust half (crates/alloy-ffi/src/oneshot/log.rs) writes the same lines
// with [Rust]. Each line is written with one Write call under a mutex, so
// when both languages write to the same file descriptor their lines
// interleave in order.
package alog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// TimeFormat is the timestamp layout of every line (local time).
const TimeFormat = "2006-01-02 15:04:05"

// Handler is a slog.Handler writing Alloy's line format.
type Handler struct {
	out    *output
	level  slog.Leveler
	source string
	attrs  string // pre-rendered " key=value" pairs from WithAttrs
	group  string // dotted prefix from WithGroup
}

type output struct {
	mu sync.Mutex
	w  io.Writer
}

// NewHandler returns a handler writing to w the lines at or above level,
// tagged with source (for example "Go").
func NewHandler(w io.Writer, level slog.Leveler, source string) *Handler {
	return &Handler{out: &output{w: w}, level: level, source: source}
}

// SetOutput redirects this handler and every handler derived from it.
func (h *Handler) SetOutput(w io.Writer) {
	h.out.mu.Lock()
	h.out.w = w
	h.out.mu.Unlock()
}

// Enabled reports whether lines of level l are written.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

// Handle writes one line for r.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	ts := r.Time
	if ts.IsZero() {
		ts = time.Now()
	}
	fmt.Fprintf(&b, "[%s] [%s] [%s]\t%s%s", ts.Format(TimeFormat), r.Level, h.source, r.Message, h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		appendAttr(&b, h.group, a)
		return true
	})
	b.WriteByte('\n')
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	_, err := io.WriteString(h.out.w, b.String())
	return err
}

// WithAttrs returns a handler that adds attrs to every line.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range attrs {
		appendAttr(&b, h.group, a)
	}
	c := *h
	c.attrs = b.String()
	return &c
}

// WithGroup returns a handler that prefixes later keys with name.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.group = h.group + name + "."
	return &c
}

func appendAttr(b *strings.Builder, group string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		prefix := group
		if a.Key != "" {
			prefix += a.Key + "."
		}
		for _, g := range a.Value.Group() {
			appendAttr(b, prefix, g)
		}
		return
	}
	fmt.Fprintf(b, " %s%s=%v", group, a.Key, a.Value)
}
