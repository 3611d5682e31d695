// Package app wires the fan-out service into a Herald node.
package app

import (
	"context"
	"time"

	"github.com/herald-feed/herald/services/fanout/internal/fanout"
	"github.com/herald-feed/herald/services/platform/bus"
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
	e := fanout.New(cfg.Config, graphclient.New(conn), n.Timelines, n.Recent, n.Posts, n.Graph, n.Celebrities, n.Metrics)
	n.Serve("fanout")
	n.Go(func(ctx context.Context) error {
		return n.Bus.Consume(ctx, bus.ConsumerConfig{
			Durable:  "fanout",
			Subjects: fanout.Subjects,
			// A post's fan-out is a few pipelined batches; 30s leaves room
			// for a slow graph page or a cache hiccup before the server
			// assumes this instance died and redelivers.
			AckWait:       30 * time.Second,
			MaxDeliver:    10,
			MaxAckPending: 1000,
		}, e.Handle)
	})
	return nil
}
