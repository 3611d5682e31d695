// Package report holds a load test's results and renders them as JSON, a
// Markdown summary and a PNG chart.
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/herald-feed/herald/loadtest/internal/graph"
	"github.com/herald-feed/herald/loadtest/internal/stats"
)

// Method names in reports.
const (
	CreatePost      = "CreatePost"
	GetHomeTimeline = "GetHomeTimeline"
	Follow          = "Follow"
	// ObserverRead is a read made by a lag observer, kept apart from the
	// workload's reads: it is closed-loop, and its count is load the
	// measurement itself adds.
	ObserverRead = "GetHomeTimeline (lag observers)"
	// Lag is post→visible: when a follower first saw a post, less the
	// post's create time.
	Lag = "post→visible"
)

// Workload is what a run asked for.
type Workload struct {
	WarmupS            float64 `json:"warmup_s,omitempty"`
	DurationS          float64 `json:"duration_s"`
	PostRate           float64 `json:"post_rate"`
	ReadRate           float64 `json:"read_rate"`
	PageSize           int     `json:"page_size"`
	CelebrityPostShare float64 `json:"celebrity_post_share"`
	MaxInFlight        int     `json:"max_in_flight"`
	TimeoutS           float64 `json:"timeout_s"`
	LagMode            string  `json:"lag_mode"`
	LagFollowers       int     `json:"lag_followers,omitempty"`
	LagSample          float64 `json:"lag_sample,omitempty"`
	MaxWatchers        int     `json:"max_watchers,omitempty"`
	LagTimeoutS        float64 `json:"lag_timeout_s"`
	Observers          int     `json:"observers,omitempty"`
	Seed               uint64  `json:"seed"`
}

// Setup is how the graph build went.
type Setup struct {
	Skipped  bool    `json:"skipped,omitempty"`
	Follows  int     `json:"follows"`
	Done     int     `json:"done"`
	Retries  int     `json:"retries"`
	Seconds  float64 `json:"seconds"`
	RatePerS float64 `json:"rate_per_s"`
}

// Schedule is how one open-loop stream of requests went.
type Schedule struct {
	Method    string `json:"method"`
	Scheduled int    `json:"scheduled"`
	Issued    int    `json:"issued"`
	// AchievedPerS is successful completions per second of the run.
	AchievedPerS float64 `json:"achieved_per_s"`
}

// Report is the whole result of one feedload run.
type Report struct {
	Tool        string    `json:"tool"`
	Target      string    `json:"target"`
	Label       string    `json:"label,omitempty"`
	Started     time.Time `json:"started"`
	Ended       time.Time `json:"ended"`
	Interrupted bool      `json:"interrupted"`
	// Error is why the run stopped early, if it did.
	Error       string          `json:"error,omitempty"`
	GraphParams graph.Params    `json:"graph_params"`
	Graph       graph.Stats     `json:"graph"`
	Workload    Workload        `json:"workload"`
	Setup       Setup           `json:"setup"`
	Schedules   []Schedule      `json:"schedules,omitempty"`
	Methods     []stats.Summary `json:"methods"`
	// Warmup holds the warmup's requests, which Methods leaves out.
	Warmup []stats.Summary `json:"warmup,omitempty"`
	// Lag is the post→visible distribution, with its CDF.
	Lag   stats.Summary `json:"lag"`
	Notes []string      `json:"notes,omitempty"`
}

// Method returns the summary of name, or a zero one.
func (r *Report) Method(name string) stats.Summary {
	for _, m := range r.Methods {
		if m.Name == name {
			return m
		}
	}
	return stats.Summary{Name: name}
}

// RateLimited returns how many calls, warmup and setup included, the
// server refused with RESOURCE_EXHAUSTED.
func (r *Report) RateLimited() int64 {
	var n int64
	for _, m := range append(slices.Clone(r.Methods), r.Warmup...) {
		n += m.RateLimited
	}
	return n
}

