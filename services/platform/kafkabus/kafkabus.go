// Package kafkabus is Herald's event log (the port in package event) on
// Kafka, with franz-go: the second adapter beside bus (NATS JetStream),
// chosen with -bus kafka. It passes the same contract suite (eventtest).
//
// Topics, created by New with kadm (partitions and replication factor from
// Config):
//
//   - <namespace>.post: post.created and post.deleted, keyed by author, so
//     that one author's events keep their order within a partition;
//   - <namespace>.graph: graph.followed and graph.unfollowed, keyed by
//     follower;
//   - <namespace>.fanout: fanout.chunk, keyed by post and chunk index;
//   - <namespace>.dead: the dead letters, one partition, compacted, keyed
//     by where the event was (consumer, topic, partition, offset).
//
// Each record carries its kind in the herald-kind header and the event as
// the protobuf of package eventcodec, as on JetStream.
//
// Where Kafka differs from JetStream, and why Herald does not mind:
//
//   - No dedupe window: a republished event (the outbox relay's retry, a
//     redelivered post's chunks) arrives twice. Every handler is
//     idempotent, so the second copy changes nothing.
//   - Order is per partition, and a consumer's workers handle a batch's
//     events concurrently, so a consumer sees events in no set order.
//     Herald relies on nothing beyond idempotence and commutativity (see
//     package event).
//   - A consumer group shares partitions, not messages: a durable
//     consumer's parallelism across instances is bounded by its topics'
//     partitions, and an instance that joins or leaves pauses the group
//     while it rebalances.
//   - Redelivery is the consumer's: offsets are committed only after a
//     batch's handlers have all returned, and a failed event is retried in
//     place, after the consumer's backoff, up to MaxDeliver attempts, then
//     dead-lettered. An instance that dies leaves its batch uncommitted,
//     and the partition's next owner takes it again.
package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/event/eventcodec"
	"github.com/herald-feed/herald/services/platform/event/eventlog"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/tracing"
)

// Bus implements event.Log and event.Admin.
var _ event.AdminLog = (*Bus)(nil)

// Defaults of Config.
const (
	DefaultPartitions     = 6
	DefaultReplicas       = 1
	DefaultRetention      = 24 * time.Hour
	DefaultPublishTimeout = 5 * time.Second
	DefaultSessionTimeout = 10 * time.Second
	deadRetention         = 7 * 24 * time.Hour
)

// Config describes the Kafka deployment and Herald's topics in it.
type Config struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string
	// User and Password are Herald's SASL/PLAIN login; no User, no SASL.
	User, Password string
	// Namespace prefixes every topic and consumer group, so that
	// deployments can share one Kafka. Default "herald".
	Namespace string
	// Partitions of each event topic: the bound on a durable consumer's
	// parallelism across its instances. Default 6.
	Partitions int32
	// Replicas is each topic's replication factor: 1 on one broker, 3 on
	// a cluster, where min.insync.replicas is then a majority (2).
	Replicas int16
	// Retention bounds how long events are kept. Default 24h, as on
	// JetStream: long enough to ride out a fan-out outage of a day.
	Retention time.Duration
	// PublishTimeout bounds a publish: past it the publish fails as
	// UNAVAILABLE, and a caller with an outbox (CreatePost) leaves the
	// event to its relay. Default 5s.
	PublishTimeout time.Duration
	// SessionTimeout is how long the group waits for a silent instance
	// before it gives the instance's partitions to the others: the pause
	// of a dead instance's partitions. Default 10s (the broker's minimum
	// is 6s).
	SessionTimeout time.Duration
	// ClientID names the process to the brokers. Default "herald".
	ClientID string
	// Metrics, if not nil, gets the bus's metrics.
	Metrics prometheus.Registerer
}

