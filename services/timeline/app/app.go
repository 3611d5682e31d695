// Package app is the timeline service as a unit: New opens the store and
// cache it reads (unless the all-in-one hands it its adapters), adds its
// gRPC API and the event tail that feeds live streams to a node; Close
// releases what New opened.
//
// Live streams (StreamHomeTimeline) are bounded per instance: at most
// -max-streams-per-user (HERALD_MAX_STREAMS_PER_USER, default 8) per user
// and -max-streams (HERALD_MAX_STREAMS, default 10000) in all; past
// either, a new stream fails with RESOURCE_EXHAUSTED. A stream whose
// reader falls 256 posts behind, or reads nothing, ends with UNAVAILABLE.
package app

import (
	"context"
	"errors"
	"fmt"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/backend"
	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/flagenv"
	"github.com/herald-feed/herald/services/platform/graphclient"
	"github.com/herald-feed/herald/services/platform/node"
	"github.com/herald-feed/herald/services/platform/tracing"
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

	// MaxStreamsPerUser bounds one user's open streams on an instance.
	// Zero: timeline.DefaultMaxStreamsPerUser (8).
	MaxStreamsPerUser int
	// MaxStreams bounds an instance's open streams. Zero:
	// timeline.DefaultMaxStreams (10000).
	MaxStreams int
}

// BindFlags defines the timeline service's own flags (not the policy's,
// which the all-in-one binds once for two services).
func BindFlags(fs *flagenv.Set, c *Config) {
	fs.Int(&c.MaxStreamsPerUser, "max-streams-per-user", "HERALD_MAX_STREAMS_PER_USER", timeline.DefaultMaxStreamsPerUser,
		"open StreamHomeTimeline streams one user may hold on one instance; more fail with RESOURCE_EXHAUSTED")
	fs.Int(&c.MaxStreams, "max-streams", "HERALD_MAX_STREAMS", timeline.DefaultMaxStreams,
		"open StreamHomeTimeline streams one instance holds; more fail with RESOURCE_EXHAUSTED")
}

// Check fills in the defaults of settings left zero, and reports one out
// of range.
func (c *Config) Check() error {
	if c.MaxStreamsPerUser == 0 {
		c.MaxStreamsPerUser = timeline.DefaultMaxStreamsPerUser
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = timeline.DefaultMaxStreams
	}
	if c.MaxStreamsPerUser < 1 || c.MaxStreams < 1 {
		return fmt.Errorf("-max-streams-per-user %d and -max-streams %d: both must be at least 1", c.MaxStreamsPerUser, c.MaxStreams)
	}
	if c.Policy == nil {
		c.Policy = &backend.Policy{}
	}
	return nil
}

// Program is the split timeline binary: the service on Cassandra and
// Redis.
func Program() node.Program {
	return node.ServiceProgram("timeline", DefaultAddr, func(fs *flagenv.Set) (func() error, func(context.Context, *node.Node) (func(), error)) {
		c := &Config{Policy: &backend.Policy{}, Store: &backend.StoreConfig{}, Cache: &backend.CacheConfig{}}
		BindFlags(fs, c)
		backend.BindPolicy(fs, c.Policy)
		backend.BindStore(fs, c.Store, "cassandra")
		backend.BindCache(fs, c.Cache, "redis")
		check := func() error {
			return errors.Join(c.Check(), c.Policy.Check(), c.Store.Check("timeline"), c.Cache.Check("timeline"))
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
	if err := cfg.Check(); err != nil {
		return nil, err
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
	log := n.Log.With("service", "timeline")
	origins := tracing.NewOrigins()
	svc := timeline.New(timeline.Config{Strategy: cfg.Policy.Strategy}, timeline.Deps{
		Timelines: b.Timelines, Recent: b.Recent, PostCache: b.PostCache, Posts: b.Posts,
		Following: graphclient.New(conn), Celebrities: b.Celebrities, Tokens: n.Tokens, Log: log,
		Origins: origins,
	}, n.Metrics)
	hub := timeline.NewHub(timeline.HubConfig{MaxStreamsPerUser: cfg.MaxStreamsPerUser, MaxStreams: cfg.MaxStreams}, n.Metrics)
	feedv1.RegisterTimelineServiceServer(n.GRPC, rpc.New(svc, hub))
	n.Announce("timeline", feedv1.TimelineService_ServiceDesc.ServiceName)
	n.OnDrain(hub.Close)

	n.Go(func(ctx context.Context) error {
		return n.Bus.Tail(ctx, []event.Kind{event.KindPostCreated, event.KindFollowed, event.KindUnfollowed},
			func(ectx context.Context, ev event.Event) {
				switch ev := ev.(type) {
				case event.PostCreated:
					origins.Remember(ectx, uint64(ev.Post), ev.Created)
					if !hub.Wants(ev.Author) {
						return
					}
					p, err := svc.Post(ectx, ev.Post)
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
