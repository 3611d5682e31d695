package tlsconfig_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/herald-feed/herald/services/platform/flagenv"
	"github.com/herald-feed/herald/services/platform/tlsconfig"
	"github.com/herald-feed/herald/services/platform/tlsconfig/tlstest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func load(t *testing.T, f tlsconfig.Files) *tlsconfig.Config {
	t.Helper()
	c, err := tlsconfig.Load(f, quiet)
	if err != nil {
		t.Fatalf("Load(%+v): %v", f, err)
	}
	return c
}

// serve serves the health service with c's TLS on a loopback port.
func serve(t *testing.T, c *tlsconfig.Config) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(c.ServerOptions()...)
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return l.Addr().String()
}

// check makes one health check on a new connection to addr, so each call
// is a new TLS handshake, and returns the certificate the server showed.
func check(t *testing.T, addr string, opt grpc.DialOption) (*x509.Certificate, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		return nil, err
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		t.Fatalf("call to %s succeeded without TLS (auth info %v)", addr, p.AuthInfo)
	}
	return info.State.PeerCertificates[0], nil
}

func client(t *testing.T, f tlsconfig.Files) grpc.DialOption {
	t.Helper()
	creds, err := tlsconfig.ClientCredentials(f)
	if err != nil {
		t.Fatalf("ClientCredentials(%+v): %v", f, err)
	}
	return grpc.WithTransportCredentials(creds)
}

var plaintext = grpc.WithTransportCredentials(insecure.NewCredentials())

func TestZeroFilesIsPlaintext(t *testing.T) {
	c, err := tlsconfig.Load(tlsconfig.Files{}, quiet)
	if c != nil || err != nil {
		t.Fatalf("Load(zero Files) = %v, %v; want nil, nil", c, err)
	}
	addr := serve(t, c)
	conn, err := grpc.NewClient(addr, c.DialOption())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("plaintext call to a plaintext server: %v", err)
	}
}

func TestServerTLS(t *testing.T) {
	ca := tlstest.NewCA(t)
	f := ca.Issue(t, "127.0.0.1", "localhost")
	c := load(t, tlsconfig.Files{Cert: f.Cert, Key: f.Key})
	addr := serve(t, c)
	_, port, _ := net.SplitHostPort(addr)

	for _, tc := range []struct {
		name   string
		addr   string
		opt    grpc.DialOption
		wantOK bool
	}{
		{"client trusting the CA", addr, client(t, tlsconfig.Files{CA: ca.CertFile}), true},
		{"client trusting the CA, by DNS name", "localhost:" + port, client(t, tlsconfig.Files{CA: ca.CertFile}), true},
		// The all-in-one's calls to itself: no CA, its own certificate.
		{"the process's own calls", addr, c.DialOption(), true},
		{"plaintext client", addr, plaintext, false},
		{"client trusting only the system roots", addr, client(t, tlsconfig.Files{}), false},
		{"client trusting another CA", addr, client(t, tlsconfig.Files{CA: tlstest.NewCA(t).CertFile}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := check(t, tc.addr, tc.opt)
			if tc.wantOK && err != nil {
				t.Errorf("health check = %v; want OK", err)
			}
			if !tc.wantOK {
				if err == nil {
					t.Errorf("health check succeeded; want the connection refused")
				}
				t.Logf("refused: %v", err)
			}
		})
	}
}

func TestMutualTLS(t *testing.T) {
	ca, other := tlstest.NewCA(t), tlstest.NewCA(t)
	c := load(t, ca.Issue(t, "127.0.0.1"))
	addr := serve(t, c)
	peerFiles := ca.Issue(t, "127.0.0.1")
	stranger := other.Issue(t, "127.0.0.1")

	for _, tc := range []struct {
		name   string
		opt    grpc.DialOption
		wantOK bool
	}{
		{"client with a certificate from the CA", client(t, peerFiles), true},
		{"another process of the deployment", load(t, peerFiles).DialOption(), true},
		{"client without a certificate", client(t, tlsconfig.Files{CA: ca.CertFile}), false},
		{"client with a certificate from another CA", client(t, tlsconfig.Files{Cert: stranger.Cert, Key: stranger.Key, CA: ca.CertFile}), false},
		{"plaintext client", plaintext, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := check(t, addr, tc.opt)
			if tc.wantOK && err != nil {
				t.Errorf("health check = %v; want OK", err)
			}
			if !tc.wantOK {
				if err == nil {
					t.Errorf("health check succeeded; want the connection refused")
				}
				t.Logf("refused: %v", err)
			}
		})
	}

	// With -tls-ca, calls between services trust that CA only: a server
	// with a certificate from another CA is refused, even one the process
	// would otherwise trust as its own.
	strangerAddr := serve(t, load(t, tlsconfig.Files{Cert: stranger.Cert, Key: stranger.Key}))
	if _, err := check(t, strangerAddr, c.DialOption()); err == nil {
		t.Errorf("a process with -tls-ca called a server whose certificate is from another CA; want refused")
	}
}

