package main

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
)

// Plots are hand-written SVG: no plotting dependency, readable diffs.

const (
	plotW, plotH                 = 900, 540
	padL, padR, padT, padB       = 80, 230, 40, 60
	innerW, innerH               = plotW - padL - padR, plotH - padT - padB
	fontAttrs                    = `font-family="sans-serif" font-size="12"`
	legendRowHeight              = 18
	tickLen                      = 5
	gridColor, axisColor, txtCol = "#ddd", "#333", "#222"
)

var palette = map[string]string{
	"atomic-pingpong":  "#000000",
	"memcpy":           "#000000",
	"shm-rust":         "#1f77b4",
	"shm-go":           "#d62728",
	"shm-go-ipc":       "#ff7f0e",
	"shm-go-cdata":     "#8c564b",
	"cgo-oneshot":      "#2ca02c",
	"uds-ipc":          "#9467bd",
	"iceoryx2":         "#17becf",
	"iceoryx2-event":   "#17becf",
	"flight-localhost": "#e377c2",
}

func colorOf(transport string) string {
	if c, ok := palette[transport]; ok {
		return c
	}
	return "#7f7f7f"
}

func dashOf(mode string) string {
	switch mode {
	case "blocking":
		return ` stroke-dasharray="7 4"`
	case "parked":
		return ` stroke-dasharray="2 3"`
	}
	return ""
}

// line is one plotted curve.
type line struct {
	label, color, dash string
	xs, ys             []float64
}

// axis maps values onto pixels, logarithmically.
type axis struct{ lo, hi float64 }

func logAxis(vals []float64) axis {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		if v > 0 {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 1, 10
	}
	lo, hi = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
	if hi <= lo {
		hi = lo * 10
	}
	return axis{lo, hi}
}

func (a axis) frac(v float64) float64 {
	return (math.Log10(v) - math.Log10(a.lo)) / (math.Log10(a.hi) - math.Log10(a.lo))
}

func header(b *strings.Builder, title string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">`+"\n", plotW, plotH, plotW, plotH)
	fmt.Fprintf(b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(b, `<text x="%d" y="22" font-family="sans-serif" font-size="15" fill="%s">%s</text>`+"\n", padL, txtCol, html.EscapeString(title))
}

// linePlot draws curves on log-log axes with x ticks at the given sizes.
func linePlot(title, ylabel string, lines []line, xticks []int64, yfmt func(float64) string) string {
	var b strings.Builder
	header(&b, title)
	var xv, yv []float64
	for _, l := range lines {
		xv, yv = append(xv, l.xs...), append(yv, l.ys...)
	}
	for _, t := range xticks {
		xv = append(xv, float64(t))
	}
	xa := logAxis(xv)
	if len(xticks) > 0 {
		xa = axis{float64(xticks[0]) / 1.5, float64(xticks[len(xticks)-1]) * 1.5}
	}
	ya := logAxis(yv)
	px := func(v float64) float64 { return padL + xa.frac(v)*innerW }
	py := func(v float64) float64 { return padT + (1-ya.frac(v))*innerH }
	// Decade grid lines and labels on y.
	for d := ya.lo; d <= ya.hi*1.0001; d *= 10 {
		y := py(d)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`+"\n", padL, y, padL+innerW, y, gridColor)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" %s text-anchor="end" fill="%s">%s</text>`+"\n", padL-tickLen-2, y+4, fontAttrs, txtCol, html.EscapeString(yfmt(d)))
	}
	for _, t := range xticks {
		x := px(float64(t))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>`+"\n", x, padT, x, padT+innerH, gridColor)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" %s text-anchor="middle" fill="%s">%s</text>`+"\n", x, padT+innerH+18, fontAttrs, txtCol, sizeName(t))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="%s"/>`+"\n", padL, padT, innerW, innerH, axisColor)
	fmt.Fprintf(&b, `<text x="%d" y="%d" %s text-anchor="middle" fill="%s">payload (log scale)</text>`+"\n", padL+innerW/2, plotH-15, fontAttrs, txtCol)
	fmt.Fprintf(&b, `<text x="18" y="%d" %s text-anchor="middle" fill="%s" transform="rotate(-90 18 %d)">%s</text>`+"\n", padT+innerH/2, fontAttrs, txtCol, padT+innerH/2, html.EscapeString(ylabel))
	for i, l := range lines {
		var pts []string
		for k := range l.xs {
			if l.ys[k] > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(l.xs[k]), py(l.ys[k])))
			}
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), l.color, l.dash)
		for _, p := range pts {
			x, y, _ := strings.Cut(p, ",")
			fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", x, y, l.color)
		}
		ly := padT + 10 + i*legendRowHeight
		lx := padL + innerW + 15
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`+"\n", lx, ly, lx+28, ly, l.color, l.dash)
		fmt.Fprintf(&b, `<text x="%d" y="%d" %s fill="%s">%s</text>`+"\n", lx+34, ly+4, fontAttrs, txtCol, html.EscapeString(l.label))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func xTicks(ss []series) []int64 { return sizesOf(ss) }

