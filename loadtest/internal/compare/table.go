package compare

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/herald-feed/herald/loadtest/internal/report"
)

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "n/a"
	case v == 0:
		return "0"
	case math.Abs(v) < 10:
		return fmt.Sprintf("%.2f", v)
	case math.Abs(v) < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func per1k(cpu float64, posts int64) float64 {
	if posts == 0 {
		return math.NaN()
	}
	return cpu / float64(posts) * 1000
}

func sum(m map[string]int64) int64 {
	s := int64(0)
	for _, v := range m {
		s += v
	}
	return s
}

// Table renders the results as a Markdown table, one row per strategy.
func Table(cfg Config, results []Result) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	backends := []string{}
	for _, r := range results {
		for n := range r.BackendCPU {
			if !slices.Contains(backends, n) {
				backends = append(backends, n)
			}
		}
	}
	slices.Sort(backends)
	cpuHead := "Herald"
	for _, n := range backends {
		cpuHead += " / +" + n
	}
	p("| strategy | CreatePost p50 / p99 ms | post→visible p50 / p99 ms | seen / not seen | GetHomeTimeline p50 / p99 ms | Redis bytes per user: all / home timelines | CPU s per 1,000 posts: %s | timeline writes per post | errors |\n", cpuHead)
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	users := float64(cfg.Graph.Users)
	for _, r := range results {
		if r.Report == nil {
			p("| %s | failed: %s | | | | | | | |\n", r.Strategy, r.Error)
			continue
		}
		post, read, lag := r.Report.Method(report.CreatePost), r.Report.Method(report.GetHomeTimeline), r.Report.Lag
		mem := "n/a"
		if r.RedisBytes != nil {
			mem = fmt.Sprintf("%s / %s", num(float64(sum(r.RedisBytes))/users), num(float64(r.RedisBytes["tl"])/users))
		}
		cpu := num(per1k(r.HeraldCPU, r.Posts))
		acc := r.HeraldCPU
		for _, n := range backends {
			acc += r.BackendCPU[n]
			cpu += " / " + num(per1k(acc, r.Posts))
		}
		writes := math.NaN()
		if r.Posts > 0 {
			writes = r.Deliveries / float64(r.Posts)
		}
		errs := post.Errors + read.Errors
		p("| %s | %s / %s | %s / %s | %d / %d | %s / %s | %s | %s | %s | %d |\n", r.Strategy,
			num(post.P50Ms), num(post.P99Ms), num(lag.P50Ms), num(lag.P99Ms), lag.Count, lag.Errors,
			num(read.P50Ms), num(read.P99Ms), mem, cpu, num(writes), errs)
	}
	return b.String()
}

// Details renders what sits behind each row: throughput, server-side
// fan-out lag, the machine's load.
func Details(results []Result) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("| strategy | posts ok | reads ok | posts pushed / pulled | fan-out lag p50 / p99 ms (server histogram) | Herald CPU s (process_cpu_seconds_total) | backing servers' CPU s | whole machine busy CPU s | of which anything else | window s | warmup reads: p99 ms, errors |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		if r.Report == nil {
			continue
		}
		back := 0.0
		for _, v := range r.BackendCPU {
			back += v
		}
		warm := "n/a"
		for _, w := range r.Report.Warmup {
			if strings.HasPrefix(w.Name, report.GetHomeTimeline) {
				warm = fmt.Sprintf("%s, %d", num(w.P99Ms), w.Errors)
			}
		}
		p("| %s | %d | %d | %s / %s | %s / %s | %s (%s) | %s | %s | %s | %s | %s |\n", r.Strategy, r.Posts, r.Report.Method(report.GetHomeTimeline).Count,
			num(r.FanoutPushed), num(r.FanoutPulled), num(r.FanoutLagP50*1000), num(r.FanoutLagP99*1000),
			num(r.HeraldCPU), num(r.MetricsCPU), num(back), num(r.MachineBusyS), num(r.MachineBusyS-r.HeraldCPU-back), num(r.RunSeconds), warm)
	}
	return b.String()
}

// WriteFiles writes compare.md, compare.json and compare.png to the
// output directory and returns their paths.
func WriteFiles(cfg Config, command string, results []Result) ([]string, error) {
	var runs []*report.Report
	for _, r := range results {
		if r.Report != nil {
			runs = append(runs, r.Report)
		}
	}
	md := filepath.Join(cfg.OutDir, "compare.md")
	js := filepath.Join(cfg.OutDir, "compare.json")
	png := filepath.Join(cfg.OutDir, "compare.png")
	var b strings.Builder
	fmt.Fprintf(&b, "# Fan-out strategies compared\n\n`%s`\n\n%s\n%s\n", command, Header(cfg), Table(cfg, results))
	fmt.Fprintf(&b, "\n%s\n![lag CDFs and throughput](compare.png)\n", Details(results))
	if err := os.WriteFile(md, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	type out struct {
		Command string           `json:"command"`
		Results []Result         `json:"results"`
		Reports []*report.Report `json:"reports"`
	}
	j, err := json.MarshalIndent(out{command, results, runs}, "", "  ")
	if err != nil {
		return []string{md}, err
	}
	if err := os.WriteFile(js, append(j, '\n'), 0o644); err != nil {
		return []string{md}, err
	}
	if len(runs) == 0 {
		return []string{md, js}, nil
	}
	if err := report.CompareChart(png, runs); err != nil {
		return []string{md, js}, err
	}
	return []string{md, js, png}, nil
}

// Header says how the comparison was made.
func Header(cfg Config) string {
	w, g := cfg.Run, cfg.Graph
	return fmt.Sprintf("Each strategy ran on a fresh all-in-one `%s` (`-cache %s -store %s`, embedded etcd and NATS) with its own namespace and, on Cassandra, its own keyspace, one after another on the same backing servers; "+
		"`-celebrity-threshold %d`, authentication on, per-user rate limits off. Same seeded graph for each: %d users, mean %g follows, %d celebrities followed by %.0f%% of users, zipf %g, seed %d. "+
		"Same open-loop workload: %g posts/s and %g reads/s for %s, %.0f%% of posts by celebrities; lag: %s mode. "+
		"Latency is from each request's intended start. CPU is measured over the run only (not the graph build), from /proc; a backing server's CPU includes anything else that used it meanwhile. "+
		"Redis bytes are MEMORY USAGE over the namespace's keys at the end of the run.\n",
		cfg.Herald, cfg.Cache, cfg.Store, cfg.CelebrityThreshold, g.Users, g.MeanFollows, g.Celebrities, 100*g.CelebrityReach, g.Zipf, g.Seed,
		w.PostRate, w.ReadRate, w.Duration, 100*w.CelebrityPostShare, w.LagMode)
}
