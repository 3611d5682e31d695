package rediscache_test

// Tests on a Redis primary and replica under Sentinel
// (deploy/local/redis-sentinel.sh), through the failover client that
// backend.OpenCache builds from -redis-master.

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-feed/herald/services/platform/backend"
	"github.com/herald-feed/herald/services/platform/cache"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/node"
	"github.com/herald-feed/herald/services/platform/rediscache"
	"github.com/herald-feed/herald/services/platform/testenv"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// sentinelScript starts, stops and kills the Sentinel setup.
var sentinelScript = filepath.Join("..", "..", "..", "deploy", "local", "redis-sentinel.sh")

var quietLog = slog.New(slog.DiscardHandler)

// failoverDeadline bounds a failover's recovery. Sentinel takes
// down-after-milliseconds (2 s in redis-sentinel.sh) to find the primary
// down; an election that splits the votes is retried only after twice
// failover-timeout (10 s there), hence the margin on top of
// waitfor.Deadline.
const failoverDeadline = waitfor.Deadline + 20*time.Second

// sentinels returns the test Sentinels (testenv: skips without them, and
// fails under CI, where make test starts them), the master name they watch
// and Herald's login.
func sentinels(t testing.TB) (addrs []string, master string, login node.Login) {
	t.Helper()
	addrs = testenv.RedisSentinels(t)
	user, file := testenv.RedisLogin(t)
	return addrs, "herald", node.Login{User: user, PasswordFile: file}
}

// sentinelOptions returns the client options backend.OpenCache builds
// with -redis-master: the Sentinels as the addresses, the master name, and
// Herald's login on both the Sentinels and Redis.
func sentinelOptions(t testing.TB) *redis.UniversalOptions {
	t.Helper()
	addrs, master, login := sentinels(t)
	user, password, err := login.Read("redis")
	if err != nil {
		t.Fatal(err)
	}
	return &redis.UniversalOptions{
		Addrs: addrs, Username: user, Password: password, Protocol: 2,
		MasterName: master, SentinelUsername: user, SentinelPassword: password,
	}
}

// sentinelClient is client (rediscache_test.go) on the primary the
// Sentinels name, through a failover client: a client, and a key prefix of
// its own whose keys it deletes afterwards.
func sentinelClient(t testing.TB) (redis.UniversalClient, string) {
	opts := sentinelOptions(t)
	rdb := redis.NewUniversalClient(opts)
	prefix := fmt.Sprintf("test:%x:%d:", run, seq.Add(1))
	t.Cleanup(func() {
		deleteKeys(rdb, prefix)
		rdb.Close()
	})
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis primary %s per the Sentinels %v: %v", opts.MasterName, opts.Addrs, err)
	}
	return rdb, prefix
}

func deleteKeys(rdb redis.UniversalClient, prefix string) {
	ctx := context.Background()
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		rdb.Del(ctx, iter.Val())
	}
}

// TestSentinelContract runs the cache contract suite on the primary the
// Sentinels name.
func TestSentinelContract(t *testing.T) {
	sentinels(t)
	contract(t, func(t testing.TB, o rediscache.Options) *rediscache.Cache {
		rdb, prefix := sentinelClient(t)
		o.Prefix = prefix
		return rediscache.New(rdb, o)
	})
}

