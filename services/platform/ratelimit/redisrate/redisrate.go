// Package redisrate is the Redis adapter of ratelimit.Limiter: the
// cluster's, where every instance must take from the same bucket. It is
// github.com/go-redis/redis_rate, GCRA in one Lua script, so each call is
// one atomic round trip and the bucket's clock is the Redis server's, the
// same for every instance whatever their own clocks say.
//
// A bucket is one string key holding its theoretical arrival time. The
// script gives it a TTL of the time until the bucket is full again, so
// users who stop calling leave nothing behind.
package redisrate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/ratelimit"
)

// Limiter is a ratelimit.Limiter over Redis. It is safe for concurrent use,
// and any number of Limiters, in any number of processes, with the same
// Redis and prefix share their buckets.
type Limiter struct {
	rl     *redis_rate.Limiter
	prefix string
}

// New returns a Limiter whose buckets are the keys prefix + key. redis_rate
// puts its own "rate:" in front, so the Redis key is "rate:" + prefix +
// key; a key with a {hash tag} stays in one Redis Cluster slot. rdb may be
// a single node, Sentinel or Cluster client.
func New(rdb redis.UniversalClient, prefix string) *Limiter {
	return &Limiter{rl: redis_rate.NewLimiter(rdb), prefix: prefix}
}

// Allow implements ratelimit.Limiter.
func (l *Limiter) Allow(ctx context.Context, key string, lim ratelimit.Limit) (ratelimit.Result, error) {
	gl, err := gcra(lim)
	if err != nil {
		return ratelimit.Result{}, err
	}
	res, err := l.rl.Allow(ctx, l.prefix+key, gl)
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return ratelimit.Result{}, err
		}
		return ratelimit.Result{}, feed.Unavailable("redis", err)
	}
	if res.Allowed > 0 {
		return ratelimit.Result{Allowed: true}, nil
	}
	// The script's float seconds can truncate to 0ns at the instant the
	// token arrives; the caller is owed a positive wait.
	return ratelimit.Result{RetryAfter: max(res.RetryAfter, time.Nanosecond)}, nil
}

// gcra turns a token bucket into redis_rate's limit, which counts whole
// tokens a Period: its script refills one token every Period/Rate and
// allows Burst at once, which is the same bucket. An integral rate is that
// many tokens a second, as written. A fractional one (0.5, 2.5, 1/60 a
// second) becomes one token a period of 1/Rate seconds, exact to the
// nanosecond; rounding it to whole tokens a second would change it, and
// turn anything below one a second into zero.
func gcra(l ratelimit.Limit) (redis_rate.Limit, error) {
	if err := l.Validate(); err != nil {
		return redis_rate.Limit{}, err
	}
	// Faster than a token a nanosecond leaves no period to count in, and
	// slower than one in 292 years (math.MaxInt64 nanoseconds) a period
	// that no time.Duration holds.
	period := float64(time.Second) / l.Rate
	if period < 1 || period >= math.MaxInt64 {
		return redis_rate.Limit{}, fmt.Errorf("redisrate: Limit.Rate = %v; want from one token in 292 years to one a nanosecond", l.Rate)
	}
	if l.Rate == math.Trunc(l.Rate) {
		return redis_rate.Limit{Rate: int(l.Rate), Burst: l.Burst, Period: time.Second}, nil
	}
	return redis_rate.Limit{Rate: 1, Burst: l.Burst, Period: time.Duration(math.Round(period))}, nil
}
