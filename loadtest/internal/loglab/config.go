package loglab

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/herald-feed/herald/services/platform/node"
)

// The lab's sections, in the order they run and appear in the table.
const (
	SectionProduce    = "produce"
	SectionOrdering   = "ordering"
	SectionRedelivery = "redelivery"
	SectionRebalance  = "rebalance"
	SectionPipeline   = "pipeline"
)

// AllSections lists every section.
var AllSections = []string{SectionProduce, SectionOrdering, SectionRedelivery, SectionRebalance, SectionPipeline}

// Servers says where the lab's servers are. An empty list leaves out the
// cells that need that server, and the table says so.
type Servers struct {
	// JetStream is the running single nats-server (deploy/local/nats.sh),
	// with its default sync: the ordering, redelivery, rebalance and
	// pipeline sections run on it too. NATSLogin is Herald's login there.
	JetStream []string
	NATSLogin node.Login
	// JetStreamSync is a single nats-server with `sync_interval: always`:
	// an fsync before every ack.
	JetStreamSync []string
	// JetStreamR3 and JetStreamR3Sync are three-node clusters, one with
	// the default sync and one with sync always; the lab's streams there
	// have three replicas.
	JetStreamR3, JetStreamR3Sync []string
	// Kafka is the running single broker (deploy/local/kafka.sh), on which
	// the consumer sections run too. KafkaLogin is Herald's SASL/PLAIN
	// login there.
	Kafka      []string
	KafkaLogin node.Login
	// Kafka3 is a three-broker KRaft cluster; the lab's topics there have
	// three replicas and min.insync.replicas 2.
	Kafka3 []string
}

// The lab's own servers (every list but JetStream and Kafka) take no login:
// they are on loopback, hold throwaway data, and live for one run.

// Config is one run of the lab.
type Config struct {
	Servers Servers
	// Sections are the parts to run (AllSections by default).
	Sections []string
	// Namespace prefixes every stream, subject, topic and consumer group
	// the run creates on the servers; each cell adds its own suffix, and
	// the run deletes what it created.
	Namespace string

	// InFlight is the publishes in flight in a producer cell, each from
	// its own goroutine.
	InFlight int
	// ProduceEvents and ProduceDuration bound each producer cell,
	// whichever comes first. Each cell publishes for Warmup first (at
	// most ProduceEvents events), unmeasured: the lab's own servers start
	// cold, and a JVM's first seconds measure its JIT compiler.
	ProduceEvents   int
	ProduceDuration time.Duration
	Warmup          time.Duration
	// ColdWarmup replaces Warmup in the first cell on the three-broker
	// Kafka cluster, which the lab's script has just started: a JVM
	// compiles its hot paths only after many thousand requests, and the
	// running single broker has long been warm.
	ColdWarmup time.Duration

	// Authors and PerAuthor shape the ordering section's stream: each
	// author's events carry increasing post IDs. HandlerWork is how long
	// each handler there sleeps, standing in for the fan-out's write.
	Authors, PerAuthor int
	HandlerWork        time.Duration

	// Consumer is the command line that runs the lab's consumer process
	// (RunConsumer): the lab binary and its hidden subcommand.
	Consumer []string
	// RedeliveryEvents is the backlog the two consumer processes share;
	// RedeliveryWork is each handler's sleep there, and
	// RedeliveryWorkers each process's workers. AckWait is the JetStream
	// consumer's; Kafka's bound is the session timeout.
	RedeliveryEvents  int
	RedeliveryWork    time.Duration
	RedeliveryWorkers int
	AckWait           time.Duration
	SessionTimeout    time.Duration

	// RebalanceRate is the steady publish rate of the rebalance section,
	// and RebalancePhase the length of each of its phases: one instance,
	// two instances, one again.
	RebalanceRate  float64
	RebalancePhase time.Duration

	// Herald is the all-in-one binary the pipeline section starts on each
	// bus; PipelineUsers, PipelinePostRate, PipelineReadRate and
	// PipelineDuration its workload (feedload's, in process).
	Herald           string
	PipelineUsers    int
	PipelinePostRate float64
	PipelineReadRate float64
	PipelineDuration time.Duration

	// WorkDir holds the all-in-ones' data dirs (removed after each) and the
	// logs of every process the lab starts.
	WorkDir string
	// Progress gets a line per step; nil for none.
	Progress io.Writer
	// Log gets the adapters' and clients' logs; nil discards them.
	Log *slog.Logger
}

