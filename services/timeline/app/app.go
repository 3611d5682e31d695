// Package app is the timeline service as a unit: New opens the store and
// cache it reads (unless the all-in-one hands it its adapters), adds its
// gRPC API and the event tail that feeds live streams to a node; Close
// releases what New opened.
package app

import (
	"context"
	"errors"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/backend"
	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/flagenv"
	"github.com/herald-feed/herald/services/platform/graphclient"
	"github.com/herald-feed/herald/services/platform/node"
	"github.com/herald-feed/herald/services/timeline/internal/rpc"
	"github.com/herald-feed/herald/services/timeline/internal/timeline"
)

// DefaultAddr is the split binary's gRPC address.
const DefaultAddr = "localhost:7074"

// Config configures the timeline service.
type Config struct {
	// Policy is the deployment's push/pull policy, which the fan-out
	// service must share.
	Policy *backend.Policy

	// Backends, if set, are the adapters to run on: the all-in-one's.
	// Otherwise New opens Store and Cache.
	Backends *backend.Set
	Store    *backend.StoreConfig
	Cache    *backend.CacheConfig
}

// Program is the split timeline binary: the service on Cassandra and
// Redis.
func Program() node.Program {
	return node.ServiceProgram("timeline", DefaultAddr, func(fs *flagenv.Set) (func() error, func(context.Context, *node.Node) (func(), error)) {
		c := &Config{Policy: &backend.Policy{}, Store: &backend.StoreConfig{}, Cache: &backend.CacheConfig{}}
		backend.BindPolicy(fs, c.Policy)
		backend.BindStore(fs, c.Store, "cassandra")
		backend.BindCache(fs, c.Cache, "redis")
		check := func() error {
			return errors.Join(c.Policy.Check(), c.Store.Check("timeline"), c.Cache.Check("timeline"))
		}
		return check, node.Attach(func(ctx context.Context, n *node.Node) (*App, error) { return New(ctx, *c, n) })
	})
}

// App is a running timeline service.
type App struct{ backends *backend.Opened }

// Close releases the adapters New opened.
func (a *App) Close() {
	a.backends.Close()
}

// New adds the timeline service to n: its gRPC API, and a tail of the
// event log that feeds live streams. At shutdown the streams end first
// (UNAVAILABLE "server shutting down"), so that none holds the drain.
func New(ctx context.Context, cfg Config, n *node.Node) (a *App, err error) {
	if cfg.Policy == nil {
		cfg.Policy = &backend.Policy{}
	}
	b, opened, err := backend.Use(ctx, cfg.Backends, cfg.Store, cfg.Cache, n.Namespace(), n.Log)
	if err != nil {
		return nil, err
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
	log := n.Log.With("service", "timeline")
	svc := timeline.New(timeline.Config{Strategy: cfg.Policy.Strategy}, timeline.Deps{
		Timelines: b.Timelines, Recent: b.Recent, PostCache: b.PostCache, Posts: b.Posts,
		Following: graphclient.New(conn), Celebrities: b.Celebrities, Tokens: n.Tokens, Log: log,
	}, n.Metrics)
	hub := timeline.NewHub()
	feedv1.RegisterTimelineServiceServer(n.GRPC, rpc.New(svc, hub))
	n.Announce("timeline", feedv1.TimelineService_ServiceDesc.ServiceName)
	n.OnDrain(hub.Close)

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
	return a, nil
}
