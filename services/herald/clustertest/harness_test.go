package clustertest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/herald-feed/herald/services/herald/systemtest"
	"github.com/herald-feed/herald/services/platform/auth"
	"github.com/herald-feed/herald/services/platform/discovery"
	"github.com/herald-feed/herald/services/platform/kafkabus"
	"github.com/herald-feed/herald/services/platform/testenv"
)

const (
	// leaseTTL is every instance's etcd lease TTL: how long a killed
	// instance may stay registered.
	leaseTTL = 3 * time.Second
	// leaseMargin is how late past leaseTTL a dead instance's key may
	// still leave etcd, or its election be taken over: etcd checks for
	// expired leases every 500ms and revokes them through Raft, and on a
	// loaded two-core machine both run late. It is a bound on a mechanism,
	// not a speed target: a key that outlives it is held by something other
	// than the lease.
	leaseMargin = 2*leaseTTL + 5*time.Second
	// startTimeout bounds an instance's start: connect to the servers,
	// migrate the keyspace, listen and register.
	startTimeout = 60 * time.Second
	// stopTimeout is how long a SIGTERMed instance gets before SIGKILL.
	stopTimeout = 10 * time.Second
	// instancesPerService is how many processes run each service.
	instancesPerService = 2
)

// servers are the addresses of the real servers a cluster runs on, and
// the logins the test's own clients connect with. The instances log in
// with the same users and password files: they inherit the test's
// environment, HERALD_*_USER and HERALD_*_PASSWORD_FILE included
// (deploy/local/env.sh), which are their -etcd-user, -nats-user,
// -redis-user, -cassandra-user flags and the password files'.
type servers struct {
	etcd      []string
	nats      string
	redis     string
	cassandra []string
	// kafka, if set, are the brokers the cluster's event log runs on
	// (-bus kafka) instead of nats (serversOnKafka).
	kafka []string
	// kafkaReplicas, if set, is the replication factor of the topics the
	// cluster's event log creates on kafka (-kafka-replication-factor).
	kafkaReplicas int
	// redisMaster, if set, is the Sentinel master name: redis then lists
	// the Sentinels (-redis-master).
	redisMaster string
	// natsReplicas, if set, is the event stream's replica count.
	natsReplicas int
	// ha says the servers are replicated (serversHA): the drills' table
	// says which cluster a drill ran on.
	ha bool
	// cassandraConsistency, if set, is the consistency level the
	// instances read and write Cassandra at (-cassandra-consistency), and
	// cassandraReplication the replication map they create the keyspace
	// with (-cassandra-replication): a ring's (serversOnRing).
	cassandraConsistency string
	cassandraReplication string

	etcdLogin      clientv3.Config
	natsLogin      []nats.Option
	redisLogin     *redis.Options
	cassandraLogin gocql.PasswordAuthenticator
}

func serversFromEnv(t testing.TB) servers {
	t.Helper()
	return servers{
		etcd:      testenv.Etcd(t),
		nats:      testenv.NATS(t),
		redis:     testenv.Redis(t),
		cassandra: testenv.Cassandra(t),

		etcdLogin:      testenv.EtcdConfig(t),
		natsLogin:      testenv.NATSOptions(t),
		redisLogin:     testenv.RedisOptions(t),
		cassandraLogin: testenv.CassandraAuth(t),
	}
}

// serversOnKafka is serversFromEnv with the event log on the test Kafka.
func serversOnKafka(t testing.TB) servers {
	t.Helper()
	s := serversFromEnv(t)
	s.kafka = testenv.Kafka(t)
	return s
}