// DefaultConfig returns the lab's defaults: every section, bounded to run
// in about five minutes on two cores.
func DefaultConfig() Config {
	return Config{
		Sections:          slices.Clone(AllSections),
		InFlight:          64,
		ProduceEvents:     20000,
		ProduceDuration:   5 * time.Second,
		Warmup:            2 * time.Second,
		ColdWarmup:        20 * time.Second,
		Authors:           50,
		PerAuthor:         100,
		HandlerWork:       time.Millisecond,
		RedeliveryEvents:  4000,
		RedeliveryWork:    5 * time.Millisecond,
		RedeliveryWorkers: 4,
		AckWait:           5 * time.Second,
		SessionTimeout:    10 * time.Second,
		RebalanceRate:     200,
		RebalancePhase:    4 * time.Second,
		PipelineUsers:     1000,
		PipelinePostRate:  20,
		PipelineReadRate:  20,
		PipelineDuration:  15 * time.Second,
	}
}

// Validate reports the first problem with c. The bounds keep a mistyped
// flag from turning the lab into an unbounded load.
func (c Config) Validate() error {
	for _, s := range c.Sections {
		if !slices.Contains(AllSections, s) {
			return fmt.Errorf("section %q: want some of %s", s, strings.Join(AllSections, ","))
		}
	}
	switch {
	case len(c.Sections) == 0:
		return errors.New("no sections to run")
	case !validNamespace(c.Namespace):
		return fmt.Errorf("namespace %q: want 1 to 40 of [a-z0-9]", c.Namespace)
	case c.InFlight < 1 || c.InFlight > 1024:
		return errors.New("in flight must be between 1 and 1024")
	case c.ProduceEvents < 1 || c.ProduceEvents > 1_000_000:
		return errors.New("produce events must be between 1 and 1,000,000")
	case c.ProduceDuration <= 0 || c.ProduceDuration > time.Minute:
		return errors.New("produce duration must be between 0 and 1m")
	case c.Warmup < 0 || c.Warmup > time.Minute || c.ColdWarmup < 0 || c.ColdWarmup > time.Minute:
		return errors.New("warm-ups must be between 0 and 1m")
	case c.Authors < 1 || c.PerAuthor < 1 || c.Authors*c.PerAuthor > 100_000:
		return errors.New("authors and events per author must be at least 1, and at most 100,000 events in all")
	case c.HandlerWork < 0 || c.HandlerWork > time.Second || c.RedeliveryWork < 0 || c.RedeliveryWork > time.Second:
		return errors.New("handler work must be between 0 and 1s")
	case c.RedeliveryEvents < 100 || c.RedeliveryEvents > 100_000:
		return errors.New("redelivery events must be between 100 and 100,000")
	case c.RedeliveryWorkers < 1 || c.RedeliveryWorkers > 64:
		return errors.New("redelivery workers must be between 1 and 64")
	case c.AckWait < time.Second || c.AckWait > time.Minute:
		return errors.New("ack wait must be between 1s and 1m")
	case c.SessionTimeout < 6*time.Second || c.SessionTimeout > time.Minute:
		return errors.New("session timeout must be between 6s (the broker's minimum) and 1m")
	case c.RebalanceRate <= 0 || c.RebalanceRate > 5000:
		return errors.New("rebalance rate must be between 0 and 5,000 per second")
	case c.RebalancePhase < 2*time.Second || c.RebalancePhase > time.Minute:
		return errors.New("rebalance phase must be between 2s and 1m")
	case c.PipelineUsers < 10 || c.PipelineUsers > 100_000:
		return errors.New("pipeline users must be between 10 and 100,000")
	case c.PipelinePostRate <= 0 || c.PipelinePostRate > 1000 || c.PipelineReadRate < 0 || c.PipelineReadRate > 5000:
		return errors.New("pipeline rates must be at most 1,000 posts and 5,000 reads per second")
	case c.PipelineDuration <= 0 || c.PipelineDuration > 5*time.Minute:
		return errors.New("pipeline duration must be between 0 and 5m")
	case c.has(SectionRedelivery) && len(c.Consumer) == 0:
		return errors.New("the redelivery section needs the consumer process's command line")
	case c.has(SectionPipeline) && c.Herald == "":
		return errors.New("the pipeline section needs the all-in-one binary")
	case c.WorkDir == "":
		return errors.New("no work dir")
	}
	return nil
}

func (c Config) has(section string) bool { return slices.Contains(c.Sections, section) }

// validNamespace: the namespace becomes part of NATS subjects and stream
// names and of Kafka topic and group names, so it keeps to what all allow.
func validNamespace(ns string) bool {
	if len(ns) < 1 || len(ns) > 40 {
		return false
	}
	for _, r := range ns {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

func (c Config) logf(format string, args ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, format+"\n", args...)
	}
}
