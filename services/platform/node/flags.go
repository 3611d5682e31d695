package node

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/herald-feed/herald/services/platform/cassandrastore"
	"github.com/herald-feed/herald/services/platform/feed"
)

// BindFlags defines the flags every Herald process shares on fs, with
// defaults taken from HERALD_* variables through getenv. Call it from main;
// parse fs; then call Finish.
func BindFlags(fs *flag.FlagSet, c *Config, getenv func(string) string) *Flags {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	c.defaults()
	f := &Flags{c: c}
	fs.StringVar(&c.Namespace, "namespace", env("HERALD_NAMESPACE", c.Namespace), "deployment name: prefixes etcd keys, NATS subjects and Redis keys (HERALD_NAMESPACE)")
	fs.StringVar(&c.ListenAddr, "addr", env("HERALD_ADDR", c.ListenAddr), "gRPC listen address (HERALD_ADDR)")
	fs.StringVar(&c.AdvertiseAddr, "advertise", env("HERALD_ADVERTISE", ""), "address registered in etcd for other processes; default: the listen address (HERALD_ADVERTISE)")
	fs.StringVar(&c.MetricsAddr, "metrics", env("HERALD_METRICS_ADDR", c.MetricsAddr), "HTTP address serving /metrics; empty disables it (HERALD_METRICS_ADDR)")
	fs.StringVar(&c.DataDir, "data", env("HERALD_DATA", c.DataDir), "data directory for embedded servers and the Pebble store (HERALD_DATA)")
	fs.StringVar(&f.etcd, "etcd", env("HERALD_ETCD_ENDPOINTS", ""), "comma-separated etcd endpoints (HERALD_ETCD_ENDPOINTS)")
	if c.Embedded {
		fs.StringVar(&c.EmbeddedNATSAddr, "nats-listen", "", "also serve the embedded NATS on this host:port, for tools such as feedctl deadletters")
	} else {
		fs.StringVar(&c.NATSURL, "nats", env("HERALD_NATS_URL", ""), "NATS server URL (HERALD_NATS_URL)")
	}
	fs.StringVar(&c.Store, "store", env("HERALD_STORE", c.Store), "durable store: pebble or cassandra (HERALD_STORE)")
	fs.StringVar(&f.cassandra, "cassandra", env("HERALD_CASSANDRA_HOSTS", ""), "comma-separated Cassandra hosts (host:port), for -store cassandra (HERALD_CASSANDRA_HOSTS)")
	fs.StringVar(&c.CassandraKeyspace, "cassandra-keyspace", env("HERALD_CASSANDRA_KEYSPACE", cassandrastore.DefaultKeyspace), "Cassandra keyspace, created and migrated at start (HERALD_CASSANDRA_KEYSPACE)")
	fs.StringVar(&c.CassandraConsistency, "cassandra-consistency", env("HERALD_CASSANDRA_CONSISTENCY", cassandrastore.DefaultConsistency), "Cassandra consistency level for reads and writes (HERALD_CASSANDRA_CONSISTENCY)")
	fs.StringVar(&c.CassandraReplication, "cassandra-replication", env("HERALD_CASSANDRA_REPLICATION", cassandrastore.DefaultReplication), "CQL replication map for a new keyspace (HERALD_CASSANDRA_REPLICATION)")
	fs.StringVar(&c.Cache, "cache", env("HERALD_CACHE", c.Cache), "timeline cache: memory or redis (HERALD_CACHE)")
	fs.StringVar(&f.redis, "redis", env("HERALD_REDIS_ADDR", ""), "comma-separated Redis addresses, for -cache redis (HERALD_REDIS_ADDR)")
	fs.IntVar(&c.TimelineCap, "timeline-cap", c.TimelineCap, "most entries a cached home timeline keeps")
	fs.StringVar(&f.strategy, "strategy", env("HERALD_STRATEGY", string(c.Strategy)), "fan-out strategy: push, pull or hybrid; fan-out and timeline services must agree (HERALD_STRATEGY)")
	if v, err := strconv.ParseInt(env("HERALD_CELEBRITY_THRESHOLD", ""), 10, 64); err == nil {
		c.CelebrityThreshold = v
	}
	fs.Int64Var(&c.CelebrityThreshold, "celebrity-threshold", c.CelebrityThreshold, "follower count from which hybrid pulls an author at read time instead of pushing (HERALD_CELEBRITY_THRESHOLD)")
	if v, err := time.ParseDuration(env("HERALD_ACTIVE_WINDOW", "")); err == nil {
		c.ActiveWindow = v
	}
	fs.DurationVar(&c.ActiveWindow, "active-window", c.ActiveWindow, "only users who read their home timeline within this window get fan-out writes; others are rebuilt on read (HERALD_ACTIVE_WINDOW)")
	if v, err := strconv.Atoi(env("HERALD_FANOUT_CHUNK_SIZE", "")); err == nil {
		c.FanoutChunkSize = v
	}
	fs.IntVar(&c.FanoutChunkSize, "fanout-chunk-size", c.FanoutChunkSize, "followers per fan-out chunk message (HERALD_FANOUT_CHUNK_SIZE)")
	if v, err := strconv.Atoi(env("HERALD_FANOUT_WORKERS", "")); err == nil {
		c.FanoutWorkers = v
	}
	fs.IntVar(&c.FanoutWorkers, "fanout-workers", c.FanoutWorkers, "events one fan-out instance handles at once (HERALD_FANOUT_WORKERS)")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", c.LeaseTTL, "etcd lease TTL behind registrations and worker IDs")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long a shutdown waits for in-flight RPCs")
	fs.StringVar(&f.level, "log-level", env("HERALD_LOG_LEVEL", "info"), "log level: debug, info, warn or error (HERALD_LOG_LEVEL)")
	fs.BoolVar(&f.json, "log-json", env("HERALD_LOG_JSON", "") != "", "log JSON instead of text (HERALD_LOG_JSON)")
	return f
}

// Flags holds the flag values that need conversion after parsing.
type Flags struct {
	c         *Config
	etcd      string
	redis     string
	cassandra string
	strategy  string
	level     string
	json      bool
}

// Finish converts the parsed flags into the Config and sets its logger.
func (f *Flags) Finish() error {
	if f.etcd != "" {
		f.c.EtcdEndpoints = strings.Split(f.etcd, ",")
	}
	if f.redis != "" {
		f.c.RedisAddrs = strings.Split(f.redis, ",")
	}
	st, err := feed.ParseStrategy(f.strategy)
	if err != nil {
		return fmt.Errorf("-strategy: %w", err)
	}
	f.c.Strategy = st
	if f.c.CelebrityThreshold < 1 {
		return fmt.Errorf("-celebrity-threshold must be at least 1")
	}
	if f.c.ActiveWindow < time.Second {
		return fmt.Errorf("-active-window must be at least 1s")
	}
	if f.c.FanoutChunkSize < 1 || f.c.FanoutWorkers < 1 {
		return fmt.Errorf("-fanout-chunk-size and -fanout-workers must be at least 1")
	}
	if f.cassandra != "" {
		f.c.CassandraHosts = strings.Split(f.cassandra, ",")
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.level)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if f.json {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	f.c.Log = slog.New(h)
	if !f.c.Embedded && (len(f.c.EtcdEndpoints) == 0 || f.c.NATSURL == "") {
		return fmt.Errorf("-etcd and -nats are required (or HERALD_ETCD_ENDPOINTS and HERALD_NATS_URL)")
	}
	if f.c.LeaseTTL < time.Second {
		return fmt.Errorf("-lease-ttl must be at least 1s")
	}
	return nil
}
