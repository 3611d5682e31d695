package load

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-feed/herald/loadtest/internal/graph"
	"github.com/herald-feed/herald/loadtest/internal/report"
	"github.com/herald-feed/herald/loadtest/internal/stats"
	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
)

// SetupConfig tunes the graph build.
type SetupConfig struct {
	// Concurrency bounds the follows in flight. Follows of one account
	// serialize on its follower count (a lightweight transaction on
	// Cassandra), so more concurrency mostly adds contention there.
	Concurrency int
	// Timeout bounds each call.
	Timeout time.Duration
	// Retries is how often a retryable failure (UNAVAILABLE, ABORTED,
	// DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED) is retried, after a backoff
	// that is at least what a rate limit's RetryInfo asks.
	Retries int
	// Seed orders the follows.
	Seed uint64
	// Progress receives a progress line about every second; nil for none.
	Progress io.Writer
}

// retryable reports whether a failed call may succeed if made again. Follow
// is idempotent, so retrying one that did succeed is harmless.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Aborted, codes.DeadlineExceeded, codes.ResourceExhausted:
		return true
	}
	return false
}

// retryDelay returns the wait that a refusal's google.rpc.RetryInfo asks
// for (Herald's rate limits send one), or 0.
func retryDelay(err error) time.Duration {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// Build makes every follow of g through the API, recording each call's
// latency as "Follow" in rec. It returns early, with what it did so far, if
// ctx ends; it fails if a follow still fails after its retries.
func Build(ctx context.Context, t *Target, g *graph.Graph, cfg SetupConfig, rec *stats.Recorder) (report.Setup, error) {
	edges := g.Edges(cfg.Seed)
	res := report.Setup{Follows: len(edges)}
	if cfg.Concurrency < 1 {
		cfg.Concurrency = 1
	}
	start := time.Now()
	var next, done, retries atomic.Int64
	var firstErr error
	var errOnce sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if cfg.Progress == nil {
			return
		}
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		line := newLiner(cfg.Progress)
		defer line.end()
		var last int64
		lastAt := start
		for {
			select {
			case <-stopProgress:
				return
			case now := <-tick.C:
				d := done.Load()
				rate := float64(d-last) / now.Sub(lastAt).Seconds()
				last, lastAt = d, now
				avg := float64(d) / now.Sub(start).Seconds()
				eta := "?"
				if avg > 0 {
					eta = (time.Duration(float64(int64(len(edges))-d)/avg) * time.Second).Round(time.Second).String()
				}
				_, errs, p99 := rec.Quick(report.Follow)
				limited := ""
				if n := rec.RateLimited(report.Follow); n > 0 {
					limited = fmt.Sprintf(", rate limited %d", n)
				}
				line.printf("setup: %d/%d follows (%.0f%%), %.0f/s now, %.0f/s average, ETA %s, p99 %.0fms, retries %d, errors %d%s",
					d, len(edges), 100*float64(d)/float64(max(len(edges), 1)), rate, avg, eta, p99, retries.Load(), errs, limited)
			}
		}
	}()

	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(edges)) || ctx.Err() != nil {
					return
				}
				e := edges[i]
				req := &feedv1.FollowRequest{FollowerId: g.IDs[e.Follower], FolloweeId: g.IDs[e.Followee]}
				var err error
				for attempt := 0; ; attempt++ {
					began := time.Now()
					cctx, ccancel := context.WithTimeout(ctx, cfg.Timeout)
					_, err = t.Graph.Follow(cctx, req)
					ccancel()
					if ctx.Err() != nil {
						return
					}
					rec.Record(report.Follow, began, time.Now(), err)
					if err == nil || !retryable(err) || attempt >= cfg.Retries {
						break
					}
					retries.Add(1)
					backoff := max(time.Duration(50<<min(attempt, 5))*time.Millisecond, retryDelay(err))
					select {
					case <-ctx.Done():
						return
					case <-time.After(backoff):
					}
				}
				if err != nil {
					errOnce.Do(func() {
						firstErr = fmt.Errorf("follow %s -> %s: %s: %s", req.FollowerId, req.FolloweeId, status.Code(err), status.Convert(err).Message())
						if status.Code(err) == codes.ResourceExhausted {
							firstErr = fmt.Errorf("%w (raise the server's limit: herald -rate-follows 1000:5000, or off)", firstErr)
						}
						cancel()
					})
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stopProgress)
	<-progressDone

	res.Done = int(done.Load())
	res.Retries = int(retries.Load())
	res.Seconds = time.Since(start).Seconds()
	if res.Seconds > 0 {
		res.RatePerS = float64(res.Done) / res.Seconds
	}
	if firstErr != nil {
		return res, firstErr
	}
	return res, nil
}
