package compare

import (
	"math"
	"strings"
	"testing"
)

const sample = `# HELP herald_fanout_lag_seconds x
# TYPE herald_fanout_lag_seconds histogram
herald_fanout_lag_seconds_bucket{le="0.001"} 0
herald_fanout_lag_seconds_bucket{le="0.002"} 50
herald_fanout_lag_seconds_bucket{le="0.004"} 90
herald_fanout_lag_seconds_bucket{le="0.008"} 100
herald_fanout_lag_seconds_bucket{le="+Inf"} 100
herald_fanout_lag_seconds_sum 0.25
herald_fanout_lag_seconds_count 100
herald_fanout_posts_total{mode="push"} 7
herald_fanout_posts_total{mode="pull"} 3
process_cpu_seconds_total 12.5
`

func TestParseMetrics(t *testing.T) {
	m, err := ParseMetrics(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Sum("herald_fanout_posts_total"); got != 10 {
		t.Errorf("Sum(posts) = %v; want 10", got)
	}
	if got := m.Sum("process_cpu_seconds_total"); got != 12.5 {
		t.Errorf("Sum(cpu) = %v; want 12.5", got)
	}
	for _, tc := range []struct{ q, want float64 }{{0.5, 0.002}, {0.7, 0.003}, {0.99, 0.0076}} {
		if got := m.Quantile("herald_fanout_lag_seconds", tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("Quantile(%v) = %v; want %v", tc.q, got, tc.want)
		}
	}
	if got := m.Quantile("missing", 0.5); !math.IsNaN(got) {
		t.Errorf("Quantile of a missing histogram = %v; want NaN", got)
	}
}

func TestParseStatCPU(t *testing.T) {
	line := "1234 (my proc) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 150 0 0 20 0 9 0 100 0 0"
	got, err := parseStatCPU(line)
	if err != nil || got != 4 {
		t.Errorf("parseStatCPU = %v, %v; want 4 (400 ticks), nil", got, err)
	}
	if _, err := parseStatCPU("garbage"); err == nil {
		t.Errorf("parseStatCPU(garbage): no error; want one")
	}
}
