// Package node is the runtime every Herald process shares, and nothing
// else: the etcd client and session, the event-bus connection, the gRPC
// server with health and reflection, the metrics registry and its HTTP
// listener, tracing (off unless OTEL_* variables turn it on), the logger,
// and the lifecycle (start, background workers,
// ordered shutdown).
//
// A node opens no store or cache and holds no service's settings: each
// service's app package owns those, and adds itself to a node with its
// gRPC API (Node.GRPC), its announcement (Node.Announce), its background
// workers (Node.Go) and its shutdown hooks (Node.OnDrain). One process holds
// one service (cmd/post, ...) or all four (the all-in-one herald binary).
package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	grpccredentials "google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/herald-feed/herald/services/platform/auth"
	"github.com/herald-feed/herald/services/platform/bus"
	"github.com/herald-feed/herald/services/platform/discovery"
	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/grpcserver"
	"github.com/herald-feed/herald/services/platform/guard"
	"github.com/herald-feed/herald/services/platform/health"
	"github.com/herald-feed/herald/services/platform/httpapi"
	"github.com/herald-feed/herald/services/platform/kafkabus"
	"github.com/herald-feed/herald/services/platform/pagetoken"
	"github.com/herald-feed/herald/services/platform/tlsconfig"
	"github.com/herald-feed/herald/services/platform/tracing"
)

// Defaults of the runtime's settings, each stated once.
const (
	DefaultNamespace       = "herald"
	DefaultLeaseTTL        = 10 * time.Second
	DefaultShutdownTimeout = 10 * time.Second
)

// The event logs Config.Bus names.
const (
	BusJetStream = "jetstream"
	BusKafka     = "kafka"
)

// KafkaConfig is the Kafka bus's part of Config.
type KafkaConfig struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string
	// Login is Herald's SASL/PLAIN user on the brokers.
	Login Login
	// Partitions and Replicas shape the topics the bus creates when they
	// are missing; 0 takes kafkabus's defaults.
	Partitions, Replicas int
}

// Config configures a Node. Zero values take the defaults above.
type Config struct {
	// Name names this process in logs and to NATS.
	Name string
	// Namespace names the deployment, so several can share the same etcd,
	// NATS and Redis: it prefixes etcd keys, NATS subjects and Redis keys.
	Namespace string
	// ListenAddr is the gRPC listen address.
	ListenAddr string
	// AdvertiseAddr is the address registered in etcd for other processes
	// to dial. Default: the address actually listened on.
	AdvertiseAddr string
	// MetricsAddr serves /metrics over HTTP; empty disables it. A port
	// that is taken is a start-up error.
	MetricsAddr string
	// HTTPAddr serves the HTTP/JSON API (package httpapi) under /v1/, and
	// whatever the apps add to Node.HTTP (the all-in-one's console); empty
	// disables it. Each service's routes go to this process's own gRPC
	// server if it runs the service, else to the service's instances.
	HTTPAddr string
	// TLS names the PEM files of the gRPC listener's certificate, and the
	// CAs of mutual TLS between services; the zero value is plaintext.
	// Dial's calls use the same settings: see package tlsconfig.
	TLS tlsconfig.Files

	// EtcdEndpoints are the etcd client endpoints (host:port, or
	// unix://path).
	EtcdEndpoints []string
	// NATSURL is the NATS server URL.
	NATSURL string
	// NATSReplicas is the replication factor of the event streams the
	// JetStream bus creates: 1 on one server, 3 on a NATS cluster.
	NATSReplicas int
	// ConnectNATS, if set, makes the NATS connection instead of NATSURL:
	// the all-in-one connects in process to its embedded server.
	ConnectNATS func(opts ...nats.Option) (*nats.Conn, error)
	// EtcdLogin and NATSLogin are the users this process logs in to etcd
	// and NATS as; the zero Login connects without one (credentials.go).
	EtcdLogin Login
	NATSLogin Login

	// Bus names the event log: BusJetStream (the default) or BusKafka.
	// On Kafka the process needs no NATS.
	Bus string
	// Kafka configures the event log when Bus is BusKafka.
	Kafka KafkaConfig

	// LeaseTTL is the etcd lease TTL behind registrations and worker IDs:
	// how long a dead instance stays in rotation.
	LeaseTTL time.Duration
	// ShutdownTimeout bounds the whole graceful drain.
	ShutdownTimeout time.Duration

	// Guard holds authentication and rate limits (see package guard).
	Guard guard.Settings

	Log *slog.Logger

	// TracerProvider, if set, traces this process instead of the provider
	// the OTEL_* variables describe (package tracing): a benchmark's, with
	// an exporter of its own.
	TracerProvider trace.TracerProvider
}

