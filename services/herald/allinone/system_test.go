package allinone_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/herald/allinone"
	"github.com/herald-feed/herald/services/herald/systemtest"
	"github.com/herald-feed/herald/services/platform/auth"
	"github.com/herald-feed/herald/services/platform/discovery"
	"github.com/herald-feed/herald/services/platform/kafkabus"
	"github.com/herald-feed/herald/services/platform/node"
	"github.com/herald-feed/herald/services/platform/testenv"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// testLog returns a logger that writes WARN and above to t.Log, and drops
// records once the test has finished (a late log from a background
// goroutine would otherwise panic).
func testLog(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct {
	mu     sync.Mutex
	t      *testing.T
	closed bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// startSystem starts all four services in one process on a loopback
// port, over embedded etcd, NATS and Pebble under dir and the memory cache,
// and returns a client connection to it. stop shuts the system down and
// waits for it; it also runs at cleanup, and a second call does nothing.
func startSystem(t *testing.T, dir string) (*grpc.ClientConn, func()) {
	t.Helper()
	conn, _, stop := startSystemWith(t, testConfig(t, dir))
	return conn, stop
}

// testConfig is the all-in-one configuration of the tests: embedded
// servers under dir, a loopback port of the kernel's choosing.
func testConfig(t *testing.T, dir string) allinone.Config {
	return allinone.Config{
		Node:    node.Config{Name: "test", ListenAddr: "127.0.0.1:0", LeaseTTL: 5 * time.Second, Log: testLog(t)},
		DataDir: dir,
	}
}

// dialOptions are the options of a test client of the all-in-one cfg
// runs: with authentication on, each call acts as the user it names,
// with a token signed by the development key in the data dir.
func dialOptions(t testing.TB, cfg allinone.Config) []grpc.DialOption {
	t.Helper()
	opts := []grpc.DialOption{transportCredentials(t, cfg)}
	if cfg.Node.Guard.Auth == "off" {
		return opts
	}
	s, err := auth.DevSigner(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	return append(opts, auth.ActAsNamedUser(s)...)
}

// startSystemWith is startSystem with a configuration of the caller's,
// and it also returns the system.
func startSystemWith(t testing.TB, cfg allinone.Config) (*grpc.ClientConn, *allinone.System, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sys, err := allinone.Open(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("allinone.Open: %v", err)
	}
	n := sys.Node
	runErr := make(chan error, 1)
	go func() { runErr <- sys.Run(ctx) }()

	conn, err := grpc.NewClient(n.Addr(), dialOptions(t, cfg)...)
	if err != nil {
		cancel()
		<-runErr
		sys.Close()
		t.Fatalf("dial %s: %v", n.Addr(), err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			conn.Close()
			cancel()
			select {
			case err := <-runErr:
				if err != nil {
					t.Errorf("System.Run returned %v; want nil", err)
				}
			case <-time.After(waitfor.Deadline):
				t.Errorf("System.Run did not return within %v of cancel", waitfor.Deadline)
			}
			sys.Close()
		})
	}
	t.Cleanup(stop)

	services := cfg.Services
	if len(services) == 0 {
		services = allinone.Services
	}
	// Serving means: the gRPC health check says SERVING, and every service
	// is registered in etcd, so that peers find each other at once.
	hc := healthpb.NewHealthClient(conn)
	ready := waitfor.True(waitfor.Deadline, waitfor.Interval, func() bool {
		select {
		case err := <-runErr:
			runErr <- err
			return false
		default:
		}
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		defer ccancel()
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return false
		}
		for _, s := range services {
			addrs, err := discovery.Endpoints(cctx, n.Etcd, n.Namespace(), s)
			if err != nil || !slices.Contains(addrs, n.Addr()) {
				return false
			}
		}
		return true
	})
	if !ready {
		stop()
		t.Fatalf("all-in-one at %s not serving %v within %v", n.Addr(), services, waitfor.Deadline)
	}
	return conn, sys, stop
}

// TestSystem runs the API behaviour suite against one shared all-in-one
// system, which serves all three APIs on one connection.
func TestSystem(t *testing.T) {
	dir := t.TempDir()
	conn, stop := startSystem(t, dir)
	defer stop()
	systemtest.Run(t, suiteClient(t, conn, dir))
}

// suiteClient returns a behaviour-suite client over conn, with the keys
// that the all-in-one on data dir trusts, for the calls the suite signs
// itself.
func suiteClient(t testing.TB, conn grpc.ClientConnInterface, dir string) *systemtest.Client {
	t.Helper()
	c := systemtest.NewClient(conn, conn, conn)
	var err error
	if c.Key, err = auth.LoadPrivateKey(filepath.Join(dir, auth.DevKeyFile)); err != nil {
		t.Fatal(err)
	}
	if c.ServiceKey, err = auth.LoadPrivateKey(filepath.Join(dir, auth.ServiceKeyFile)); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAuth runs the authentication suite on the all-in-one, which trusts
// the development key it created in its data dir.
func TestAuth(t *testing.T) {
	dir := t.TempDir()
	conn, stop := startSystem(t, dir)
	defer stop()
	systemtest.RunAuth(t, suiteClient(t, conn, dir))
}

// TestRestart checks that durable data survives a restart on the same data
// directory, that lost cached timelines are rebuilt, and that fan-out works
// again afterwards.
func TestRestart(t *testing.T) {
	const a, b = "rs_a", "rs_b"
	dir := t.TempDir()

	conn, stop := startSystem(t, dir)
	c := systemtest.NewClient(conn, conn, conn)
	c.Follow(t, b, a)
	p1 := c.CreatePost(t, a, "before the restart 1", "k1")
	p2 := c.CreatePost(t, a, "before the restart 2", "")
	c.WaitHome(t, b, waitfor.Deadline, "both posts", func(got []string) bool {
		return systemtest.ContainsAll(got, p1.GetPostId(), p2.GetPostId())
	})
	_, token := c.HomePage(t, b, 1, "")
	stop()

	conn, stop = startSystem(t, dir)
	defer stop()
	c = systemtest.NewClient(conn, conn, conn)

	ctx, cancel := systemtest.RPCContext()
	defer cancel()
	resp, err := c.Post.GetPost(ctx, &feedv1.GetPostRequest{PostId: p1.GetPostId()})
	if err != nil || resp.GetPost().GetText() != p1.GetText() || resp.GetPost().GetAuthorId() != a {
		t.Errorf("GetPost(%s) after restart = %v, %v; want %v", p1.GetPostId(), resp.GetPost(), err, p1)
	}
	if got, want := c.AllUserPosts(t, a), []string{p2.GetPostId(), p1.GetPostId()}; !slices.Equal(got, want) {
		t.Errorf("ListUserPosts(%s) after restart = %v; want %v", a, got, want)
	}
	if got := c.Followers(t, a); !slices.Equal(got, []string{b}) {
		t.Errorf("ListFollowers(%s) after restart = %v; want [%s]", a, got, b)
	}
	// The memory cache is gone; the first read rebuilds b's timeline from
	// the durable store.
	if got, want := c.Home(t, b), []string{p2.GetPostId(), p1.GetPostId()}; !slices.Equal(got, want) {
		t.Errorf("home timeline of %s after restart = %v; want %v", b, got, want)
	}
	// A page token from before the restart still pages on.
	if ps, _ := c.HomePage(t, b, 1, token); len(ps) != 1 || ps[0].GetPostId() != p1.GetPostId() {
		t.Errorf("home timeline of %s with a token from before the restart = %v; want [%s]", b, systemtest.IDs(ps), p1.GetPostId())
	}
	// The idempotency key outlives the restart too.
	if again := c.CreatePost(t, a, p1.GetText(), "k1"); again.GetPostId() != p1.GetPostId() {
		t.Errorf("CreatePost retry with key k1 after restart = post %s; want %s", again.GetPostId(), p1.GetPostId())
	}

	p3 := c.CreatePost(t, a, "after the restart", "")
	if systemtest.PostID(t, p3.GetPostId()) <= systemtest.PostID(t, p2.GetPostId()) {
		t.Errorf("post ID after restart %s <= %s from before; want newer IDs", p3.GetPostId(), p2.GetPostId())
	}
	c.WaitHome(t, b, waitfor.Deadline, "the post made after the restart, "+p3.GetPostId(), func(got []string) bool {
		return slices.Contains(got, p3.GetPostId())
	})
}

// TestBackendUnavailable runs the timeline service with no graph service
// anywhere: a read that must rebuild a timeline cannot, and says
// UNAVAILABLE rather than hanging or INTERNAL.
func TestBackendUnavailable(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Services = []string{"timeline"}
	conn, _, stop := startSystemWith(t, cfg)
	defer stop()
	c := systemtest.NewClient(conn, conn, conn)

	// A hang would end in the client's deadline (DEADLINE_EXCEEDED); the
	// server must answer UNAVAILABLE before it.
	var wg sync.WaitGroup
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitfor.Deadline)
		defer cancel()
		st, err := c.Timeline.StreamHomeTimeline(ctx, &feedv1.StreamHomeTimelineRequest{UserId: "down_s"})
		if err == nil {
			_, err = st.Recv()
		}
		if status.Code(err) != codes.Unavailable {
			t.Errorf("StreamHomeTimeline with no graph service = %v; want code Unavailable", err)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Deadline)
	defer cancel()
	start := time.Now()
	_, err := c.Timeline.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: "down_u"})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("GetHomeTimeline with no graph service error = %v after %v; want code Unavailable", err, time.Since(start))
	}
	wg.Wait()
}

