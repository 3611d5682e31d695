package grpcserver

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// rawCodec sends the bytes it is given, so a test can send what no
// well-behaved client would.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// waitService has one unary call, Wait, that returns when its context
// ends: the server-side deadline is what ends it.
var waitService = grpc.ServiceDesc{
	ServiceName: "test.Wait",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Wait",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				<-ctx.Done()
				return nil, status.FromContextError(ctx.Err()).Err()
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/test.Wait/Wait"}, h)
		},
	}},
}

// serve starts a Server on loopback and returns a connection to it and
// its registry.
func serve(t *testing.T, cfg Config) (*grpc.ClientConn, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s := New(slog.New(slog.NewTextHandler(io.Discard, nil)), reg, cfg)
	s.RegisterService(&waitService, struct{}{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, reg
}

func healthy(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check: %v", err)
	}
}

// TestMalformedRequestIsInvalidArgument: bytes that are not protobuf get
// INVALID_ARGUMENT, counted like every other call (gRPC itself would
// answer INTERNAL before any interceptor ran).
func TestMalformedRequestIsInvalidArgument(t *testing.T) {
	conn, reg := serve(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Field 1, wire type 2 (bytes), length 100, then 2 bytes: truncated.
	req := []byte{0x0a, 100, 'x', 'y'}
	var resp []byte
	err := conn.Invoke(ctx, "/grpc.health.v1.Health/Check", &req, &resp, grpc.ForceCodec(rawCodec{}))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "malformed") {
		t.Fatalf("Check(truncated message) = %v; want InvalidArgument saying malformed", err)
	}
	if n := invalidCalls(t, reg); n != 1 {
		t.Errorf("INVALID_ARGUMENT calls in herald_grpc_server_handling_seconds = %d; want the malformed one", n)
	}
	if n := malformed(t, reg); n != 1 {
		t.Errorf("herald_grpc_malformed_requests_total = %v; want 1", n)
	}
	healthy(t, conn)
}

// invalidCalls returns how many calls the latency histogram recorded
// with code InvalidArgument.
func invalidCalls(t *testing.T, reg *prometheus.Registry) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() != "herald_grpc_server_handling_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" && l.GetValue() == codes.InvalidArgument.String() {
					n += m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return n
}

// malformed returns herald_grpc_malformed_requests_total, over every
// method.
func malformed(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "herald_grpc_malformed_requests_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// TestLargeMetadataIsRefused: metadata over MaxHeaderBytes is refused,
// and the server goes on serving.
func TestLargeMetadataIsRefused(t *testing.T) {
	conn, _ := serve(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-big", strings.Repeat("a", MaxHeaderBytes+1))
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		t.Fatal("Check with metadata over 64 KiB succeeded; want it refused")
	}
	healthy(t, conn)
}

// TestLargeMessageIsRefused: a request over MaxRecvBytes never reaches a
// handler.
func TestLargeMessageIsRefused(t *testing.T) {
	conn, _ := serve(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: strings.Repeat("s", MaxRecvBytes)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Check with a %d-byte request = %v; want ResourceExhausted", MaxRecvBytes, err)
	}
	healthy(t, conn)
}

// TestUnaryCallsHaveAServerDeadline: a call whose client set no deadline
// still ends, at the server's.
func TestUnaryCallsHaveAServerDeadline(t *testing.T) {
	conn, _ := serve(t, Config{UnaryTimeout: 100 * time.Millisecond})
	err := conn.Invoke(context.Background(), "/test.Wait/Wait", &emptypb.Empty{}, &emptypb.Empty{})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("Wait without a client deadline = %v; want DeadlineExceeded from the server's", err)
	}
}
