// Package backend opens the durable store and the hot cache that a split
// service binary (cmd/post, cmd/graph, cmd/fanout, cmd/timeline) runs on:
// Cassandra and Redis, shared by every instance of the deployment. It also
// holds the fan-out policy that the fan-out and timeline services must
// agree on. Each setting has its one default here, and its flag.
//
// The embedded adapters (Pebble, the in-process cache) are not here: they
// belong to the all-in-one, whose one process is the whole deployment. A
// split binary given them refuses to start, since each instance would get
// a private store that no other instance sees.
package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-feed/herald/services/platform/cache"
	"github.com/herald-feed/herald/services/platform/cassandrastore"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/flagenv"
	"github.com/herald-feed/herald/services/platform/health"
	"github.com/herald-feed/herald/services/platform/node"
	"github.com/herald-feed/herald/services/platform/ratelimit"
	"github.com/herald-feed/herald/services/platform/ratelimit/redisrate"
	"github.com/herald-feed/herald/services/platform/rediscache"
	"github.com/herald-feed/herald/services/platform/store"
)

// Set is the adapters a service runs on. The all-in-one fills one with its
// embedded adapters and hands it to every service; a split binary opens
// the parts its service needs with OpenStore and OpenCache.
type Set struct {
	Posts store.Posts
	Graph store.Graph

	// Timelines are the home timelines.
	Timelines cache.Timelines
	// Recent holds each author's recent posts, in the same shape as a
	// timeline: pulled into readers' timelines at read time.
	Recent    cache.Timelines
	PostCache cache.Posts
	// Celebrities is the sticky set of authors the hybrid strategy pulls.
	Celebrities cache.Celebrities
	Unfollows   cache.Unfollows

	// RateLimits holds the per-user rate-limit buckets, shared by every
	// instance through Redis; nil keeps the node's in-process buckets.
	RateLimits ratelimit.Limiter

	// Probes check the store and the cache (see package health): an app
	// adds them to its node's Health.
	Probes []health.Probe
}

// StoreConfig says which durable store a split binary uses: Cassandra.
type StoreConfig struct {
	// Kind must be "cassandra"; it is a flag so that "pebble" gets an
	// answer that says why not.
	Kind        string
	Hosts       []string
	Keyspace    string
	Consistency string
	Replication string
	// Login is the Cassandra role to log in as (PasswordAuthenticator);
	// the zero Login connects without one.
	Login node.Login
}

// BindStore defines the durable store's flags, with the store kind def:
// "cassandra" in a split binary, "pebble" in the all-in-one.
func BindStore(fs *flagenv.Set, c *StoreConfig, def string) {
	fs.String(&c.Kind, "store", "HERALD_STORE", def, "durable store: cassandra, or pebble (the all-in-one's embedded store)")
	fs.List(&c.Hosts, "cassandra", "HERALD_CASSANDRA_HOSTS", nil, "comma-separated Cassandra hosts (host:port)")
	fs.String(&c.Keyspace, "cassandra-keyspace", "HERALD_CASSANDRA_KEYSPACE", cassandrastore.DefaultKeyspace, "Cassandra keyspace, created and migrated at start")
	fs.String(&c.Consistency, "cassandra-consistency", "HERALD_CASSANDRA_CONSISTENCY", cassandrastore.DefaultConsistency, "Cassandra consistency level for reads and writes")
	fs.String(&c.Replication, "cassandra-replication", "HERALD_CASSANDRA_REPLICATION", cassandrastore.DefaultReplication, "CQL replication map for a new keyspace")
	node.BindLogin(fs, &c.Login, "cassandra", "Cassandra")
}

// Check reports a setting a split binary cannot run with.
func (c *StoreConfig) Check(binary string) error {
	switch c.Kind {
	case "cassandra":
	case "pebble":
		return fmt.Errorf("-store pebble: %s keeps no store of its own, since its other instances could not see it; use -store cassandra with -cassandra, or run the all-in-one (herald) for an embedded store", binary)
	default:
		return fmt.Errorf("-store %q: want cassandra", c.Kind)
	}
	if len(c.Hosts) == 0 {
		return errors.New("-cassandra is required (or HERALD_CASSANDRA_HOSTS): the Cassandra hosts, host:port")
	}
	return nil
}