func (c *Config) defaults() {
	if c.Namespace == "" {
		c.Namespace = "herald"
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.ClientID == "" {
		c.ClientID = "herald"
	}
}

// Record headers.
const (
	headerKind      = "herald-kind"
	headerReason    = "herald-reason"
	headerConsumer  = "herald-consumer"
	headerTopic     = "herald-topic"
	headerPartition = "herald-partition"
	headerOffset    = "herald-offset"
	headerKey       = "herald-key"
)

// Bus publishes and consumes Herald events on Kafka.
type Bus struct {
	cfg     Config
	log     *slog.Logger
	cl      *kgo.Client // the producer, and the admin client's connection
	adm     *kadm.Client
	metrics *eventlog.Metrics

	rebalances *prometheus.CounterVec
}

// New connects to the brokers, creates Herald's topics if they are missing,
// and returns a Bus. An unreachable broker or a refused login is an error
// wrapping feed.ErrUnavailable that names the brokers.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Bus, error) {
	cfg.defaults()
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("kafka: no brokers configured (-kafka-brokers)")
	}
	if cfg.Replicas < 1 || cfg.Partitions < 1 {
		return nil, fmt.Errorf("kafka: %d partitions and replication factor %d: both must be at least 1", cfg.Partitions, cfg.Replicas)
	}
	b := &Bus{cfg: cfg, log: log, metrics: eventlog.NewMetrics(cfg.Metrics, tracing.SystemKafka),
		rebalances: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_bus_rebalances_total",
			Help: "Partition assignments and revocations this instance took part in, by consumer (Kafka only).",
		}, []string{"consumer", "change"}),
	}
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(b.rebalances)
	}
	cl, err := kgo.NewClient(b.clientOpts(
		// Idempotent (franz-go's default): a retried produce is written
		// once per partition, and acks=all waits for every in-sync replica.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(cfg.PublishTimeout),
	)...)
	if err != nil {
		return nil, fmt.Errorf("kafka %v: %w", cfg.Brokers, err)
	}
	b.cl, b.adm = cl, kadm.NewClient(cl)
	if err := b.createTopics(ctx); err != nil {
		cl.Close()
		return nil, err
	}
	return b, nil
}

// Close closes the bus's producer. Consumers and tails close with their
// contexts.
func (b *Bus) Close() { b.cl.Close() }

// Ping asks a broker for the cluster's metadata: nil if one answered.
func (b *Bus) Ping(ctx context.Context) error { return b.cl.Ping(ctx) }

func (b *Bus) clientOpts(extra ...kgo.Opt) []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(b.cfg.Brokers...), kgo.ClientID(b.cfg.ClientID), kgo.DialTimeout(5 * time.Second)}
	if b.cfg.User != "" {
		opts = append(opts, kgo.SASL(plain.Auth{User: b.cfg.User, Pass: b.cfg.Password}.AsMechanism()))
	}
	return append(opts, extra...)
}

// Topics returns the event topics and then the dead-letter topic.
func (b *Bus) Topics() []string {
	return []string{b.topic("post"), b.topic("graph"), b.topic("fanout"), b.deadTopic()}
}

func (b *Bus) topic(family string) string { return b.cfg.Namespace + "." + family }

func (b *Bus) deadTopic() string { return b.topic("dead") }

// topicOf returns kind's topic: the namespace, then the kind's first word
// ("post.created" → "herald.post").
func (b *Bus) topicOf(kind event.Kind) string {
	family, _, _ := strings.Cut(string(kind), ".")
	return b.topic(family)
}

