// Package grpcserver builds the gRPC server every Herald process runs:
// health checking, server reflection (so grpcurl works without proto
// files), per-method latency metrics, request logging and panic recovery.
package grpcserver

import (
	"context"
	"log/slog"
	"runtime/debug"
	"sync"
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

// Limits on what one client may make the server hold. Each was found by a
// probe: 40 concurrent calls with 15 MiB of metadata took a server to
// 2.8 GiB of resident memory, which it never gave back.
const (
	// MaxHeaderBytes bounds a call's metadata (HTTP/2 header list).
	MaxHeaderBytes = 64 << 10
	// MaxRecvBytes bounds a request message: the largest valid request
	// (a post of 500 characters of up to 4 bytes each, with its IDs and
	// idempotency key, or a page token) is a few KiB, far under gRPC's
	// 4 MiB default.
	MaxRecvBytes = 16 << 10
	// MaxStreamsPerConn bounds the concurrent calls of one connection.
	MaxStreamsPerConn = 128
	// MaxConnectionAge bounds how long one client connection lives.
	MaxConnectionAge = 30 * time.Minute
	// DefaultUnaryTimeout bounds every unary call on the server, whatever
	// deadline its client set (or did not).
	DefaultUnaryTimeout = 30 * time.Second
)

// Config adds to the server New builds.
type Config struct {
	// UnaryTimeout bounds each unary call; zero means DefaultUnaryTimeout.
	UnaryTimeout time.Duration
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
	malformed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_grpc_malformed_requests_total",
		Help: "Requests whose message did not decode as protobuf, by method; each got INVALID_ARGUMENT.",
	}, []string{"method"})
	reg.MustRegister(malformed)
	if cfg.UnaryTimeout == 0 {
		cfg.UnaryTimeout = DefaultUnaryTimeout
	}
	o := &observer{log: log, latency: latency, malformed: malformed, unaryTimeout: cfg.UnaryTimeout}
	opts := append([]grpc.ServerOption{
		grpc.ForceServerCodecV2(lenientCodec{encoding.GetCodecV2(protocodec.Name)}),
		grpc.MaxHeaderListSize(MaxHeaderBytes),
		grpc.MaxRecvMsgSize(MaxRecvBytes),
		grpc.MaxConcurrentStreams(MaxStreamsPerConn),
		grpc.ChainUnaryInterceptor(append([]grpc.UnaryServerInterceptor{o.unary}, cfg.Unary...)...),
		grpc.ChainStreamInterceptor(append([]grpc.StreamServerInterceptor{o.stream}, cfg.Stream...)...),
		// Clients that stream timelines hold connections open for long;
		// pings find dead peers.
		//
		// A connection lives at most MaxConnectionAge (plus the grace, for
		// calls in flight): a stream the server cut off because its
		// client stopped reading keeps about 130 KiB and a slot of the
		// connection's MaxStreamsPerConn until the connection closes,
		// since its closing frame waits behind data the client never
		// takes. Timeline streams end then with UNAVAILABLE, and their
		// clients reconnect, as after any instance's shutdown.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second,
			MaxConnectionAge: MaxConnectionAge, MaxConnectionAgeGrace: time.Minute}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}, cfg.Options...)
	s := grpc.NewServer(opts...)
	h := health.NewServer()
	healthpb.RegisterHealthServer(s, h)
	reflection.Register(s)
	return &Server{Server: s, Health: h}
}

type observer struct {
	log          *slog.Logger
	latency      *prometheus.HistogramVec
	malformed    *prometheus.CounterVec
	unaryTimeout time.Duration
}

func (o *observer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			err = o.panicked(info.FullMethod, p)
		}
		o.done(ctx, info.FullMethod, start, err)
	}()
	if err := o.decoded(info.FullMethod, req); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.unaryTimeout)
	defer cancel()
	return h(ctx, req)
}

// decoded returns INVALID_ARGUMENT if m is a request the codec could not
// decode (see lenientCodec), counting it.
func (o *observer) decoded(method string, m any) error {
	err, ok := undecodable.LoadAndDelete(m)
	if !ok {
		return nil
	}
	o.malformed.WithLabelValues(method).Inc()
	return status.Errorf(codes.InvalidArgument, "malformed request: not a valid %T message: %v", m, err)
}

// observedStream checks each message the handler receives.
type observedStream struct {
	grpc.ServerStream
	o      *observer
	method string
}

func (s observedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.o.decoded(s.method, m)
}

func (o *observer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			err = o.panicked(info.FullMethod, p)
		}
		o.done(ss.Context(), info.FullMethod, start, err)
	}()
	return h(srv, observedStream{ServerStream: ss, o: o, method: info.FullMethod})
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

// lenientCodec is the proto codec, except that no request fails to
// decode in gRPC itself, which would answer INTERNAL before any
// interceptor runs, so that the call would be neither logged nor counted.
//
// A request whose string fields hold invalid UTF-8 (which proto3 rejects
// while unmarshalling) decodes as is, and reaches the service's
// validation, which rejects it as INVALID_ARGUMENT naming the field. A
// request that is not protobuf at all decodes as an empty message noted
// in undecodable, which the observer's interceptor answers with
// INVALID_ARGUMENT.
type lenientCodec struct{ encoding.CodecV2 }

// undecodable holds the request messages lenientCodec could not decode,
// with the error, until the interceptor takes them out. The interceptor
// runs right after each decode, so the map holds at most the calls being
// decoded at the moment.
var undecodable sync.Map

func (c lenientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	m, ok := v.(proto.Message)
	if !ok || err == nil {
		return err
	}
	if unmarshalLenient(data.Materialize(), m) == nil {
		return nil
	}
	proto.Reset(m)
	undecodable.Store(v, err)
	return nil
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
