package allinone_test

import (
	"context"
	"log/slog"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/herald-feed/herald/services/herald/allinone"
	"github.com/herald-feed/herald/services/platform/guard"
	"github.com/herald-feed/herald/services/platform/node"
	"github.com/herald-feed/herald/services/platform/ratelimit"
	"github.com/herald-feed/herald/services/platform/tracing"
)

// BenchmarkTracingOverhead runs the all-in-one with tracing off and on,
// alternating, in one run: the cost of the spans of a call and of what it
// publishes (the gRPC server span, the store write, the publish with its
// trace header, the fan-out's and the tail's spans), every span sampled.
// The spans go to a batching exporter that drops them, so that no
// collector's speed is measured.
//
//	go test -run '^$' -bench TracingOverhead -benchtime 3000x ./services/herald/allinone
func BenchmarkTracingOverhead(b *testing.B) {
	for _, mode := range []string{"off", "on", "off", "on"} {
		cfg := allinone.Config{
			Node:    node.Config{Name: "bench", ListenAddr: "127.0.0.1:0", Log: slog.New(slog.DiscardHandler)},
			DataDir: b.TempDir(),
		}
		cfg.Node.Guard.Limits = map[guard.Class]ratelimit.Limit{} // none: 3,000 posts in a row
		var tp *sdktrace.TracerProvider
		if mode == "on" {
			tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
			cfg.Node.TracerProvider = tp
		} else {
			tracing.Uninstall()
		}
		benchCalls(b, cfg, "tracing="+mode)
		if tp != nil {
			_ = tp.Shutdown(context.Background())
		}
	}
	tracing.Uninstall()
}
