package posts

import (
	"context"
	"log/slog"
	"time"

	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/idgen"
)

// Outbox lists posts whose PostCreated event may not be in the log yet.
type Outbox interface {
	ListUnpublished(ctx context.Context, before feed.PostID, limit int) ([]feed.Post, error)
}

// Relay republishes posts whose outbox marker outlived Timeout: the post
// service stored them but crashed, or lost NATS, before its publish was
// acknowledged. Only the elected leader runs it (see app), and the stream's
// dedupe window drops the republish of a post whose first publish did land.
type Relay struct {
	Outbox   Outbox
	Service  *Service
	Timeout  time.Duration // how old a marker must be; > a normal publish
	Interval time.Duration // how often to scan
	Log      *slog.Logger
}

// Run scans until ctx ends.
func (r *Relay) Run(ctx context.Context) error {
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if n, err := r.Scan(ctx, time.Now()); err != nil {
			r.Log.Warn("outbox relay scan", "republished", n, "err", err)
		} else if n > 0 {
			r.Log.Info("outbox relay republished posts", "count", n)
		}
	}
}

// Scan republishes the stale pending posts as of now and returns how many.
func (r *Relay) Scan(ctx context.Context, now time.Time) (int, error) {
	before := idgen.MinID(now.Add(-r.Timeout))
	n := 0
	for {
		ps, err := r.Outbox.ListUnpublished(ctx, before, 100)
		if err != nil || len(ps) == 0 {
			return n, err
		}
		for _, p := range ps {
			if err := r.Service.Publish(ctx, p); err != nil {
				return n, err
			}
			n++
		}
	}
}
