// Package tracing is Herald's OpenTelemetry tracing: the process's tracer
// provider, set up from the standard OTEL_* variables and off unless they
// ask for it, the gRPC instrumentation (otelgrpc), and the spans and
// propagation of the event log, whose messages carry the W3C trace
// context in their headers (NATS headers, Kafka record headers).
//
// One trace then shows a post's whole path: CreatePost with its store
// write and its publish, the fan-out's handling of the event and of every
// chunk it published, with each chunk's timeline writes, the timeline
// service's live-stream tail, and the post's first read, which links to
// the read that hydrated it.
//
// Tracing is on when any of these is set:
//
//	OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
//	OTEL_TRACES_EXPORTER=otlp
//
// and off when OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none. The
// exporter is OTLP over gRPC or HTTP (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
// else OTEL_EXPORTER_OTLP_PROTOCOL: grpc, or http/protobuf, the default).
// The SDK reads the rest of the standard variables itself: headers,
// timeouts, TLS, the sampler (OTEL_TRACES_SAMPLER, default parentbased
// always_on), the batch processor (OTEL_BSP_*) and the resource
// (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES).
//
// While tracing is off, the global provider is OpenTelemetry's no-op one:
// spans cost a context lookup, gRPC runs without the stats handlers, and
// no event carries a trace header.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
)

// Variables are the OTEL_* variables a Herald process takes: those Setup
// reads, and those the SDK and the OTLP exporters read for it. The
// deployment tests check the compose files and manifests against them.
var Variables = []string{
	"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
	"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
	"OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_EXPORT_TIMEOUT", "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
	"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
	"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
	"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
	"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
	"OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
	"OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
	"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_KEY",
	"OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
}

// Name is the instrumentation scope of Herald's own spans.
const Name = "github.com/herald-feed/herald"

// Tracer returns Herald's tracer from the global provider, which Setup
// sets: a span started before Setup, or while tracing is off, is a no-op.
func Tracer() trace.Tracer { return otel.Tracer(Name) }

// enabled is whether a Setup in this process turned tracing on.
var enabled atomic.Bool

// Enabled reports whether tracing is on in this process.
func Enabled() bool { return enabled.Load() }

// Tracing is the process's tracer provider, as Setup left it.
type Tracing struct {
	tp       trace.TracerProvider // nil while tracing is off
	shutdown func(context.Context) error
}

// Use turns tracing on with tp, a provider the caller made (a benchmark's,
// with an exporter of its own), as Setup does with the one the environment
// describes. Shutdown then leaves tp to its maker.
func Use(tp trace.TracerProvider) *Tracing {
	Install(tp)
	return &Tracing{tp: tp}
}

// Setting names the variable that turned tracing on, or "" if it is off;
// an error is a variable with a value Herald does not take.
func Setting(getenv func(string) string) (string, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return "", nil
	}
	switch exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exp {
	case "none":
		return "", nil
	case "otlp":
		return "OTEL_TRACES_EXPORTER", nil
	case "":
	default:
		return "", fmt.Errorf("OTEL_TRACES_EXPORTER=%q: Herald exports traces over OTLP only; want otlp or none", exp)
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if getenv(v) != "" {
			return v, nil
		}
	}
	return "", nil
}

// protocol returns the OTLP protocol the environment names.
func protocol(getenv func(string) string) (string, error) {
	p := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if p == "" {
		p = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch p {
	case "", "http/protobuf":
		return "http/protobuf", nil
	case "grpc":
		return "grpc", nil
	}
	return "", fmt.Errorf("OTLP protocol %q: want grpc or http/protobuf", p)
}

// Setup turns tracing on if the environment asks for it: it installs, as
// the global tracer provider, one that batches spans to the OTLP exporter,
// with the W3C trace-context and baggage propagators. service names the
// process (the resource's service.name) unless OTEL_SERVICE_NAME does.
// While tracing is off it returns a Tracing whose methods do nothing. The
// exporter connects lazily: a collector that is down costs dropped spans
// (logged by the SDK), never a failed start.
func Setup(ctx context.Context, service string, log *slog.Logger) (*Tracing, error) {
	on, err := Setting(os.Getenv)
	if err != nil || on == "" {
		return &Tracing{}, err
	}
	proto, err := protocol(os.Getenv)
	if err != nil {
		return nil, err
	}
	var exp sdktrace.SpanExporter
	if proto == "grpc" {
		exp, err = otlptracegrpc.New(ctx)
	} else {
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter (%s): %w", proto, err)
	}
	// Defaults first: the environment (OTEL_SERVICE_NAME,
	// OTEL_RESOURCE_ATTRIBUTES) overrides them.
	res, err := resource.Merge(
		resource.NewSchemaless(semconv.ServiceName(service), semconv.ServiceInstanceID(instanceID())),
		resource.Environment(),
	)
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing", "err", err)
	}))
	Install(tp)
	name, _ := res.Set().Value(semconv.ServiceNameKey)
	log.Info("tracing on", "set_by", on, "protocol", proto, "service", name.String())
	return &Tracing{tp: tp, shutdown: tp.Shutdown}, nil
}

// Install makes tp the global tracer provider, with the W3C trace-context
// and baggage propagators, and turns Herald's tracing on: what Setup does
// with the exporter's provider, and a test with one that records spans.
func Install(tp trace.TracerProvider) {
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	enabled.Store(true)
}

// Uninstall turns Herald's tracing off again, with the no-op provider and
// propagator: for tests that measure an untraced path after a traced one.
func Uninstall() {
	enabled.Store(false)
	otel.SetTracerProvider(noop.NewTracerProvider())
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
}

// instanceID names this process among its service's instances.
func instanceID() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d", host, os.Getpid())
}

// ServerOptions instruments a gRPC server: a span for each call, the
// child of the caller's. None while tracing is off.
func (t *Tracing) ServerOptions() []grpc.ServerOption {
	if t == nil || t.tp == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(t.tp)))}
}

// DialOptions instruments a gRPC client: a span for each call, whose
// context travels in the call's metadata. None while tracing is off.
func (t *Tracing) DialOptions() []grpc.DialOption {
	if t == nil || t.tp == nil {
		return nil
	}
	return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(t.tp)))}
}

// Shutdown exports the spans still batched and stops the exporter, within
// ctx. It does nothing while tracing is off.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := t.shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("tracing: spans not exported before shutdown: %w", err)
	}
	return err
}
