// Package bus is Herald's event log (the port in package event) on NATS
// JetStream. Each event kind is a subject under the deployment's namespace
// ("herald.post.created"), carried in one stream; events travel as the
// protobuf messages of proto/herald/event/v1 (package eventcodec). A durable
// consumer is a JetStream durable pull consumer shared by every instance; a
// tail is an ordered ephemeral consumer. Dead letters go to a second stream.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/event/eventcodec"
	"github.com/herald-feed/herald/services/platform/event/eventlog"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/tracing"
)

// Bus implements event.Log and event.Admin.
var _ event.AdminLog = (*Bus)(nil)

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

	metrics *eventlog.Metrics
}

// New creates or updates the event stream on nc's JetStream and returns a
// Bus for it.
func New(ctx context.Context, nc *nats.Conn, cfg Config, log *slog.Logger) (*Bus, error) {
	cfg.defaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, feed.Unavailable("nats", err)
	}
	for _, sc := range []jetstream.StreamConfig{{
		Name:      cfg.Stream + "_DEAD",
		Subjects:  []string{cfg.Namespace + ".dead.>"},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy,
		Replicas:  cfg.Replicas,
		MaxAge:    7 * 24 * time.Hour,
	}, {
		Name:       cfg.Stream,
		Subjects:   []string{cfg.Namespace + ".post.>", cfg.Namespace + ".graph.>", cfg.Namespace + ".fanout.>"},
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		Replicas:   cfg.Replicas,
		MaxAge:     cfg.MaxAge,
		Duplicates: cfg.Duplicates,
	}} {
		err := whileTransient(ctx, log, "create stream "+sc.Name, func(ctx context.Context) error {
			_, err := js.CreateOrUpdateStream(ctx, sc)
			return err
		})
		if err != nil {
			return nil, feed.Unavailable("nats", fmt.Errorf("create stream %s: %w", sc.Name, err))
		}
	}
	b := &Bus{js: js, cfg: cfg, log: log, metrics: eventlog.NewMetrics(cfg.Metrics, tracing.SystemNATS)}
	return b, nil
}

// JetStream returns the underlying JetStream handle.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Stream returns the event stream's name.
func (b *Bus) Stream() string { return b.cfg.Stream }

// Publish implements event.Publisher: it appends ev to its kind's subject
// and waits for the stream's ack. ev's DedupeID is the Nats-Msg-Id header:
// the server drops a second publish with the same ID inside the dedupe
// window, so a retried publish never doubles an event.
func (b *Bus) Publish(ctx context.Context, ev event.Event) error {
	data, err := eventcodec.Marshal(ev)
	if err != nil {
		return fmt.Errorf("bus: %w", err)
	}
	return b.publish(ctx, string(ev.Kind()), ev.DedupeID(), data)
}

// PublishRaw appends data to kind's subject as it is, undecodable or not:
// for tests of what consumers do with a bad message (eventtest).
func (b *Bus) PublishRaw(ctx context.Context, kind event.Kind, data []byte) error {
	return b.publish(ctx, string(kind), "", data)
}

func (b *Bus) publish(ctx context.Context, subject, msgID string, data []byte) error {
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
	msg := &nats.Msg{Subject: b.abs(subject), Data: data}
	ctx, span := tracing.StartSend(ctx, tracing.SystemNATS, msg.Subject)
	if tracing.Enabled() {
		h := tracing.NATSHeader{}
		tracing.Inject(ctx, h)
		msg.Header = nats.Header(h)
	}
	_, err := b.js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		err = feed.Unavailable("nats", fmt.Errorf("publish %s: %w", subject, err))
	}
	tracing.End(span, err)
	return err
}

