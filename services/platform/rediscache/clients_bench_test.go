package rediscache_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"golang.org/x/sync/errgroup"

	"github.com/herald-feed/herald/services/platform/testenv"
)

// BenchmarkClients compares Redis clients on the warm home-timeline read,
// all against the same Redis in the same run, each from 32 goroutines in
// a closed loop. A read is what Cache.Range (queueRange, with a fresh
// active mark) and RangeBatch's recent list, then Cache.GetPosts, send:
//
//  1. one batch of EXISTS tl.active:{u}, ZSCORE tl:{u} "",
//     ZREVRANGEBYLEX tl:{u} + - LIMIT 0 21, ZSCORE recent:{u} "" and
//     ZREVRANGEBYLEX recent:{u} + - LIMIT 0 21;
//  2. one MGET of 20 post bodies of about 100 bytes.
//
// The variants:
//
//   - goredis-pipeline: what rediscache does today, a go-redis Pipeline
//     and an MGet, each a write and a read on a pooled connection;
//   - goredis-autopipeline: the blocking face of go-redis's AutoPipeliner
//     (Client.AutoPipeline), whose every command call waits for its
//     result, so step 1 is five waits in a row; its Pipeline() is the
//     client's ordinary pipeline (autopipeline.go, Pipeline: only the
//     full-duplex engine carries one), which would be goredis-pipeline
//     again;
//   - goredis-autopipeline-async: the deferred face
//     (Client.AsyncAutoPipeline), where a command call only queues, so
//     step 1's five commands enter the shared queue together and the read
//     waits once, on their results;
//   - rueidis: rueidis with its default auto-pipelining, DoMulti for step
//     1 and one MGET;
//   - rueidis-cache: the same, with the post bodies read through
//     server-assisted client-side caching (DoMultiCache of per-key GETs,
//     a minute's TTL). Its cache is filled with every body before the
//     timed reads: post bodies are immutable, so a warm process serves
//     the bodies it has seen from memory, and this measures that steady
//     state. cache-hit-% says how much of step 2 the cache served.
//
// Each reports reads/s, Redis's CPU per read (INFO cpu, so it includes
// whatever else the server did meanwhile), this process's CPU per read
// (getrusage: the client and the benchmark's own loop) and the p99 of a
// read's latency. Compare variants within one run: other work on the
// machine moves every absolute figure.
//
// The data set (20,000 users with a 45-entry timeline, a 5-entry recent
// list and an active mark; 100,000 bodies) lives under a key prefix of
// its own, with a TTL in case the deletion at the end never runs. The
// number of reads is b.N, so -benchtime 20000x sets it; a default run
// (make bench) takes about 15 s, 4 of them writing the data set.
func BenchmarkClients(b *testing.B) {
	opts := testenv.RedisOptions(b)
	// Herald's go-redis client speaks RESP2 (backend.OpenCache), so the
	// go-redis variants do too.
	opts.Protocol = 2
	env := newClientsEnv(b, opts)

	variants := []struct {
		name string
		open func(env *clientsEnv, cleanup func(func())) (readFunc, error)
	}{
		{"goredis-pipeline", openGoRedisPipeline},
		{"goredis-autopipeline", openGoRedisAutoPipeline},
		{"goredis-autopipeline-async", openGoRedisAsyncAutoPipeline},
		{"rueidis", func(env *clientsEnv, cleanup func(func())) (readFunc, error) { return openRueidis(env, cleanup, false) }},
		{"rueidis-cache", func(env *clientsEnv, cleanup func(func())) (readFunc, error) { return openRueidis(env, cleanup, true) }},
	}
	for _, v := range variants {
		// Each variant has its own client, opened and warmed on the first
		// call only: b.Run calls its function again for every b.N it
		// tries, and a variant -bench leaves out is never opened.
		var read readFunc
		b.Run(v.name, func(sub *testing.B) {
			if read == nil {
				r, err := v.open(env, b.Cleanup)
				if err != nil {
					sub.Fatal(err)
				}
				env.warm(sub, r)
				read = r
			}
			env.measure(sub, read)
		})
	}
}

// clientsReaders is how many goroutines read at once in every variant.
const clientsReaders = 32

const (
	clientsUsers    = 20_000
	clientsTimeline = 45 // entries in a home timeline, besides the marker
	clientsRecent   = 5  // entries in a recent list, besides the marker
	clientsPosts    = 100_000
	clientsBody     = 100 // bytes in a post body
	clientsPage     = 20  // bodies a read fetches
	clientsKeyTTL   = 15 * time.Minute
)

