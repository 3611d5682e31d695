// Package health watches the servers a Herald process depends on (etcd,
// the event log, the store, the cache) and exports what it sees as
// herald_dependency_up: 1 while a server answers its probe, 0 while it
// does not. The dashboards and alerts (deploy/prometheus) read it; the
// process logs each change.
//
// A probe is one cheap request that needs the server itself to answer (a
// Redis PING, a Cassandra read of system.local, an etcd read through the
// quorum), not the client's view of its connections: a client can hold an
// open connection to a server that no longer answers.
package health

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Watcher.
const (
	// DefaultInterval is how often each probe runs: a Prometheus scrape
	// (5 to 15 s) sees every change.
	DefaultInterval = 5 * time.Second
	// DefaultTimeout bounds one probe: a server slower than this is, for
	// the clients' calls, as good as down.
	DefaultTimeout = 2 * time.Second
)

// Probe checks one dependency.
type Probe struct {
	// Dependency is the role the server plays: "etcd", "event_log",
	// "store" or "cache".
	Dependency string
	// Server names what plays it: "cassandra", "pebble", "redis",
	// "memory", "nats", "kafka", "etcd".
	Server string
	// Check returns nil if the server answered within ctx.
	Check func(ctx context.Context) error
}

type key struct{ dependency, server string }

// Watcher runs probes and exports their results.
type Watcher struct {
	log      *slog.Logger
	interval time.Duration
	timeout  time.Duration
	up       *prometheus.GaugeVec
	took     *prometheus.HistogramVec

	mu     sync.Mutex
	probes map[key]Probe
	ctx    context.Context // set by Run; nil before
	wg     sync.WaitGroup
}

// NewWatcher returns a Watcher whose metrics are registered in reg.
// Zero interval or timeout take the defaults.
func NewWatcher(reg prometheus.Registerer, log *slog.Logger, interval, timeout time.Duration) *Watcher {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	w := &Watcher{
		log: log, interval: interval, timeout: timeout, probes: map[key]Probe{},
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_dependency_up",
			Help: "1 if the server playing the dependency's role answered its last probe, 0 if it did not, by dependency (etcd, event_log, store, cache) and server.",
		}, []string{"dependency", "server"}),
		took: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_dependency_probe_seconds",
			Help:    "Time each dependency took to answer its probe (or to fail it), by dependency and server.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8), // 0.5ms .. 8s
		}, []string{"dependency", "server"}),
	}
	reg.MustRegister(w.up, w.took)
	return w
}

// Add watches probes. A probe of the same dependency and server as one
// already watched is ignored: the all-in-one's services share their
// adapters. Probes added after Run start at once.
func (w *Watcher) Add(probes ...Probe) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range probes {
		k := key{p.Dependency, p.Server}
		if _, ok := w.probes[k]; ok {
			continue
		}
		w.probes[k] = p
		if w.ctx != nil {
			w.start(w.ctx, p)
		}
	}
}

// Run probes every dependency each interval until ctx ends, and returns
// once every probe has stopped.
func (w *Watcher) Run(ctx context.Context) {
	w.mu.Lock()
	w.ctx = ctx
	for _, p := range w.probes {
		w.start(ctx, p)
	}
	w.mu.Unlock()
	<-ctx.Done()
	w.wg.Wait()
}

func (w *Watcher) start(ctx context.Context, p Probe) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.watch(ctx, p)
	}()
}

// watch probes p until ctx ends, logging each change of its state.
func (w *Watcher) watch(ctx context.Context, p Probe) {
	up := w.up.WithLabelValues(p.Dependency, p.Server)
	took := w.took.WithLabelValues(p.Dependency, p.Server)
	log := w.log.With("dependency", p.Dependency, "server", p.Server)
	was := -1 // unknown
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, w.timeout)
		began := time.Now()
		err := p.Check(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		took.Observe(time.Since(began).Seconds())
		now := 1
		if err != nil {
			now = 0
		}
		up.Set(float64(now))
		switch {
		case now == 0 && was != 0:
			log.Warn("dependency does not answer", "err", err)
		case now == 1 && was == 0:
			log.Info("dependency answers again")
		}
		was = now
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
