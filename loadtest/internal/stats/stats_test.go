package stats

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRecorder(t *testing.T) {
	start := time.Unix(100, 0)
	r := NewRecorder(start)
	// Intended at 0.9s, ended at 1.2s: 300ms of latency, counted in second 1.
	r.Record("m", start.Add(900*time.Millisecond), start.Add(1200*time.Millisecond), nil)
	r.Record("m", start.Add(100*time.Millisecond), start.Add(110*time.Millisecond), nil)
	r.Record("m", start, start.Add(2500*time.Millisecond), status.Error(codes.Unavailable, "down"))
	r.Record("m", start, start.Add(3500*time.Millisecond), status.Error(codes.ResourceExhausted, "rate limit on posts"))
	s := r.Summary("m", true)
	if s.Count != 2 || s.Errors != 1 || s.ErrorsByCode["Unavailable"] != 1 || len(s.ErrorsByCode) != 1 || s.RateLimited != 1 {
		t.Errorf("Summary = %d ok, %d errors %v, %d rate limited; want 2 ok, 1 Unavailable, 1 rate limited", s.Count, s.Errors, s.ErrorsByCode, s.RateLimited)
	}
	if n := r.RateLimited("m"); n != 1 {
		t.Errorf("RateLimited(m) = %d; want 1", n)
	}
	if s.MaxMs < 299 || s.MaxMs > 301 || s.P50Ms < 9.9 || s.P50Ms > 10.1 {
		t.Errorf("p50 %v, max %v ms; want 10 and 300", s.P50Ms, s.MaxMs)
	}
	if want := []int64{1, 1}; !slices.Equal(s.PerSecond, want) {
		t.Errorf("PerSecond = %v; want %v", s.PerSecond, want)
	}
	if want := []int64{0, 0, 1}; !slices.Equal(s.ErrorsPerSecond, want) {
		t.Errorf("ErrorsPerSecond = %v; want %v", s.ErrorsPerSecond, want)
	}
	if n := len(s.CDF); n == 0 || s.CDF[n-1].Quantile != 1 {
		t.Errorf("CDF = %v; want one ending at 1", s.CDF)
	}

	r.Value("lag", start, -time.Millisecond)
	r.Miss("lag", "not seen")
	l := r.Summary("lag", false)
	if l.Count != 1 || l.BelowZero != 1 || l.Errors != 1 || l.ErrorsByCode["not seen"] != 1 {
		t.Errorf("lag summary = %+v; want 1 value clamped below zero and 1 not seen", l)
	}
	if c, e, _ := r.Quick("missing"); c != 0 || e != 0 {
		t.Errorf("Quick(missing) = %d, %d; want zeros", c, e)
	}
}