// readKeys are the keys of one read.
type readKeys struct {
	active, timeline, recent string
	posts                    []string
}

// readFunc does one read and checks what it got; hits counts the post
// bodies a client-side cache served.
type readFunc func(ctx context.Context, k *readKeys, hits *atomic.Int64) error

// clientsEnv is the data set, and a go-redis client that writes and
// deletes it and reads Redis's CPU time.
type clientsEnv struct {
	opts     *redis.Options
	rdb      *redis.Client
	prefix   string
	users    []readKeys // posts left empty: each read draws its own
	postKeys []string
	hits     atomic.Int64
}

func newClientsEnv(b *testing.B, opts *redis.Options) *clientsEnv {
	b.Helper()
	ctx := context.Background()
	env := &clientsEnv{opts: opts, rdb: redis.NewClient(opts), prefix: fmt.Sprintf("bclients:%x:", rand.Uint64())}
	b.Cleanup(func() {
		if err := env.deleteKeys(context.Background()); err != nil {
			b.Errorf("delete the %s* keys: %v", env.prefix, err)
		}
		env.rdb.Close()
	})
	if err := env.rdb.Ping(ctx).Err(); err != nil {
		b.Fatalf("redis %s: %v", opts.Addr, err)
	}

	rng := rand.New(rand.NewPCG(1, 2))
	env.postKeys = make([]string, clientsPosts)
	env.users = make([]readKeys, clientsUsers)
	pipe := env.rdb.Pipeline()
	flush := func(force bool) {
		if pipe.Len() < 1000 && !(force && pipe.Len() > 0) {
			return
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatalf("write the data set under %s: %v", env.prefix, err)
		}
	}
	body := make([]byte, clientsBody)
	for i := range env.postKeys {
		env.postKeys[i] = env.prefix + "post:{" + strconv.Itoa(i) + "}"
		for j := range body {
			body[j] = byte('a' + rng.IntN(26))
		}
		pipe.Set(ctx, env.postKeys[i], body, clientsKeyTTL)
		flush(false)
	}
	// A set is its members, each with score 0: the "" marker that makes it
	// complete, and post IDs as 8 big-endian bytes (see rediscache.go).
	zset := func(key string, n int) {
		args := make([]any, 0, 2+2*(n+1))
		args = append(args, "zadd", key, 0, "")
		for seen := make(map[uint64]bool, n); len(seen) < n; {
			id := uint64(1 + rng.IntN(clientsPosts))
			if seen[id] {
				continue
			}
			seen[id] = true
			var m [8]byte
			binary.BigEndian.PutUint64(m[:], id)
			args = append(args, 0, string(m[:]))
		}
		pipe.Do(ctx, args...)
		pipe.Expire(ctx, key, clientsKeyTTL)
	}
	for i := range env.users {
		u := strconv.Itoa(i)
		k := readKeys{
			active:   env.prefix + "tl.active:{" + u + "}",
			timeline: env.prefix + "tl:{" + u + "}",
			recent:   env.prefix + "recent:{" + u + "}",
		}
		env.users[i] = k
		pipe.Set(ctx, k.active, 1, clientsKeyTTL)
		zset(k.timeline, clientsTimeline)
		zset(k.recent, clientsRecent)
		flush(false)
	}
	flush(true)
	return env
}