func TestReloadsRotatedCertificate(t *testing.T) {
	ca := tlstest.NewCA(t)
	dir := t.TempDir()
	f := tlsconfig.Files{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), CA: ca.CertFile}
	first, second := ca.Issue(t, "127.0.0.1"), ca.Issue(t, "127.0.0.1")
	install(t, f, first.Cert, first.Key, 0)
	c := load(t, f)
	addr := serve(t, c)
	cli := client(t, ca.Issue(t, "client"))

	served := func() string {
		t.Helper()
		cert, err := check(t, addr, cli)
		if err != nil {
			t.Fatalf("health check: %v", err)
		}
		return cert.SerialNumber.String()
	}
	if got, want := served(), serialOf(t, first.Cert); got != want {
		t.Fatalf("served certificate %s; want the first, %s", got, want)
	}
	// A modification time a second on, so that a file system with coarse
	// timestamps sees the change too.
	install(t, f, second.Cert, second.Key, time.Second)
	if got, want := served(), serialOf(t, second.Cert); got != want {
		t.Fatalf("after rotation, served certificate %s; want the second, %s", got, want)
	}
	// A half-done rotation: the new certificate, the old key. The pair
	// does not load, and the previous one stays in use.
	install(t, f, first.Cert, second.Key, 2*time.Second)
	if got, want := served(), serialOf(t, second.Cert); got != want {
		t.Errorf("after a mismatched rotation, served certificate %s; want the previous, %s", got, want)
	}
}

// install copies cert and key to f's paths, dated now plus ahead.
func install(t *testing.T, f tlsconfig.Files, cert, key string, ahead time.Duration) {
	t.Helper()
	for dst, src := range map[string]string{f.Cert: cert, f.Key: key} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
		at := time.Now().Add(ahead)
		if err := os.Chtimes(dst, at, at); err != nil {
			t.Fatal(err)
		}
	}
}

func serialOf(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert.SerialNumber.String()
}

func TestLoadErrors(t *testing.T) {
	ca := tlstest.NewCA(t)
	a, b := ca.Issue(t, "127.0.0.1"), ca.Issue(t, "127.0.0.1")
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		f    tlsconfig.Files
		want []string // each must appear in the error
	}{
		{"cert without key", tlsconfig.Files{Cert: a.Cert}, []string{"-tls-cert", "HERALD_TLS_CERT", a.Cert, "-tls-key"}},
		{"key without cert", tlsconfig.Files{Key: a.Key}, []string{"-tls-key", "HERALD_TLS_KEY", a.Key, "-tls-cert"}},
		{"CA without cert and key", tlsconfig.Files{CA: ca.CertFile}, []string{"-tls-ca", ca.CertFile, "-tls-cert", "-tls-key"}},
		{"missing cert", tlsconfig.Files{Cert: missing, Key: a.Key}, []string{"-tls-cert", missing, "no such file"}},
		{"missing key", tlsconfig.Files{Cert: a.Cert, Key: missing}, []string{"-tls-key", missing, "no such file"}},
		{"unreadable cert (a directory)", tlsconfig.Files{Cert: dir, Key: a.Key}, []string{"-tls-cert", dir, "is a directory"}},
		{"cert not PEM", tlsconfig.Files{Cert: garbage, Key: a.Key}, []string{"-tls-cert", garbage, "-tls-key", a.Key}},
		{"key of another certificate", tlsconfig.Files{Cert: a.Cert, Key: b.Key}, []string{"-tls-cert", a.Cert, "-tls-key", b.Key, "does not match"}},
		{"missing CA", tlsconfig.Files{Cert: a.Cert, Key: a.Key, CA: missing}, []string{"-tls-ca", "HERALD_TLS_CA", missing, "no such file"}},
		{"CA not PEM", tlsconfig.Files{Cert: a.Cert, Key: a.Key, CA: garbage}, []string{"-tls-ca", garbage, "no PEM certificate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tlsconfig.Load(tc.f, quiet)
			if err == nil {
				t.Fatalf("Load(%+v) = %v, nil; want an error", tc.f, c)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load(%+v) = %q; want it to name %q", tc.f, err, w)
				}
			}
		})
	}
}

func TestClientCredentialsErrors(t *testing.T) {
	ca := tlstest.NewCA(t)
	a := ca.Issue(t, "127.0.0.1")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		name string
		f    tlsconfig.Files
		want []string
	}{
		{"cert without key", tlsconfig.Files{Cert: a.Cert, CA: ca.CertFile}, []string{"-tls-cert", a.Cert, "-tls-key"}},
		{"missing CA", tlsconfig.Files{CA: missing}, []string{"-tls-ca", missing}},
		{"missing key", tlsconfig.Files{Cert: a.Cert, Key: missing}, []string{"-tls-key", missing}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tlsconfig.ClientCredentials(tc.f)
			if err == nil {
				t.Fatalf("ClientCredentials(%+v) succeeded; want an error", tc.f)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ClientCredentials(%+v) = %q; want it to name %q", tc.f, err, w)
				}
			}
		})
	}
}

func TestBind(t *testing.T) {
	env := map[string]string{"HERALD_TLS_CERT": "/env/cert.pem", "HERALD_TLS_CA": "/env/ca.pem"}
	fs := flagenv.New("test", func(k string) string { return env[k] }, io.Discard)
	var f tlsconfig.Files
	tlsconfig.Bind(fs, &f)
	if err := fs.Parse([]string{"-tls-key", "/flag/key.pem", "-tls-ca", "/flag/ca.pem"}); err != nil {
		t.Fatal(err)
	}
	want := tlsconfig.Files{Cert: "/env/cert.pem", Key: "/flag/key.pem", CA: "/flag/ca.pem"}
	if f != want {
		t.Errorf("Bind, then parse = %+v; want %+v", f, want)
	}
}