// kafkaBus returns a Kafka bus of the cluster's namespace, for a test that
// publishes to the cluster's event log itself; it closes at cleanup.
func (c *Cluster) kafkaBus(t testing.TB) *kafkabus.Bus {
	t.Helper()
	user, password := testenv.KafkaAuth(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := kafkabus.New(ctx, kafkabus.Config{Brokers: c.srv.kafka, User: user, Password: password, Namespace: c.NS, ClientID: "clustertest"},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("kafka bus of %s: %v", c.NS, err)
	}
	t.Cleanup(b.Close)
	return b
}

// etcdConfig is the client configuration of the cluster's etcd.
func (s servers) etcdConfig() clientv3.Config {
	cfg := s.etcdLogin
	cfg.Endpoints = s.etcd
	return cfg
}

// natsOptions are the connect options of the cluster's NATS server, with
// the given ones.
func (s servers) natsOptions(opts ...nats.Option) []nats.Option {
	return slices.Concat(s.natsLogin, opts)
}

// redisClient returns a client of the cluster's Redis: of the primary the
// Sentinels name, if the servers have them.
func (s servers) redisClient() *redis.Client {
	opts := *s.redisLogin
	if s.redisMaster != "" {
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: s.redisMaster, SentinelAddrs: strings.Split(s.redis, ","),
			Username: opts.Username, Password: opts.Password,
			SentinelUsername: opts.Username, SentinelPassword: opts.Password,
		})
	}
	opts.Addr = s.redis
	return redis.NewClient(&opts)
}

// clusterKind names the servers' shape in the drills' table.
func (s servers) clusterKind() string {
	if s.ha {
		return "HA"
	}
	return "single"
}

// serversHA starts (or reuses), through deploy/local, the replicated
// servers of `make cluster HA=1`: three etcd members, three NATS nodes
// (the event stream with three replicas, each write fsynced), and a Redis
// primary and replica under three Sentinels; and returns them, with the
// shared single Cassandra. The logins are the single servers': the same
// users and password files.
func serversHA(t testing.TB) servers {
	t.Helper()
	s := serversFromEnv(t)
	s.etcd = strings.Split(scriptEnv(t, "etcd-cluster.sh", "HERALD_ETCD_ENDPOINTS"), ",")
	s.nats = scriptEnv(t, "nats-cluster.sh", "HERALD_NATS_URL")
	s.natsReplicas = 3
	s.redis = strings.Join(testenv.RedisSentinels(t), ",")
	s.redisMaster = "herald"
	s.ha = true
	runScript(t, "etcd-cluster.sh", "start")
	runScript(t, "nats-cluster.sh", "start")
	runScript(t, "redis-sentinel.sh", "start")
	return s
}

// scriptEnv returns the variable name that `deploy/local/<script> env`
// exports.
func scriptEnv(t testing.TB, script, name string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot, "deploy", "local", script), "env")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("deploy/local/%s env: %v", script, err)
	}
	for line := range strings.Lines(string(out)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "export "+name+"="); ok {
			return strings.Trim(v, `"'`)
		}
	}
	t.Fatalf("deploy/local/%s env exports no %s:\n%s", script, name, out)
	return ""
}

// Cluster is one deployment of Herald: two processes of each service on
// the real servers, under a namespace and Cassandra keyspace of its own.
type Cluster struct {
	// NS is the deployment's namespace and Cassandra keyspace.
	NS string
	// Etcd is a client of the cluster's etcd, for discovery.
	Etcd *clientv3.Client
	// Instances holds each service's processes, by service name.
	Instances map[string][]*Instance

	srv servers
	dir string
	// userKey signs the tests' users' tokens, and serviceKey the calls
	// between instances: the key pair a deployment's scripts make.
	userKey, serviceKey ed25519.PrivateKey
	userPub             string // file of userKey's public half, for -auth-keys
}

// startCluster starts a fresh deployment and waits until every instance
// is registered in etcd. At cleanup it stops the instances and removes the
// deployment's state from the servers.
func startCluster(t testing.TB) *Cluster {
	t.Helper()
	return startClusterOn(t, serversFromEnv(t))
}

