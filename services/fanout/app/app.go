// Package app wires the fan-out service into a Herald node.
package app

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-feed/herald/services/fanout/internal/fanout"
	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/graphclient"
	"github.com/herald-feed/herald/services/platform/node"
)

// Config tunes the fan-out service.
type Config struct {
	fanout.Config
}

// Register adds the fan-out worker to n. All fan-out instances share one
// durable consumer, so the event stream is spread across them.
func Register(n *node.Node, cfg Config) error {
	conn, err := n.Dial("graph")
	if err != nil {
		return err
	}
	cfg.Strategy, cfg.Threshold = n.Strategy()
	chunk, workers := n.Fanout()
	if cfg.ChunkSize == 0 {
		cfg.ChunkSize = chunk
	}
	e := fanout.New(cfg.Config, fanout.Deps{
		Publisher:   n.Bus,
		Followers:   graphclient.New(conn),
		Timelines:   n.Timelines,
		Recent:      n.Recent,
		Posts:       n.Posts,
		Graph:       n.Graph,
		Celebrities: n.Celebrities,
		Unfollows:   n.Unfollows,
	}, n.Metrics)
	n.Serve("fanout")
	n.Go(func(ctx context.Context) error { return watchConsumer(ctx, n, "fanout") })
	n.Go(func(ctx context.Context) error {
		return n.Bus.Consume(ctx, event.ConsumerConfig{
			Durable: "fanout",
			Kinds:   fanout.Kinds,
			// A message is one chunk's pipelined write, or for a post the
			// follower list's pages and one publish per further chunk;
			// 30s leaves room for a slow graph page or a cache hiccup
			// before the server assumes this instance died and
			// redelivers. See docs/architecture.md for these settings.
			AckWait:       30 * time.Second,
			MaxDeliver:    10,
			MaxAckPending: 1000,
			Workers:       workers,
		}, e.Handle)
	})
	return nil
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