// TestSentinelFailover kills the primary and checks that a cache opened
// as the services open it (backend.OpenCache with a master name) writes
// and reads again once the Sentinels have promoted the replica, and still
// has what it wrote before, which had reached the replica. It logs how
// long the cache was unavailable. The killed node is started again, and
// must rejoin as a replica.
func TestSentinelFailover(t *testing.T) {
	addrs, master, login := sentinels(t)
	ctx := context.Background()
	opts := sentinelOptions(t)
	sentinel := redis.NewSentinelClient(&redis.Options{Addr: addrs[0], Username: opts.SentinelUsername, Password: opts.SentinelPassword, Protocol: 2})
	defer sentinel.Close()
	primary := func() (string, error) {
		a, err := sentinel.GetMasterAddrByName(ctx, master).Result()
		if err != nil {
			return "", err
		}
		return a[0] + ":" + a[1], nil
	}
	before, err := primary()
	if err != nil {
		t.Fatalf("sentinel %s: the primary of %s: %v", addrs[0], master, err)
	}

	namespace := fmt.Sprintf("sentineltest%x", run)
	caches, err := backend.OpenCache(ctx, &backend.CacheConfig{Kind: "redis", Addrs: addrs, MasterName: master, Login: login, Cap: 100}, namespace, quietLog)
	if err != nil {
		t.Fatalf("OpenCache on the Sentinels %v, master %s: %v", addrs, master, err)
	}
	defer caches.Close()
	cleanup := redis.NewUniversalClient(opts)
	defer func() {
		deleteKeys(cleanup, namespace+":")
		cleanup.Close()
	}()
	c := caches.Timelines
	if err := c.Store(ctx, "alice", []feed.PostID{1}); err != nil {
		t.Fatalf("Store before the failover: %v", err)
	}
	// Replication is asynchronous: wait until the replica has acknowledged
	// the primary's replication offset as of after the write, so that the
	// write must survive the failover.
	old := redis.NewClient(&redis.Options{Addr: before, Username: opts.Username, Password: opts.Password, Protocol: 2})
	info, err := old.Info(ctx, "replication").Result()
	if err != nil {
		t.Fatalf("redis %s: INFO replication: %v", before, err)
	}
	written, _ := replication(info)
	waitfor.Until(t, waitfor.Deadline, fmt.Sprintf("the replica to acknowledge offset %d", written), func() (bool, any) {
		info, err := old.Info(ctx, "replication").Result()
		if err != nil {
			return false, err
		}
		_, acked := replication(info)
		return len(acked) > 0 && slices.Min(acked) >= written, info
	})
	old.Close()

	restarted := false
	t.Cleanup(func() {
		if !restarted {
			startSentinels(t)
		}
	})
	killed := time.Now()
	if out, err := exec.Command(sentinelScript, "kill-primary").CombinedOutput(); err != nil {
		t.Fatalf("%s kill-primary: %v\n%s", sentinelScript, err, out)
	}
	post := feed.PostID(2)
	waitfor.Until(t, failoverDeadline, "writes and reads through the promoted replica", func() (bool, any) {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if err := c.Add(cctx, []cache.Entry{{User: "alice", Post: post}}); err != nil {
			return false, err
		}
		got, _, err := c.Range(cctx, "alice", 0, 10)
		if err != nil {
			return false, err
		}
		return slices.Equal(got, []feed.PostID{2, 1}), got
	})
	t.Logf("the cache wrote and read again %v after the primary %s was killed", time.Since(killed).Round(time.Millisecond), before)
	// A Sentinel that did not lead the failover learns of it from the others'
	// hello messages, maybe only after the client did.
	waitfor.Until(t, waitfor.Deadline, fmt.Sprintf("sentinel %s to name a primary other than the killed %s", addrs[0], before), func() (bool, any) {
		after, err := primary()
		if err != nil {
			return false, err
		}
		return after != before, after
	})

	startSentinels(t)
	restarted = true
	replicas, err := sentinel.Replicas(ctx, master).Result()
	if err != nil {
		t.Fatalf("sentinel %s: the replicas of %s: %v", addrs[0], master, err)
	}
	var flags []string
	for _, r := range replicas {
		if r["ip"]+":"+r["port"] == before {
			flags = append(flags, r["flags"])
		}
	}
	if !slices.Equal(flags, []string{"slave"}) {
		t.Errorf("sentinel %s: replica %s has flags %q after its restart; want one replica, flags \"slave\" (all replicas: %v)", addrs[0], before, flags, replicas)
	}
}

// replication returns what a primary's INFO replication shows: its
// replication offset, and the offset each online replica has acknowledged.
func replication(info string) (offset int64, acked []int64) {
	for _, line := range strings.Split(info, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if k == "master_repl_offset" {
			offset, _ = strconv.ParseInt(v, 10, 64)
			continue
		}
		// slave0:ip=127.0.0.1,port=6491,state=online,offset=1234,lag=0
		if n, ok := strings.CutPrefix(k, "slave"); !ok || n == "" || strings.Trim(n, "0123456789") != "" {
			continue
		}
		fields := map[string]string{}
		for _, kv := range strings.Split(v, ",") {
			if a, b, ok := strings.Cut(kv, "="); ok {
				fields[a] = b
			}
		}
		if o, err := strconv.ParseInt(fields["offset"], 10, 64); err == nil && fields["state"] == "online" {
			acked = append(acked, o)
		}
	}
	return offset, acked
}

// startSentinels runs redis-sentinel.sh start, which brings a killed node
// back as a replica of the current primary and returns once the Sentinels
// see it up.
func startSentinels(t *testing.T) {
	t.Helper()
	if out, err := exec.Command(sentinelScript, "start").CombinedOutput(); err != nil {
		t.Fatalf("%s start: %v\n%s", sentinelScript, err, out)
	}
}
