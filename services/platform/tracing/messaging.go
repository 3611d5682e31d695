package tracing

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// The event logs' names, as the messaging.system attribute.
const (
	SystemNATS  = "nats"
	SystemKafka = "kafka"
)

// noSpan is the span of a call while tracing is off: it records nothing.
var noSpan = trace.SpanFromContext(context.Background())

// StartSend starts the span of a publish to destination (a subject or a
// topic), the child of ctx's span. Inject then writes its context into the
// message's headers.
func StartSend(ctx context.Context, system, destination string) (context.Context, trace.Span) {
	if !Enabled() {
		return ctx, noSpan
	}
	return Tracer().Start(ctx, "send "+destination, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String(string(semconv.MessagingSystemKey), system),
			semconv.MessagingOperationTypeSend, semconv.MessagingDestinationName(destination)))
}

// Inject writes ctx's trace context (traceparent, tracestate, baggage)
// into carrier, and reports whether tracing is on: while it is off the
// carrier is left alone, so that an untraced event costs no header bytes.
func Inject(ctx context.Context, carrier propagation.TextMapCarrier) bool {
	if !Enabled() {
		return false
	}
	otel.GetTextMapPropagator().Inject(ctx, carrier)
	return true
}

// StartProcess starts the span of a consumer's handling of one event
// from destination, the child of the publisher's span whose context
// carrier holds (the event's headers). consumer names the durable
// consumer, or is "" for a tail. While tracing is off it returns ctx and a
// no-op span.
func StartProcess(ctx context.Context, carrier propagation.TextMapCarrier, system, destination, consumer string) (context.Context, trace.Span) {
	if !Enabled() {
		return ctx, noSpan
	}
	if carrier != nil {
		ctx = otel.GetTextMapPropagator().Extract(ctx, carrier)
	}
	attrs := []attribute.KeyValue{attribute.String(string(semconv.MessagingSystemKey), system),
		semconv.MessagingOperationTypeProcess, semconv.MessagingDestinationName(destination)}
	if consumer != "" {
		attrs = append(attrs, semconv.MessagingConsumerGroupName(consumer))
	}
	return Tracer().Start(ctx, "process "+destination, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
}

// End ends span, marking it failed with err unless err is nil.
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// NATSHeader carries trace context in a NATS message's headers, whose keys,
// unlike HTTP's, are case-sensitive: they stay as the propagator writes
// them (traceparent, tracestate, baggage).
type NATSHeader map[string][]string

// Get implements propagation.TextMapCarrier.
func (h NATSHeader) Get(key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set implements propagation.TextMapCarrier.
func (h NATSHeader) Set(key, value string) { h[key] = []string{value} }

// Keys implements propagation.TextMapCarrier.
func (h NATSHeader) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}
