package bus

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/tracing"
)

// BenchmarkPublishTracing is what tracing adds to a publish on embedded
// JetStream (file storage, the stream's ack awaited): off, and on with
// every span sampled and batched to an exporter that drops it, so that
// the cost is the span, the header and its bytes, not an export.
//
//	go test -run '^$' -bench PublishTracing -count 6 ./services/platform/bus/
func BenchmarkPublishTracing(b *testing.B) {
	nc := startNATS(b)
	bus := newBusOn(b, nc, "bench", nil)
	created := time.Now()
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			if on {
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
				tracing.Install(tp)
				b.Cleanup(func() {
					tracing.Uninstall()
					_ = tp.Shutdown(context.Background())
				})
			} else {
				tracing.Uninstall()
			}
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if err := bus.Publish(ctx, event.PostCreated{Post: feed.PostID(i), Author: "bench", Created: created}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
