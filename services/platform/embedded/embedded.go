// Package embedded runs etcd and a NATS server with JetStream inside the
// Herald process. The all-in-one binary and the in-process system tests use
// them, so that one process needs no outside server.
package embedded

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Etcd is a one-member etcd cluster.
type Etcd struct {
	e        *embed.Etcd
	endpoint url.URL
}

// StartEtcd starts etcd with its data under dir, serving clients on
// clientAddr: host:port (port 0 picks a free one), or unix:///path for a
// unix socket, which only processes that may enter its directory can
// reach. The all-in-one uses a socket in its data dir (mode 0700): etcd
// here has no authentication, and holds the page-token key and every
// service's registration.
//
// The peer listener, which a one-member cluster still needs, stays on a
// free loopback port: it serves raft and member lists, never keys.
func StartEtcd(dir, clientAddr string) (*Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "herald"
	cfg.Dir = filepath.Join(dir, "etcd")
	// etcd's own zap logs report normal shutdowns as errors; Herald
	// reports what matters (start failures) through the returned error.
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// etcd needs a peer listener even alone; it stays on loopback with a
	// free port, and the member's advertised peer URL is rewritten to it.
	peerAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	var cu url.URL
	if sock, ok := strings.CutPrefix(clientAddr, "unix://"); ok {
		// A socket's path is at most 108 bytes on Linux (sun_path).
		if len(sock) > 100 {
			return nil, fmt.Errorf("etcd socket path %s is longer than 100 bytes: use a shorter data dir", sock)
		}
		os.Remove(sock) // left by a process that died; the data dir's lock says none runs
		cu = url.URL{Scheme: "unix", Path: sock}
	} else {
		if clientAddr == "" || hasZeroPort(clientAddr) {
			if clientAddr, err = freeAddr(); err != nil {
				return nil, err
			}
		}
		cu = url.URL{Scheme: "http", Host: clientAddr}
	}
	pu := url.URL{Scheme: "http", Host: peerAddr}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// Keep the revision history small: Herald stores only leases and
	// registrations here.
	cfg.AutoCompactionMode = embed.CompactorModeRevision
	cfg.AutoCompactionRetention = "1000"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		return nil, errors.New("start embedded etcd: not ready after 30s")
	}
	return &Etcd{e: e, endpoint: cu}, nil
}

// Endpoint returns the client endpoint: host:port, or unix:///path.
func (e *Etcd) Endpoint() string {
	if e.endpoint.Scheme == "unix" {
		return e.endpoint.String()
	}
	return e.e.Clients[0].Addr().String()
}

// Close stops etcd.
func (e *Etcd) Close() { e.e.Close() }

// NATS is a single NATS server with JetStream.
type NATS struct {
	s *natsserver.Server
}

// StartNATS starts a NATS server with JetStream storing under dir. addr is
// its client address (host:port); empty means no listener at all, for a
// process that connects in-process only.
func StartNATS(dir, addr string) (*NATS, error) {
	opts := &natsserver.Options{
		ServerName: "herald",
		JetStream:  true,
		StoreDir:   filepath.Join(dir, "jetstream"),
		NoSigs:     true,
		NoLog:      true,
	}
	if addr == "" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("nats address %q: %w", addr, err)
		}
		opts.Host = host
		// Port 0 means the default 4222 to nats-server; -1 means random.
		if opts.Port, err = parsePort(port); err != nil {
			return nil, err
		}
		if opts.Port == 0 {
			opts.Port = natsserver.RANDOM_PORT
		}
	}
	s, err := natsserver.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start embedded nats: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("start embedded nats: not ready after 30s")
	}
	return &NATS{s: s}, nil
}

// Connect returns a client connection to the server, in-process when it
// has no listener.
func (n *NATS) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append(opts, nats.InProcessServer(n.s))
	return nats.Connect("", opts...)
}

// ClientURL returns the server's client URL, or "" with no listener.
func (n *NATS) ClientURL() string {
	if n.s.Addr() == nil {
		return ""
	}
	return n.s.ClientURL()
}

// Close stops the server after JetStream flushes its state.
func (n *NATS) Close() {
	n.s.Shutdown()
	n.s.WaitForShutdown()
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func hasZeroPort(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port == "0"
}

func parsePort(s string) (int, error) {
	var p int
	if _, err := fmt.Sscanf(s, "%d", &p); err != nil || p < 0 || p > 65535 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return p, nil
}