func (c *Config) defaults() {
	if c.Name == "" {
		c.Name = "herald"
	}
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.Bus == "" {
		c.Bus = BusJetStream
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// Node is one running Herald process.
type Node struct {
	cfg Config
	Log *slog.Logger

	Etcd *clientv3.Client
	// NATS is nil on the Kafka bus.
	NATS *nats.Conn
	// Bus is the event log, on JetStream or Kafka (Config.Bus).
	Bus event.AdminLog

	// Tokens signs page tokens with a key shared by every process of the
	// deployment through etcd.
	Tokens  *pagetoken.Codec
	Metrics *prometheus.Registry
	GRPC    *grpcserver.Server
	// Guard authenticates calls and limits their rate; a service with a
	// shared store for limits (Redis) gives it one with UseLimiter.
	Guard *guard.Guard
	// Health probes the servers this process depends on while it runs
	// (herald_dependency_up): etcd and the event log from New, the store
	// and the cache as the services add them.
	Health *health.Watcher

	// serviceCreds sign this process's calls to other services, if the
	// deployment has a service key.
	serviceCreds grpccredentials.PerRPCCredentials

	// HTTP is the mux of Config.HTTPAddr, nil without one: the API takes
	// /v1/, and apps may add their own paths (not under /v1/) before Run.
	HTTP *http.ServeMux

	tls        *tlsconfig.Config // nil: plaintext
	httpLis    net.Listener
	tracing    *tracing.Tracing
	lis        net.Listener
	metricsLis net.Listener
	services   []string
	workers    []func(context.Context) error
	drains     []func()

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn

	closers []func() // run in reverse order by Close
	// life is the context of the leases' keep-alives: it ends at Close,
	// not at the shutdown signal, so that a draining process keeps its
	// worker ID while it finishes its calls.
	life    context.Context
	endLife context.CancelFunc

	// lease is the current etcd lease (see Lease); leaseHooks run with
	// each new one.
	leaseMu    sync.Mutex
	lease      *Lease
	leaseHooks []func(context.Context, *Lease) error
	leasesLost prometheus.Counter
}

// New connects everything and listens, but serves nothing until Run. On
// failure it returns the real error, naming the address or endpoint that
// failed, and releases what it had opened.
func New(ctx context.Context, cfg Config) (n *Node, err error) {
	cfg.defaults()
	if err := feed.ValidateUserID("namespace", cfg.Namespace); err != nil {
		return nil, err
	}
	n = &Node{cfg: cfg, Log: cfg.Log.With("node", cfg.Name), conns: make(map[string]*grpc.ClientConn)}
	// A failed New returns nil, which the deferred call must not close:
	// it closes the half-built node it captured here.
	built := n
	defer func() {
		if err != nil {
			built.Close()
		}
	}()
	if len(cfg.EtcdEndpoints) == 0 {
		return nil, errors.New("no etcd endpoints configured (-etcd)")
	}
	switch cfg.Bus {
	case BusJetStream:
		if cfg.NATSURL == "" && cfg.ConnectNATS == nil {
			return nil, errors.New("no NATS server configured (-nats)")
		}
	case BusKafka:
		if len(cfg.Kafka.Brokers) == 0 {
			return nil, errors.New("-bus kafka needs brokers (-kafka-brokers)")
		}
	default:
		return nil, fmt.Errorf("-bus %q: want %s or %s", cfg.Bus, BusJetStream, BusKafka)
	}
	creds, err := cfg.readLogins()
	if err != nil {
		return nil, err
	}

	// Keys next: a missing or unreadable key file is a configuration
	// error, found before anything is opened.
	gcfg, svcKey, err := cfg.Guard.Open(n.Log)
	if err != nil {
		return nil, err
	}

	// The TLS files too: a certificate that does not load fails here.
	if n.tls, err = tlsconfig.Load(cfg.TLS, n.Log); err != nil {
		return nil, err
	}

	// Tracing, from the OTEL_* variables: off unless they ask for it. Its
	// closer, the first added, runs last and exports what is left.
	if cfg.TracerProvider != nil {
		n.tracing = tracing.Use(cfg.TracerProvider)
	} else if n.tracing, err = tracing.Setup(ctx, cfg.Name, n.Log); err != nil {
		return nil, err
	}
	tr := n.tracing
	n.onClose(func() {
		if err := tr.Shutdown(context.Background()); err != nil {
			n.Log.Warn("tracing shutdown", "err", err)
		}
	})

	// Listen first: a taken port is the commonest start-up error, and
	// costs nothing to find.
	if n.lis, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
		return nil, fmt.Errorf("listen for gRPC on %s: %w", cfg.ListenAddr, err)
	}
	lis := n.lis
	n.onClose(func() { lis.Close() })
	if cfg.MetricsAddr != "" {
		if n.metricsLis, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return nil, fmt.Errorf("listen for metrics on %s: %w", cfg.MetricsAddr, err)
		}
		ml := n.metricsLis
		n.onClose(func() { ml.Close() })
	}
	if cfg.HTTPAddr != "" {
		if n.httpLis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return nil, fmt.Errorf("listen for HTTP on %s: %w", cfg.HTTPAddr, err)
		}
		hl := n.httpLis
		n.onClose(func() { hl.Close() })
		n.HTTP = http.NewServeMux()
	}

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.EtcdEndpoints,
		Username:    creds.etcdUser,
		Password:    creds.etcdPassword,
		DialTimeout: 5 * time.Second,
		Logger:      zapNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %v: %w", cfg.EtcdEndpoints, err)
	}
	n.Etcd = cli
	n.onClose(func() { cli.Close() })
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	// The leases' keep-alives run until Close, not until the shutdown
	// signal: see Node.Lease.
	life, endLife := context.WithCancel(context.WithoutCancel(ctx))
	n.life, n.endLife = life, endLife
	n.leasesLost = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "herald_etcd_leases_lost_total",
		Help: "etcd leases this process lost (expired, or given up after a TTL without an answer) and replaced while it ran.",
	})
	// Under ctx, not sctx: on a loaded machine etcd's first answer (the login
	// behind it) may take longer than sctx allows.
	lease, err := n.newLease(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("etcd %v: %w", cfg.EtcdEndpoints, err)
	}
	n.lease = lease
	n.onClose(func() { built.release(built.Lease()) }) // n is nil if New fails
	key, err := sharedTokenKey(sctx, cli, cfg.Namespace+"/config/page-token-key")
	if err != nil {
		return nil, err
	}
	n.Tokens = pagetoken.New(key)

	n.Metrics = prometheus.NewRegistry()
	n.Metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), n.leasesLost)
	n.Health = health.NewWatcher(n.Metrics, n.Log, 0, 0)
	tokenKey := cfg.Namespace + "/config/page-token-key"
	n.Health.Add(health.Probe{Dependency: "etcd", Server: "etcd", Check: func(ctx context.Context) error {
		// A linearizable read: it needs the quorum, as leases and
		// registrations do.
		_, err := cli.Get(ctx, tokenKey, clientv3.WithKeysOnly())
		return err
	}})
	// Its own deadline, longer than sctx's: a cluster that has just come
	// back (every node restarted) takes a while to elect its streams'
	// leaders, and the bus waits for them (bus.New).
	bctx, bcancel := context.WithTimeout(ctx, busStartTimeout)
	defer bcancel()
	if err := n.openBus(bctx, creds); err != nil {
		return nil, err
	}
	n.Health.Add(n.busProbe())
	n.Guard = guard.New(gcfg, n.Metrics)
	if svcKey != nil {
		n.serviceCreds = auth.ServiceCredentials(auth.NewServiceSigner(svcKey), cfg.Name)
	}
	n.GRPC = grpcserver.New(n.Log, n.Metrics, grpcserver.Config{
		Unary:   []grpc.UnaryServerInterceptor{n.Guard.Unary},
		Stream:  []grpc.StreamServerInterceptor{n.Guard.Stream},
		Options: append(n.tls.ServerOptions(), n.tracing.ServerOptions()...),
	})
	return n, nil
}

