// Package tlsconfig turns a Herald process's TLS flags into gRPC
// credentials, for its listener and for its calls to the other services.
//
// TLS is optional. A process given neither -tls-cert nor -tls-key serves
// and calls in plaintext, as before. Given both (PEM files), its gRPC
// listener serves TLS only: a plaintext client is refused at the
// handshake. One without the other is a start-up error naming both.
//
// -tls-ca (a PEM bundle of CA certificates) turns on mutual TLS: the
// listener requires a client certificate that chains to one of those CAs,
// and the process's calls to the other services verify their certificates
// against the same CAs and present its own certificate as its client
// certificate. Every process of a deployment is then given the same
// -tls-ca, and a certificate of its own that names the host it advertises
// in etcd and carries both the serverAuth and clientAuth extended key
// usages (a certificate without extended key usages also does).
//
// Without -tls-ca, the process's calls to the other services trust the
// system's root CAs and the process's own certificate, nothing else. A
// single node (the all-in-one, whose services call each other through its
// own listener) or a set of instances sharing one certificate may thus use
// a self-signed certificate; instances with certificates of their own from
// a private CA need -tls-ca.
//
// Calls between services verify the server's name: discovery.Dial checks
// each instance's certificate against the host of the address it
// registered in etcd (-advertise, or else the address actually listened
// on), so a listener on 0.0.0.0 or [::] needs -advertise naming a host
// its certificate holds.
//
// The certificate and key files are read again when either changes (size
// or modification time), at the next TLS handshake, so a rotated
// certificate is served, and presented, without a restart; a pair that
// does not load is logged and the previous one stays in use. The CA bundle
// is read once, at start-up: changing the CAs needs a restart, and so does
// rotating a certificate that is trusted only as the process's own (the
// self-signed case above). TLS 1.2 is the lowest version accepted.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/herald-feed/herald/services/platform/flagenv"
)

// MinVersion is the lowest TLS version a Herald server or client accepts.
const MinVersion = tls.VersionTLS12

// Files names the PEM files of a process's TLS settings. The zero Files
// means plaintext.
type Files struct {
	// Cert is the process's certificate chain, leaf first (-tls-cert).
	Cert string
	// Key is Cert's private key (-tls-key).
	Key string
	// CA is a bundle of CA certificates (-tls-ca): the only CAs trusted,
	// and the server requires client certificates from them.
	CA string
}

// Flag and variable names, as errors name them.
const (
	certFlag = "-tls-cert (HERALD_TLS_CERT)"
	keyFlag  = "-tls-key (HERALD_TLS_KEY)"
	caFlag   = "-tls-ca (HERALD_TLS_CA)"
)

// Bind defines -tls-cert, -tls-key and -tls-ca on fs, with their HERALD_*
// variables.
func Bind(fs *flagenv.Set, f *Files) {
	fs.String(&f.Cert, "tls-cert", "HERALD_TLS_CERT", "", "PEM certificate chain: with -tls-key, the gRPC listener serves TLS only; empty: plaintext")
	fs.String(&f.Key, "tls-key", "HERALD_TLS_KEY", "", "PEM private key of -tls-cert")
	fs.String(&f.CA, "tls-ca", "HERALD_TLS_CA", "", "PEM CA bundle: require client certificates from these CAs (mutual TLS), and trust only them in calls between services")
}

// Config is a process's loaded TLS settings. A nil *Config is plaintext.
type Config struct {
	pair *keyPair
	// server and client are the TLS configurations of the listener and of
	// the calls to the other services.
	server, client *tls.Config
}

// Load reads and checks the files of a process that serves gRPC. It
// returns nil for the zero Files (plaintext). Errors name the flag and the
// file: a certificate without its key or the other way round, -tls-ca
// without them, a file that does not read or holds no PEM certificate,
// and a key that does not match its certificate. log receives the
// reloads of rotated certificates.
func Load(f Files, log *slog.Logger) (*Config, error) {
	if f == (Files{}) {
		return nil, nil
	}
	if err := checkPair(f); err != nil {
		return nil, err
	}
	if f.Cert == "" {
		return nil, fmt.Errorf("%s %s needs %s and %s: a server that requires client certificates must serve TLS itself", caFlag, f.CA, certFlag, keyFlag)
	}
	pair, err := loadPair(f, log)
	if err != nil {
		return nil, err
	}
	c := &Config{
		pair:   pair,
		server: &tls.Config{MinVersion: MinVersion, GetCertificate: pair.serve},
		client: &tls.Config{MinVersion: MinVersion, GetClientCertificate: pair.present},
	}
	if f.CA != "" {
		cas, err := loadCA(f.CA)
		if err != nil {
			return nil, err
		}
		c.server.ClientAuth, c.server.ClientCAs = tls.RequireAndVerifyClientCert, cas
		c.client.RootCAs = cas
		return c, nil
	}
	// Without a CA, trust the system's roots and this process's own
	// certificate: the all-in-one calls itself.
	if c.client.RootCAs, err = x509.SystemCertPool(); err != nil {
		c.client.RootCAs = x509.NewCertPool()
	}
	c.client.RootCAs.AddCert(pair.current().Leaf)
	return c, nil
}

