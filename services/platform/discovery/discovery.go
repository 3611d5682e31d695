// Package discovery registers Herald service instances in etcd and finds
// them through etcd's gRPC naming resolver.
//
// An instance puts <namespace>/<service>/<host:port> under a lease that it
// keeps alive. When the process dies, the lease expires after its TTL and
// the key goes with it, so callers stop sending it traffic. Callers dial
// etcd:///<namespace>/<service> and balance round-robin over what is there.
// The namespace (default "herald") separates deployments sharing one etcd.
package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/client/v3/naming/endpoints"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	gresolver "google.golang.org/grpc/resolver"
)

// target is the endpoint-manager target of service. The resolver watches
// target + "/", so "herald/post" never matches "herald/posts/...".
func target(ns, service string) string { return ns + "/" + service }

// Register adds addr as an endpoint of service, bound to the session's
// lease: it disappears when the session ends or its lease expires.
func Register(ctx context.Context, s *concurrency.Session, ns, service, addr string) error {
	em, err := endpoints.NewManager(s.Client(), target(ns, service))
	if err != nil {
		return err
	}
	// Metadata stays nil: newer grpc-go rejects a map there.
	key := target(ns, service) + "/" + addr
	if err := em.AddEndpoint(ctx, key, endpoints.Endpoint{Addr: addr}, clientv3.WithLease(s.Lease())); err != nil {
		return fmt.Errorf("register %s at %s: %w", service, addr, err)
	}
	return nil
}

// Deregister removes addr from service's endpoints at once, ahead of the
// lease expiry, so a graceful shutdown sends no caller to a closing server.
func Deregister(ctx context.Context, cli *clientv3.Client, ns, service, addr string) error {
	em, err := endpoints.NewManager(cli, target(ns, service))
	if err != nil {
		return err
	}
	return em.DeleteEndpoint(ctx, target(ns, service)+"/"+addr)
}

// Endpoints lists service's registered addresses.
func Endpoints(ctx context.Context, cli *clientv3.Client, ns, service string) ([]string, error) {
	em, err := endpoints.NewManager(cli, target(ns, service))
	if err != nil {
		return nil, err
	}
	m, err := em.List(ctx)
	if err != nil {
		return nil, err
	}
	addrs := make([]string, 0, len(m))
	for _, e := range m {
		addrs = append(addrs, e.Addr)
	}
	return addrs, nil
}

// Dial returns a client connection to service that resolves through etcd
// and balances round-robin over its live instances.
//
// The connection is plaintext unless opts hold grpc.WithTransportCredentials
// (tlsconfig.Config.DialOption gives it). Over TLS, each instance's
// certificate is verified against the host of the address it registered,
// not against the dial target, which names no host.
func Dial(cli *clientv3.Client, ns, service string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	opts = append([]grpc.DialOption{
		grpc.WithResolvers(serverNames{builder{cli}}),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
	}, opts...)
	return grpc.NewClient("etcd:///"+target(ns, service), opts...)
}

// builder makes the resolvers of Dial's etcd:/// targets. etcd's own
// (client/v3/naming/resolver) watches once: when its watch ends, it stops
// updating for good, and its connection keeps the addresses it had. A
// watch ends when etcd restarts as a whole (its first calls after the
// restart fail with a timeout) and after a restore from a snapshot (the
// revision it resumes at is compacted, or the restored cluster has not
// reached it yet). Ours lists the service again and watches on from there,
// for as long as the connection lives.
type builder struct{ cli *clientv3.Client }

func (builder) Scheme() string { return "etcd" }

func (b builder) Build(t gresolver.Target, cc gresolver.ClientConn, _ gresolver.BuildOptions) (gresolver.Resolver, error) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &etcdResolver{cancel: cancel, done: make(chan struct{})}
	go r.run(ctx, b.cli, strings.TrimPrefix(t.Endpoint(), "/")+"/", cc)
	return r, nil
}

// etcdResolver follows the registrations under one service's prefix.
type etcdResolver struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// ResolveNow does nothing: the watch says when the addresses change.
func (*etcdResolver) ResolveNow(gresolver.ResolveNowOptions) {}

func (r *etcdResolver) Close() {
	r.cancel()
	<-r.done
}