// busStartTimeout bounds the connection to the event log at start, its
// streams or topics created or checked.
const busStartTimeout = time.Minute

// openBus connects the event log that cfg.Bus names.
func (n *Node) openBus(ctx context.Context, creds logins) error {
	cfg := n.cfg
	if cfg.Bus == BusKafka {
		kb, err := kafkabus.New(ctx, kafkabus.Config{
			Brokers: cfg.Kafka.Brokers, User: creds.kafkaUser, Password: creds.kafkaPassword,
			Namespace: cfg.Namespace, Partitions: int32(cfg.Kafka.Partitions), Replicas: int16(cfg.Kafka.Replicas),
			ClientID: cfg.Name, Metrics: n.Metrics,
		}, n.Log)
		if err != nil {
			return err
		}
		n.onClose(kb.Close)
		n.Bus = kb
		return nil
	}
	natsOpts := []nats.Option{nats.Name(cfg.Name), nats.MaxReconnects(-1), nats.ReconnectWait(500 * time.Millisecond)}
	natsOpts = append(natsOpts, creds.nats...)
	var err error
	if cfg.ConnectNATS != nil {
		n.NATS, err = cfg.ConnectNATS(natsOpts...)
	} else {
		n.NATS, err = nats.Connect(cfg.NATSURL, natsOpts...)
	}
	if err != nil {
		return fmt.Errorf("nats %s: %w", cfg.NATSURL, err)
	}
	n.onClose(n.NATS.Close)
	b, err := bus.New(ctx, n.NATS, bus.Config{Namespace: cfg.Namespace, Replicas: cfg.NATSReplicas, Metrics: n.Metrics}, n.Log)
	if err != nil {
		return err
	}
	n.Bus = b
	return nil
}