// latencySVG: p50 (solid marks) and p99 (thin) one-way latency per
// transport and mode; blocking modes dashed.
func latencySVG(rep *Report) string {
	ss := collect(rep, "latency")
	var lines []line
	for _, s := range ss {
		for _, q := range []string{"p50", "p99"} {
			l := line{label: s.label() + " " + q, color: colorOf(s.transport), dash: dashOf(s.mode)}
			if q == "p99" {
				l.dash = ` stroke-dasharray="2 3" stroke-opacity="0.6"`
			}
			for _, p := range s.points {
				v := *p.P50NS
				if q == "p99" {
					v = *p.P99NS
				}
				l.xs, l.ys = append(l.xs, float64(p.PayloadBytes)), append(l.ys, v)
			}
			lines = append(lines, l)
		}
	}
	return linePlot("One-way latency vs payload (p50 solid/dashed = busy/blocking, p99 dotted)", "latency (log scale)", lines, xTicks(ss), ns)
}

// throughputSVG: GB/s vs batch size per transport and mode.
func throughputSVG(rep *Report) string {
	ss := collect(rep, "throughput")
	var lines []line
	for _, s := range ss {
		l := line{label: s.label(), color: colorOf(s.transport), dash: dashOf(s.mode)}
		if s.transport == "memcpy" {
			l.dash = ` stroke-dasharray="1 3"`
		}
		for _, p := range s.points {
			l.xs, l.ys = append(l.xs, float64(p.PayloadBytes)), append(l.ys, *p.ThroughputBytesPerS/1e9)
		}
		lines = append(lines, l)
	}
	return linePlot("Streaming throughput vs batch size (consumer reads every byte)", "GB/s (log scale)", lines, xTicks(ss), func(v float64) string {
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
	})
}

// fanoutSVG: grouped bars, one group per consumer shape, one bar per
// transport and mode.
func fanoutSVG(rep *Report) string {
	ss := append(collect(rep, "broadcast"), collect(rep, "queue")...)
	type key struct {
		kind string
		n    int
	}
	var groups []key
	bars := map[string]map[key]float64{}
	var labels []string
	colors := map[string]string{}
	dashes := map[string]string{}
	top := 0.0
	for _, s := range ss {
		lb := s.label()
		if bars[lb] == nil {
			bars[lb] = map[key]float64{}
			labels = append(labels, lb)
			colors[lb], dashes[lb] = colorOf(s.transport), s.mode
		}
		for _, p := range s.points {
			k := key{p.Kind, p.Consumers}
			if !slices.Contains(groups, k) {
				groups = append(groups, k)
			}
			v := *p.ThroughputBytesPerS / 1e9
			bars[lb][k] = v
			top = math.Max(top, v)
		}
	}
	slices.SortFunc(groups, func(a, b key) int {
		if a.kind != b.kind {
			return strings.Compare(a.kind, b.kind)
		}
		return a.n - b.n
	})
	var b strings.Builder
	size := "–"
	if len(ss) > 0 && len(ss[0].points) > 0 {
		size = sizeName(ss[0].points[0].PayloadBytes)
	}
	header(&b, "Fan-out: GB/s of the published stream, "+size+" messages (hatched = blocking)")
	b.WriteString(`<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="white" stroke-width="2"/></pattern></defs>` + "\n")
	if top <= 0 {
		top = 1
	}
	step := math.Pow(10, math.Floor(math.Log10(top)))
	if top/step < 3 {
		step /= 2
	}
	ymax := math.Ceil(top/step) * step
	py := func(v float64) float64 { return padT + (1-v/ymax)*innerH }
	for v := 0.0; v <= ymax*1.0001; v += step {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`+"\n", padL, py(v), padL+innerW, py(v), gridColor)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" %s text-anchor="end" fill="%s">%g</text>`+"\n", padL-7, py(v)+4, fontAttrs, txtCol, math.Round(v*1000)/1000)
	}
	gw := float64(innerW) / float64(max(1, len(groups)))
	bw := gw * 0.8 / float64(max(1, len(labels)))
	for gi, g := range groups {
		x0 := padL + float64(gi)*gw + gw*0.1
		for li, lb := range labels {
			v, ok := bars[lb][g]
			if !ok {
				continue
			}
			x := x0 + float64(li)*bw
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, py(v), bw-2, py(0)-py(v), colors[lb])
			if dashes[lb] == "blocking" {
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="url(#hatch)"/>`+"\n", x, py(v), bw-2, py(0)-py(v))
			}
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" %s text-anchor="middle" fill="%s">%s ×%d</text>`+"\n", x0+gw*0.4, padT+innerH+18, fontAttrs, txtCol, g.kind, g.n)
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="%s"/>`+"\n", padL, padT, innerW, innerH, axisColor)
	fmt.Fprintf(&b, `<text x="18" y="%d" %s text-anchor="middle" fill="%s" transform="rotate(-90 18 %d)">GB/s</text>`+"\n", padT+innerH/2, fontAttrs, txtCol, padT+innerH/2)
	for i, lb := range labels {
		ly := padT + 10 + i*legendRowHeight
		lx := padL + innerW + 15
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="24" height="12" fill="%s"/>`+"\n", lx, ly-8, colors[lb])
		if dashes[lb] == "blocking" {
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="24" height="12" fill="url(#hatch)"/>`+"\n", lx, ly-8)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" %s fill="%s">%s</text>`+"\n", lx+30, ly+2, fontAttrs, txtCol, html.EscapeString(lb))
	}
	b.WriteString("</svg>\n")
	return b.String()
}
