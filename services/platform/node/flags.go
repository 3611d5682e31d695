package node

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/herald-feed/herald/services/platform/flagenv"
	"github.com/herald-feed/herald/services/platform/guard"
	"github.com/herald-feed/herald/services/platform/kafkabus"
	"github.com/herald-feed/herald/services/platform/tlsconfig"
)

// Flags holds the runtime's flag values until Config turns them into a
// Config.
type Flags struct {
	c     Config
	level string
	json  bool
}

// BindFlags defines the runtime's flags on fs, each with its HERALD_*
// variable, over the defaults in def (the binary's name and listen
// address). embedded leaves out -etcd and -nats, which the all-in-one
// does not take.
func BindFlags(fs *flagenv.Set, def Config, embedded bool) *Flags {
	def.defaults()
	f := &Flags{c: def}
	c := &f.c
	fs.String(&c.Namespace, "namespace", "HERALD_NAMESPACE", c.Namespace, "deployment name: prefixes etcd keys, NATS subjects and Redis keys")
	fs.String(&c.ListenAddr, "addr", "HERALD_ADDR", c.ListenAddr, "gRPC listen address")
	fs.String(&c.AdvertiseAddr, "advertise", "HERALD_ADVERTISE", "", "address registered in etcd for other processes; default: the listen address")
	fs.String(&c.MetricsAddr, "metrics", "HERALD_METRICS_ADDR", c.MetricsAddr, "HTTP address serving /metrics; empty disables it")
	fs.String(&c.HTTPAddr, "http-addr", "HERALD_HTTP_ADDR", c.HTTPAddr, "HTTP address serving the HTTP/JSON API (/v1/...) for the post, graph and timeline services, each reached in this process or through etcd; empty disables it")
	tlsconfig.Bind(fs, &c.TLS)
	if !embedded {
		fs.List(&c.EtcdEndpoints, "etcd", "HERALD_ETCD_ENDPOINTS", nil, "comma-separated etcd endpoints (required)")
		fs.String(&c.NATSURL, "nats", "HERALD_NATS_URL", "", "NATS server URL (required)")
		fs.Int(&c.NATSReplicas, "nats-replicas", "HERALD_NATS_REPLICAS", 1, "replication factor of the event streams the JetStream bus creates (3 on a NATS cluster); an existing stream is updated to it")
		bindCredentials(fs, c)
	}
	// The all-in-one takes the bus flags too: with -bus kafka it uses an
	// external Kafka, and embeds the rest as before.
	fs.String(&c.Bus, "bus", "HERALD_BUS", c.Bus, "event log: jetstream or kafka")
	fs.List(&c.Kafka.Brokers, "kafka-brokers", "HERALD_KAFKA_BROKERS", nil, "comma-separated Kafka brokers, host:port (with -bus kafka)")
	BindLogin(fs, &c.Kafka.Login, "kafka", "Kafka (SASL/PLAIN)")
	fs.Int(&c.Kafka.Partitions, "kafka-partitions", "HERALD_KAFKA_PARTITIONS", kafkabus.DefaultPartitions, "partitions of each event topic the Kafka bus creates: the bound on the fan-out's parallelism across instances")
	fs.Int(&c.Kafka.Replicas, "kafka-replication-factor", "HERALD_KAFKA_REPLICATION_FACTOR", kafkabus.DefaultReplicas, "replication factor of the topics the Kafka bus creates (3 on a cluster; min.insync.replicas is then 2)")
	fs.Duration(&c.LeaseTTL, "lease-ttl", "HERALD_LEASE_TTL", c.LeaseTTL, "etcd lease TTL behind registrations and worker IDs: how long a dead instance stays in rotation")
	fs.Duration(&c.ShutdownTimeout, "shutdown-timeout", "HERALD_SHUTDOWN_TIMEOUT", c.ShutdownTimeout, "bound on the graceful drain at SIGTERM")
	guard.BindFlags(fs, &c.Guard)
	fs.String(&f.level, "log-level", "HERALD_LOG_LEVEL", "info", "log level: debug, info, warn or error")
	fs.Bool(&f.json, "log-json", "HERALD_LOG_JSON", false, "log JSON instead of text")
	return f
}

// Config checks the parsed values and returns the Config, with a logger
// that writes to stderr.
func (f *Flags) Config(stderr io.Writer) (Config, error) {
	c := f.c
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.level)); err != nil {
		return c, fmt.Errorf("-log-level %q: want debug, info, warn or error", f.level)
	}
	if c.LeaseTTL < time.Second {
		return c, fmt.Errorf("-lease-ttl %v: must be at least 1s", c.LeaseTTL)
	}
	if c.NATSReplicas < 0 {
		return c, fmt.Errorf("-nats-replicas %d: must be at least 1", c.NATSReplicas)
	}
	if c.Bus != BusJetStream && c.Bus != BusKafka {
		return c, fmt.Errorf("-bus %q: want %s or %s", c.Bus, BusJetStream, BusKafka)
	}
	if c.Bus == BusKafka && len(c.Kafka.Brokers) == 0 {
		return c, errors.New("-bus kafka needs -kafka-brokers (HERALD_KAFKA_BROKERS)")
	}
	if c.ShutdownTimeout <= 0 {
		return c, fmt.Errorf("-shutdown-timeout %v: must be positive", c.ShutdownTimeout)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler = slog.NewTextHandler(stderr, opts)
	if f.json {
		h = slog.NewJSONHandler(stderr, opts)
	}
	c.Log = slog.New(h)
	return c, nil
}