// OpenStore connects to Cassandra, creating and migrating the keyspace. A
// login whose password file does not read is an error naming its flag.
func OpenStore(ctx context.Context, c *StoreConfig, log *slog.Logger) (*cassandrastore.Store, error) {
	user, password, err := c.Login.Read("cassandra")
	if err != nil {
		return nil, err
	}
	s, err := cassandrastore.Open(ctx, cassandrastore.Config{
		Hosts: c.Hosts, Keyspace: c.Keyspace, Consistency: c.Consistency, Replication: c.Replication, Log: log,
		Username: user, Password: password,
	})
	if err != nil {
		return nil, fmt.Errorf("cassandra %v: %w", c.Hosts, err)
	}
	return s, nil
}

// CacheConfig says which cache a split binary uses: Redis.
type CacheConfig struct {
	// Kind must be "redis"; see StoreConfig.Kind.
	Kind  string
	Addrs []string
	// MasterName, when set, makes Addrs the Sentinels' addresses, and the
	// client follows the primary they name under it across failovers. The
	// Sentinels take the same Login as Redis.
	MasterName string
	// Login is the Redis ACL user to log in as; the zero Login connects as
	// the default user without a password.
	Login node.Login
	// Cap is the most entries a cached timeline keeps.
	Cap int
	// ActiveWindow is how recently a user must have read their home
	// timeline to get fan-out writes; an inactive user's timeline
	// expires and is rebuilt on the next read.
	ActiveWindow time.Duration
	// LocalPosts is how many post bodies a reader keeps in process, beside
	// Redis (see rediscache.Options.LocalPosts). Zero keeps none.
	LocalPosts int
	// AutoPipelineReads sends timeline reads through go-redis's shared
	// auto-pipeliner (see rediscache.Options.AutoPipelineReads).
	AutoPipelineReads bool
	// KnownActive is how many users a fan-out writer remembers as lately
	// active, so that it need not read their active marks for every post
	// (see rediscache.Options.KnownActive). Zero remembers none.
	KnownActive int
}

// DefaultLocalPosts is the post bodies a reader keeps in process by
// default: about 30 MiB of bodies of a few hundred bytes.
const DefaultLocalPosts = 100_000

// BindRateLimits defines the flags of the Redis that holds a service's
// rate-limit buckets, for a service that keeps no cache (graph): the
// same -redis and login flags as BindCache's. With no -redis the
// buckets stay in process, per instance.
func BindRateLimits(fs *flagenv.Set, c *CacheConfig) {
	fs.List(&c.Addrs, "redis", "HERALD_REDIS_ADDR", nil, "comma-separated Redis addresses holding the rate-limit buckets, which every instance then shares; empty: each instance keeps its own")
	bindMaster(fs, c)
	node.BindLogin(fs, &c.Login, "redis", "Redis")
}

// BindCache defines the cache's flags, with the cache kind def: "redis"
// in a split binary, "memory" in the all-in-one.
func BindCache(fs *flagenv.Set, c *CacheConfig, def string) {
	fs.String(&c.Kind, "cache", "HERALD_CACHE", def, "timeline cache: redis, or memory (the all-in-one's in-process cache)")
	fs.List(&c.Addrs, "redis", "HERALD_REDIS_ADDR", nil, "comma-separated Redis addresses: one, or a Redis Cluster's; with -redis-master, the Sentinels'")
	bindMaster(fs, c)
	node.BindLogin(fs, &c.Login, "redis", "Redis")
	fs.Bool(&c.AutoPipelineReads, "redis-autopipeline-reads", "HERALD_REDIS_AUTOPIPELINE_READS", false, "send timeline reads through go-redis's auto-pipeliner, which writes concurrent readers' commands to Redis together (experimental in go-redis; docs/benchmarks.md)")
	fs.Int(&c.KnownActive, "known-active", "HERALD_KNOWN_ACTIVE", rediscache.DefaultKnownActive, "users each fan-out instance remembers, for up to 15 s, as found active in Redis, so that their next deliveries skip reading the active marks; 0: none")
	fs.Int(&c.LocalPosts, "local-posts", "HERALD_LOCAL_POSTS", DefaultLocalPosts, "post bodies each instance keeps in process beside Redis, the most recently read; deletes reach them through Redis before the next read; 0: none")
	BindTimelines(fs, c)
}

