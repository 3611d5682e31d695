package coordlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Servers are the ZooKeeper servers and etcd endpoints the lab runs on,
// and the etcd login if that etcd has authentication on (the lab's own
// cluster, deploy/local/lab-coordination.sh, has none; the shared test
// etcd does). The password is read from a file, never passed itself, since
// holder processes get their Servers on the command line.
type Servers struct {
	ZK               []string `json:"zk,omitempty"`
	Etcd             []string `json:"etcd,omitempty"`
	EtcdUser         string   `json:"etcd_user,omitempty"`
	EtcdPasswordFile string   `json:"etcd_password_file,omitempty"`
}

// EtcdConfig returns the client configuration: the endpoints, the login if
// any, a 5 s dial timeout and no client logs.
func (s Servers) EtcdConfig() (clientv3.Config, error) {
	if len(s.Etcd) == 0 {
		return clientv3.Config{}, errors.New("no etcd endpoints")
	}
	cfg := clientv3.Config{Endpoints: s.Etcd, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if s.EtcdUser != "" {
		b, err := os.ReadFile(s.EtcdPasswordFile)
		if err != nil {
			return clientv3.Config{}, fmt.Errorf("etcd password file: %w", err)
		}
		cfg.Username, cfg.Password = s.EtcdUser, strings.TrimRight(string(b), "\r\n")
	}
	return cfg, nil
}

// DialEtcd returns a client of s's etcd.
func (s Servers) DialEtcd(ctx context.Context) (*clientv3.Client, error) {
	cfg, err := s.EtcdConfig()
	if err != nil {
		return nil, err
	}
	cfg.Context = ctx
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(s.Etcd, ","), err)
	}
	return cli, nil
}