// keepLogs copies the instances' logs of a failed test out of its temporary
// directory, into HERALD_TEST_LOG_DIR/cluster/<test> when that is set
// (make test sets it), so that CI can print them.
func (c *Cluster) keepLogs(t testing.TB) {
	root := os.Getenv("HERALD_TEST_LOG_DIR")
	if root == "" {
		return
	}
	dst := filepath.Join(root, "cluster", strings.ReplaceAll(t.Name(), "/", "_"))
	paths, _ := filepath.Glob(filepath.Join(c.dir, "*.log"))
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Logf("keeping instance logs: %v", err)
		return
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err == nil {
			err = os.WriteFile(filepath.Join(dst, filepath.Base(p)), b, 0o644)
		}
		if err != nil {
			t.Logf("keeping instance log %s: %v", p, err)
		}
	}
	t.Logf("instance logs of this failed test kept in %s", dst)
}

// startClusterOn is startCluster on the given servers, such as a NATS
// server of the test's own.
func startClusterOn(t testing.TB, srv servers) *Cluster {
	t.Helper()
	cli, err := clientv3.New(srv.etcdConfig())
	if err != nil {
		t.Fatalf("etcd client for %v: %v", srv.etcd, err)
	}
	c := &Cluster{NS: newNamespace(t), Etcd: cli, Instances: map[string][]*Instance{}, srv: srv, dir: t.TempDir()}
	t.Cleanup(func() {
		c.stop(t)
		if t.Failed() {
			c.keepLogs(t)
		}
		c.dropState(t)
		cli.Close()
	})
	t.Logf("cluster namespace and keyspace %s; instance logs in %s", c.NS, c.dir)
	if c.userKey, err = auth.LoadOrCreateKey(filepath.Join(c.dir, "user-signing-key.pem")); err != nil {
		t.Fatal(err)
	}
	if c.serviceKey, err = auth.LoadOrCreateKey(filepath.Join(c.dir, "service-key.pem")); err != nil {
		t.Fatal(err)
	}
	pub, err := auth.PublicKeyPEM(c.userKey)
	if err != nil {
		t.Fatal(err)
	}
	c.userPub = filepath.Join(c.dir, "user-signing-key.pub.pem")
	if err := os.WriteFile(c.userPub, pub, 0o644); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	for _, svc := range services {
		for i := range instancesPerService {
			c.Instances[svc] = append(c.Instances[svc], &Instance{
				Service: svc,
				Name:    fmt.Sprintf("%s-%d", svc, i+1),
				c:       c,
			})
		}
	}
	// The first instance creates and migrates the keyspace alone; then
	// each service's instances start together, in service order.
	first := c.Instances[services[0]][0]
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	for _, svc := range services {
		var wg sync.WaitGroup
		errs := make([]error, len(c.Instances[svc]))
		for i, in := range c.Instances[svc] {
			if in == first {
				continue
			}
			wg.Go(func() { errs[i] = in.Start() })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d instances registered in %v", len(services)*instancesPerService, time.Since(start).Round(time.Millisecond))
	return c
}

// newNamespace returns "ct" and 12 random hex digits: a valid namespace
// and Cassandra keyspace name.
func newNamespace(t testing.TB) string {
	b := make([]byte, 6)
	rand.Read(b)
	return "ct" + hex.EncodeToString(b)
}

// Client returns an API client whose calls go through one etcd resolver
// connection per service, balanced round-robin over its live instances.
func (c *Cluster) Client(t testing.TB) *systemtest.Client {
	t.Helper()
	cl := systemtest.NewClient(c.Dial(t, "post"), c.Dial(t, "graph"), c.Dial(t, "timeline"))
	cl.Key, cl.ServiceKey = c.userKey, c.serviceKey
	return cl
}

// DialOptions are the options of a test's connection to an instance: each
// call acts as the user its request names.
func (c *Cluster) DialOptions() []grpc.DialOption {
	return append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, auth.ActAsNamedUser(auth.NewSigner(c.userKey))...)
}

// Dial returns a resolver connection to service, closed at cleanup.
func (c *Cluster) Dial(t testing.TB, service string) *grpc.ClientConn {
	t.Helper()
	conn, err := discovery.Dial(c.Etcd, c.NS, service, auth.ActAsNamedUser(auth.NewSigner(c.userKey))...)
	if err != nil {
		t.Fatalf("discovery.Dial(%s): %v", service, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Endpoints lists service's addresses registered in etcd.
func (c *Cluster) Endpoints(service string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return discovery.Endpoints(ctx, c.Etcd, c.NS, service)
}

// CheckAlive fails t if any instance the test did not stop has exited,
// with the tail of its log.
func (c *Cluster) CheckAlive(t testing.TB) {
	t.Helper()
	for _, svc := range services {
		for _, in := range c.Instances[svc] {
			if err := in.unexpectedExit(); err != nil {
				t.Errorf("%v\n%s", err, in.logTail(40))
			}
		}
	}
}

// stop SIGTERMs every running instance, and SIGKILLs those still running
// after stopTimeout. An instance that died on its own fails t.
func (c *Cluster) stop(t testing.TB) {
	c.CheckAlive(t)
	var wg sync.WaitGroup
	for _, svc := range services {
		for _, in := range c.Instances[svc] {
			wg.Go(in.Stop)
		}
	}
	wg.Wait()
	if t.Failed() {
		for _, svc := range services {
			for _, in := range c.Instances[svc] {
				t.Logf("%s", in.logTail(15))
			}
		}
	}
}

// dropState removes what the deployment left on the shared servers: its
// keyspace, its etcd keys, its event stream and its Redis keys.
func (c *Cluster) dropState(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	cc := gocql.NewCluster(c.srv.cassandra...)
	cc.Authenticator = c.srv.cassandraLogin
	cc.Timeout = 30 * time.Second
	cc.ConnectTimeout = 10 * time.Second
	if s, err := cc.CreateSession(); err != nil {
		t.Errorf("drop keyspace %s: connect to %v: %v", c.NS, c.srv.cassandra, err)
	} else {
		// A deadline of its own: on a ring the driver waits for every node
		// to agree on the new schema, up to a minute, which must not use up
		// the deletes' time below.
		dctx, dcancel := context.WithTimeout(context.Background(), 60*time.Second)
		if err := s.Query("DROP KEYSPACE IF EXISTS " + c.NS).WithContext(dctx).Exec(); err != nil {
			t.Errorf("drop keyspace %s: %v", c.NS, err)
		}
		dcancel()
		s.Close()
	}

	if _, err := c.Etcd.Delete(ctx, c.NS+"/", clientv3.WithPrefix()); err != nil {
		t.Errorf("delete etcd keys under %s/: %v", c.NS, err)
	}

	if len(c.srv.kafka) > 0 {
		c.dropKafkaState(ctx, t)
	} else if nc, err := nats.Connect(c.srv.nats, c.srv.natsOptions()...); err != nil {
		t.Errorf("delete event stream: connect to %s: %v", c.srv.nats, err)
	} else {
		stream := strings.ToUpper(c.NS) + "_EVENTS"
		if js, err := jetstream.New(nc); err != nil {
			t.Errorf("delete event stream %s: %v", stream, err)
		} else if err := js.DeleteStream(ctx, stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("delete event stream %s: %v", stream, err)
		}
		nc.Close()
	}

	rdb := c.srv.redisClient()
	defer rdb.Close()
	iter := rdb.Scan(ctx, 0, c.NS+":*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Errorf("list Redis keys %s:*: %v", c.NS, err)
	}
	for chunk := range slices.Chunk(keys, 500) {
		if err := rdb.Del(ctx, chunk...).Err(); err != nil {
			t.Errorf("delete Redis keys %s:*: %v", c.NS, err)
			break
		}
	}
}

// Instance is one service process. Start runs a new process; Kill and Stop
// end it. A restarted instance listens on a new port.
type Instance struct {
	Service string
	Name    string
	// Etcd, if set, are the etcd endpoints this instance dials instead of
	// the cluster's (a proxy a drill controls); Redis and NATS likewise
	// replace the cluster's Redis address(es) and NATS URL(s).
	Etcd  []string
	Redis string
	NATS  string

	c *Cluster

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed once cmd has been waited for
	exitErr  error
	expected bool // the test ended it
	addr     string
	log      string
	starts   int
}

// servingLine is the node's log line once it serves and is registered.
var servingLine = regexp.MustCompile(`msg=serving .*\baddr=(\S+)`)

// Start runs a new process of the instance and waits until it logs that
// it serves and its address is registered in etcd.
func (in *Instance) Start() error {
	c := in.c
	in.mu.Lock()
	in.starts++
	logPath := filepath.Join(c.dir, fmt.Sprintf("%s.%d.log", in.Name, in.starts))
	in.mu.Unlock()
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close() // the child holds its own copy
	// Each binary takes only its own flags: graph has no cache.
	args := []string{
		"-namespace", c.NS,
		"-addr", "127.0.0.1:0",
		"-metrics", "",
		"-lease-ttl", leaseTTL.String(),
		"-etcd", strings.Join(in.etcdEndpoints(), ","),
		"-store", "cassandra", "-cassandra", strings.Join(c.srv.cassandra, ","),
		"-cassandra-keyspace", c.NS,
		"-auth-keys", c.userPub,
		"-auth-service-key", filepath.Join(c.dir, "service-key.pem"),
	}
	if len(c.srv.kafka) > 0 {
		args = append(args, "-bus", "kafka", "-kafka-brokers", strings.Join(c.srv.kafka, ","))
		if c.srv.kafkaReplicas > 0 {
			args = append(args, "-kafka-replication-factor", fmt.Sprint(c.srv.kafkaReplicas))
		}
	} else {
		args = append(args, "-nats", in.natsURL())
		if c.srv.natsReplicas > 0 {
			args = append(args, "-nats-replicas", fmt.Sprint(c.srv.natsReplicas))
		}
	}
	if c.srv.cassandraConsistency != "" {
		args = append(args, "-cassandra-consistency", c.srv.cassandraConsistency)
	}
	if c.srv.cassandraReplication != "" {
		args = append(args, "-cassandra-replication", c.srv.cassandraReplication)
	}
	if in.Service != "graph" {
		args = append(args, "-cache", "redis")
	}
	if in.Service == "timeline" {
		// Every route of the HTTP/JSON API, post and graph reached through
		// etcd, as make cluster serves it.
		args = append(args, "-http-addr", "127.0.0.1:0")
	}
	// graph keeps no cache, but its rate-limit buckets are in Redis too.
	args = append(args, "-redis", in.redisAddr())
	if c.srv.redisMaster != "" {
		args = append(args, "-redis-master", c.srv.redisMaster)
	}
	cmd := exec.Command(filepath.Join(binDir, in.Service), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", in.Name, err)
	}
	exited := make(chan struct{})
	in.mu.Lock()
	in.cmd, in.exited, in.exitErr, in.expected, in.addr, in.log = cmd, exited, nil, false, "", logPath
	in.mu.Unlock()
	go func() {
		err := cmd.Wait()
		in.mu.Lock()
		in.exitErr = err
		in.mu.Unlock()
		close(exited)
	}()

	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("%s exited during start: %v\n%s", in.Name, in.exitError(), in.logTail(40))
		case <-time.After(50 * time.Millisecond):
		}
		if addr := servingAddr(logPath); addr != "" {
			if eps, err := c.Endpoints(in.Service); err == nil && slices.Contains(eps, addr) {
				in.mu.Lock()
				in.addr = addr
				in.mu.Unlock()
				return nil
			}
		}
		if time.Now().After(deadline) {
			in.Kill()
			return fmt.Errorf("%s not registered in etcd within %v\n%s", in.Name, startTimeout, in.logTail(40))
		}
	}
}

// httpLine holds the HTTP API's address in the node's serving line.
var httpLine = regexp.MustCompile(`msg=serving .*\bhttp=(\S+)`)

// HTTPAddr returns the HTTP API's address in the running process's
// serving line, or "" if it serves none.
func (in *Instance) HTTPAddr() string {
	in.mu.Lock()
	path := in.log
	in.mu.Unlock()
	return logMatch(path, httpLine)
}

// servingAddr returns the address in the log's serving line, or "".
func servingAddr(logPath string) string { return logMatch(logPath, servingLine) }

// logMatch returns the first group of re's first match in the log, or "".
func logMatch(logPath string, re *regexp.Regexp) string {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return ""
	}
	if m := re.FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return ""
}

// Addr returns the address the running process registered.
func (in *Instance) Addr() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.addr
}