// bindMaster defines -redis-master, which BindCache and BindRateLimits share.
func bindMaster(fs *flagenv.Set, c *CacheConfig) {
	fs.String(&c.MasterName, "redis-master", "HERALD_REDIS_MASTER", "", "Sentinel master name: -redis then lists the Sentinels, and the client follows the primary they name; they take the -redis-user login too; empty: no Sentinel")
}

// BindTimelines defines the settings of cached timelines, which the
// all-in-one's in-process cache takes too.
func BindTimelines(fs *flagenv.Set, c *CacheConfig) {
	fs.Int(&c.Cap, "timeline-cap", "HERALD_TIMELINE_CAP", cache.DefaultCap, "most entries a cached home timeline keeps")
	fs.Duration(&c.ActiveWindow, "active-window", "HERALD_ACTIVE_WINDOW", cache.DefaultActiveWindow, "only users who read their home timeline within this window get fan-out writes; others are rebuilt on read")
}

// CheckTimelines fills in the defaults of timeline settings left zero, and
// reports one out of range.
func (c *CacheConfig) CheckTimelines() error {
	if c.Cap == 0 {
		c.Cap = cache.DefaultCap
	}
	if c.ActiveWindow == 0 {
		c.ActiveWindow = cache.DefaultActiveWindow
	}
	if c.Cap < 1 {
		return fmt.Errorf("-timeline-cap %d: must be at least 1", c.Cap)
	}
	if c.ActiveWindow < time.Second {
		return fmt.Errorf("-active-window %v: must be at least 1s", c.ActiveWindow)
	}
	return nil
}

// Check reports a setting a split binary cannot run with.
func (c *CacheConfig) Check(binary string) error {
	switch c.Kind {
	case "redis":
	case "memory":
		return fmt.Errorf("-cache memory: %s keeps no cache of its own, since its other instances could not see it; use -cache redis with -redis, or run the all-in-one (herald) for an in-process cache", binary)
	default:
		return fmt.Errorf("-cache %q: want redis", c.Kind)
	}
	if len(c.Addrs) == 0 {
		return errors.New("-redis is required (or HERALD_REDIS_ADDR): the Redis addresses, host:port")
	}
	return c.CheckTimelines()
}

// Caches is an open Redis cache.
type Caches struct {
	Timelines *rediscache.Cache
	Recent    *rediscache.Cache
	// RateLimits keeps the rate-limit buckets in the same Redis.
	RateLimits *redisrate.Limiter
	client     redis.UniversalClient
}

// Close closes the Redis client.
func (c *Caches) Close() error { return c.client.Close() }

// OpenCache connects to Redis. A login that Redis refuses at start is an
// error, as is a password file that does not read. Redis being away at
// start is not an error:
// it is a cache, and reads fall back to the store while it is away.
func OpenCache(ctx context.Context, c *CacheConfig, namespace string, log *slog.Logger) (*Caches, error) {
	user, password, err := c.Login.Read("redis")
	if err != nil {
		return nil, err
	}
	// RESP2: Herald uses no RESP3 feature, and go-redis skips its
	// push-notification check on every reply under RESP2.
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: c.Addrs, Username: user, Password: password, Protocol: 2,
		MasterName: c.MasterName, SentinelUsername: user, SentinelPassword: password,
	})
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); redis.IsAuthError(err) {
		rdb.Close()
		if user == "" {
			return nil, fmt.Errorf("redis %v wants a login (-redis-user and -redis-password-file): %w", c.Addrs, err)
		}
		return nil, fmt.Errorf("redis %v: log in as %s: %w", c.Addrs, user, err)
	} else if err != nil {
		log.Warn("redis not reachable at start", "addrs", c.Addrs, "err", err)
	}
	prefix := ""
	if namespace != "herald" {
		prefix = namespace + ":"
	}
	return &Caches{
		Timelines:  rediscache.New(rdb, rediscache.Options{Cap: c.Cap, Prefix: prefix, ActiveWindow: c.ActiveWindow, KnownActive: knownActive(c.KnownActive), LocalPosts: c.LocalPosts, AutoPipelineReads: c.AutoPipelineReads}),
		Recent:     rediscache.New(rdb, rediscache.Options{Cap: c.Cap, Prefix: prefix, Kind: "recent", AutoPipelineReads: c.AutoPipelineReads}),
		RateLimits: redisrate.New(rdb, prefix+"ratelimit:"),
		client:     rdb,
	}, nil
}

