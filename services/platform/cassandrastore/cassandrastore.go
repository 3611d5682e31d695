// Package cassandrastore is Herald's durable store on Apache Cassandra: the
// source of truth for posts, the social graph and the outbox when Herald
// runs as a cluster. It implements store.Posts and store.Graph, and passes
// the same contract suite (package storetest) as the embedded pebblestore.
//
// The schema is the versioned CQL in migrations/, applied by Migrate. Its
// tables:
//
//	posts_by_id      post_id -> author, text, created_at, deleted
//	posts_by_author  (author, bucket), post_id DESC -> text, created_at
//	author_buckets   author, bucket DESC: the buckets an author has posted in
//	followers        user, follower -> since; static n, the follower count
//	following        user, followee -> since; static n, the following count
//	outbox           shard (hash of post_id, 16 shards), post_id
//	idempotency      (author, key) -> post_id, written with a TTL
//
// Post IDs are Snowflake IDs (package idgen), whose top bit is 0, so they
// are stored as bigint. A bucket is a week: weeks since the Unix epoch of
// the time in the post ID. A week keeps a page of an ordinary author's
// posts, and a celebrity's recent posts for a timeline merge, in one or two
// partitions, while a prolific author (a post a minute) still stays near
// 10,000 rows a partition. ListByAuthor walks the author's buckets newest
// first, and author_buckets tells it which buckets exist, so it neither
// probes empty weeks nor guesses where the history starts.
//
// A post, its author-list row, its bucket and its outbox marker are written
// in one logged batch, so they land together or not at all.
package cassandrastore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/gocql/gocql"

	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/store"
)

var (
	_ store.Posts = (*Store)(nil)
	_ store.Graph = (*Store)(nil)
)

// Defaults for the zero fields of Config.
const (
	DefaultKeyspace       = "herald"
	DefaultConsistency    = "LOCAL_QUORUM"
	DefaultReplication    = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
	DefaultTimeout        = 5 * time.Second
	DefaultIdempotencyTTL = 24 * time.Hour
)

// Config configures a Store.
type Config struct {
	// Hosts are the contact points, "host" or "host:port" (port 9042 when
	// left out).
	Hosts []string
	// Keyspace holds Herald's tables. Default DefaultKeyspace.
	Keyspace string
	// Consistency is the consistency level of every read and write, by its
	// CQL name ("ONE", "LOCAL_QUORUM", ...). Default LOCAL_QUORUM.
	// Lightweight transactions use LOCAL_SERIAL for their Paxos phase.
	Consistency string
	// Replication is the CQL replication map used when Migrate creates the
	// keyspace, for example "{'class': 'NetworkTopologyStrategy', 'dc1': 3}".
	// It has no effect on a keyspace that already exists; change that with
	// ALTER KEYSPACE. Default DefaultReplication, for a single test node.
	Replication string
	// LocalDC, when set, routes requests to this data center's replicas
	// first. Otherwise requests go round robin over the token's replicas.
	LocalDC string
	// Timeout bounds each request and each connection attempt. Default 5s.
	Timeout time.Duration
	// IdempotencyTTL is how long CreatePost remembers an idempotency key.
	// Default 24h.
	IdempotencyTTL time.Duration
	// Log receives the driver's warnings. Default slog.Default().
	Log *slog.Logger
	// Username and Password log in to a cluster that runs Cassandra's
	// PasswordAuthenticator; an empty Username connects without a login.
	Username string
	Password string
}

func (c *Config) defaults() {
	if c.Keyspace == "" {
		c.Keyspace = DefaultKeyspace
	}
	if c.Consistency == "" {
		c.Consistency = DefaultConsistency
	}
	if c.Replication == "" {
		c.Replication = DefaultReplication
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.IdempotencyTTL <= 0 {
		c.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// Store is a Cassandra-backed store.Posts and store.Graph. It is safe for
// concurrent use. Methods must not be called after Close.
type Store struct {
	session   *gocql.Session
	ttl       int           // idempotency TTL in seconds
	timeout   time.Duration // Config.Timeout
	followers edges
	following edges
}

// Open connects to the cluster, migrates the schema in cfg.Keyspace (see
// Migrate) and returns a Store using that keyspace. A cluster that cannot be
// reached is an error wrapping feed.ErrUnavailable; a bad Config is a plain
// error.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg.defaults()
	if len(cfg.Hosts) == 0 {
		return nil, errors.New("cassandra: no hosts configured")
	}
	if err := checkKeyspace(cfg.Keyspace); err != nil {
		return nil, err
	}
	if err := checkReplication(cfg.Replication); err != nil {
		return nil, err
	}
	cons, err := gocql.ParseConsistencyWrapper(cfg.Consistency)
	if err != nil {
		return nil, fmt.Errorf("cassandra: consistency %q: %w", cfg.Consistency, err)
	}

	// The keyspace may not exist yet, and a session bound to a keyspace
	// cannot start without it, so the migration runs on its own session.
	boot, err := connect(ctx, newCluster(cfg, cons, ""))
	if err != nil {
		return nil, err
	}
	err = Migrate(ctx, boot, cfg.Keyspace, cfg.Replication)
	boot.Close()
	if err != nil {
		return nil, err
	}

	session, err := connect(ctx, newCluster(cfg, cons, cfg.Keyspace))
	if err != nil {
		return nil, err
	}
	return &Store{
		session:   session,
		ttl:       int((cfg.IdempotencyTTL + time.Second - 1) / time.Second),
		timeout:   cfg.Timeout,
		followers: edges{followersTable, newCountLocks()},
		following: edges{followingTable, newCountLocks()},
	}, nil
}

// Close closes the session.
func (s *Store) Close() { s.session.Close() }

// SchemaVersion returns the newest migration applied to the store's
// keyspace, and how many are applied.
func (s *Store) SchemaVersion(ctx context.Context) (newest, applied int, err error) {
	iter := s.session.Query("SELECT version FROM schema_migrations").WithContext(ctx).Iter()
	var v int
	for iter.Scan(&v) {
		newest = max(newest, v)
		applied++
	}
	if err := iter.Close(); err != nil {
		return 0, 0, fail("read schema_migrations", err)
	}
	return newest, applied, nil
}

// Ping reads one partition (a post ID no post has) at the store's
// consistency level: nil if enough replicas answered, as they must for
// the store's own reads.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.session.Query("SELECT post_id FROM posts_by_id WHERE post_id = 0").WithContext(ctx).Iter().Close(); err != nil {
		return feed.Unavailable("cassandra", err)
	}
	return nil
}