func (b *Bus) topicsOf(kinds []event.Kind) []string {
	var out []string
	for _, k := range kinds {
		if t := b.topicOf(k); !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// keyOf returns the record key of ev: what its order is kept within.
func keyOf(ev event.Event) []byte {
	switch e := ev.(type) {
	case event.PostCreated:
		return []byte(e.Author)
	case event.PostDeleted:
		return []byte(e.Author)
	case event.Followed:
		return []byte(e.Follower)
	case event.Unfollowed:
		return []byte(e.Follower)
	case event.FanoutChunk:
		return []byte(e.Post.String() + "/" + strconv.FormatUint(uint64(e.Index), 10))
	}
	return nil
}

func ms(d time.Duration) *string { return kadm.StringPtr(strconv.FormatInt(d.Milliseconds(), 10)) }

// createTopics creates the topics that are missing; one that exists is
// left as it is.
func (b *Bus) createTopics(ctx context.Context) error {
	isr := kadm.StringPtr(strconv.Itoa(int(b.cfg.Replicas/2 + 1)))
	events := map[string]*string{"retention.ms": ms(b.cfg.Retention), "min.insync.replicas": isr}
	dead := map[string]*string{"retention.ms": ms(deadRetention), "min.insync.replicas": isr, "cleanup.policy": kadm.StringPtr("compact,delete")}
	create := func(partitions int32, configs map[string]*string, topics ...string) error {
		resps, err := b.adm.CreateTopics(ctx, partitions, b.cfg.Replicas, configs, topics...)
		if err != nil {
			return feed.Unavailable("kafka", fmt.Errorf("create topics on %v: %w", b.cfg.Brokers, err))
		}
		for _, r := range resps.Sorted() {
			if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
				return feed.Unavailable("kafka", fmt.Errorf("create topic %s on %v: %w", r.Topic, b.cfg.Brokers, r.Err))
			}
		}
		return nil
	}
	t := b.Topics()
	if err := create(b.cfg.Partitions, events, t[:3]...); err != nil {
		return err
	}
	return create(1, dead, b.deadTopic())
}

// Publish implements event.Publisher: it appends ev to its kind's topic
// under its key, and waits for every in-sync replica. Kafka keeps no
// dedupe window: a publish retried by the caller is a second copy.
func (b *Bus) Publish(ctx context.Context, ev event.Event) error {
	data, err := eventcodec.Marshal(ev)
	if err != nil {
		return fmt.Errorf("kafkabus: %w", err)
	}
	return b.produce(ctx, b.record(ev.Kind(), keyOf(ev), data))
}

// recordHeaders carries trace context in a record's headers.
type recordHeaders struct{ r *kgo.Record }

func (c recordHeaders) Get(key string) string { return header(c.r, key) }

func (c recordHeaders) Set(key, value string) {
	for i, h := range c.r.Headers {
		if h.Key == key {
			c.r.Headers[i].Value = []byte(value)
			return
		}
	}
	c.r.Headers = append(c.r.Headers, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

func (c recordHeaders) Keys() []string {
	keys := make([]string, len(c.r.Headers))
	for i, h := range c.r.Headers {
		keys[i] = h.Key
	}
	return keys
}

// message is r as eventlog takes it.
func message(r *kgo.Record, kind event.Kind) eventlog.Message {
	return eventlog.Message{Kind: kind, Data: r.Value, Destination: r.Topic, Where: where(r), Headers: recordHeaders{r}}
}

// PublishRaw appends data to kind's topic as it is, undecodable or not:
// for tests of what consumers do with a bad message (eventtest).
func (b *Bus) PublishRaw(ctx context.Context, kind event.Kind, data []byte) error {
	return b.produce(ctx, b.record(kind, nil, data))
}

func (b *Bus) record(kind event.Kind, key, data []byte) *kgo.Record {
	return &kgo.Record{Topic: b.topicOf(kind), Key: key, Value: data, Headers: []kgo.RecordHeader{{Key: headerKind, Value: []byte(kind)}}}
}

func (b *Bus) produce(ctx context.Context, recs ...*kgo.Record) (err error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.PublishTimeout)
	defer cancel()
	ctx, span := tracing.StartSend(ctx, tracing.SystemKafka, recs[0].Topic)
	defer func() { tracing.End(span, err) }()
	for _, r := range recs {
		tracing.Inject(ctx, recordHeaders{r})
	}
	if err := b.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return feed.Unavailable("kafka", fmt.Errorf("publish to %s: %w", recs[0].Topic, err))
	}
	return nil
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func where(r *kgo.Record) string { return fmt.Sprintf("%s/%d@%d", r.Topic, r.Partition, r.Offset) }

// Consume implements event.Consumer with a consumer group named
// <namespace>.<durable>, which starts at the oldest event the first time
// and at its committed offsets after that. It polls a batch of up to four
// events per worker (at least 64), handles them with cc.Workers at a time, and commits
// the batch's offsets once every handler has returned (acknowledged,
// dead-lettered or, at shutdown, given up on). Rebalances wait for the
// commit, so no instance handles a partition's events while another owns
// it. A failed event is retried in place after cc.BackOff, up to
// cc.MaxDeliver attempts; cc.AckWait bounds each attempt's context.
func (b *Bus) Consume(ctx context.Context, cc event.ConsumerConfig, h event.Handler) error {
	b.metrics.Consuming(cc.Durable)
	want := make(map[event.Kind]bool, len(cc.Kinds))
	for _, k := range cc.Kinds {
		want[k] = true
	}
	group := b.cfg.Namespace + "." + cc.Durable
	cl, err := kgo.NewClient(b.clientOpts(
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(b.topicsOf(cc.Kinds)...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(b.cfg.SessionTimeout),
		kgo.FetchMaxWait(time.Second),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
			b.rebalances.WithLabelValues(cc.Durable, "assigned").Inc()
			b.log.Info("kafka partitions assigned", "group", group, "partitions", ps)
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
			b.rebalances.WithLabelValues(cc.Durable, "revoked").Inc()
			b.log.Info("kafka partitions revoked", "group", group, "partitions", ps)
		}),
	)...)
	if err != nil {
		return feed.Unavailable("kafka", fmt.Errorf("consumer group %s: %w", group, err))
	}
	defer cl.CloseAllowingRebalance()
	// A batch is what one commit covers: at least 64 events, so that a
	// consumer of one worker does not commit every few events, and four
	// per worker beyond that; never more than MaxAckPending.
	workers := max(cc.Workers, 1)
	batch := max(4*workers, 64)
	if cc.MaxAckPending > 0 {
		batch = min(batch, cc.MaxAckPending)
	}
	for ctx.Err() == nil {
		fetches := cl.PollRecords(ctx, batch)
		fetches.EachError(func(topic string, p int32, err error) {
			if ctx.Err() == nil {
				b.log.Warn("kafka fetch failed; retrying", "group", group, "topic", topic, "partition", p, "err", err)
			}
		})
		if recs := fetches.Records(); len(recs) > 0 {
			b.commit(cl, group, recs, b.handleBatch(ctx, cc, want, recs, workers, h))
		}
		cl.AllowRebalance()
	}
	return nil
}

// handleBatch runs h on recs, workers at a time, and says of each whether
// it is settled: handled, skipped or dead-lettered. Only a shutdown leaves
// an event unsettled.
func (b *Bus) handleBatch(ctx context.Context, cc event.ConsumerConfig, want map[event.Kind]bool, recs []*kgo.Record, workers int, h event.Handler) []bool {
	settled := make([]bool, len(recs))
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for i, r := range recs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			settled[i] = b.deliver(ctx, cc, want, r, h)
		})
	}
	wg.Wait()
	return settled
}

