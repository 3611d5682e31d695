package tracing

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestOriginsFirstRead: the first read of a remembered post adds a span to
// the post's trace, linked to the read; a second read adds none.
func TestOriginsFirstRead(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	Install(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	o := NewOrigins()

	pctx, posted := Tracer().Start(context.Background(), "post created")
	o.Remember(pctx, 42, time.Now().Add(-time.Second))
	posted.End()
	rctx, read := Tracer().Start(context.Background(), "read")
	links := o.FirstReads(rctx, []uint64{41, 42})
	again := o.FirstReads(rctx, []uint64{42})
	read.End()

	if len(links) != 1 || links[0].SpanContext.TraceID() != posted.SpanContext().TraceID() {
		t.Fatalf("FirstReads returned links %+v; want one, to the post's trace %s", links, posted.SpanContext().TraceID())
	}
	if len(again) != 0 {
		t.Errorf("a second read of the post returned links %+v; want none", again)
	}
	var first []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "first read" {
			first = append(first, s)
		}
	}
	if len(first) != 1 {
		t.Fatalf("%d first read spans; want 1", len(first))
	}
	s := first[0]
	if s.Parent().SpanID() != posted.SpanContext().SpanID() || s.SpanContext().TraceID() != posted.SpanContext().TraceID() {
		t.Errorf("first read span has parent %s in trace %s; want the post's span %s", s.Parent().SpanID(), s.SpanContext().TraceID(), posted.SpanContext().SpanID())
	}
	if len(s.Links()) != 1 || s.Links()[0].SpanContext.SpanID() != read.SpanContext().SpanID() {
		t.Errorf("first read span links %+v; want the read's span %s", s.Links(), read.SpanContext().SpanID())
	}
}
