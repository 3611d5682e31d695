// Package allinone runs all four Herald services in one process, on one
// gRPC address, over embedded etcd, embedded NATS, the Pebble store and the
// in-memory cache. It is what `make run` starts, and what the in-process
// system tests start.
package allinone

import (
	"context"

	fanout "github.com/herald-feed/herald/services/fanout/app"
	graph "github.com/herald-feed/herald/services/graph/app"
	"github.com/herald-feed/herald/services/platform/node"
	post "github.com/herald-feed/herald/services/post/app"
	timeline "github.com/herald-feed/herald/services/timeline/app"
)

// Config holds each service's settings.
type Config struct {
	Post     post.Config
	Fanout   fanout.Config
	Timeline timeline.Config
}

// Register adds all four services to n.
func Register(ctx context.Context, n *node.Node, cfg Config) error {
	graph.Register(n)
	if err := post.Register(ctx, n, cfg.Post); err != nil {
		return err
	}
	if err := fanout.Register(n, cfg.Fanout); err != nil {
		return err
	}
	return timeline.Register(n, cfg.Timeline)
}