// run lists the keys under prefix, hands their addresses to cc, and applies
// the watch's events from the list's revision on. When the list fails or
// the watch ends, it starts over after a pause, which grows (up to 5 s)
// while nothing succeeds.
func (r *etcdResolver) run(ctx context.Context, cli *clientv3.Client, prefix string, cc gresolver.ClientConn) {
	defer close(r.done)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		if resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix()); err == nil {
			addrs := map[string]string{}
			for _, kv := range resp.Kvs {
				if a, ok := endpointAddr(kv.Value); ok {
					addrs[string(kv.Key)] = a
				}
			}
			update(cc, addrs)
			wait = 100 * time.Millisecond
			for wr := range cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
				if wr.Err() != nil {
					break
				}
				for _, ev := range wr.Events {
					if a, ok := endpointAddr(ev.Kv.Value); ok && ev.Type == clientv3.EventTypePut {
						addrs[string(ev.Kv.Key)] = a
					} else {
						delete(addrs, string(ev.Kv.Key))
					}
				}
				update(cc, addrs)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// update hands the addresses to cc, one endpoint each.
func update(cc gresolver.ClientConn, addrs map[string]string) {
	eps := make([]gresolver.Endpoint, 0, len(addrs))
	for _, a := range addrs {
		eps = append(eps, gresolver.Endpoint{Addresses: []gresolver.Address{{Addr: a}}})
	}
	cc.UpdateState(gresolver.State{Endpoints: eps})
}

// endpointAddr returns the address of a registration's value, which
// endpoints.Manager writes as JSON.
func endpointAddr(v []byte) (string, bool) {
	var e struct{ Addr string }
	if err := json.Unmarshal(v, &e); err != nil || e.Addr == "" {
		return "", false
	}
	return e.Addr, true
}

// serverNames is an etcd resolver whose addresses carry their host as
// their TLS server name. Without it, grpc-go would check every instance's
// certificate against the target's "<namespace>/<service>". The names come
// from the deployment's own etcd, which callers already trust to say where
// the service is.
type serverNames struct{ gresolver.Builder }

func (b serverNames) Build(t gresolver.Target, cc gresolver.ClientConn, o gresolver.BuildOptions) (gresolver.Resolver, error) {
	return b.Builder.Build(t, namingConn{cc}, o)
}

// namingConn names the addresses of the etcd resolver's updates, which
// list them by endpoint only.
type namingConn struct{ gresolver.ClientConn }

func (c namingConn) UpdateState(s gresolver.State) error {
	for _, ep := range s.Endpoints {
		for i, a := range ep.Addresses {
			if host, _, err := net.SplitHostPort(a.Addr); err == nil && host != "" {
				ep.Addresses[i].ServerName = host
			}
		}
	}
	return c.ClientConn.UpdateState(s)
}

// AcquireWorkerID claims the lowest free worker ID in [0, max] under the
// session's lease. While the lease lives no other process can claim the
// same ID, so two live post instances never mint the same post ID.
func AcquireWorkerID(ctx context.Context, s *concurrency.Session, ns string, max int, owner string) (int, error) {
	cli := s.Client()
	for id := 0; id <= max; id++ {
		key := ns + "/workers/" + strconv.Itoa(id)
		resp, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, owner, clientv3.WithLease(s.Lease()))).
			Commit()
		if err != nil {
			return 0, fmt.Errorf("acquire worker id: %w", err)
		}
		if resp.Succeeded {
			return id, nil
		}
	}
	return 0, fmt.Errorf("acquire worker id: all %d IDs are leased", max+1)
}

// NewSession starts a lease with the given TTL that the client keeps alive
// in the background until ctx ends.
func NewSession(ctx context.Context, cli *clientv3.Client, ttl time.Duration) (*concurrency.Session, error) {
	return StartSession(ctx, ctx, cli, ttl)
}

// StartSession is NewSession with two contexts: ctx bounds the grant of
// the lease, and the client keeps it alive until life ends. (A session
// granted under its own context alone waits as long as etcd does not
// answer: without a quorum, for ever.)
func StartSession(ctx, life context.Context, cli *clientv3.Client, ttl time.Duration) (*concurrency.Session, error) {
	secs := int(ttl / time.Second)
	if secs < 1 {
		secs = 1
	}
	grant, err := cli.Grant(ctx, int64(secs))
	if err != nil {
		return nil, fmt.Errorf("etcd session: grant a lease: %w", err)
	}
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(secs), concurrency.WithLease(grant.ID), concurrency.WithContext(life))
	if err != nil {
		return nil, fmt.Errorf("etcd session: %w", err)
	}
	return s, nil
}
