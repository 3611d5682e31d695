package coordlab

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/herald-feed/herald/loadtest/internal/report"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var palette = report.Palette

// Chart writes the report's charts (Charts) into dir: hand-off latency and
// watch events against contenders; write and read throughput; failover
// time against the timeout.
func (r *Report) Chart(dir string) error {
	lat, events, err := r.handoffPlots()
	if err != nil {
		return err
	}
	if err := savePlots(filepath.Join(dir, Charts[0]), lat, events); err != nil {
		return err
	}
	writes, reads, err := r.throughputPlots()
	if err != nil {
		return err
	}
	if err := savePlots(filepath.Join(dir, Charts[1]), writes, reads); err != nil {
		return err
	}
	fo, err := r.failoverPlot()
	if err != nil {
		return err
	}
	return savePlots(filepath.Join(dir, Charts[2]), fo)
}

func (r *Report) handoffPlots() (*plot.Plot, *plot.Plot, error) {
	lat := plot.New()
	lat.Title.Text = "lock hand-off latency (solid p50, dashed p99)"
	lat.X.Label.Text = "contenders (log scale)"
	lat.Y.Label.Text = "ms (log scale)"
	lat.X.Scale, lat.Y.Scale = plot.LogScale{}, plot.LogScale{}
	lat.X.Tick.Marker, lat.Y.Tick.Marker = plot.LogTicks{Prec: -1}, ticks125{}
	lat.Add(plotter.NewGrid())
	lat.Legend.Top, lat.Legend.Left = true, true
	ev := plot.New()
	ev.Title.Text = "watch events delivered per hand-off"
	ev.X.Label.Text = "contenders (log scale)"
	ev.Y.Label.Text = "events per hand-off"
	ev.X.Scale = plot.LogScale{}
	ev.X.Tick.Marker = plot.LogTicks{Prec: -1}
	ev.Y.Min = 0
	ev.Add(plotter.NewGrid())
	ev.Legend.Top, ev.Legend.Left = true, true

	var recipes []string
	for _, h := range r.Handoffs {
		if !slices.Contains(recipes, h.Recipe) {
			recipes = append(recipes, h.Recipe)
		}
	}
	drawn := 0
	for i, name := range recipes {
		var p50, p99, eps plotter.XYs
		for _, h := range r.Handoffs {
			if h.Recipe != name || h.Handoffs == 0 {
				continue
			}
			x := float64(h.Contenders)
			p50 = append(p50, plotter.XY{X: x, Y: max(h.P50Ms, 0.001)})
			p99 = append(p99, plotter.XY{X: x, Y: max(h.P99Ms, 0.001)})
			eps = append(eps, plotter.XY{X: x, Y: h.EventsPerHandoff})
		}
		if len(p50) == 0 {
			continue
		}
		c := palette[i%len(palette)]
		l50, s50, err := plotter.NewLinePoints(p50)
		if err != nil {
			return nil, nil, err
		}
		l50.Color, s50.Color, l50.Width = c, c, vg.Points(1.5)
		l99, s99, err := plotter.NewLinePoints(p99)
		if err != nil {
			return nil, nil, err
		}
		l99.Color, s99.Color, l99.Width = c, c, vg.Points(1)
		l99.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		lat.Add(l50, s50, l99, s99)
		lat.Legend.Add(name, l50)
		le, se, err := plotter.NewLinePoints(eps)
		if err != nil {
			return nil, nil, err
		}
		le.Color, se.Color, le.Width = c, c, vg.Points(1.5)
		ev.Add(le, se)
		ev.Legend.Add(name, le)
		drawn++
	}
	if drawn == 0 {
		lat.X.Min, lat.X.Max, lat.Y.Min, lat.Y.Max = 1, 100, 0.1, 100
		ev.X.Min, ev.X.Max = 1, 100
		lat.Title.Text += " (not measured)"
	}
	// Room above the lines for the legends.
	lat.Y.Max *= 3
	ev.Y.Max *= 1.35
	return lat, ev, nil
}

