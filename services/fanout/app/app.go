// Package app is the fan-out service as a unit: New opens the store and
// cache it writes through (unless the all-in-one hands it its adapters)
// and adds the shared event consumer to a node; Close releases what New
// opened.
package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-feed/herald/services/fanout/internal/fanout"
	"github.com/herald-feed/herald/services/platform/backend"
	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/flagenv"
	"github.com/herald-feed/herald/services/platform/graphclient"
	"github.com/herald-feed/herald/services/platform/node"
)

// Defaults of the fan-out service's settings.
const (
	DefaultChunkSize = fanout.DefaultChunkSize
	// DefaultWorkers is how many events one instance handles at once.
	DefaultWorkers = 8
	// DefaultAddr is the split binary's gRPC (health) address.
	DefaultAddr = "localhost:7073"
)

// Config configures the fan-out service.
type Config struct {
	// ChunkSize is how many followers one chunk covers: a post with more
	// followers is split into chunk events that every instance shares.
	ChunkSize int
	// Workers is how many events this instance handles at once.
	Workers int
	// Policy is the deployment's push/pull policy, which the timeline
	// service must share.
	Policy *backend.Policy

	// Backends, if set, are the adapters to run on: the all-in-one's.
	// Otherwise New opens Store and Cache.
	Backends *backend.Set
	Store    *backend.StoreConfig
	Cache    *backend.CacheConfig
}

// BindFlags defines the fan-out service's own flags (not the policy's,
// which the all-in-one binds once for two services).
func BindFlags(fs *flagenv.Set, c *Config) {
	fs.Int(&c.ChunkSize, "fanout-chunk-size", "HERALD_FANOUT_CHUNK_SIZE", DefaultChunkSize, "followers per fan-out chunk event")
	fs.Int(&c.Workers, "fanout-workers", "HERALD_FANOUT_WORKERS", DefaultWorkers, "events one fan-out instance handles at once")
}

// Check fills in the defaults of settings left zero, and reports one out
// of range.
func (c *Config) Check() error {
	if c.ChunkSize == 0 {
		c.ChunkSize = DefaultChunkSize
	}
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.Policy == nil {
		c.Policy = &backend.Policy{}
	}
	if c.ChunkSize < 1 || c.Workers < 1 {
		return fmt.Errorf("-fanout-chunk-size %d and -fanout-workers %d: both must be at least 1", c.ChunkSize, c.Workers)
	}
	return c.Policy.Check()
}

// Program is the split fan-out binary: the service on Cassandra and Redis.
func Program() node.Program {
	return node.ServiceProgram("fanout", DefaultAddr, func(fs *flagenv.Set) (func() error, func(context.Context, *node.Node) (func(), error)) {
		c := &Config{Policy: &backend.Policy{}, Store: &backend.StoreConfig{}, Cache: &backend.CacheConfig{}}
		BindFlags(fs, c)
		backend.BindPolicy(fs, c.Policy)
		backend.BindStore(fs, c.Store, "cassandra")
		backend.BindCache(fs, c.Cache, "redis")
		check := func() error { return errors.Join(c.Check(), c.Store.Check("fanout"), c.Cache.Check("fanout")) }
		return check, node.Attach(func(ctx context.Context, n *node.Node) (*App, error) { return New(ctx, *c, n) })
	})
}

// App is a running fan-out service.
type App struct{ backends *backend.Opened }

// Close releases the adapters New opened.
func (a *App) Close() {
	a.backends.Close()
}

// New adds the fan-out worker to n. All fan-out instances share one
// durable consumer, so the event stream is spread across them.
func New(ctx context.Context, cfg Config, n *node.Node) (a *App, err error) {
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Policy == nil {
		cfg.Policy = &backend.Policy{}
	}
	b, opened, err := backend.Use(ctx, cfg.Backends, cfg.Store, cfg.Cache, n.Namespace(), n.Log)
	if err != nil {
		return nil, err
	}
	n.Health.Add(b.Probes...)
	if b.RateLimits != nil {
		n.Guard.UseLimiter(b.RateLimits)
	}
	defer func() {
		if err != nil {
			opened.Close()
		}
	}()
	a = &App{backends: opened}
	conn, err := n.Dial("graph")
	if err != nil {
		return nil, err
	}
	e := fanout.New(fanout.Config{ChunkSize: cfg.ChunkSize, Strategy: cfg.Policy.Strategy, Threshold: cfg.Policy.Threshold}, fanout.Deps{
		Publisher:   n.Bus,
		Followers:   graphclient.New(conn),
		Timelines:   b.Timelines,
		Recent:      b.Recent,
		Posts:       b.Posts,
		Graph:       b.Graph,
		Celebrities: b.Celebrities,
		Unfollows:   b.Unfollows,
	}, n.Metrics)
	n.Announce("fanout")
	n.Go(func(ctx context.Context) error { return watchConsumer(ctx, n, "fanout") })
	n.Go(func(ctx context.Context) error {
		return n.Bus.Consume(ctx, event.ConsumerConfig{
			Durable: "fanout",
			Kinds:   fanout.Kinds,
			// An event is one chunk's pipelined write, or for a post the
			// follower list's pages and one publish per further chunk;
			// 30s leaves room for a slow graph page or a cache hiccup
			// before the server assumes this instance died and
			// redelivers. See docs/architecture.md for these settings.
			AckWait:       30 * time.Second,
			MaxDeliver:    10,
			MaxAckPending: 1000,
			Workers:       cfg.Workers,
		}, e.Handle)
	})
	return a, nil
}

// watchConsumer exports the shared consumer's backlog as gauges, polled
// every 5 s: how far the fan-out is behind, how much is in flight, and how
// much is being retried.
func watchConsumer(ctx context.Context, n *node.Node, durable string) error {
	pending := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "herald_fanout_consumer_pending_messages",
		Help: "Events in the stream not yet delivered to the fan-out consumer.",
	})
	ackPending := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "herald_fanout_consumer_ack_pending_messages",
		Help: "Events delivered to fan-out instances and not yet acked (bounded by MaxAckPending).",
	})
	redelivered := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "herald_fanout_consumer_redelivered_messages",
		Help: "Events delivered more than once and not yet acked.",
	})
	n.Metrics.MustRegister(pending, ackPending, redelivered)
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := n.Bus.ConsumerState(qctx, durable)
		cancel()
		if err != nil {
			continue // the consumer may not exist yet, or NATS is away
		}
		pending.Set(float64(st.Pending))
		ackPending.Set(float64(st.AckPending))
		redelivered.Set(float64(st.Redelivered))
	}
}