// deliver handles r until it is settled, or until ctx ends between two
// attempts. An event of a kind the consumer does not take (its topic holds
// other kinds too) is settled at once. The handlers' contexts outlive ctx,
// so that a shutdown lets an attempt in flight finish its writes.
func (b *Bus) deliver(ctx context.Context, cc event.ConsumerConfig, want map[event.Kind]bool, r *kgo.Record, h event.Handler) bool {
	kind := event.Kind(header(r, headerKind))
	if kind != "" && !want[kind] && slices.Contains(event.Kinds, kind) {
		return true
	}
	hctx := context.WithoutCancel(ctx)
	for attempt := 1; ; attempt++ {
		actx, cancel := hctx, context.CancelFunc(func() {})
		if cc.AckWait > 0 {
			actx, cancel = context.WithTimeout(hctx, cc.AckWait)
		}
		err := b.metrics.Handle(actx, b.log, cc.Durable, message(r, kind), h)
		cancel()
		switch {
		case err == nil:
			return true
		case errors.Is(err, event.ErrPermanent):
			return b.deadLetter(ctx, cc.Durable, r, err)
		case cc.MaxDeliver > 0 && attempt >= cc.MaxDeliver:
			return b.deadLetter(ctx, cc.Durable, r, fmt.Errorf("failed %d deliveries, the last with: %w", attempt, err))
		}
		delay := eventlog.Delay(cc.BackOff, attempt)
		b.log.Warn("event failed; it will be retried", "at", where(r), "consumer", cc.Durable, "attempt", attempt, "delay", delay, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
		}
	}
}