func (r *Report) throughputPlots() (*plot.Plot, *plot.Plot, error) {
	var inFlights []int
	for _, t := range r.Throughput {
		if !slices.Contains(inFlights, t.InFlight) {
			inFlights = append(inFlights, t.InFlight)
		}
	}
	slices.Sort(inFlights)
	names := make([]string, len(inFlights))
	for i, n := range inFlights {
		names[i] = fmt.Sprintf("%d in flight", n)
	}
	bars := func(title string, series [][2]string) (*plot.Plot, error) {
		p := plot.New()
		p.Title.Text = title
		p.Y.Label.Text = "operations per second"
		p.Y.Min = 0
		p.Add(plotter.NewGrid())
		p.Legend.Top, p.Legend.Left = true, true
		if len(inFlights) == 0 {
			p.Title.Text += " (not measured)"
			return p, nil
		}
		w := vg.Points(22)
		for i, s := range series {
			vals := make(plotter.Values, len(inFlights))
			for j, n := range inFlights {
				for _, t := range r.Throughput {
					if t.System == s[0] && t.Op == s[1] && t.InFlight == n {
						vals[j] = t.OpsPerSec
					}
				}
			}
			b, err := plotter.NewBarChart(vals, w)
			if err != nil {
				return nil, err
			}
			b.Color = palette[i%len(palette)]
			b.LineStyle.Width = 0
			b.Offset = vg.Length(float64(i)-float64(len(series)-1)/2) * w
			p.Add(b)
			label := map[string]string{SystemZK: "ZooKeeper", SystemEtcd: "etcd"}[s[0]]
			if s[1] != OpWrite && s[1] != OpRead {
				label += " (" + s[1][len("read, "):] + ")"
			}
			p.Legend.Add(label, b)
		}
		p.NominalX(names...)
		p.Y.Max *= 1.3 // room for the legend
		p.Y.Tick.Marker = wholeTicks{}
		return p, nil
	}
	writes, err := bars("writes, 3 nodes (every write: leader + quorum fsync)", [][2]string{{SystemZK, OpWrite}, {SystemEtcd, OpWrite}})
	if err != nil {
		return nil, nil, err
	}
	reads, err := bars("reads, 3 nodes", [][2]string{{SystemZK, OpRead}, {SystemEtcd, OpReadLinearizable}, {SystemEtcd, OpReadSerializable}})
	if err != nil {
		return nil, nil, err
	}
	reads.Title.Text += ": ZooKeeper local, etcd linearizable / serializable"
	return writes, reads, nil
}

func (r *Report) failoverPlot() (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "failover after SIGKILL of the holder or leader"
	p.X.Label.Text = "session timeout / lease TTL (s)"
	p.Y.Label.Text = "until another client holds it (s)"
	p.X.Min, p.Y.Min = 0, 0
	p.Add(plotter.NewGrid())
	p.Legend.Top, p.Legend.Left = true, true
	maxTTL := 1.0
	for _, f := range r.Failovers {
		maxTTL = max(maxTTL, f.TTLSeconds)
	}
	for _, ref := range []struct {
		k    float64
		name string
	}{{1, "y = timeout"}, {2.0 / 3, "y = 2/3 timeout"}} {
		l, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: maxTTL * 1.15, Y: ref.k * maxTTL * 1.15}})
		if err != nil {
			return nil, err
		}
		l.Color = color.Gray{Y: 0x80}
		if ref.k != 1 {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(l)
		p.Legend.Add(ref.name, l)
	}
	series := []struct{ system, recipe, name string }{
		{SystemZK, RecipeLock, "ZooKeeper lock"}, {SystemZK, RecipeElection, "ZooKeeper election"},
		{SystemEtcd, RecipeLock, "etcd Mutex"}, {SystemEtcd, RecipeElection, "etcd Election"},
	}
	for i, s := range series {
		var pts plotter.XYs
		for _, f := range r.Failovers {
			if f.System != s.system || f.Recipe != s.recipe {
				continue
			}
			for _, t := range f.TrialsMs {
				// Side by side, not on top of each other.
				pts = append(pts, plotter.XY{X: f.TTLSeconds + 0.08*(float64(i)-1.5), Y: t / 1000})
			}
		}
		if len(pts) == 0 {
			continue
		}
		sc, err := plotter.NewScatter(pts)
		if err != nil {
			return nil, err
		}
		sc.Color = palette[i%len(palette)]
		sc.Radius = vg.Points(3)
		sc.Shape = draw.CircleGlyph{}
		p.Add(sc)
		p.Legend.Add(s.name, sc)
	}
	p.X.Max, p.Y.Max = maxTTL*1.15, maxTTL*1.3
	return p, nil
}

func savePlots(path string, plots ...*plot.Plot) error {
	w, h := vg.Length(len(plots))*7*vg.Inch, 5*vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	t := draw.Tiles{Rows: 1, Cols: len(plots), PadX: vg.Inch / 2, PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8, PadLeft: vg.Inch / 8, PadRight: vg.Inch / 4}
	canvases := plot.Align([][]*plot.Plot{plots}, t, dc)
	for i, p := range plots {
		p.Draw(canvases[0][i])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ticks125 marks 1, 2 and 5 times each power of ten in range, which reads
// better than bare powers of ten on a log axis spanning a decade or two.
type ticks125 struct{}

func (ticks125) Ticks(lo, hi float64) []plot.Tick {
	var out []plot.Tick
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v < lo || v > hi {
				continue
			}
			out = append(out, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', -1, 64)})
		}
	}
	return out
}

// wholeTicks are gonum's default ticks labelled as whole numbers.
type wholeTicks struct{}

func (wholeTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = strconv.FormatFloat(ts[i].Value, 'f', 0, 64)
		}
	}
	return ts
}
