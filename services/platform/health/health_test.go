package health

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herald-feed/herald/services/platform/waitfor"
)

// TestWatcherFollowsTheProbe: the gauge is 1 while the probe answers, 0
// while it fails, and 1 again when it answers again; a second probe of the
// same dependency and server is ignored.
func TestWatcherFollowsTheProbe(t *testing.T) {
	reg := prometheus.NewRegistry()
	w := NewWatcher(reg, slog.New(slog.DiscardHandler), 10*time.Millisecond, time.Second)
	var failing atomic.Bool
	var calls, duplicateCalls atomic.Int64
	w.Add(Probe{Dependency: "cache", Server: "redis", Check: func(context.Context) error {
		calls.Add(1)
		if failing.Load() {
			return errors.New("connection refused")
		}
		return nil
	}})
	w.Add(Probe{Dependency: "cache", Server: "redis", Check: func(context.Context) error {
		duplicateCalls.Add(1)
		return nil
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	gauge := w.up.WithLabelValues("cache", "redis")
	want := func(v float64) {
		t.Helper()
		waitfor.Until(t, 5*time.Second, "herald_dependency_up to follow the probe", func() (bool, any) {
			got := testutil.ToFloat64(gauge)
			return got == v, got
		})
	}
	want(1)
	failing.Store(true)
	want(0)
	failing.Store(false)
	want(1)
	if n := duplicateCalls.Load(); n != 0 {
		t.Errorf("the second probe of cache/redis ran %d times; want it ignored", n)
	}
	if n := testutil.CollectAndCount(w.took); n != 1 {
		t.Errorf("herald_dependency_probe_seconds has %d series; want 1", n)
	}
}

// TestWatcherTimesOutAProbe: a probe that does not answer within the
// timeout counts as down.
func TestWatcherTimesOutAProbe(t *testing.T) {
	w := NewWatcher(prometheus.NewRegistry(), slog.New(slog.DiscardHandler), 10*time.Millisecond, 20*time.Millisecond)
	w.Add(Probe{Dependency: "store", Server: "cassandra", Check: func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	// Added after Run: it starts at once.
	w.Add(Probe{Dependency: "etcd", Server: "etcd", Check: func(context.Context) error { return nil }})
	waitfor.Until(t, 5*time.Second, "a probe past its timeout to count as down, and a late one as up", func() (bool, any) {
		down, up := testutil.ToFloat64(w.up.WithLabelValues("store", "cassandra")), testutil.ToFloat64(w.up.WithLabelValues("etcd", "etcd"))
		return down == 0 && up == 1 && testutil.CollectAndCount(w.took) == 2, []float64{down, up}
	})
}
