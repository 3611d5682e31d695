package compare

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-feed/herald/loadtest/internal/graph"
	"github.com/herald-feed/herald/loadtest/internal/report"
	"github.com/herald-feed/herald/loadtest/internal/stats"
)

// TestWriteFilesWithoutPushedPosts: under pull no post is pushed, so the
// fan-out lag quantiles are NaN; the files must still be written.
func TestWriteFilesWithoutPushedPosts(t *testing.T) {
	cfg := Config{OutDir: t.TempDir(), Herald: "bin/herald", Cache: "redis", Store: "cassandra", Graph: graph.Params{Users: 10}}
	rep := &report.Report{Label: "pull", Methods: []stats.Summary{
		{Name: report.CreatePost, Count: 100, P50Ms: 10, P99Ms: 20},
		{Name: report.GetHomeTimeline, Count: 500, P50Ms: 2, P99Ms: 5},
	}, Lag: stats.Summary{Name: report.Lag, Count: 50, P50Ms: 30, P99Ms: 40, CDF: []stats.Point{{Ms: 30, Quantile: 0.5}, {Ms: 40, Quantile: 1}}}}
	results := []Result{
		{Strategy: "pull", Report: rep, Posts: 100, HeraldCPU: 2, BackendCPU: map[string]float64{"redis": 1}, FanoutLagP50: math.NaN(), FanoutLagP99: math.NaN(), RedisBytes: map[string]int64{"recent": 1000, "tl": 0}},
		{Strategy: "push", Error: "herald exited at start"},
	}
	files, err := WriteFiles(cfg, "feedload compare", results)
	if err != nil || len(files) != 3 {
		t.Fatalf("WriteFiles = %v, %v; want three files", files, err)
	}
	md, _ := os.ReadFile(filepath.Join(cfg.OutDir, "compare.md"))
	for _, want := range []string{"| pull | 10.0 / 20.0 | 30.0 / 40.0 | 50 / 0 | 2.00 / 5.00 | 100 / 0 | 20.0 / 30.0 | 0 | 0 |", "| push | failed: herald exited at start", "n/a / n/a"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("compare.md lacks %q; got:\n%s", want, md)
		}
	}
}
