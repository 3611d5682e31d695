package redisrate_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/ratelimit"
	"github.com/herald-feed/herald/services/platform/ratelimit/ratelimittest"
	"github.com/herald-feed/herald/services/platform/ratelimit/redisrate"
	"github.com/herald-feed/herald/services/platform/testenv"
)

func TestMain(m *testing.M) {
	// TestUnavailable dials a dead port on purpose; go-redis would log
	// every failed dial.
	redis.SetLogger(quiet{})
	os.Exit(m.Run())
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

var run = rand.Uint64()
var seq atomic.Int64

// client returns a client of the test Redis, closed when the test ends.
func client(t *testing.T) redis.UniversalClient {
	t.Helper()
	rdb := redis.NewClient(testenv.RedisOptions(t))
	t.Cleanup(func() { rdb.Close() })
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("redis %s: %v", testenv.Redis(t), err)
	}
	return rdb
}

// prefix returns a key prefix of the test's own, unique across runs and
// tests sharing the server, and deletes its keys when the test ends.
func prefix(t *testing.T, rdb redis.UniversalClient) string {
	p := fmt.Sprintf("test:%x:%d:", run, seq.Add(1))
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, "rate:"+p+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
	return p
}

func TestContract(t *testing.T) {
	ratelimittest.Run(t, func(t *testing.T) ratelimit.Limiter {
		rdb := client(t)
		return redisrate.New(rdb, prefix(t, rdb))
	})
}

// TestInstancesShareBucket: two Limiters on two connections, as two
// instances of the cluster have, take from one bucket.
func TestInstancesShareBucket(t *testing.T) {
	rdb1, rdb2 := client(t), client(t)
	p := prefix(t, rdb1)
	a, b := redisrate.New(rdb1, p), redisrate.New(rdb2, p)
	lim := ratelimit.Limit{Rate: 1.0 / 60, Burst: 4}
	for i := range lim.Burst {
		inst := []*redisrate.Limiter{a, b}[i%2]
		r, err := inst.Allow(t.Context(), "alice", lim)
		if err != nil || !r.Allowed {
			t.Fatalf("call %d of a burst of %d, alternating instances, = %+v, %v; want allowed", i+1, lim.Burst, r, err)
		}
	}
	for name, inst := range map[string]*redisrate.Limiter{"first": a, "second": b} {
		r, err := inst.Allow(t.Context(), "alice", lim)
		if err != nil || r.Allowed {
			t.Errorf("%s instance after the shared burst = %+v, %v; want refused: the instances share alice's bucket", name, r, err)
		}
	}
}

// TestKeyExpires: a bucket's key has a TTL of at most the time it takes to
// refill, so idle users' buckets leave Redis on their own.
func TestKeyExpires(t *testing.T) {
	rdb := client(t)
	p := prefix(t, rdb)
	l := redisrate.New(rdb, p)
	lim := ratelimit.Limit{Rate: 0.5, Burst: 3} // empty to full in 6s
	for range lim.Burst {
		if _, err := l.Allow(t.Context(), "bob", lim); err != nil {
			t.Fatalf("Allow: %v", err)
		}
	}
	key := "rate:" + p + "bob"
	ttl, err := rdb.TTL(t.Context(), key).Result()
	if err != nil {
		t.Fatalf("TTL %s: %v", key, err)
	}
	// The script sets the TTL in whole seconds, rounded up.
	refill := time.Duration(float64(lim.Burst) / lim.Rate * float64(time.Second))
	if ttl <= 0 || ttl > refill+time.Second {
		t.Errorf("TTL of %s = %v; want from 1s to %v, the time the bucket takes to refill, rounded up to a second", key, ttl, refill+time.Second)
	}
}

// TestUnavailable: a Redis that cannot be reached is feed.ErrUnavailable.
func TestUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a port that was just free, so nothing listens on it
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, MaxRetries: -1})
	defer rdb.Close()
	r, err := redisrate.New(rdb, "").Allow(t.Context(), "alice", ratelimit.Limit{Rate: 1, Burst: 1})
	if !errors.Is(err, feed.ErrUnavailable) {
		t.Errorf("Allow on a dead Redis at %s = %+v, %v; want feed.ErrUnavailable", addr, r, err)
	}
}

// TestRateOutOfRange: a rate whose period a time.Duration cannot hold is an
// error, not a wrong bucket.
func TestRateOutOfRange(t *testing.T) {
	l := redisrate.New(client(t), "")
	for _, rate := range []float64{1e-11, 1.5e9, math.MaxFloat64} {
		lim := ratelimit.Limit{Rate: rate, Burst: 1}
		if r, err := l.Allow(t.Context(), "alice", lim); err == nil || errors.Is(err, feed.ErrUnavailable) {
			t.Errorf("Allow with %+v = %+v, %v; want an error that is not feed.ErrUnavailable", lim, r, err)
		}
	}
}