// busProbe checks the event log: a round trip to the NATS server, or a
// Kafka broker's answer to a metadata request.
func (n *Node) busProbe() health.Probe {
	if n.NATS != nil {
		nc := n.NATS
		return health.Probe{Dependency: "event_log", Server: "nats", Check: nc.FlushWithContext}
	}
	pinger, _ := n.Bus.(interface{ Ping(context.Context) error })
	return health.Probe{Dependency: "event_log", Server: "kafka", Check: func(ctx context.Context) error {
		if pinger == nil {
			return errors.New("the event log has no probe")
		}
		return pinger.Ping(ctx)
	}}
}

// Addr returns the address other processes should dial.
func (n *Node) Addr() string {
	if n.cfg.AdvertiseAddr != "" {
		return n.cfg.AdvertiseAddr
	}
	return n.lis.Addr().String()
}

// Namespace returns the deployment's namespace.
func (n *Node) Namespace() string { return n.cfg.Namespace }

// MetricsAddr returns the address serving /metrics, or "".
func (n *Node) MetricsAddr() string {
	if n.metricsLis == nil {
		return ""
	}
	return n.metricsLis.Addr().String()
}

// HTTPAddr returns the address serving the HTTP API, or "".
func (n *Node) HTTPAddr() string {
	if n.httpLis == nil {
		return ""
	}
	return n.httpLis.Addr().String()
}

// Announce says that this process serves the named service ("post",
// "graph", "fanout", "timeline"), with the given gRPC service names for
// health checks. Run registers each announced service in etcd. Call it
// before Run.
func (n *Node) Announce(service string, grpcServices ...string) {
	n.services = append(n.services, service)
	for _, s := range grpcServices {
		n.GRPC.Health.SetServingStatus(s, healthpb.HealthCheckResponse_SERVING)
	}
}

// Go adds a background worker. Run starts it and, at shutdown, cancels its
// context first, before the gRPC server drains, and waits for it: a
// consumer then finishes or returns its in-flight messages while the
// services they call still serve. A worker that returns an error stops the
// process.
func (n *Node) Go(worker func(ctx context.Context) error) {
	n.workers = append(n.workers, worker)
}

// OnDrain adds a hook that runs when the shutdown begins, before the
// workers stop and the gRPC server drains: the timeline service ends its
// open streams there, which would otherwise hold the drain.
func (n *Node) OnDrain(f func()) { n.drains = append(n.drains, f) }