// Consume implements event.Consumer on a JetStream durable pull consumer
// named cc.Durable. An event that does not decode is logged, counted and
// dead-lettered; a handler that panics is recovered, and its event
// dead-lettered with the stack.
func (b *Bus) Consume(ctx context.Context, cc event.ConsumerConfig, h event.Handler) error {
	b.metrics.Consuming(cc.Durable)
	var cons jetstream.Consumer
	// JetStream that does not answer (a node restarting, the stream's or
	// the consumer's Raft group without a leader yet) is waited for, as a
	// consumer would wait for messages; a refusal is final.
	err := whileTransient(ctx, b.log, "create consumer "+cc.Durable, func(ctx context.Context) error {
		var err error
		cons, err = b.js.CreateOrUpdateConsumer(ctx, b.cfg.Stream, jetstream.ConsumerConfig{
			Durable:        cc.Durable,
			FilterSubjects: b.absKinds(cc.Kinds),
			AckPolicy:      jetstream.AckExplicitPolicy,
			DeliverPolicy:  jetstream.DeliverAllPolicy,
			AckWait:        cc.AckWait,
			MaxDeliver:     cc.MaxDeliver,
			MaxAckPending:  cc.MaxAckPending,
		})
		return err
	})
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return feed.Unavailable("nats", fmt.Errorf("create consumer %s: %w", cc.Durable, err))
	}
	return b.run(ctx, cons, max(cc.Workers, 1), func(ctx context.Context, m jetstream.Msg) {
		err := b.handle(ctx, cc.Durable, m, h)
		switch {
		case err == nil:
			if err := m.Ack(); err != nil {
				b.log.Warn("ack failed; the message will be redelivered", "subject", m.Subject(), "err", err)
			}
		case errors.Is(err, event.ErrPermanent):
			b.deadLetter(ctx, cc.Durable, m, err)
		default:
			md, mderr := m.Metadata()
			if mderr == nil && cc.MaxDeliver > 0 && int(md.NumDelivered) >= cc.MaxDeliver {
				b.deadLetter(ctx, cc.Durable, m, fmt.Errorf("failed %d deliveries, the last with: %w", md.NumDelivered, err))
				return
			}
			// The delay is the client's: a Nak with a delay keeps a failing
			// message from spinning while the backend it needs is down.
			attempt := math.MaxInt // unknown: the longest wait
			if mderr == nil {
				attempt = int(md.NumDelivered)
			}
			delay := eventlog.Delay(cc.BackOff, attempt)
			b.log.Warn("message failed; it will be redelivered", "subject", m.Subject(), "delay", delay, "err", err)
			_ = m.NakWithDelay(delay)
		}
	})
}

// handle decodes m and runs h on it, turning a decode failure or a panic
// into a permanent error.
func (b *Bus) handle(ctx context.Context, consumer string, m jetstream.Msg, h event.Handler) error {
	return b.metrics.Handle(ctx, b.log, consumer, b.message(m), h)
}

// message is m as eventlog takes it.
func (b *Bus) message(m jetstream.Msg) eventlog.Message {
	msg := eventlog.Message{Kind: event.Kind(b.rel(m.Subject())), Data: m.Data(), Destination: m.Subject(), Where: m.Subject()}
	if h := m.Headers(); len(h) > 0 {
		msg.Headers = tracing.NATSHeader(h)
	}
	return msg
}

// Tail implements event.Consumer with an ordered ephemeral consumer: no
// acks, no state on the server. An event that does not decode is logged and
// counted (consumer "tail"), and skipped.
func (b *Bus) Tail(ctx context.Context, kinds []event.Kind, h func(context.Context, event.Event)) error {
	cons, err := b.js.OrderedConsumer(ctx, b.cfg.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: b.absKinds(kinds),
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return feed.Unavailable("nats", fmt.Errorf("create ordered consumer: %w", err))
	}
	return b.run(ctx, cons, 1, func(ctx context.Context, m jetstream.Msg) {
		b.metrics.Tail(ctx, b.log, b.message(m), h)
	})
}

// abs returns the absolute NATS subject of a relative one.
func (b *Bus) abs(subject string) string { return b.cfg.Namespace + "." + subject }

func (b *Bus) absKinds(kinds []event.Kind) []string {
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = b.abs(string(k))
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
	// Pull at most twice the workers: what an instance has pulled and not
	// yet handled waits out AckWait if the instance dies, so it stays
	// small (nats.go's default is 500).
	opts := []jetstream.PullConsumeOpt{
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			b.log.Debug("consume", "err", err)
		}),
		jetstream.PullMaxMessages(2 * workers),
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

// attemptTimeout bounds one attempt of a JetStream API call that
// whileTransient repeats: a request made while the cluster elects its
// leaders can go unanswered, and waiting longer for it does not help.
const attemptTimeout = 5 * time.Second

// whileTransient runs call, each attempt under attemptTimeout, again with
// backoff while its error is transient, until it succeeds, fails for good,
// or ctx ends (then it returns the last error).
func whileTransient(ctx context.Context, log *slog.Logger, what string, call func(ctx context.Context) error) error {
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := call(actx)
		cancel()
		if err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		log.Warn("JetStream does not answer; trying again", "call", what, "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// transient reports whether a JetStream API call's error may pass by
// itself: no answer in time, or JetStream saying it is unavailable (503),
// rather than refusing the request.
func transient(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code >= 500
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionReconnecting)
}