// WriteFiles writes base.json, base.md and base.png under dir and returns
// their paths.
func (r *Report) WriteFiles(dir, base string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	js := filepath.Join(dir, base+".json")
	md := filepath.Join(dir, base+".md")
	png := filepath.Join(dir, base+".png")
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(js, append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(md, []byte(r.Markdown(base+".png")), 0o644); err != nil {
		return []string{js}, err
	}
	if err := r.Chart(png); err != nil {
		return []string{js, md}, fmt.Errorf("chart: %w", err)
	}
	return []string{js, md, png}, nil
}

// Read loads a report written by WriteFiles.
func Read(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

func f1(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func errText(s stats.Summary) string {
	if s.Errors == 0 {
		return "0"
	}
	var parts []string
	for _, k := range sortedKeys(s.ErrorsByCode) {
		parts = append(parts, fmt.Sprintf("%s %d", k, s.ErrorsByCode[k]))
	}
	return fmt.Sprintf("%d (%s)", s.Errors, strings.Join(parts, ", "))
}

// Markdown renders the summary; chart names the PNG beside it ("" for
// none).
func (r *Report) Markdown(chart string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	title := "feedload report"
	if r.Label != "" {
		title += ": " + r.Label
	}
	p("# %s\n\n", title)
	p("- target: %s\n", r.Target)
	p("- started %s, ran %s", r.Started.Format(time.RFC3339), r.Ended.Sub(r.Started).Round(100*time.Millisecond))
	if r.Interrupted {
		p(" (**interrupted**)")
	}
	p("\n")
	if r.Error != "" {
		p("- **stopped by an error:** %s\n", r.Error)
	}
	w := r.Workload
	p("- workload: %g posts/s and %g reads/s (page size %d) for %gs", w.PostRate, w.ReadRate, w.PageSize, w.DurationS)
	if w.WarmupS > 0 {
		p(" after a %gs warmup that is not measured", w.WarmupS)
	}
	p(", open loop, seed %d; %.0f%% of posts by celebrities; at most %d requests in flight, %gs timeout\n",
		w.Seed, 100*w.CelebrityPostShare, w.MaxInFlight, w.TimeoutS)
	gp, gs := r.GraphParams, r.Graph
	p("- graph: %d users (%d celebrities, each followed by %.0f%% of users), %d follows; followers of ordinary users: median %d, mean %.1f, max %d; top 1%% hold %.0f%% of them (zipf %.2f, seed %d)\n",
		gs.Users, gs.Celebrities, 100*gp.CelebrityReach, gs.Follows, gs.MedianFollowers, gs.MeanFollowers, gs.MaxFollowers, 100*gs.Top1PercentShare, gp.Zipf, gp.Seed)
	if r.Setup.Skipped {
		p("- setup: skipped (graph assumed built)\n")
	} else {
		p("- setup: %d of %d follows in %.1fs (%.0f/s), %d retries\n", r.Setup.Done, r.Setup.Follows, r.Setup.Seconds, r.Setup.RatePerS, r.Setup.Retries)
	}
	p("\n## Latency\n\nFrom each request's intended start on the open-loop schedule to its end, in milliseconds.\n\n")
	p("Rate limited: refused with RESOURCE_EXHAUSTED by the server's per-user limits, not counted as errors.\n\n")
	p("| method | ok | errors | rate limited | mean | p50 | p90 | p99 | p99.9 | max |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, m := range append(slices.Clone(r.Methods), r.Warmup...) {
		p("| %s | %d | %s | %d | %s | %s | %s | %s | %s | %s |\n", m.Name, m.Count, errText(m), m.RateLimited, f1(m.MeanMs), f1(m.P50Ms), f1(m.P90Ms), f1(m.P99Ms), f1(m.P999Ms), f1(m.MaxMs))
	}
	if len(r.Schedules) > 0 {
		p("\n| schedule | scheduled | issued | achieved/s |\n|---|---:|---:|---:|\n")
		for _, s := range r.Schedules {
			p("| %s | %d | %d | %s |\n", s.Method, s.Scheduled, s.Issued, f1(s.AchievedPerS))
		}
	}
	l := r.Lag
	p("\n## Post→visible lag\n\n")
	switch w.LagMode {
	case "poll":
		p("Up to %d sampled followers of %.0f%% of posts poll their home timeline (%s) until the post appears; lag is the time of the first page that holds it less the post's create_time (same machine, same clock). Resolution is the poll interval: 5 ms, growing to 100 ms, and past 500 ms a fifth of the lag so far. At most %d followers poll at once.\n\n", w.LagFollowers, 100*w.LagSample, "GetHomeTimeline", w.MaxWatchers)
	case "stream":
		p("%d sampled users keep StreamHomeTimeline open; lag is when a post arrived on a follower's stream less its create_time (same machine, same clock). The stream is fed from the event log, not from the stored home timeline.\n\n", w.Observers)
	default:
		p("Not measured (lag mode %q).\n\n", w.LagMode)
	}
	if w.LagMode == "poll" || w.LagMode == "stream" {
		p("| observed | not seen within %gs | mean | p50 | p90 | p99 | p99.9 | max |\n|---:|---|---:|---:|---:|---:|---:|---:|\n", w.LagTimeoutS)
		p("| %d | %s | %s | %s | %s | %s | %s | %s |\n", l.Count, errText(l), f1(l.MeanMs), f1(l.P50Ms), f1(l.P90Ms), f1(l.P99Ms), f1(l.P999Ms), f1(l.MaxMs))
	}
	if len(r.Notes) > 0 {
		p("\n## Notes\n\n")
		for _, n := range r.Notes {
			p("- %s\n", n)
		}
	}
	if chart != "" {
		p("\n![lag CDF and throughput](%s)\n", chart)
	}
	return b.String()
}