// Fill puts the caches into s.
func (c *Caches) Fill(s *Set) {
	s.Timelines, s.PostCache, s.Celebrities, s.Unfollows = c.Timelines, c.Timelines, c.Timelines, c.Timelines
	s.Recent = c.Recent
	s.RateLimits = c.RateLimits
	s.Probes = append(s.Probes, c.Probe())
}

// Probe checks the Redis the caches are in (a PING).
func (c *Caches) Probe() health.Probe {
	return health.Probe{Dependency: "cache", Server: "redis", Check: func(ctx context.Context) error {
		return c.client.Ping(ctx).Err()
	}}
}

// Policy is how posts reach followers: pushed at write time or pulled at
// read time. The fan-out and timeline services of a deployment must agree
// on it.
type Policy struct {
	Strategy  feed.Strategy
	Threshold int64
	strategy  string
}

// BindPolicy defines the policy's flags.
func BindPolicy(fs *flagenv.Set, p *Policy) {
	fs.String(&p.strategy, "strategy", "HERALD_STRATEGY", string(feed.DefaultStrategy), "fan-out strategy: push, pull or hybrid; fan-out and timeline services must agree")
	fs.Int64(&p.Threshold, "celebrity-threshold", "HERALD_CELEBRITY_THRESHOLD", feed.DefaultCelebrityThreshold, "follower count from which hybrid pulls an author at read time instead of pushing")
}

// Check parses the strategy flag, fills in the defaults of fields left
// zero, and checks the threshold.
func (p *Policy) Check() error {
	raw := p.strategy
	if raw == "" {
		raw = string(p.Strategy)
	}
	if raw == "" {
		raw = string(feed.DefaultStrategy)
	}
	st, err := feed.ParseStrategy(raw)
	if err != nil {
		return fmt.Errorf("-strategy: %w", err)
	}
	p.Strategy = st
	if p.Threshold == 0 {
		p.Threshold = feed.DefaultCelebrityThreshold
	}
	if p.Threshold < 1 {
		return fmt.Errorf("-celebrity-threshold %d: must be at least 1", p.Threshold)
	}
	return nil
}

// Opened is a Set that Open opened, with what closes it.
type Opened struct {
	Set
	closers []func()
}

// Close closes what Open opened, the cache first. A nil Opened (an app
// on the all-in-one's adapters) has nothing to close.
func (o *Opened) Close() {
	if o == nil {
		return
	}
	for i := len(o.closers) - 1; i >= 0; i-- {
		o.closers[i]()
	}
	o.closers = nil
}

// Open opens what a split service runs on: the Cassandra store, and the
// Redis cache unless cache is nil (the graph service keeps none).
func Open(ctx context.Context, store *StoreConfig, cache *CacheConfig, namespace string, log *slog.Logger) (*Opened, error) {
	o := &Opened{}
	s, err := OpenStore(ctx, store, log)
	if err != nil {
		return nil, err
	}
	o.closers = append(o.closers, func() { s.Close() })
	o.Posts, o.Graph = s, s
	o.Probes = append(o.Probes, health.Probe{Dependency: "store", Server: "cassandra", Check: s.Ping})
	if cache != nil {
		c, err := OpenCache(ctx, cache, namespace, log)
		if err != nil {
			o.Close()
			return nil, err
		}
		o.closers = append(o.closers, func() { c.Close() })
		c.Fill(&o.Set)
	}
	return o, nil
}

// Use returns the adapters an app runs on: given, the all-in-one's, if it
// is not nil; otherwise what Open opens, which the app must Close (nil when
// nothing was opened; Opened.Close takes nil).
func Use(ctx context.Context, given *Set, store *StoreConfig, cache *CacheConfig, namespace string, log *slog.Logger) (*Set, *Opened, error) {
	if given != nil {
		return given, nil, nil
	}
	o, err := Open(ctx, store, cache, namespace, log)
	if err != nil {
		return nil, nil, err
	}
	return &o.Set, o, nil
}

// knownActive is rediscache.Options.KnownActive for the -known-active
// flag, whose 0 means none (the option's 0 means its default).
func knownActive(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}
