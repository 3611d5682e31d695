package report

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-feed/herald/loadtest/internal/graph"
	"github.com/herald-feed/herald/loadtest/internal/stats"
)

func sampleReport() *Report {
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	rec := stats.NewRecorder(start)
	for i := range 100 {
		at := start.Add(time.Duration(i) * 50 * time.Millisecond)
		rec.Record(CreatePost, at, at.Add(time.Duration(5+i%10)*time.Millisecond), nil)
		rec.Record(GetHomeTimeline, at, at.Add(2*time.Millisecond), nil)
		rec.Value(Lag, at, time.Duration(10+i)*time.Millisecond)
	}
	rec.Miss(Lag, "not seen")
	rec.Record(GetHomeTimeline, start, start.Add(time.Millisecond), status.Error(codes.ResourceExhausted, "rate limit on reads"))
	r := &Report{
		Tool: "feedload", Target: "127.0.0.1:7070", Label: "push", Started: start, Ended: start.Add(5 * time.Second),
		GraphParams: graph.Params{Users: 100, MeanFollows: 5, Celebrities: 1, CelebrityReach: 0.5, Zipf: 1.1, Seed: 3},
		Graph:       graph.Stats{Users: 100, Celebrities: 1, Follows: 550, MeanFollowers: 5.5, MedianFollowers: 3, MaxFollowers: 40, Top1PercentShare: 0.07},
		Workload:    Workload{DurationS: 5, PostRate: 20, ReadRate: 20, PageSize: 20, MaxInFlight: 10, TimeoutS: 5, LagMode: "poll", LagFollowers: 2, LagSample: 1, LagTimeoutS: 10, Seed: 3},
		Setup:       Setup{Follows: 550, Done: 550, Seconds: 1.1, RatePerS: 500},
		Methods:     []stats.Summary{rec.Summary(CreatePost, false), rec.Summary(GetHomeTimeline, false)},
		Lag:         rec.Summary(Lag, true),
	}
	return r
}

func TestMarkdown(t *testing.T) {
	md := sampleReport().Markdown("push.png")
	for _, want := range []string{
		"# feedload report: push",
		"| CreatePost | 100 | 0 | 0 | 9.50 | 9.01 |",
		"| GetHomeTimeline | 100 | 0 | 1 | 2.00 | 2.00 |",
		"| 100 | 1 (not seen 1) | 59.5 | 59.0 |",
		"550 of 550 follows",
		"![lag CDF and throughput](push.png)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q; got:\n%s", want, md)
		}
	}
}

func TestWriteFilesRoundTrip(t *testing.T) {
	dir := t.TempDir()
	r := sampleReport()
	files, err := r.WriteFiles(dir, "run")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("WriteFiles wrote %v; want json, md and png", files)
	}
	got, err := Read(filepath.Join(dir, "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Method(CreatePost).Count != 100 || got.Lag.P50Ms != r.Lag.P50Ms || len(got.Lag.CDF) != len(r.Lag.CDF) {
		t.Errorf("Read(WriteFiles(r)) = %+v; want r back", got.Method(CreatePost))
	}
	if n := got.RateLimited(); n != 1 {
		t.Errorf("Read(WriteFiles(r)).RateLimited() = %d; want 1", n)
	}
	b, err := os.ReadFile(filepath.Join(dir, "run.png"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("run.png: %v", err)
	}
	if w := img.Bounds().Dx(); w < 1000 {
		t.Errorf("chart is %d px wide; want a readable chart", w)
	}
}

func TestChartWithoutLagSamples(t *testing.T) {
	r := sampleReport()
	r.Lag = stats.Summary{Name: Lag}
	if err := r.Chart(filepath.Join(t.TempDir(), "empty.png")); err != nil {
		t.Errorf("Chart with no lag samples: %v; want a chart saying so", err)
	}
	if err := CompareChart(filepath.Join(t.TempDir(), "cmp.png"), []*Report{sampleReport(), r}); err != nil {
		t.Errorf("CompareChart: %v", err)
	}
}
