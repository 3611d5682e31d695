// Package load drives a Herald deployment: it builds a social graph through
// the API, then runs an open-loop mix of posts and home-timeline reads while
// sampled followers measure how long each post takes to become visible.
package load

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/auth"
	"github.com/herald-feed/herald/services/platform/discovery"
	"github.com/herald-feed/herald/services/platform/tlsconfig"
)

// DialConfig says where the deployment is: one process at Addr (the
// all-in-one), or each service found through etcd.
type DialConfig struct {
	Addr      string
	Etcd      []string
	Namespace string
	// AllowRemote permits targets outside the loopback range. A load test
	// is only to be pointed at a deployment its runner owns.
	AllowRemote bool
	// TLS, if set, makes the calls over TLS with these files (see
	// tlsconfig.ClientCredentials): the zero Files trusts the system's
	// CAs and presents no client certificate. Nil: plaintext.
	TLS *tlsconfig.Files
	// Signer, if set, signs each call a token of the user its request
	// names (auth.ActAsNamedUser): the load acts as many users over each
	// connection, as the access rules require. Nil: calls carry no token,
	// for a deployment run with -auth=off.
	Signer *auth.Signer
}

// Target is the deployment under load: one client per API.
type Target struct {
	Posts     feedv1.PostServiceClient
	Graph     feedv1.GraphServiceClient
	Timelines feedv1.TimelineServiceClient
	// Desc names the target in reports.
	Desc string

	conns  map[string]*grpc.ClientConn
	closer []func()
}

// NewTarget wraps one connection that serves all three APIs, as the
// all-in-one does.
func NewTarget(cc *grpc.ClientConn, desc string) *Target {
	return &Target{
		Posts: feedv1.NewPostServiceClient(cc), Graph: feedv1.NewGraphServiceClient(cc), Timelines: feedv1.NewTimelineServiceClient(cc),
		Desc: desc, conns: map[string]*grpc.ClientConn{"herald": cc},
	}
}

// Close closes the connections Dial opened.
func (t *Target) Close() {
	for i := len(t.closer) - 1; i >= 0; i-- {
		t.closer[i]()
	}
}

// ErrNotLoopback refuses a target outside the loopback range.
var ErrNotLoopback = errors.New("not a loopback address; feedload only loads deployments on this machine unless --allow-remote is given")

// checkLoopback fails unless hostport names a loopback address.
func checkLoopback(ctx context.Context, hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("%q: want host:port", hostport)
	}
	if host == "localhost" {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("%s: %w", hostport, ErrNotLoopback)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("%s: %w", hostport, err)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("%s resolves to %s: %w", hostport, ip, ErrNotLoopback)
		}
	}
	return nil
}

// Dial connects to the deployment and checks that every API answers its
// health check, so that a wrong address fails here with a plain message
// instead of as a run full of errors.
func Dial(ctx context.Context, cfg DialConfig) (*Target, error) {
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		var err error
		if creds, err = tlsconfig.ClientCredentials(*cfg.TLS); err != nil {
			return nil, err
		}
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if cfg.Signer != nil {
		opts = append(opts, auth.ActAsNamedUser(cfg.Signer)...)
	}
	if len(cfg.Etcd) == 0 {
		if !cfg.AllowRemote {
			if err := checkLoopback(ctx, cfg.Addr); err != nil {
				return nil, err
			}
		}
		cc, err := grpc.NewClient(cfg.Addr, opts...)
		if err != nil {
			return nil, fmt.Errorf("--addr %s: %w", cfg.Addr, err)
		}
		t := NewTarget(cc, cfg.Addr)
		t.closer = append(t.closer, func() { cc.Close() })
		if err := t.check(ctx); err != nil {
			t.Close()
			return nil, err
		}
		return t, nil
	}

	if !cfg.AllowRemote {
		for _, e := range cfg.Etcd {
			if err := checkLoopback(ctx, e); err != nil {
				return nil, fmt.Errorf("--etcd %w", err)
			}
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Etcd, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(cfg.Etcd, ","), err)
	}
	t := &Target{Desc: "etcd " + strings.Join(cfg.Etcd, ",") + " namespace " + cfg.Namespace, conns: make(map[string]*grpc.ClientConn)}
	t.closer = append(t.closer, func() { cli.Close() })
	for _, svc := range []string{"post", "graph", "timeline"} {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err := discovery.Endpoints(lctx, cli, cfg.Namespace, svc)
		cancel()
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("cannot reach etcd at %s: %w", strings.Join(cfg.Etcd, ","), err)
		}
		if len(addrs) == 0 {
			t.Close()
			return nil, fmt.Errorf("no %s instance is registered in etcd under namespace %q (is the cluster up? is --namespace right?)", svc, cfg.Namespace)
		}
		if !cfg.AllowRemote {
			for _, a := range addrs {
				if err := checkLoopback(ctx, a); err != nil {
					t.Close()
					return nil, fmt.Errorf("%s instance %w", svc, err)
				}
			}
		}
		cc, err := discovery.Dial(cli, cfg.Namespace, svc, opts...)
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("dial %s through etcd: %w", svc, err)
		}
		t.conns[svc] = cc
		t.closer = append(t.closer, func() { cc.Close() })
	}
	t.Posts = feedv1.NewPostServiceClient(t.conns["post"])
	t.Graph = feedv1.NewGraphServiceClient(t.conns["graph"])
	t.Timelines = feedv1.NewTimelineServiceClient(t.conns["timeline"])
	if err := t.check(ctx); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func (t *Target) check(ctx context.Context) error {
	for name, cc := range t.conns {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := healthpb.NewHealthClient(cc).Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			msg := status.Convert(err).Message()
			if status.Code(err) == codes.DeadlineExceeded {
				msg = "no answer within 5s"
			}
			return fmt.Errorf("cannot reach Herald (%s) at %s: %s (is it running?)", name, t.Desc, msg)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("herald (%s) at %s is %s, not SERVING", name, t.Desc, resp.GetStatus())
		}
	}
	return nil
}
