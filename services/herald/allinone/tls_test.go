package allinone_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/herald-feed/herald/services/herald/allinone"
	"github.com/herald-feed/herald/services/herald/systemtest"
	"github.com/herald-feed/herald/services/platform/tlsconfig"
	"github.com/herald-feed/herald/services/platform/tlsconfig/tlstest"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// transportCredentials is the transport security of a test client of the
// all-in-one cfg runs: plaintext, or, if cfg serves TLS, TLS trusting
// cfg's CA and presenting cfg's own certificate, which tlstest issues for
// clients as well as servers.
func transportCredentials(t testing.TB, cfg allinone.Config) grpc.DialOption {
	t.Helper()
	if cfg.Node.TLS == (tlsconfig.Files{}) {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	creds, err := tlsconfig.ClientCredentials(cfg.Node.TLS)
	if err != nil {
		t.Fatal(err)
	}
	return grpc.WithTransportCredentials(creds)
}

// TestSystemOverTLS runs the API behaviour suite against an all-in-one
// that serves mutual TLS only. Its services call one another (fan-out asks
// graph for followers) through its own listener, found through etcd, so
// the suite passes only if those calls verify the listener's certificate
// against the CA and present the process's certificate as theirs.
func TestSystemOverTLS(t *testing.T) {
	ca := tlstest.NewCA(t)
	cfg := testConfig(t, t.TempDir())
	cfg.Node.TLS = ca.Issue(t, "127.0.0.1", "localhost")
	conn, sys, stop := startSystemWith(t, cfg)
	defer stop()
	addr := sys.Node.Addr()

	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Deadline)
	defer cancel()
	inner, err := sys.Node.Dial("graph")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := healthpb.NewHealthClient(inner).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("health check through the node's own Dial (etcd, mutual TLS): %v", err)
	}

	stranger := tlstest.NewCA(t).Issue(t, "client")
	for _, tc := range []struct {
		name  string
		files *tlsconfig.Files // nil: plaintext
	}{
		{"plaintext", nil},
		{"TLS without a client certificate", &tlsconfig.Files{CA: ca.CertFile}},
		{"client certificate from another CA", &tlsconfig.Files{Cert: stranger.Cert, Key: stranger.Key, CA: ca.CertFile}},
	} {
		opt := grpc.WithTransportCredentials(insecure.NewCredentials())
		if tc.files != nil {
			creds, err := tlsconfig.ClientCredentials(*tc.files)
			if err != nil {
				t.Fatal(err)
			}
			opt = grpc.WithTransportCredentials(creds)
		}
		c, err := grpc.NewClient(addr, opt)
		if err != nil {
			t.Fatal(err)
		}
		_, err = healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{})
		c.Close()
		if err == nil {
			t.Errorf("%s: health check of the mutual-TLS all-in-one succeeded; want the connection refused", tc.name)
		}
	}

	systemtest.Run(t, suiteClient(t, conn, cfg.DataDir))
}
