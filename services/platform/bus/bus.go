// Package bus is Herald's durable event log on NATS JetStream. The post and
// graph services publish events; the fan-out service consumes them through
// one durable pull consumer shared by all its instances, and the timeline
// service tails them to feed live streams.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/herald-feed/herald/services/platform/feed"
)

// Subjects, relative to the deployment's namespace: "post.created" is
// published as "herald.post.created". Each carries one message type from
// proto/herald/event/v1.
const (
	SubjectPostCreated = "post.created"
	SubjectPostDeleted = "post.deleted"
	SubjectFollowed    = "graph.followed"
	SubjectUnfollowed  = "graph.unfollowed"
	// SubjectFanoutChunk carries one chunk of a large post's followers,
	// published by the fan-out for the fan-out, so that every instance
	// takes a share of one post.
	SubjectFanoutChunk = "fanout.chunk"
)

// Config describes the event stream.
type Config struct {
	// Namespace prefixes every subject and names the stream, so that
	// deployments can share one NATS. Default "herald".
	Namespace string
	// Stream is the JetStream stream name. Default: the namespace in upper
	// case, then "_EVENTS".
	Stream string
	// Replicas is the stream's replication factor: 1 on one server, 3 on a
	// NATS cluster.
	Replicas int
	// MaxAge bounds how long events are kept. Default 24h: long enough to
	// ride out a fan-out outage of a day.
	MaxAge time.Duration
	// Metrics, if not nil, gets the bus's metrics.
	Metrics prometheus.Registerer
	// Duplicates is the Nats-Msg-Id dedupe window. A publish retried within
	// it is dropped by the server. Default 10m, which must exceed the
	// outbox relay's republish timeout.
	Duplicates time.Duration
}

func (c *Config) defaults() {
	if c.Namespace == "" {
		c.Namespace = "herald"
	}
	if c.Stream == "" {
		c.Stream = strings.ToUpper(c.Namespace) + "_EVENTS"
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxAge == 0 {
		c.MaxAge = 24 * time.Hour
	}
	if c.Duplicates == 0 {
		c.Duplicates = 10 * time.Minute
	}
}

// Bus publishes and consumes Herald events.
type Bus struct {
	js  jetstream.JetStream
	cfg Config
	log *slog.Logger

	deadLetters *prometheus.CounterVec
}

// New creates or updates the event stream on nc's JetStream and returns a
// Bus for it.
func New(ctx context.Context, nc *nats.Conn, cfg Config, log *slog.Logger) (*Bus, error) {
	cfg.defaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, feed.Unavailable("nats", err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:      cfg.Stream + "_DEAD",
		Subjects:  []string{cfg.Namespace + ".dead.>"},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy,
		Replicas:  cfg.Replicas,
		MaxAge:    7 * 24 * time.Hour,
	})
	if err != nil {
		return nil, feed.Unavailable("nats", fmt.Errorf("create stream %s_DEAD: %w", cfg.Stream, err))
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       cfg.Stream,
		Subjects:   []string{cfg.Namespace + ".post.>", cfg.Namespace + ".graph.>", cfg.Namespace + ".fanout.>"},
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		Replicas:   cfg.Replicas,
		MaxAge:     cfg.MaxAge,
		Duplicates: cfg.Duplicates,
	})
	if err != nil {
		return nil, feed.Unavailable("nats", fmt.Errorf("create stream %s: %w", cfg.Stream, err))
	}
	b := &Bus{js: js, cfg: cfg, log: log, deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_bus_dead_letters_total",
		Help: "Events moved to the dead-letter stream, by consumer.",
	}, []string{"consumer"})}
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(b.deadLetters)
	}
	return b, nil
}

// JetStream returns the underlying JetStream handle.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Stream returns the event stream's name.
func (b *Bus) Stream() string { return b.cfg.Stream }

// Publish appends m to subject and waits for the stream's ack. msgID is the
// Nats-Msg-Id header: the server drops a second publish with the same ID
// inside the dedupe window, so a retried publish never doubles an event.
func (b *Bus) Publish(ctx context.Context, subject, msgID string, m proto.Message) error {
	data, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("bus: marshal %s: %w", subject, err)
	}
	// While the connection is down, a publish would wait for a reconnect
	// until ctx ends; fail at once instead, so that callers with an
	// outbox (CreatePost) answer without waiting for NATS.
	if !b.js.Conn().IsConnected() {
		return feed.Unavailable("nats", fmt.Errorf("publish %s: %w", subject, nats.ErrConnectionClosed))
	}
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	if _, err := b.js.Publish(ctx, b.abs(subject), data, opts...); err != nil {
		return feed.Unavailable("nats", fmt.Errorf("publish %s: %w", subject, err))
	}
	return nil
}

// ErrPermanent marks a handler error that no retry can fix, such as an
// undecodable message. The message is terminated instead of redelivered.
var ErrPermanent = errors.New("permanent failure")

// Handler handles one message. A nil error acks it; an error wrapping
// ErrPermanent terminates it; any other error naks it for redelivery after
// the consumer's backoff.
type Handler func(ctx context.Context, subject string, data []byte) error

