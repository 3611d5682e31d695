package discovery

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/herald-feed/herald/services/platform/embedded"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

func startEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	e, err := embedded.StartEtcd(t.TempDir(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// startHealth serves only the health service on a loopback port.
func startHealth(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return l.Addr().String()
}

func TestRegisterResolveAndExpire(t *testing.T) {
	cli := startEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitfor.Deadline)
	defer cancel()
	addr := startHealth(t)
	s, err := NewSession(ctx, cli, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := Register(ctx, s, "herald", "timeline", addr); err != nil {
		t.Fatal(err)
	}
	// A service whose name extends this one must not be matched.
	other, _ := NewSession(ctx, cli, 60*time.Second)
	if err := Register(ctx, other, "herald", "timelinex", "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}

	got, err := Endpoints(ctx, cli, "herald", "timeline")
	if err != nil || !slices.Equal(got, []string{addr}) {
		t.Fatalf("Endpoints(timeline) = %v, %v; want [%s]", got, err, addr)
	}

	conn, err := Dial(cli, "herald", "timeline")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("health check through the etcd resolver: %v", err)
	}

	// Orphan the lease, as a kill -9 would: the key must go when the TTL
	// runs out, without anyone deleting it.
	s.Orphan()
	// The lease's TTL is 1s; etcd checks for expired leases every 500ms
	// and revokes through Raft, which a loaded machine delays. A key that
	// outlives the generous wait was kept by something other than the lease.
	waitfor.Until(t, waitfor.Deadline, "the orphaned lease's key (TTL 1s) to leave etcd", func() (bool, any) {
		got, err := Endpoints(ctx, cli, "herald", "timeline")
		if err != nil {
			return false, err
		}
		return len(got) == 0, fmt.Sprintf("Endpoints(timeline) = %v", got)
	})
}

func TestDeregister(t *testing.T) {
	cli := startEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, _ := NewSession(ctx, cli, 30*time.Second)
	Register(ctx, s, "herald", "post", "127.0.0.1:9")
	if err := Deregister(ctx, cli, "herald", "post", "127.0.0.1:9"); err != nil {
		t.Fatal(err)
	}
	if got, _ := Endpoints(ctx, cli, "herald", "post"); len(got) != 0 {
		t.Errorf("Endpoints(post) after Deregister = %v; want none", got)
	}
}

func TestAcquireWorkerIDIsExclusive(t *testing.T) {
	cli := startEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seen := map[int]bool{}
	var sessions []int
	for i := 0; i < 3; i++ {
		s, err := NewSession(ctx, cli, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		id, err := AcquireWorkerID(ctx, s, "herald", 2, "test")
		if err != nil {
			t.Fatal(err)
		}
		if seen[id] {
			t.Fatalf("worker id %d handed out twice", id)
		}
		seen[id] = true
		sessions = append(sessions, id)
		if i == 0 {
			// Releasing the first session frees its ID for reuse.
			defer func() {}()
		}
	}
	s, _ := NewSession(ctx, cli, 30*time.Second)
	if id, err := AcquireWorkerID(ctx, s, "herald", 2, "test"); err == nil {
		t.Fatalf("AcquireWorkerID with all IDs leased = %d; want an error", id)
	}
	_ = sessions
}
