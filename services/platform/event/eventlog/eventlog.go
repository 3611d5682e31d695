// Package eventlog holds what the adapters of the event port (bus on
// JetStream, kafkabus on Kafka) share: their metrics, and the guarded call
// of a handler that turns an undecodable event or a panic into a
// permanent failure, in a span that continues the publisher's trace. With
// one copy, both adapters count, log and trace alike, and dashboards and
// alerts need not know which bus runs.
package eventlog

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"

	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/event/eventcodec"
	"github.com/herald-feed/herald/services/platform/tracing"
)

// TailConsumer is the consumer label of a tail's counts.
const TailConsumer = "tail"

// Metrics are an adapter's counters, by consumer.
type Metrics struct {
	DeadLetters *prometheus.CounterVec
	Undecodable *prometheus.CounterVec
	Panics      *prometheus.CounterVec

	system string // the messaging.system of the adapter's spans
}

// NewMetrics returns the counters of an adapter of the log named system
// (tracing.SystemNATS, tracing.SystemKafka), registered with reg unless it
// is nil.
func NewMetrics(reg prometheus.Registerer, system string) *Metrics {
	m := &Metrics{system: system,
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_bus_dead_letters_total",
			Help: "Events moved to the dead letters, by consumer.",
		}, []string{"consumer"}),
		Undecodable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_bus_undecodable_events_total",
			Help: "Events that did not decode, by the consumer or tail that received them; a durable consumer dead-letters them.",
		}, []string{"consumer"}),
		Panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_bus_handler_panics_total",
			Help: "Event handlers that panicked, by consumer; the event is dead-lettered with the stack.",
		}, []string{"consumer"}),
	}
	if reg != nil {
		reg.MustRegister(m.DeadLetters, m.Undecodable, m.Panics)
	}
	return m
}

// Consuming starts the counts of a durable consumer at zero, so that they
// are exported, and the dashboards and alerts that read them have series,
// before its first dead letter.
func (m *Metrics) Consuming(consumer string) {
	m.DeadLetters.WithLabelValues(consumer)
	m.Undecodable.WithLabelValues(consumer)
	m.Panics.WithLabelValues(consumer)
}

// Message is one event as an adapter received it.
type Message struct {
	Kind event.Kind
	Data []byte
	// Destination is the subject or topic it came from, which names its
	// trace span.
	Destination string
	// Where names it in log lines: a subject, or a topic, partition and
	// offset.
	Where string
	// Headers carry the publisher's trace context; nil if the log has
	// none.
	Headers propagation.TextMapCarrier
}

// Handle decodes msg and runs h on it, in a span that continues the
// publisher's trace. An event that does not decode is counted, logged and
// returned as a permanent error (the codec's errors wrap
// event.ErrPermanent); a handler that panics is recovered, counted, and its
// event failed permanently with the stack.
func (m *Metrics) Handle(ctx context.Context, log *slog.Logger, consumer string, msg Message, h event.Handler) (err error) {
	ctx, span := tracing.StartProcess(ctx, msg.Headers, m.system, msg.Destination, consumer)
	defer func() { tracing.End(span, err) }()
	ev, err := eventcodec.Unmarshal(msg.Kind, msg.Data)
	if err != nil {
		m.Undecodable.WithLabelValues(consumer).Inc()
		log.Error("undecodable event", "at", msg.Where, "consumer", consumer, "bytes", len(msg.Data), "err", err)
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			m.Panics.WithLabelValues(consumer).Inc()
			err = fmt.Errorf("handler panicked: %v\n%s: %w", r, debug.Stack(), event.ErrPermanent)
		}
	}()
	return h(ctx, ev)
}

// Tail decodes msg for a tail and runs h on it, in a span that continues
// the publisher's trace: an event that does not decode is counted
// (consumer "tail"), logged and skipped.
func (m *Metrics) Tail(ctx context.Context, log *slog.Logger, msg Message, h func(context.Context, event.Event)) {
	ev, err := eventcodec.Unmarshal(msg.Kind, msg.Data)
	if err != nil {
		m.Undecodable.WithLabelValues(TailConsumer).Inc()
		log.Error("undecodable event skipped by a tail", "at", msg.Where, "bytes", len(msg.Data), "err", err)
		return
	}
	ctx, span := tracing.StartProcess(ctx, msg.Headers, m.system, msg.Destination, "")
	defer span.End()
	h(ctx, ev)
}

// Delay returns the wait before the delivery after the attempt-th one
// failed (attempt counts from 1): backoff's attempt-th value, its last one
// past its end, or event.DefaultBackOff's if backoff is empty.
func Delay(backoff []time.Duration, attempt int) time.Duration {
	if len(backoff) == 0 {
		backoff = event.DefaultBackOff
	}
	return backoff[min(max(attempt, 1), len(backoff))-1]
}
