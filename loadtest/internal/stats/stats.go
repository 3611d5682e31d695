// Package stats records request latencies in HDR histograms, one per
// method, with per-second counts for throughput over time.
package stats

import (
	"slices"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Histograms hold microseconds from 1µs to 10 minutes at 3 significant
// figures: 0.1% resolution at any scale.
const (
	lowest  = 1
	highest = int64(10 * time.Minute / time.Microsecond)
	sigfigs = 3
)

// Recorder collects latencies. It is safe for concurrent use.
type Recorder struct {
	start time.Time
	mu    sync.Mutex
	m     map[string]*method
}

type method struct {
	hist    *hdrhistogram.Histogram
	ok      int64
	errs    int64
	limited int64 // refused with RESOURCE_EXHAUSTED, kept out of errs
	codes   map[string]int64
	okSec   []int64
	errSec  []int64
	clamp   int64 // values recorded below zero, as zero
}

// NewRecorder returns a Recorder whose per-second series start at start.
func NewRecorder(start time.Time) *Recorder {
	return &Recorder{start: start, m: make(map[string]*method)}
}

// Start returns the time the per-second series start at.
func (r *Recorder) Start() time.Time { return r.start }

func (r *Recorder) method(name string) *method {
	m, ok := r.m[name]
	if !ok {
		m = &method{hist: hdrhistogram.New(lowest, highest, sigfigs), codes: make(map[string]int64)}
		r.m[name] = m
	}
	return m
}

func grow(s []int64, i int) []int64 {
	if i < 0 {
		i = 0
	}
	for len(s) <= i {
		s = append(s, 0)
	}
	return s
}

// Record adds one request of name that was intended to start at intended
// and ended at end with err. A failed request counts by its gRPC code and
// adds no latency. RESOURCE_EXHAUSTED counts as rate limited, not as an
// error: the server refused the call by design (its per-user limits),
// which says the load is heavier than the limits, not that the server
// failed.
func (r *Recorder) Record(name string, intended, end time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.method(name)
	sec := int(end.Sub(r.start) / time.Second)
	if status.Code(err) == codes.ResourceExhausted {
		m.limited++
		return
	}
	if err != nil {
		m.errs++
		m.codes[status.Code(err).String()]++
		m.errSec = grow(m.errSec, sec)
		m.errSec[max(sec, 0)]++
		return
	}
	m.ok++
	m.okSec = grow(m.okSec, sec)
	m.okSec[max(sec, 0)]++
	m.record(end.Sub(intended))
}

// Value adds one observation d of name at time at, such as a
// post-to-visible lag.
func (r *Recorder) Value(name string, at time.Time, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.method(name)
	m.ok++
	sec := int(at.Sub(r.start) / time.Second)
	m.okSec = grow(m.okSec, sec)
	m.okSec[max(sec, 0)]++
	m.record(d)
}

// Miss counts one failure of name with the given reason, such as a post
// that never became visible.
func (r *Recorder) Miss(name, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.method(name)
	m.errs++
	m.codes[reason]++
}

func (m *method) record(d time.Duration) {
	us := d.Microseconds()
	if us < 0 {
		m.clamp++
		us = 0
	}
	if us < lowest {
		us = lowest
	}
	if us > highest {
		us = highest
	}
	m.hist.RecordValue(us)
}

// Summary is one method's figures. Durations are in milliseconds.
type Summary struct {
	Name         string           `json:"name"`
	Count        int64            `json:"count"`
	Errors       int64            `json:"errors"`
	ErrorsByCode map[string]int64 `json:"errors_by_code,omitempty"`
	// RateLimited counts calls refused with RESOURCE_EXHAUSTED, which
	// Errors leaves out.
	RateLimited int64   `json:"rate_limited,omitempty"`
	MeanMs      float64 `json:"mean_ms"`
	P50Ms       float64 `json:"p50_ms"`
	P90Ms       float64 `json:"p90_ms"`
	P99Ms       float64 `json:"p99_ms"`
	P999Ms      float64 `json:"p999_ms"`
	MaxMs       float64 `json:"max_ms"`
	// BelowZero counts values recorded as 0 because they were negative
	// (a lag shorter than the clock's resolution).
	BelowZero int64 `json:"below_zero,omitempty"`
	// PerSecond and ErrorsPerSecond count completions in each second
	// since the start.
	PerSecond       []int64 `json:"per_second"`
	ErrorsPerSecond []int64 `json:"errors_per_second,omitempty"`
	// CDF is the cumulative distribution: the fraction of values at or
	// below each value, for plotting.
	CDF []Point `json:"cdf,omitempty"`
}

// Point is one point of a cumulative distribution.
type Point struct {
	Ms       float64 `json:"ms"`
	Quantile float64 `json:"q"`
}

func ms(us int64) float64 { return float64(us) / 1000 }

// Summary returns the figures of name; withCDF adds its distribution.
func (r *Recorder) Summary(name string, withCDF bool) Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Summary{Name: name}
	m, ok := r.m[name]
	if !ok {
		return s
	}
	h := m.hist
	s.Count, s.Errors, s.RateLimited, s.BelowZero = m.ok, m.errs, m.limited, m.clamp
	if len(m.codes) > 0 {
		s.ErrorsByCode = make(map[string]int64, len(m.codes))
		for k, v := range m.codes {
			s.ErrorsByCode[k] = v
		}
	}
	if h.TotalCount() > 0 {
		s.MeanMs = h.Mean() / 1000
		s.P50Ms = ms(h.ValueAtQuantile(50))
		s.P90Ms = ms(h.ValueAtQuantile(90))
		s.P99Ms = ms(h.ValueAtQuantile(99))
		s.P999Ms = ms(h.ValueAtQuantile(99.9))
		s.MaxMs = ms(h.Max())
	}
	s.PerSecond = slices.Clone(m.okSec)
	s.ErrorsPerSecond = slices.Clone(m.errSec)
	if withCDF && h.TotalCount() > 0 {
		for _, b := range h.CumulativeDistributionWithTicks(5) {
			if b.Count == 0 && len(s.CDF) > 0 {
				continue
			}
			s.CDF = append(s.CDF, Point{Ms: ms(b.ValueAt), Quantile: b.Quantile / 100})
		}
	}
	return s
}

// Quick returns count, errors and p99 in milliseconds of name, cheaply
// enough for a progress line.
func (r *Recorder) Quick(name string) (count, errs int64, p99 float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.m[name]
	if !ok {
		return 0, 0, 0
	}
	return m.ok, m.errs, ms(m.hist.ValueAtQuantile(99))
}

// RateLimited returns how many calls of name were refused with
// RESOURCE_EXHAUSTED.
func (r *Recorder) RateLimited(name string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.m[name]; ok {
		return m.limited
	}
	return 0
}
