// Package app wires the timeline service into a Herald node.
package app

import (
	"context"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/graphclient"
	"github.com/herald-feed/herald/services/platform/node"
	"github.com/herald-feed/herald/services/timeline/internal/rpc"
	"github.com/herald-feed/herald/services/timeline/internal/timeline"
)

// Config tunes the timeline service.
type Config struct {
	timeline.Config
}

// Register adds the timeline service to n: its gRPC API, and a tail of the
// event log that feeds live streams.
func Register(n *node.Node, cfg Config) error {
	conn, err := n.Dial("graph")
	if err != nil {
		return err
	}
	log := n.Log.With("service", "timeline")
	cfg.Strategy, _ = n.Strategy()
	svc := timeline.New(cfg.Config, timeline.Deps{
		Timelines: n.Timelines, Recent: n.Recent, PostCache: n.PostCache, Posts: n.Posts,
		Following: graphclient.New(conn), Celebrities: n.Celebrities, Tokens: n.Tokens, Log: log,
	}, n.Metrics)
	hub := timeline.NewHub()
	feedv1.RegisterTimelineServiceServer(n.GRPC, rpc.New(svc, hub))
	n.Serve("timeline", feedv1.TimelineService_ServiceDesc.ServiceName)

	n.Go(func(ctx context.Context) error {
		return n.Bus.Tail(ctx, []event.Kind{event.KindPostCreated, event.KindFollowed, event.KindUnfollowed},
			func(ev event.Event) {
				switch ev := ev.(type) {
				case event.PostCreated:
					if !hub.Wants(ev.Author) {
						return
					}
					p, err := svc.Post(ctx, ev.Post)
					if err != nil {
						log.Warn("stream: load post", "post", ev.Post, "err", err)
						return
					}
					hub.Deliver(p)
				case event.Followed:
					svc.FollowsChanged(ev.Follower)
					hub.Followed(ev.Follower, ev.Followee)
				case event.Unfollowed:
					svc.FollowsChanged(ev.Follower)
					hub.Unfollowed(ev.Follower, ev.Followee)
				}
			})
	})
	return nil
}