// ConsumerConfig describes a durable pull consumer.
type ConsumerConfig struct {
	// Durable is the consumer name that all instances share, so the stream's
	// messages are spread across them.
	Durable  string
	Subjects []string
	// AckWait is how long the server waits for an ack before redelivering.
	AckWait time.Duration
	// MaxDeliver bounds deliveries of one message.
	MaxDeliver int
	// BackOff is the redelivery delay after the first, second, ... failed
	// delivery; the last value repeats. Default 1s, 2s, 5s, 10s, 30s.
	BackOff []time.Duration
	// MaxAckPending bounds messages in flight across all instances; it is
	// the backpressure on the fan-out.
	MaxAckPending int
	// Workers bounds the messages this instance handles at once. It also
	// sizes the instance's pull (twice Workers), so that instances share
	// a burst instead of one buffering it all. Default 1.
	Workers int
}

// Consume runs h on each message of the durable consumer until ctx ends.
// It returns after the in-flight handlers finish, so a shutdown either
// acks or naks every message it took.
func (b *Bus) Consume(ctx context.Context, cc ConsumerConfig, h Handler) error {
	cons, err := b.js.CreateOrUpdateConsumer(ctx, b.cfg.Stream, jetstream.ConsumerConfig{
		Durable:        cc.Durable,
		FilterSubjects: b.absAll(cc.Subjects),
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckWait:        cc.AckWait,
		MaxDeliver:     cc.MaxDeliver,
		MaxAckPending:  cc.MaxAckPending,
	})
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return feed.Unavailable("nats", fmt.Errorf("create consumer %s: %w", cc.Durable, err))
	}
	backoff := cc.BackOff
	if len(backoff) == 0 {
		backoff = []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second}
	}
	return b.run(ctx, cons, max(cc.Workers, 1), func(ctx context.Context, m jetstream.Msg) {
		err := h(ctx, b.rel(m.Subject()), m.Data())
		switch {
		case err == nil:
			if err := m.Ack(); err != nil {
				b.log.Warn("ack failed; the message will be redelivered", "subject", m.Subject(), "err", err)
			}
		case errors.Is(err, ErrPermanent):
			b.deadLetter(ctx, cc.Durable, m, err)
		default:
			md, mderr := m.Metadata()
			if mderr == nil && cc.MaxDeliver > 0 && int(md.NumDelivered) >= cc.MaxDeliver {
				b.deadLetter(ctx, cc.Durable, m, fmt.Errorf("failed %d deliveries, the last with: %w", md.NumDelivered, err))
				return
			}
			// The delay is the client's: a Nak with a delay keeps a failing
			// message from spinning while the backend it needs is down.
			delay := backoff[len(backoff)-1]
			if mderr == nil && int(md.NumDelivered) <= len(backoff) {
				delay = backoff[md.NumDelivered-1]
			}
			b.log.Warn("message failed; it will be redelivered", "subject", m.Subject(), "delay", delay, "err", err)
			_ = m.NakWithDelay(delay)
		}
	})
}

// Tail runs h on each new message on subjects, from now on, until ctx ends.
// It uses an ordered ephemeral consumer: no acks, no state on the server,
// for readers that only care about the live edge.
func (b *Bus) Tail(ctx context.Context, subjects []string, h func(subject string, data []byte)) error {
	cons, err := b.js.OrderedConsumer(ctx, b.cfg.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: b.absAll(subjects),
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return feed.Unavailable("nats", fmt.Errorf("create ordered consumer: %w", err))
	}
	return b.run(ctx, cons, 1, func(_ context.Context, m jetstream.Msg) { h(b.rel(m.Subject()), m.Data()) })
}

// abs returns the absolute NATS subject of a relative one.
func (b *Bus) abs(subject string) string { return b.cfg.Namespace + "." + subject }

func (b *Bus) absAll(subjects []string) []string {
	out := make([]string, len(subjects))
	for i, s := range subjects {
		out[i] = b.abs(s)
	}
	return out
}

// rel strips the namespace from a NATS subject.
func (b *Bus) rel(subject string) string { return strings.TrimPrefix(subject, b.cfg.Namespace+".") }

// run hands cons's messages to handle, at most workers at a time, until
// ctx ends, then waits for the handlers in flight.
func (b *Bus) run(ctx context.Context, cons jetstream.Consumer, workers int, handle func(context.Context, jetstream.Msg)) error {
	// A handler's context outlives ctx briefly, so that a shutdown lets an
	// in-flight message finish its writes and ack.
	hctx := context.WithoutCancel(ctx)
	var (
		wg  sync.WaitGroup
		sem = make(chan struct{}, workers)
	)
	// The callback runs on one goroutine per consumer: blocking it on a
	// full semaphore stops this instance pulling more, which leaves the
	// rest of the backlog to other instances.
	dispatch := func(m jetstream.Msg) {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			handle(hctx, m)
		})
	}
	opts := []jetstream.PullConsumeOpt{
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			b.log.Debug("consume", "err", err)
		}),
	}
	if workers > 1 {
		opts = append(opts, jetstream.PullMaxMessages(2*workers))
	}
	cc, err := cons.Consume(dispatch, opts...)
	if err != nil {
		return feed.Unavailable("nats", err)
	}
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	wg.Wait()
	return nil
}
