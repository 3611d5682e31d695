package cassandrastore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/idgen"
)

func TestFailMapsDriverErrors(t *testing.T) {
	tests := []struct {
		name        string
		err         error
		unavailable bool
	}{
		{"no connections", gocql.ErrNoConnections, true},
		{"no response", gocql.ErrTimeoutNoResponse, true},
		{"connection closed", gocql.ErrConnectionClosed, true},
		{"session closed", gocql.ErrSessionClosed, true},
		{"no connections at start", gocql.ErrNoConnectionsStarted, true},
		{"network", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
		{"deadline", context.DeadlineExceeded, true},
		{"wrapped deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), true},
		{"cancelled", context.Canceled, false},
		{"marshal", gocql.MarshalError("can not marshal"), false},
	}
	for _, tt := range tests {
		err := fail("op", tt.err)
		if errors.Is(err, feed.ErrUnavailable) != tt.unavailable || !errors.Is(err, tt.err) {
			t.Errorf("fail(%s) = %v; want unavailable=%v, wrapping the cause", tt.name, err, tt.unavailable)
		}
	}
	if err := fail("op", nil); err != nil {
		t.Errorf("fail(nil) = %v; want nil", err)
	}
}

func TestBucketOf(t *testing.T) {
	week := 7 * 24 * time.Hour
	t0 := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		a, b  time.Time
		delta int
	}{
		{t0, t0.Add(time.Millisecond), 0},
		{t0, t0.Add(week), 1},
		{t0, t0.Add(52 * week), 52},
	}
	for _, tt := range tests {
		a, b := bucketOf(int64(idgen.MinID(tt.a))), bucketOf(int64(idgen.MinID(tt.b)))
		if b-a != tt.delta {
			t.Errorf("bucketOf(%v) - bucketOf(%v) = %d; want %d", tt.b, tt.a, b-a, tt.delta)
		}
	}
	// A bucket starts on a week boundary of the Unix epoch (a Thursday).
	thu := time.Date(2025, 3, 6, 0, 0, 0, 0, time.UTC)
	if before, at := bucketOf(int64(idgen.MinID(thu))-1), bucketOf(int64(idgen.MinID(thu))); at != before+1 {
		t.Errorf("bucketOf around %v = %d, %d; want a new bucket at midnight Thursday", thu, before, at)
	}
	// Larger IDs never have smaller buckets, up to the largest bigint.
	ids := []int64{1, int64(idgen.MinID(t0)), 1 << 62, 1<<63 - 1}
	if !slices.IsSortedFunc(ids, func(a, b int64) int { return bucketOf(a) - bucketOf(b) }) {
		t.Errorf("buckets of increasing IDs %v are not increasing", ids)
	}
}

// Posts made at a low rate have sequence 0 and the same worker, so only a
// hash of the whole ID spreads them over the outbox shards.
func TestShardOfSpreadsLowRateIDs(t *testing.T) {
	counts := make([]int, outboxShards)
	t0 := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	const n = 1600
	for i := range n {
		id := int64(idgen.MinID(t0.Add(time.Duration(i)*1237*time.Millisecond))) | 3<<12 // worker 3, sequence 0
		s := shardOf(id)
		if s < 0 || s >= outboxShards {
			t.Fatalf("shardOf(%d) = %d; want [0, %d)", id, s, outboxShards)
		}
		counts[s]++
	}
	for s, c := range counts {
		if c < n/outboxShards/2 || c > n/outboxShards*2 {
			t.Errorf("shard %d holds %d of %d IDs; want about %d (all: %v)", s, c, n, n/outboxShards, counts)
			break
		}
	}
}

func TestSplitCQL(t *testing.T) {
	src := "-- comment; with a semicolon\nCREATE TABLE a (\n  x int PRIMARY KEY\n);\n\n-- another\nCREATE TABLE b (y int PRIMARY KEY) WITH gc_grace_seconds = 1;\n"
	got := splitCQL(src)
	want := []string{"CREATE TABLE a (\n  x int PRIMARY KEY\n)", "CREATE TABLE b (y int PRIMARY KEY) WITH gc_grace_seconds = 1"}
	if !slices.Equal(got, want) {
		t.Errorf("splitCQL = %q; want %q", got, want)
	}
	ms, err := loadMigrations()
	if err != nil || len(ms) == 0 || ms[0].version != 1 {
		t.Fatalf("loadMigrations() = %v, %v; want version 1 first", ms, err)
	}
	// Every statement must be safe to run twice.
	rerunnable := regexp.MustCompile(`^(CREATE TABLE IF NOT EXISTS \{keyspace\}\.|ALTER TABLE \{keyspace\}\.\w+ ADD IF NOT EXISTS )`)
	for _, m := range ms {
		for _, stmt := range m.stmts {
			if !rerunnable.MatchString(stmt) {
				t.Errorf("%s: statement %q is neither CREATE TABLE IF NOT EXISTS {keyspace}.… nor ALTER TABLE {keyspace}.… ADD IF NOT EXISTS", m.name, stmt)
			}
		}
	}
}

func TestCommonPort(t *testing.T) {
	tests := []struct {
		hosts []string
		port  int
		ok    bool
	}{
		{[]string{"127.0.0.1:9043"}, 9043, true},
		{[]string{"a:9043", "b:9043"}, 9043, true},
		{[]string{"a:9043", "b:9044"}, 0, false},
		{[]string{"a"}, 0, false},
		{[]string{"a:9043", "b"}, 0, false},
	}
	for _, tt := range tests {
		port, ok := commonPort(tt.hosts)
		if port != tt.port || ok != tt.ok {
			t.Errorf("commonPort(%v) = %d, %v; want %d, %v", tt.hosts, port, ok, tt.port, tt.ok)
		}
	}
}
