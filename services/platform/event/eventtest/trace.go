package eventtest

import (
	"context"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/tracing"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

var (
	recorderOnce sync.Once
	recorder     *tracetest.SpanRecorder
)

// spans turns tracing on in this test process, for good, with a provider
// that records every span, and returns the recorder.
func spans() *tracetest.SpanRecorder {
	recorderOnce.Do(func() {
		recorder = tracetest.NewSpanRecorder()
		tracing.Install(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder)))
	})
	return recorder
}

// testTraceContext: an event carries its publisher's trace to every
// consumer. The publish is a producer span, the child of the publisher's;
// a durable consumer's and a tail's handling are consumer spans, children
// of the publish, and the handlers' contexts are in them.
func testTraceContext(t *testing.T, l event.Log) {
	rec := spans()
	ev := event.PostCreated{Post: 71, Author: "traced", Created: created}

	type handled struct {
		ev event.Event
		sc trace.SpanContext
	}
	var mu sync.Mutex
	var durable, tailed []handled
	note := func(to *[]handled) func(context.Context, event.Event) {
		return func(ctx context.Context, e event.Event) {
			mu.Lock()
			defer mu.Unlock()
			*to = append(*to, handled{e, trace.SpanContextFromContext(ctx)})
		}
	}
	liveTail(t, l, note(&tailed))
	consume(t, l, cfg("traced"), func(ctx context.Context, e event.Event) error { note(&durable)(ctx, e); return nil })

	ctx, root := tracing.Tracer().Start(context.Background(), "test publisher")
	pctx, cancel := context.WithTimeout(ctx, waitfor.Deadline)
	defer cancel()
	if err := l.Publish(pctx, ev); err != nil {
		t.Fatalf("Publish(%#v): %v", ev, err)
	}
	root.End()
	find := func(hs []handled) (trace.SpanContext, bool) {
		for _, h := range hs {
			if h.ev == event.Event(ev) {
				return h.sc, true
			}
		}
		return trace.SpanContext{}, false
	}
	var fromDurable, fromTail trace.SpanContext
	waitfor.Until(t, waitfor.Deadline, "the traced event at the durable consumer and the tail", func() (bool, any) {
		mu.Lock()
		defer mu.Unlock()
		var ok1, ok2 bool
		fromDurable, ok1 = find(durable)
		fromTail, ok2 = find(tailed)
		return ok1 && ok2, map[string]int{"durable": len(durable), "tail": len(tailed)}
	})

	want := root.SpanContext().TraceID()
	for name, sc := range map[string]trace.SpanContext{"durable consumer": fromDurable, "tail": fromTail} {
		if sc.TraceID() != want {
			t.Errorf("%s handled the event in trace %s; want the publisher's, %s", name, sc.TraceID(), want)
			continue
		}
		var process sdktrace.ReadOnlySpan
		waitfor.Until(t, waitfor.Deadline, "the "+name+"'s span to end", func() (bool, any) {
			for _, s := range rec.Ended() {
				if s.SpanContext().SpanID() == sc.SpanID() {
					process = s
				}
			}
			return process != nil, len(rec.Ended())
		})
		if process.SpanKind() != trace.SpanKindConsumer {
			t.Errorf("%s's span %q is of kind %v; want consumer", name, process.Name(), process.SpanKind())
		}
		var send sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			if s.SpanContext().SpanID() == process.Parent().SpanID() {
				send = s
			}
		}
		if send == nil || send.SpanKind() != trace.SpanKindProducer {
			t.Errorf("%s's span %q has parent %s, not the publish's producer span", name, process.Name(), process.Parent().SpanID())
			continue
		}
		if send.Parent().SpanID() != root.SpanContext().SpanID() {
			t.Errorf("publish span %q has parent %s; want the publisher's span %s", send.Name(), send.Parent().SpanID(), root.SpanContext().SpanID())
		}
	}
}
