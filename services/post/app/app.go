// Package app wires the post service into a Herald node.
package app

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/discovery"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/idgen"
	"github.com/herald-feed/herald/services/platform/node"
	"github.com/herald-feed/herald/services/post/internal/posts"
	"github.com/herald-feed/herald/services/post/internal/rpc"
)

// Config tunes the post service.
type Config struct {
	// RelayTimeout is how long a post may stay unpublished before the
	// outbox relay republishes it. Default 5s.
	RelayTimeout time.Duration
	// RelayInterval is how often the relay scans. Default 1s.
	RelayInterval time.Duration
}

// Register adds the post service to n: its gRPC API, a worker ID leased
// from etcd for post IDs, and the outbox relay, which runs on whichever
// post instance wins the etcd election.
func Register(ctx context.Context, n *node.Node, cfg Config) error {
	if cfg.RelayTimeout == 0 {
		cfg.RelayTimeout = 5 * time.Second
	}
	if cfg.RelayInterval == 0 {
		cfg.RelayInterval = time.Second
	}
	host, _ := os.Hostname()
	worker, err := discovery.AcquireWorkerID(ctx, n.Session, n.Namespace(), idgen.MaxWorker, fmt.Sprintf("%s/%d", host, os.Getpid()))
	if err != nil {
		return err
	}
	gen, err := idgen.New(worker, nil)
	if err != nil {
		return err
	}
	ids := &leasedIDs{gen: gen, session: n.Session}
	n.Log.Info("post ids", "worker", worker)

	svc := posts.New(n.Posts, n.PostCache, n.Recent, n.Bus, ids, n.Tokens, n.Log.With("service", "post"))
	feedv1.RegisterPostServiceServer(n.GRPC, rpc.New(svc))
	n.Serve("post", feedv1.PostService_ServiceDesc.ServiceName)

	relay := &posts.Relay{Outbox: n.Posts, Service: svc, Timeout: cfg.RelayTimeout, Interval: cfg.RelayInterval, Log: n.Log.With("service", "outbox-relay")}
	n.Go(func(ctx context.Context) error { return lead(ctx, n, "outbox-relay", relay.Run) })
	return nil
}

// lead runs job while this process holds leadership of name; exactly one
// live process in the deployment does. If the leader dies, its lease
// expires and another candidate's Campaign returns.
func lead(ctx context.Context, n *node.Node, name string, job func(context.Context) error) error {
	e := concurrency.NewElection(n.Session, n.Namespace()+"/election/"+name)
	if err := e.Campaign(ctx, n.Addr()); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("campaign for %s: %w", name, err)
	}
	n.Log.Info("elected", "job", name)
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		e.Resign(rctx)
	}()
	return job(ctx)
}

// leasedIDs mints IDs only while the etcd lease behind the worker ID
// lives: once it is gone another process may hold the same worker ID.
type leasedIDs struct {
	gen     *idgen.Generator
	session *concurrency.Session
	lost    atomic.Bool
}

func (l *leasedIDs) Next() (feed.PostID, error) {
	select {
	case <-l.session.Done():
		l.lost.Store(true)
	default:
	}
	if l.lost.Load() {
		return 0, feed.Unavailable("etcd", fmt.Errorf("worker id lease lost"))
	}
	return l.gen.Next(), nil
}
