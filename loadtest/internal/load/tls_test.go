package load_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/herald-feed/herald/loadtest/internal/load"
	"github.com/herald-feed/herald/services/platform/tlsconfig"
	"github.com/herald-feed/herald/services/platform/tlsconfig/tlstest"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// TestDialTLS checks Dial against a health server that serves mutual TLS
// only, as a Herald process with -tls-cert, -tls-key and -tls-ca does.
func TestDialTLS(t *testing.T) {
	ca := tlstest.NewCA(t)
	srv, err := tlsconfig.Load(ca.Issue(t, "127.0.0.1"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(srv.ServerOptions()...)
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(l)
	t.Cleanup(s.Stop)
	addr := l.Addr().String()

	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Deadline)
	defer cancel()
	client := ca.Issue(t, "feedload")
	tg, err := load.Dial(ctx, load.DialConfig{Addr: addr, TLS: &client})
	if err != nil {
		t.Fatalf("Dial over mutual TLS: %v", err)
	}
	tg.Close()

	for _, tc := range []struct {
		name string
		tls  *tlsconfig.Files
		want string
	}{
		{"plaintext", nil, "cannot reach Herald"},
		{"no client certificate", &tlsconfig.Files{CA: ca.CertFile}, "cannot reach Herald"},
		{"certificate without its key", &tlsconfig.Files{Cert: client.Cert}, "-tls-key"},
	} {
		tg, err := load.Dial(ctx, load.DialConfig{Addr: addr, TLS: tc.tls})
		if err == nil {
			tg.Close()
			t.Errorf("%s: Dial succeeded; want an error", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Dial = %q; want it to say %q", tc.name, err, tc.want)
		}
	}
}
