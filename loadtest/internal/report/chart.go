package report

import (
	"fmt"
	"image/color"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/herald-feed/herald/loadtest/internal/stats"
)

// Palette holds the charts' line colours, in the order series take them;
// the labs' charts use it too.
var Palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
}

// cdfPlot draws one CDF line per labelled distribution, on a log time axis.
func cdfPlot(title string, labels []string, dists []stats.Summary) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "ms (log scale)"
	p.Y.Label.Text = "fraction of posts seen"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = ticks125{}
	p.Y.Min, p.Y.Max = 0, 1
	p.Add(plotter.NewGrid())
	p.Legend.Top = false
	p.Legend.Left = false
	drawn := 0
	for i, d := range dists {
		var pts plotter.XYs
		for _, c := range d.CDF {
			pts = append(pts, plotter.XY{X: max(c.Ms, 0.01), Y: c.Quantile})
		}
		if len(pts) == 0 {
			continue
		}
		if len(pts) == 1 {
			pts = append(pts, plotter.XY{X: pts[0].X * 1.01, Y: pts[0].Y})
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, err
		}
		l.Color = Palette[i%len(Palette)]
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("%s (n=%d)", labels[i], d.Count), l)
		drawn++
	}
	if drawn == 0 {
		// A log axis needs a positive range even with nothing on it.
		p.X.Min, p.X.Max = 0.1, 1000
		p.Title.Text += " (no samples)"
	}
	return p, nil
}

// seriesPlot draws per-second counts as lines.
func seriesPlot(title string, labels []string, series [][]int64) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "seconds since start"
	p.Y.Label.Text = "completed per second"
	p.Add(plotter.NewGrid())
	p.Y.Min = 0
	for i, s := range series {
		if len(s) == 0 {
			continue
		}
		pts := make(plotter.XYs, len(s))
		for j, v := range s {
			pts[j] = plotter.XY{X: float64(j) + 0.5, Y: float64(v)}
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, err
		}
		l.Color = Palette[i%len(Palette)]
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(labels[i], l)
	}
	return p, nil
}

func savePlots(path string, plots []*plot.Plot) error {
	const w, h = 14 * vg.Inch, 5 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	t := draw.Tiles{Rows: 1, Cols: len(plots), PadX: vg.Inch / 2, PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8, PadLeft: vg.Inch / 8, PadRight: vg.Inch / 4}
	canvases := plot.Align([][]*plot.Plot{plots}, t, dc)
	for i, p := range plots {
		p.Draw(canvases[0][i])
	}
	png := vgimg.PngCanvas{Canvas: img}
	return saveTo(path, png)
}

// Chart draws the lag CDF beside throughput over time.
func (r *Report) Chart(path string) error {
	cdf, err := cdfPlot("post→visible lag (CDF)", []string{r.Workload.LagMode}, []stats.Summary{r.Lag})
	if err != nil {
		return err
	}
	post, read := r.Method(CreatePost), r.Method(GetHomeTimeline)
	var errs []int64
	for _, m := range []stats.Summary{post, read} {
		for i, v := range m.ErrorsPerSecond {
			for len(errs) <= i {
				errs = append(errs, 0)
			}
			errs[i] += v
		}
	}
	tp, err := seriesPlot("throughput", []string{"CreatePost ok", "GetHomeTimeline ok", "errors"}, [][]int64{post.PerSecond, read.PerSecond, errs})
	if err != nil {
		return err
	}
	return savePlots(path, []*plot.Plot{cdf, tp})
}

// CompareChart draws several runs' lag CDFs and post throughput side by
// side, one line per run.
func CompareChart(path string, runs []*Report) error {
	var labels []string
	var lags []stats.Summary
	var posts, reads [][]int64
	for _, r := range runs {
		labels = append(labels, r.Label)
		lags = append(lags, r.Lag)
		posts = append(posts, r.Method(CreatePost).PerSecond)
		reads = append(reads, r.Method(GetHomeTimeline).PerSecond)
	}
	cdf, err := cdfPlot("post→visible lag (CDF)", labels, lags)
	if err != nil {
		return err
	}
	pp, err := seriesPlot("CreatePost completed per second", labels, posts)
	if err != nil {
		return err
	}
	rp, err := seriesPlot("GetHomeTimeline completed per second", labels, reads)
	if err != nil {
		return err
	}
	return savePlots(path, []*plot.Plot{cdf, pp, rp})
}

// ticks125 marks 1, 2 and 5 times each power of ten in range, which reads
// better than bare powers of ten on a log axis spanning one or two decades.
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