// PID returns the running process's ID.
func (in *Instance) PID() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.cmd.Process.Pid
}

func (in *Instance) etcdEndpoints() []string {
	if len(in.Etcd) > 0 {
		return in.Etcd
	}
	return in.c.srv.etcd
}

func (in *Instance) redisAddr() string {
	if in.Redis != "" {
		return in.Redis
	}
	return in.c.srv.redis
}

func (in *Instance) natsURL() string {
	if in.NATS != "" {
		return in.NATS
	}
	return in.c.srv.nats
}

// Kill sends SIGKILL, as a crash would, and waits for the process to go.
func (in *Instance) Kill() {
	in.signal(syscall.SIGKILL, time.Minute)
}

// Stop sends SIGTERM, and SIGKILL if the process has not exited after
// stopTimeout.
func (in *Instance) Stop() {
	if !in.signal(syscall.SIGTERM, stopTimeout) {
		in.signal(syscall.SIGKILL, time.Minute)
	}
}

// signal sends sig to the process and reports whether it exited within d.
func (in *Instance) signal(sig syscall.Signal, d time.Duration) bool {
	in.mu.Lock()
	cmd, exited := in.cmd, in.exited
	if cmd == nil {
		in.mu.Unlock()
		return true
	}
	select {
	case <-exited:
	default:
		in.expected = true
	}
	in.mu.Unlock()
	cmd.Process.Signal(sig) // fails only if it is gone already
	select {
	case <-exited:
		return true
	case <-time.After(d):
		return false
	}
}