// ServerOptions returns the gRPC server options that make the listener
// serve TLS: none for a nil Config.
func (c *Config) ServerOptions() []grpc.ServerOption {
	if c == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(c.server))}
}

// DialOption returns the transport credentials of the calls to the other
// services: plaintext for a nil Config.
func (c *Config) DialOption() grpc.DialOption {
	if c == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(c.client))
}

// ClientCredentials returns TLS credentials for a client that calls
// Herald and serves nothing, such as feedctl: it trusts only f.CA's
// certificates if f.CA is set, else the system's roots; with f.Cert and
// f.Key it presents them when the server asks for a client certificate.
// The zero Files is TLS with the system's roots and no client
// certificate. Errors name the flag and the file, as Load's do.
func ClientCredentials(f Files) (credentials.TransportCredentials, error) {
	if err := checkPair(f); err != nil {
		return nil, err
	}
	c := &tls.Config{MinVersion: MinVersion}
	if f.Cert != "" {
		pair, err := loadPair(f, nil)
		if err != nil {
			return nil, err
		}
		c.GetClientCertificate = pair.present
	}
	if f.CA != "" {
		cas, err := loadCA(f.CA)
		if err != nil {
			return nil, err
		}
		c.RootCAs = cas
	}
	return credentials.NewTLS(c), nil
}

// checkPair reports a certificate without its key, or a key without its
// certificate.
func checkPair(f Files) error {
	switch {
	case f.Cert != "" && f.Key == "":
		return fmt.Errorf("%s %s is set but %s is not: TLS needs both", certFlag, f.Cert, keyFlag)
	case f.Cert == "" && f.Key != "":
		return fmt.Errorf("%s %s is set but %s is not: TLS needs both", keyFlag, f.Key, certFlag)
	}
	return nil
}

// loadCA reads a bundle of CA certificates.
func loadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", caFlag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in the file", caFlag, path)
	}
	return pool, nil
}

// keyPair is a certificate and its key, read again from their files when
// either changes.
type keyPair struct {
	certPath, keyPath string
	log               *slog.Logger

	mu   sync.Mutex
	cert *tls.Certificate
	// seen are the stamps of the files last read, loaded or not: a pair
	// that failed is not read again until a file changes again.
	seen [2]stamp
}

// stamp tells a changed file from an unchanged one.
type stamp struct {
	modNanos, size int64
}

func stampOf(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	return stamp{fi.ModTime().UnixNano(), fi.Size()}
}

func loadPair(f Files, log *slog.Logger) (*keyPair, error) {
	p := &keyPair{certPath: f.Cert, keyPath: f.Key, log: log}
	p.seen = p.stamps()
	var err error
	if p.cert, err = p.read(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *keyPair) stamps() [2]stamp { return [2]stamp{stampOf(p.certPath), stampOf(p.keyPath)} }

// read loads the pair from its files.
func (p *keyPair) read() (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(p.certPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFlag, err)
	}
	keyPEM, err := os.ReadFile(p.keyPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFlag, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s %s with %s %s: %w", certFlag, p.certPath, keyFlag, p.keyPath, err)
	}
	if cert.Leaf == nil { // GODEBUG=x509keypairleaf=0 leaves it out
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%s %s: %w", certFlag, p.certPath, err)
		}
	}
	return &cert, nil
}

// current returns the pair, read again first if a file has changed since
// it was last read.
func (p *keyPair) current() *tls.Certificate {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.stamps()
	if now == p.seen {
		return p.cert
	}
	p.seen = now
	cert, err := p.read()
	if err != nil {
		if p.log != nil {
			p.log.Warn("TLS certificate changed but does not load; keeping the previous one", "err", err)
		}
		return p.cert
	}
	if p.log != nil {
		p.log.Info("TLS certificate reloaded", "cert", p.certPath, "subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
	}
	p.cert = cert
	return cert
}

func (p *keyPair) serve(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.current(), nil }

func (p *keyPair) present(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return p.current(), nil
}
