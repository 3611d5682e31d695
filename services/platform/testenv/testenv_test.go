package testenv_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/herald-feed/herald/services/platform/testenv"
)

// These tests check that the test servers are not open: each takes
// Herald's login, and refuses a client without it or with a wrong
// password. A deploy/local script that stopped setting up a login would
// fail here, not pass every other test on an open server.

const wrongPassword = "not-the-password"

func randomName() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func TestRedisRefusesClientsWithoutTheLogin(t *testing.T) {
	opts := testenv.RedisOptions(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	rdb := redis.NewClient(opts)
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING as %s = %v; want PONG", opts.Username, err)
	}
	// Herald's user may not reconfigure the server (nor flush it: the
	// same @dangerous category, not tried here in case it were allowed).
	if err := rdb.ConfigGet(ctx, "maxmemory").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Errorf("CONFIG GET as %s = %v; want NOPERM", opts.Username, err)
	}

	for name, o := range map[string]*redis.Options{
		"no login":                  {Addr: opts.Addr},
		"a wrong password":          {Addr: opts.Addr, Username: opts.Username, Password: wrongPassword},
		"the default user":          {Addr: opts.Addr, Username: "default", Password: opts.Password},
		"the password without user": {Addr: opts.Addr, Password: opts.Password},
	} {
		o.MaxRetries = -1
		c := redis.NewClient(o)
		err := c.Ping(ctx).Err()
		c.Close()
		if !redis.IsAuthError(err) {
			t.Errorf("PING with %s = %v; want NOAUTH or WRONGPASS", name, err)
		}
	}
}

func TestNATSRefusesClientsWithoutTheLogin(t *testing.T) {
	url := testenv.NATS(t)
	opts := testenv.NATSOptions(t)
	nc, err := nats.Connect(url, append(opts, nats.Timeout(5*time.Second))...)
	if err != nil {
		t.Fatalf("connect to %s with Herald's login: %v", url, err)
	}
	nc.Close()

	for name, o := range map[string][]nats.Option{
		"no login":         nil,
		"a wrong password": {nats.UserInfo("herald", wrongPassword)},
	} {
		nc, err := nats.Connect(url, append(o, nats.Timeout(5*time.Second))...)
		if err == nil {
			nc.Close()
		}
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("connect to %s with %s = %v; want %v", url, name, err, nats.ErrAuthorization)
		}
	}
}

func TestEtcdRefusesClientsWithoutTheLogin(t *testing.T) {
	cfg := testenv.EtcdConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatalf("etcd client for %v as %s: %v", cfg.Endpoints, cfg.Username, err)
	}
	defer cli.Close()
	// Herald's role may write under the default namespace...
	key := "herald/testenv-" + randomName()
	if _, err := cli.Put(ctx, key, "x"); err != nil {
		t.Fatalf("Put(%s) as %s: %v", key, cfg.Username, err)
	}
	if _, err := cli.Delete(ctx, key); err != nil {
		t.Errorf("Delete(%s) as %s: %v", key, cfg.Username, err)
	}
	// ...and not outside Herald's key prefixes.
	outside := "testenv-outside-" + randomName()
	if _, err := cli.Put(ctx, outside, "x"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("Put(%s) as %s = %v; want %v", outside, cfg.Username, err, rpctypes.ErrPermissionDenied)
		if err == nil {
			cli.Delete(ctx, outside)
		}
	}

	put := func(c clientv3.Config) error {
		cli, err := clientv3.New(c)
		if err != nil {
			return err
		}
		defer cli.Close()
		_, err = cli.Put(ctx, key, "x")
		if err == nil {
			cli.Delete(ctx, key)
		}
		return err
	}
	anon := cfg
	anon.Username, anon.Password = "", ""
	if err := put(anon); !errors.Is(err, rpctypes.ErrUserEmpty) {
		t.Errorf("Put(%s) without a login = %v; want %v", key, err, rpctypes.ErrUserEmpty)
	}
	wrong := cfg
	wrong.Password = wrongPassword
	if err := put(wrong); !errors.Is(err, rpctypes.ErrAuthFailed) {
		t.Errorf("Put(%s) as %s with a wrong password = %v; want %v", key, cfg.Username, err, rpctypes.ErrAuthFailed)
	}
}

func TestCassandraRefusesClientsWithoutTheLogin(t *testing.T) {
	hosts := testenv.Cassandra(t)
	auth := testenv.CassandraAuth(t)
	connect := func(a gocql.Authenticator) (*gocql.Session, error) {
		cluster := gocql.NewCluster(hosts...)
		if _, port, err := net.SplitHostPort(hosts[0]); err == nil {
			cluster.Port, _ = strconv.Atoi(port)
		}
		cluster.ProtoVersion = 4
		cluster.Timeout = 20 * time.Second
		cluster.Authenticator = a
		return cluster.CreateSession()
	}

	s, err := connect(auth)
	if err != nil {
		t.Fatalf("connect to %v as %s: %v", hosts, auth.Username, err)
	}
	defer s.Close()
	// Herald's role is not a superuser: it may not create roles.
	role := "testenv_" + randomName()
	err = s.Query("CREATE ROLE " + role).Exec()
	var rerr gocql.RequestError
	if !errors.As(err, &rerr) || rerr.Code() != gocql.ErrCodeUnauthorized {
		t.Errorf("CREATE ROLE as %s = %v; want Unauthorized", auth.Username, err)
		if err == nil {
			s.Query("DROP ROLE " + role).Exec()
		}
	}

	for name, a := range map[string]gocql.Authenticator{
		"no login":                        nil,
		"a wrong password":                gocql.PasswordAuthenticator{Username: auth.Username, Password: wrongPassword},
		"the default superuser cassandra": gocql.PasswordAuthenticator{Username: "cassandra", Password: "cassandra"},
	} {
		s, err := connect(a)
		if err == nil {
			s.Close()
			t.Errorf("connect to %v with %s: no error; want the login refused", hosts, name)
			continue
		}
		t.Logf("connect with %s: %v", name, err)
	}
}