func (in *Instance) exitError() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.exitErr
}

// unexpectedExit returns an error if the process exited without the test
// ending it.
func (in *Instance) unexpectedExit() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd == nil || in.expected {
		return nil
	}
	select {
	case <-in.exited:
		return fmt.Errorf("%s (pid %d, %s) exited on its own: %v", in.Name, in.cmd.Process.Pid, in.addr, in.exitErr)
	default:
		return nil
	}
}

// logTail returns the last n lines of the current process's log, framed.
func (in *Instance) logTail(n int) string {
	in.mu.Lock()
	path := in.log
	in.mu.Unlock()
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log for %s: %v)", in.Name, err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	lines = lines[max(0, len(lines)-n):]
	return fmt.Sprintf("----- last %d lines of %s -----\n%s\n-----", len(lines), path, strings.Join(lines, "\n"))
}

// runScript runs one of the deploy/local scripts and logs its output.
func runScript(t testing.TB, name string, args ...string) {
	t.Helper()
	runScriptEnv(t, nil, name, args...)
}

// runScriptEnv is runScript with env (KEY=value) added to the test's
// environment.
func runScriptEnv(t testing.TB, env []string, name string, args ...string) {
	t.Helper()
	scriptOutput(t, env, name, args...)
}

// scriptOutput is runScriptEnv, returning the script's output.
func scriptOutput(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot, "deploy", "local", name), args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	line := strings.Join(append([]string{"deploy/local/" + name}, args...), " ")
	t.Logf("%s (%v):\n%s", line, time.Since(start).Round(time.Millisecond), strings.TrimRight(string(out), "\n"))
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	return string(out)
}