// newCluster returns the driver configuration for one session; each
// session needs its own, because a host selection policy serves only one.
func newCluster(cfg Config, cons gocql.Consistency, keyspace string) *gocql.ClusterConfig {
	cluster := gocql.NewCluster(cfg.Hosts...)
	cluster.Keyspace = keyspace
	// Nodes found through the ring are dialled on cluster.Port, so a
	// cluster on a non-default port must say so there too.
	if port, ok := commonPort(cfg.Hosts); ok {
		cluster.Port = port
	}
	cluster.ProtoVersion = 4
	cluster.Consistency = cons
	cluster.SerialConsistency = gocql.LocalSerial
	cluster.Timeout = cfg.Timeout
	cluster.ConnectTimeout = cfg.Timeout
	// Notice a node (or the whole single-node cluster) coming back within
	// seconds, not the driver's default minute, so posting resumes without
	// a restart.
	cluster.ReconnectInterval = 2 * time.Second
	fallback := gocql.RoundRobinHostPolicy()
	if cfg.LocalDC != "" {
		fallback = gocql.DCAwareRoundRobinPolicy(cfg.LocalDC)
	}
	cluster.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(fallback)
	cluster.Logger = driverLogger{cfg.Log}
	if cfg.Username != "" {
		cluster.Authenticator = gocql.PasswordAuthenticator{Username: cfg.Username, Password: cfg.Password}
	}
	return cluster
}

func connect(ctx context.Context, cluster *gocql.ClusterConfig) (*gocql.Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// CreateSession takes no context; the connect timeouts bound it.
	session, err := cluster.CreateSession()
	if err != nil {
		return nil, feed.Unavailable("cassandra", fmt.Errorf("connect to %v: %w", cluster.Hosts, err))
	}
	return session, nil
}

// commonPort returns the port that every host names, if they all name the
// same one.
func commonPort(hosts []string) (int, bool) {
	port := ""
	for _, h := range hosts {
		_, p, err := net.SplitHostPort(h)
		if err != nil || (port != "" && p != port) {
			return 0, false
		}
		port = p
	}
	var n int
	if _, err := fmt.Sscan(port, &n); err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}

var keyspaceName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,47}$`)

func checkKeyspace(ks string) error {
	if !keyspaceName.MatchString(ks) {
		return fmt.Errorf("cassandra: keyspace %q: want 1 to 48 characters from [a-z0-9_], starting with a letter", ks)
	}
	return nil
}

// fail maps a driver error to Herald's errors. A cancelled context stays
// itself: the caller gave up, the cluster did not fail. Anything that says
// the cluster could not serve the request (no connection, timeouts, not
// enough replicas, overload, an expired deadline) becomes
// feed.ErrUnavailable, which callers may retry. What is left (a syntax or
// schema error, a value that does not marshal) is a bug, and stays a plain
// error.
func fail(op string, err error) error {
	if err == nil {
		return nil
	}
	err = fmt.Errorf("%s: %w", op, err)
	if errors.Is(err, context.Canceled) {
		return err
	}
	var reqErr gocql.RequestError
	if errors.As(err, &reqErr) {
		switch reqErr.Code() {
		case gocql.ErrCodeServer, gocql.ErrCodeUnavailable, gocql.ErrCodeOverloaded,
			gocql.ErrCodeBootstrapping, gocql.ErrCodeTruncate, gocql.ErrCodeWriteTimeout,
			gocql.ErrCodeReadTimeout, gocql.ErrCodeReadFailure, gocql.ErrCodeWriteFailure,
			gocql.ErrCodeCDCWriteFailure, gocql.ErrCodeCASWriteUnknown:
			return feed.Unavailable("cassandra", err)
		}
		return fmt.Errorf("cassandra: %w", err)
	}
	var (
		marshalErr   gocql.MarshalError
		unmarshalErr gocql.UnmarshalError
	)
	if errors.As(err, &marshalErr) || errors.As(err, &unmarshalErr) {
		return fmt.Errorf("cassandra: %w", err)
	}
	// gocql.ErrNoConnections, ErrTimeoutNoResponse, ErrConnectionClosed,
	// network errors and context.DeadlineExceeded.
	return feed.Unavailable("cassandra", err)
}

// driverLogger sends the driver's log lines (lost connections, nodes going
// down) to slog.
type driverLogger struct{ log *slog.Logger }

func (l driverLogger) Print(v ...any) { l.log.Warn(strings.TrimSpace(fmt.Sprint(v...))) }
func (l driverLogger) Printf(format string, v ...any) {
	l.log.Warn(strings.TrimSpace(fmt.Sprintf(format, v...)))
}
func (l driverLogger) Println(v ...any) { l.log.Warn(strings.TrimSpace(fmt.Sprintln(v...))) }