// commit commits the offsets of recs up to, in each partition, the first
// unsettled one. A failed commit is logged: the events are then handled
// again by the partition's next owner, which idempotent handlers absorb.
func (b *Bus) commit(cl *kgo.Client, group string, recs []*kgo.Record, settled []bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	if !slices.Contains(settled, false) {
		err = cl.CommitUncommittedOffsets(ctx)
	} else {
		type partition struct {
			topic string
			p     int32
		}
		stuck := map[partition]bool{}
		var done []*kgo.Record
		for i, r := range recs { // a partition's records come in offset order
			at := partition{r.Topic, r.Partition}
			stuck[at] = stuck[at] || !settled[i]
			if !stuck[at] {
				done = append(done, r)
			}
		}
		if len(done) > 0 {
			err = cl.CommitRecords(ctx, done...)
		}
	}
	if err != nil {
		b.log.Warn("kafka offset commit failed; the batch will be handled again", "group", group, "events", len(recs), "err", err)
	}
}

// Tail implements event.Consumer with a client of no group that reads the
// kinds' topics from the first event stamped at or after the call: no
// offsets, no state on the brokers. A start by time, not at each
// partition's end, holds whenever the client gets round to a partition,
// and takes a partition added later from its start. An event that does
// not decode is logged and counted (consumer "tail"), and skipped.
func (b *Bus) Tail(ctx context.Context, kinds []event.Kind, h func(context.Context, event.Event)) error {
	want := make(map[event.Kind]bool, len(kinds))
	for _, k := range kinds {
		want[k] = true
	}
	cl, err := kgo.NewClient(b.clientOpts(
		kgo.ConsumeTopics(b.topicsOf(kinds)...),
		// Stamps are milliseconds: from the next one, so that an event
		// published in the call's own millisecond, before it, is not taken.
		kgo.ConsumeResetOffset(kgo.NewOffset().AfterMilli(time.Now().UnixMilli()+1)),
		kgo.FetchMaxWait(time.Second),
	)...)
	if err != nil {
		return feed.Unavailable("kafka", fmt.Errorf("tail: %w", err))
	}
	defer cl.Close()
	for ctx.Err() == nil {
		fetches := cl.PollFetches(ctx)
		fetches.EachError(func(topic string, p int32, err error) {
			if ctx.Err() == nil {
				b.log.Warn("kafka tail fetch failed; retrying", "topic", topic, "partition", p, "err", err)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			kind := event.Kind(header(r, headerKind))
			if !want[kind] && slices.Contains(event.Kinds, kind) {
				return
			}
			b.metrics.Tail(ctx, b.log, message(r, kind), h)
		})
	}
	return nil
}

// Delete removes the namespace's topics, with every event and dead letter
// in them, and the consumer groups of the named durable consumers: for
// tests, and for tearing a deployment down.
func (b *Bus) Delete(ctx context.Context, durables ...string) error {
	resps, err := b.adm.DeleteTopics(ctx, b.Topics()...)
	if err == nil {
		err = resps.Error()
	}
	if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
		return feed.Unavailable("kafka", fmt.Errorf("delete topics %v: %w", b.Topics(), err))
	}
	if len(durables) == 0 {
		return nil
	}
	groups := make([]string, len(durables))
	for i, d := range durables {
		groups[i] = b.cfg.Namespace + "." + d
	}
	gresps, err := b.adm.DeleteGroups(ctx, groups...)
	if err == nil {
		err = gresps.Error()
	}
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return feed.Unavailable("kafka", fmt.Errorf("delete consumer groups %v: %w", groups, err))
	}
	return nil
}