// Dial returns a shared client connection to a Herald service, found
// through etcd, over TLS if Config.TLS names a certificate.
func (n *Node) Dial(service string) (*grpc.ClientConn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c, ok := n.conns[service]; ok {
		return c, nil
	}
	opts := append([]grpc.DialOption{n.tls.DialOption()}, n.tracing.DialOptions()...)
	if n.serviceCreds != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(n.serviceCreds))
	}
	c, err := discovery.Dial(n.Etcd, n.cfg.Namespace, service, opts...)
	if err != nil {
		return nil, err
	}
	n.conns[service] = c
	return c, nil
}

// Run serves until ctx ends, then shuts down in this order, all of it
// bounded by ShutdownTimeout. A lost etcd lease does not end it: the
// process serves on and takes a new one (see Lease).
//
//  1. health says NOT_SERVING, and the OnDrain hooks run (open streams end
//     with UNAVAILABLE "server shutting down"; new ones are refused);
//  2. the workers stop taking messages, and finish or return the ones in
//     flight, while the services they call still serve;
//  3. the gRPC server stops accepting calls and drains the unary ones;
//  4. the services leave etcd.
//
// Close then ends the lease and the connections.
func (n *Node) Run(ctx context.Context) error {
	// The workers' context is not ctx's child: it ends when the drain
	// says so, and a worker's failure is told from the signal.
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorkers()
	g, gctx := errgroup.WithContext(wctx)

	serveErr := make(chan error, 1)
	go func() { serveErr <- n.GRPC.Serve(n.lis) }()
	hctx, stopHealth := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHealth()
	go n.Health.Run(hctx)
	if n.metricsLis != nil {
		srv := &http.Server{Handler: n.metricsHandler(), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(n.metricsLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.Log.Error("metrics server", "addr", n.MetricsAddr(), "err", err)
			}
		}()
		defer srv.Close()
	}

	for _, s := range n.services {
		lease := n.Lease()
		err := discovery.Register(ctx, lease.Session, n.cfg.Namespace, s, n.Addr())
		if err != nil && (errors.Is(err, rpctypes.ErrLeaseNotFound) || lease.Lost()) && ctx.Err() == nil {
			// The first lease lapsed before the process got this far (a
			// start slowed past the TTL): take a new one, which registers
			// every service.
			err = n.renewLease(ctx, nil, lease)
			if err == nil {
				break
			}
		}
		if err != nil {
			n.GRPC.Stop()
			if ctx.Err() != nil {
				return nil // a signal during start-up
			}
			return fmt.Errorf("register %s in etcd: %w", s, err)
		}
	}
	var httpSrv *http.Server
	if n.httpLis != nil {
		api, err := httpapi.Handler(ctx, n.apiConn)
		if err != nil {
			n.GRPC.Stop()
			return err
		}
		// The API takes its paths as they come: ServeMux would redirect
		// "/v1/users//home" to a cleaned path, where the gateway answers
		// an empty user_id with 400 naming it.
		mux := n.HTTP
		root := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/v1/") {
				api.ServeHTTP(w, r)
				return
			}
			mux.ServeHTTP(w, r)
		})
		httpSrv = &http.Server{Handler: root, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := httpSrv.Serve(n.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.Log.Error("http server", "addr", n.HTTPAddr(), "err", err)
			}
		}()
		defer httpSrv.Close()
	}
	n.GRPC.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	n.Log.Info("serving", "addr", n.Addr(), "services", n.services, "metrics", n.MetricsAddr(), "http", n.HTTPAddr())

	for _, w := range n.workers {
		g.Go(func() error { return w(gctx) })
	}
	var fatal error
	for stop := false; !stop; {
		lease := n.Lease()
		select {
		case <-ctx.Done():
			stop = true
		case <-gctx.Done():
			fatal, stop = fmt.Errorf("a background worker failed: %w", context.Cause(gctx)), true
		case err := <-serveErr:
			fatal, stop = fmt.Errorf("grpc server: %w", err), true
		case <-lease.Done():
			if err := n.renewLease(ctx, gctx.Done(), lease); err != nil {
				stop = true
				if ctx.Err() == nil {
					fatal = fmt.Errorf("a background worker failed while the etcd lease was lost: %w", context.Cause(gctx))
				}
			}
		}
	}
	return errors.Join(fatal, n.drain(stopWorkers, g, httpSrv))
}