// TestSessionOutlivesDrain: the etcd session, behind the post service's
// worker ID, ends when the system closes, not when the shutdown begins, so
// CreatePost keeps minting IDs while the node drains.
func TestSessionOutlivesDrain(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	sys, err := allinone.Open(ctx, testConfig(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	done := make(chan error, 1)
	go func() { done <- sys.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v; want nil", err)
		}
	case <-time.After(waitfor.Deadline):
		t.Fatalf("Run did not return within %v of cancel", waitfor.Deadline)
	}
	select {
	case <-sys.Node.Lease().Done():
		t.Fatal("the etcd session ended with the drain; want it to last until Close")
	default:
	}
	sys.Close()
	select {
	case <-sys.Node.Lease().Done():
	case <-time.After(waitfor.Deadline):
		t.Fatalf("the etcd session still open %v after Close", waitfor.Deadline)
	}
}

// TestEmbeddedEtcdIsPrivate: the embedded etcd, which has no
// authentication and holds the page-token key and every registration,
// listens only on a unix socket in the data dir, which only Herald's user
// may enter. A probe found it on a loopback port, where any local process
// could read the key or delete a registration.
func TestEmbeddedEtcdIsPrivate(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, sys, stop := startSystemWith(t, testConfig(t, dir))
	defer stop()
	eps := sys.Node.Etcd.Endpoints()
	want := "unix://" + filepath.Join(dir, "etcd.sock")
	if len(eps) != 1 || eps[0] != want {
		t.Errorf("embedded etcd endpoints = %v; want only %s", eps, want)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o700 {
		t.Errorf("data dir mode = %v; want 0700", perm)
	}
	for _, f := range []string{auth.DevKeyFile, auth.ServiceKeyFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if perm := st.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s mode = %v; want 0600", f, perm)
		}
	}
}

// TestSystemOnKafka runs the behaviour suite on the all-in-one with -bus
// kafka: the event log on the test Kafka, everything else embedded, and
// no NATS at all.
func TestSystemOnKafka(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Node.Bus = node.BusKafka
	cfg.Node.Kafka.Brokers = testenv.Kafka(t)
	cfg.Node.Kafka.Login.User, cfg.Node.Kafka.Login.PasswordFile = testenv.KafkaLogin(t)
	cfg.Node.Kafka.Partitions = 3
	// A namespace of the test's own: fresh topics and consumer groups.
	cfg.Node.Namespace = fmt.Sprintf("aio%08x", rand.Uint32())
	conn, sys, stop := startSystemWith(t, cfg)
	defer stop()
	if sys.Node.NATS != nil {
		t.Error("the all-in-one on -bus kafka connected to NATS; want no NATS")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitfor.Deadline)
		defer cancel()
		if err := sys.Node.Bus.(*kafkabus.Bus).Delete(ctx, "fanout"); err != nil {
			t.Logf("drop the test's topics: %v", err)
		}
	})
	systemtest.Run(t, suiteClient(t, conn, dir))
}
