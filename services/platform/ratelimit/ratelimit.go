// Package ratelimit is Herald's per-user token buckets: the port Limiter,
// an in-process adapter (Memory) and, in package redisrate, a Redis one.
//
// The cluster runs several instances that must share each user's limit, so
// redisrate keeps every bucket in Redis as GCRA (one key holding the
// bucket's theoretical arrival time, updated atomically by a Lua script and
// expiring once the bucket is full again). The all-in-one is one process,
// so Memory keeps golang.org/x/time/rate buckets in memory and needs no
// server. Both pass the contract suite in package ratelimittest.
package ratelimit

import (
	"context"
	"fmt"
	"math"
	"time"
)

// Limit is a token bucket: Rate tokens a second sustained, Burst at most at
// once.
type Limit struct {
	Rate  float64 // tokens per second; must be > 0
	Burst int     // must be >= 1
}

// Validate reports whether l is a bucket that can exist: a finite Rate
// above zero and a Burst of at least one. Every Limiter refuses to use any
// other with this error, which is a configuration bug, never a backend
// failure.
func (l Limit) Validate() error {
	if !(l.Rate > 0) || math.IsInf(l.Rate, 1) {
		return fmt.Errorf("ratelimit: Limit.Rate = %v; want a finite number of tokens a second above 0", l.Rate)
	}
	if l.Burst < 1 {
		return fmt.Errorf("ratelimit: Limit.Burst = %d; want at least 1", l.Burst)
	}
	return nil
}

// Result is one decision.
type Result struct {
	Allowed    bool
	RetryAfter time.Duration // > 0 when !Allowed: when one token will be available
}

// Limiter takes one token from the bucket that key names, under limit l.
// Buckets with different keys are independent. A refused call takes no
// token. An error means the limiter's backend failed (adapters wrap it as
// feed.ErrUnavailable, so the caller can map it to UNAVAILABLE), or that l
// is invalid (see Limit.Validate).
type Limiter interface {
	Allow(ctx context.Context, key string, l Limit) (Result, error)
}