// apiConn is the HTTP API's connection to service: this process's own
// gRPC server if it runs the service, else the service's instances found
// through etcd. Either way without the service credentials of Dial: the
// calls act as the HTTP client's bearer token says.
func (n *Node) apiConn(service string) (grpc.ClientConnInterface, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	key := "http-api:" + service
	if c, ok := n.conns[key]; ok {
		return c, nil
	}
	opts := append([]grpc.DialOption{n.tls.DialOption()}, n.tracing.DialOptions()...)
	var c *grpc.ClientConn
	var err error
	if slices.Contains(n.services, service) {
		c, err = grpc.NewClient(dialable(n.lis.Addr()), opts...)
	} else {
		c, err = discovery.Dial(n.Etcd, n.cfg.Namespace, service, opts...)
	}
	if err != nil {
		return nil, err
	}
	n.conns[key] = c
	return c, nil
}

// dialable is the loopback form of a listener's address: one bound to
// every interface is dialled on 127.0.0.1.
func dialable(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(ta.Port))
	}
	return a.String()
}

// drain runs the shutdown of Run.
func (n *Node) drain(stopWorkers func(), workers *errgroup.Group, httpSrv *http.Server) error {
	start := time.Now()
	deadline := start.Add(n.cfg.ShutdownTimeout)
	n.Log.Info("shutting down", "timeout", n.cfg.ShutdownTimeout)
	n.GRPC.Health.Shutdown()
	for _, f := range n.drains {
		f()
	}
	// HTTP calls are gRPC calls of their own: they finish while the gRPC
	// server still serves (the streams have just ended, above).
	if httpSrv != nil {
		hctx, cancel := context.WithDeadline(context.Background(), start.Add(n.cfg.ShutdownTimeout/2))
		if err := httpSrv.Shutdown(hctx); err != nil {
			n.Log.Warn("http drain timed out; closing remaining requests", "err", err)
		}
		cancel()
	}

	stopWorkers()
	done := make(chan error, 1)
	go func() { done <- workers.Wait() }()
	var werr error
	select {
	case werr = <-done:
	case <-time.After(time.Until(deadline)):
		n.Log.Warn("workers still busy at the shutdown timeout; their unacked messages will be redelivered")
	}

	stopped := make(chan struct{})
	go func() { n.GRPC.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(max(time.Until(deadline), 0)):
		n.Log.Warn("drain timed out; closing remaining RPCs")
		n.GRPC.Stop()
	}

	dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range n.services {
		if err := discovery.Deregister(dctx, n.Etcd, n.cfg.Namespace, s, n.Addr()); err != nil {
			n.Log.Warn("deregister", "service", s, "err", err)
		}
	}
	n.Log.Info("drained", "took", time.Since(start).Round(time.Millisecond))
	return werr
}

func (n *Node) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(n.Metrics, promhttp.HandlerOpts{Registry: n.Metrics}))
	return mux
}

// Close releases everything New opened, in reverse order: the service
// connections, the session (its lease is revoked), NATS, etcd and the
// listeners. It is safe on a Node that failed half-way through New.
func (n *Node) Close() {
	n.mu.Lock()
	for _, c := range n.conns {
		c.Close()
	}
	n.conns = nil
	n.mu.Unlock()
	for i := len(n.closers) - 1; i >= 0; i-- {
		n.closers[i]()
	}
	n.closers = nil
	if n.endLife != nil {
		n.endLife()
	}
}

func (n *Node) onClose(f func()) { n.closers = append(n.closers, f) }

// sharedTokenKey returns the deployment's page-token key from etcd,
// creating it on first use, so every instance signs and checks tokens with
// the same key and a token survives a hop between instances or a restart.
func sharedTokenKey(ctx context.Context, cli *clientv3.Client, tokenKeyName string) ([]byte, error) {
	fresh := make([]byte, 32)
	rand.Read(fresh)
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(tokenKeyName), "=", 0)).
		Then(clientv3.OpPut(tokenKeyName, string(fresh))).
		Else(clientv3.OpGet(tokenKeyName)).
		Commit()
	if err != nil {
		return nil, feed.Unavailable("etcd", fmt.Errorf("page token key: %w", err))
	}
	if resp.Succeeded {
		return fresh, nil
	}
	return resp.Responses[0].GetResponseRange().Kvs[0].Value, nil
}
