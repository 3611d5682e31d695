// Package app wires the timeline service into a Herald node.
package app

import (
	"context"

	"google.golang.org/protobuf/proto"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	eventv1 "github.com/herald-feed/herald/proto/herald/event/v1"
	"github.com/herald-feed/herald/services/platform/bus"
	"github.com/herald-feed/herald/services/platform/feed"
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
		return n.Bus.Tail(ctx, []string{bus.SubjectPostCreated, bus.SubjectFollowed, bus.SubjectUnfollowed},
			func(subject string, data []byte) {
				switch subject {
				case bus.SubjectPostCreated:
					var ev eventv1.PostCreated
					if proto.Unmarshal(data, &ev) != nil || !hub.Wants(ev.AuthorId) {
						return
					}
					p, err := svc.Post(ctx, feed.PostID(ev.PostId))
					if err != nil {
						log.Warn("stream: load post", "post", ev.PostId, "err", err)
						return
					}
					hub.Deliver(p)
				case bus.SubjectFollowed:
					var ev eventv1.Followed
					if proto.Unmarshal(data, &ev) == nil {
						svc.FollowsChanged(ev.FollowerId)
						hub.Followed(ev.FollowerId, ev.FolloweeId)
					}
				case bus.SubjectUnfollowed:
					var ev eventv1.Unfollowed
					if proto.Unmarshal(data, &ev) == nil {
						svc.FollowsChanged(ev.FollowerId)
						hub.Unfollowed(ev.FollowerId, ev.FolloweeId)
					}
				}
			})
	})
	return nil
}
