// Package grpcserver builds the gRPC server every Herald process runs:
// health checking, server reflection (so grpcurl works without proto
// files), per-method latency metrics, request logging and panic recovery.
package grpcserver

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Server is a gRPC server with its health service.
type Server struct {
	*grpc.Server
	Health *health.Server
}

// Config adds to the server New builds.
type Config struct {
	// Unary and Stream run, in order, inside the logging, metrics and
	// panic-recovery interceptor, so that a call they refuse is logged and
	// counted like any other.
	Unary  []grpc.UnaryServerInterceptor
	Stream []grpc.StreamServerInterceptor
	// Options are further server options, such as TLS credentials.
	Options []grpc.ServerOption
}

// New returns a Server whose RPC latencies are recorded in reg.
func New(log *slog.Logger, reg prometheus.Registerer, cfg Config) *Server {
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "herald_grpc_server_handling_seconds",
		Help:    "Latency of gRPC calls handled, by method and status code.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18), // 100µs .. 13s
	}, []string{"method", "code"})
	reg.MustRegister(latency)
	o := &observer{log: log, latency: latency}
	opts := append([]grpc.ServerOption{
		grpc.ForceServerCodecV2(lenientCodec{encoding.GetCodecV2(protocodec.Name)}),
		grpc.ChainUnaryInterceptor(append([]grpc.UnaryServerInterceptor{o.unary}, cfg.Unary...)...),
		grpc.ChainStreamInterceptor(append([]grpc.StreamServerInterceptor{o.stream}, cfg.Stream...)...),
		// Clients that stream timelines hold connections open for long;
		// pings find dead peers.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}, cfg.Options...)
	s := grpc.NewServer(opts...)
	h := health.NewServer()
	healthpb.RegisterHealthServer(s, h)
	reflection.Register(s)
	return &Server{Server: s, Health: h}
}

type observer struct {
	log     *slog.Logger
	latency *prometheus.HistogramVec
}

func (o *observer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			err = o.panicked(info.FullMethod, p)
		}
		o.done(ctx, info.FullMethod, start, err)
	}()
	return h(ctx, req)
}

func (o *observer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			err = o.panicked(info.FullMethod, p)
		}
		o.done(ss.Context(), info.FullMethod, start, err)
	}()
	return h(srv, ss)
}

// panicked turns a handler panic, which is a bug, into INTERNAL for that
// one call instead of a dead process.
func (o *observer) panicked(method string, p any) error {
	o.log.Error("panic in handler", "method", method, "panic", p, "stack", string(debug.Stack()))
	return status.Error(codes.Internal, "internal error")
}

func (o *observer) done(ctx context.Context, method string, start time.Time, err error) {
	d := time.Since(start)
	code := status.Code(err)
	o.latency.WithLabelValues(method, code.String()).Observe(d.Seconds())
	switch code {
	case codes.OK, codes.Canceled:
		o.log.Debug("rpc", "method", method, "dur", d)
	case codes.Internal, codes.Unknown, codes.DataLoss:
		o.log.ErrorContext(ctx, "rpc", "method", method, "code", code, "dur", d, "err", err)
	default:
		o.log.InfoContext(ctx, "rpc", "method", method, "code", code, "dur", d, "err", err)
	}
}

// lenientCodec is the proto codec, except that a request whose string
// fields hold invalid UTF-8 still decodes. proto3 rejects such a string
// while unmarshalling, which grpc-go reports as INTERNAL before any handler
// runs; decoded as is, the string reaches the service's validation, which
// rejects it as INVALID_ARGUMENT naming the field.
type lenientCodec struct{ encoding.CodecV2 }

func (c lenientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	if m, ok := v.(proto.Message); ok && err != nil {
		if unmarshalLenient(data.Materialize(), m) == nil {
			return nil
		}
	}
	return err
}

// unmarshalLenient decodes b into m, setting singular string fields without
// checking their UTF-8 and decoding every other field the usual way.
func unmarshalLenient(b []byte, m proto.Message) error {
	proto.Reset(m)
	r := m.ProtoReflect()
	fields := r.Descriptor().Fields()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		vn := protowire.ConsumeFieldValue(num, typ, b[n:])
		if vn < 0 {
			return protowire.ParseError(vn)
		}
		field := b[:n+vn]
		b = b[n+vn:]
		if fd := fields.ByNumber(num); fd != nil && fd.Kind() == protoreflect.StringKind && fd.Cardinality() != protoreflect.Repeated && typ == protowire.BytesType {
			s, _ := protowire.ConsumeBytes(field[n:])
			r.Set(fd, protoreflect.ValueOfString(string(s)))
			continue
		}
		if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(field, m); err != nil {
			return err
		}
	}
	return nil
}