// deleteKeys unlinks every key under the prefix.
func (env *clientsEnv) deleteKeys(ctx context.Context) error {
	iter := env.rdb.Scan(ctx, 0, env.prefix+"*", 1000).Iterator()
	batch := make([]string, 0, 1000)
	unlink := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := env.rdb.Unlink(ctx, batch...).Err()
		batch = batch[:0]
		return err
	}
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == cap(batch) {
			if err := unlink(); err != nil {
				return err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	return unlink()
}

// warm makes a variant's connections and runs a few reads on them,
// untimed, so that the timed reads start from a client in use.
func (env *clientsEnv) warm(b *testing.B, read readFunc) {
	b.Helper()
	if err := env.run(context.Background(), 2000, read, nil); err != nil {
		b.Fatal(err)
	}
}

// measure runs b.N reads and reports the figures.
func (env *clientsEnv) measure(b *testing.B, read readFunc) {
	lat := make([][]time.Duration, clientsReaders)
	redis0, self0 := redisCPU(b, env.rdb), selfCPU(b)
	hits0 := env.hits.Load()
	b.ResetTimer()
	start := time.Now()
	err := env.run(b.Context(), b.N, read, lat)
	elapsed := time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	redisUsed, selfUsed := redisCPU(b, env.rdb)-redis0, selfCPU(b)-self0
	all := slices.Concat(lat...)
	slices.Sort(all)
	n := float64(b.N)
	b.ReportMetric(n/elapsed.Seconds(), "reads/s")
	b.ReportMetric(float64(redisUsed.Microseconds())/n, "redis-cpu-us/op")
	b.ReportMetric(float64(selfUsed.Microseconds())/n, "client-cpu-us/op")
	b.ReportMetric(float64(all[(len(all)-1)*99/100].Microseconds())/1000, "p99-ms")
	if hits := env.hits.Load() - hits0; hits > 0 {
		b.ReportMetric(100*float64(hits)/(n*clientsPage), "cache-hit-%")
	}
}

// run does n reads from clientsReaders goroutines, each of a random user
// and clientsPage random bodies, and records each goroutine's latencies
// in lat, if lat is not nil.
func (env *clientsEnv) run(ctx context.Context, n int, read readFunc, lat [][]time.Duration) error {
	var next atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	for w := range clientsReaders {
		g.Go(func() error {
			rng := rand.New(rand.NewPCG(uint64(w), rand.Uint64()))
			var k readKeys
			k.posts = make([]string, clientsPage)
			for next.Add(1) <= int64(n) {
				u := env.users[rng.IntN(len(env.users))]
				k.active, k.timeline, k.recent = u.active, u.timeline, u.recent
				for i := range k.posts {
					k.posts[i] = env.postKeys[rng.IntN(len(env.postKeys))]
				}
				t0 := time.Now()
				if err := read(ctx, &k, &env.hits); err != nil {
					return fmt.Errorf("read of %s: %w", k.timeline, err)
				}
				if lat != nil {
					lat[w] = append(lat[w], time.Since(t0))
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// selfCPU is this process's user and system CPU time.
func selfCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// checkRead checks a read's replies: the user is active, both sets are
// complete, each page is as long as the set allows (limit+1 members,
// which leaves room for the marker), and every body is there.
func checkRead(active int64, markers [2]error, pages [2]int, bodies int) error {
	switch {
	case active != 1:
		return fmt.Errorf("EXISTS of the active mark = %d; want 1", active)
	case markers[0] != nil || markers[1] != nil:
		return fmt.Errorf("ZSCORE of the markers: %v, %v; want both present", markers[0], markers[1])
	case pages[0] != min(clientsTimeline, clientsPage)+1 || pages[1] != min(clientsRecent, clientsPage)+1:
		return fmt.Errorf("pages of %d and %d members; want %d and %d", pages[0], pages[1], min(clientsTimeline, clientsPage)+1, min(clientsRecent, clientsPage)+1)
	case bodies != clientsPage:
		return fmt.Errorf("%d bodies; want %d", bodies, clientsPage)
	}
	return nil
}

// goRedisStep1 are step 1's commands on a go-redis Cmdable.
type goRedisStep1 struct {
	active          *redis.IntCmd
	tlMark, recMark *redis.FloatCmd
	tlPage, recPage *redis.StringSliceCmd
}

func queueGoRedisStep1(ctx context.Context, c redis.Cmdable, k *readKeys) goRedisStep1 {
	page := &redis.ZRangeBy{Max: "+", Min: "-", Count: clientsPage + 1}
	return goRedisStep1{
		active:  c.Exists(ctx, k.active),
		tlMark:  c.ZScore(ctx, k.timeline, ""),
		tlPage:  c.ZRevRangeByLex(ctx, k.timeline, page),
		recMark: c.ZScore(ctx, k.recent, ""),
		recPage: c.ZRevRangeByLex(ctx, k.recent, page),
	}
}

// check waits for step 1's results, on the deferred face, and checks
// them with step 2's.
func (s goRedisStep1) check(mget *redis.SliceCmd) error {
	for _, cmd := range []redis.Cmder{s.active, s.tlMark, s.tlPage, s.recMark, s.recPage, mget} {
		if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
	}
	bodies := 0
	for _, v := range mget.Val() {
		if v != nil {
			bodies++
		}
	}
	return checkRead(s.active.Val(), [2]error{s.tlMark.Err(), s.recMark.Err()}, [2]int{len(s.tlPage.Val()), len(s.recPage.Val())}, bodies)
}

func openGoRedisPipeline(env *clientsEnv, cleanup func(func())) (readFunc, error) {
	rdb := redis.NewClient(env.opts)
	cleanup(func() { rdb.Close() })
	return func(ctx context.Context, k *readKeys, _ *atomic.Int64) error {
		pipe := rdb.Pipeline()
		s := queueGoRedisStep1(ctx, pipe, k)
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		return s.check(rdb.MGet(ctx, k.posts...))
	}, nil
}

func openGoRedisAutoPipeline(env *clientsEnv, cleanup func(func())) (readFunc, error) {
	rdb := redis.NewClient(env.opts)
	cleanup(func() { rdb.Close() }) // which closes its autopipeliner too
	ap, err := rdb.AutoPipeline()
	if err != nil {
		return nil, fmt.Errorf("go-redis AutoPipeline: %w", err)
	}
	return func(ctx context.Context, k *readKeys, _ *atomic.Int64) error {
		// Each call returns once its command has run.
		s := queueGoRedisStep1(ctx, ap, k)
		return s.check(ap.MGet(ctx, k.posts...))
	}, nil
}

func openGoRedisAsyncAutoPipeline(env *clientsEnv, cleanup func(func())) (readFunc, error) {
	rdb := redis.NewClient(env.opts)
	cleanup(func() { rdb.Close() })
	ap, err := rdb.AsyncAutoPipeline()
	if err != nil {
		return nil, fmt.Errorf("go-redis AsyncAutoPipeline: %w", err)
	}
	return func(ctx context.Context, k *readKeys, _ *atomic.Int64) error {
		s := queueGoRedisStep1(ctx, ap, k)
		// Wait for step 1 before step 2, as GetPosts needs the page's IDs.
		if err := s.tlPage.Err(); err != nil {
			return err
		}
		return s.check(ap.MGet(ctx, k.posts...))
	}, nil
}

// openRueidis opens a rueidis client on the test Redis, with
// client-side caching of the post bodies if cached.
func openRueidis(env *clientsEnv, cleanup func(func()), cached bool) (readFunc, error) {
	opts := env.opts
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:  []string{opts.Addr},
		Username:     opts.Username,
		Password:     opts.Password,
		DisableCache: !cached,
	})
	if err != nil {
		return nil, fmt.Errorf("rueidis client of %s: %w", opts.Addr, err)
	}
	cleanup(c.Close)
	read := func(ctx context.Context, k *readKeys, hits *atomic.Int64) error {
		r := c.DoMulti(ctx,
			c.B().Exists().Key(k.active).Build(),
			c.B().Zscore().Key(k.timeline).Member("").Build(),
			c.B().Zrevrangebylex().Key(k.timeline).Max("+").Min("-").Limit(0, clientsPage+1).Build(),
			c.B().Zscore().Key(k.recent).Member("").Build(),
			c.B().Zrevrangebylex().Key(k.recent).Max("+").Min("-").Limit(0, clientsPage+1).Build(),
		)
		active, err := r[0].AsInt64()
		if err != nil {
			return err
		}
		tlPage, err := r[2].AsStrSlice()
		if err != nil {
			return err
		}
		recPage, err := r[4].AsStrSlice()
		if err != nil {
			return err
		}
		bodies := 0
		if cached {
			gets := make([]rueidis.CacheableTTL, len(k.posts))
			for i, key := range k.posts {
				gets[i] = rueidis.CT(c.B().Get().Key(key).Cache(), time.Minute)
			}
			for _, g := range c.DoMultiCache(ctx, gets...) {
				if err := g.Error(); err == nil {
					bodies++
				} else if !rueidis.IsRedisNil(err) {
					return err
				}
				if g.IsCacheHit() {
					hits.Add(1)
				}
			}
		} else {
			vals, err := c.Do(ctx, c.B().Mget().Key(k.posts...).Build()).ToArray()
			if err != nil {
				return err
			}
			for _, v := range vals {
				if !v.IsNil() {
					bodies++
				}
			}
		}
		return checkRead(active, [2]error{r[1].Error(), r[3].Error()}, [2]int{len(tlPage), len(recPage)}, bodies)
	}
	if cached {
		// Fill the cache with every body: see BenchmarkClients.
		ctx := context.Background()
		for chunk := range slices.Chunk(env.postKeys, 1000) {
			gets := make([]rueidis.CacheableTTL, len(chunk))
			for i, key := range chunk {
				gets[i] = rueidis.CT(c.B().Get().Key(key).Cache(), time.Minute)
			}
			for _, g := range c.DoMultiCache(ctx, gets...) {
				if err := g.Error(); err != nil {
					return nil, fmt.Errorf("fill the client-side cache: %w", err)
				}
			}
		}
	}
	return read, nil
}
