// Package testenv finds the real servers that adapter and cluster tests run
// against, and the login Herald has on each. `make test` starts them with
// the scripts in deploy/local and exports their addresses, users and
// password files (deploy/local/env.sh); see those scripts for the
// variables.
//
// A test that needs a server that is not configured skips on a developer's
// machine, but fails when CI is set: in CI a missing server is a broken
// build, never a silent pass. A login that is configured but does not read
// fails the test everywhere.
//
// The address helpers (Redis, NATS, Etcd, Cassandra, Kafka) return
// addresses only; a test that connects takes the login too, through
// RedisOptions, NATSOptions, EtcdConfig, CassandraAuth or KafkaAuth.
// Every server refuses a client without it (see testenv_test.go).
package testenv

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Redis returns the address of the test Redis (HERALD_REDIS_ADDR).
func Redis(t testing.TB) string { return need(t, "HERALD_REDIS_ADDR") }

// NATS returns the URL of the test NATS server (HERALD_NATS_URL).
func NATS(t testing.TB) string { return need(t, "HERALD_NATS_URL") }

// Etcd returns the test etcd endpoints (HERALD_ETCD_ENDPOINTS).
func Etcd(t testing.TB) []string { return strings.Split(need(t, "HERALD_ETCD_ENDPOINTS"), ",") }

// Cassandra returns the test Cassandra hosts (HERALD_CASSANDRA_HOSTS).
func Cassandra(t testing.TB) []string { return strings.Split(need(t, "HERALD_CASSANDRA_HOSTS"), ",") }

// CassandraRing returns the hosts of the three-node test ring
// (HERALD_CASSANDRA_RING_HOSTS: deploy/local/cassandra-cluster.sh env
// prints it), which takes the same login as the single node
// (CassandraAuth). Its tests kill and restart its nodes, so nothing else
// runs on it.
func CassandraRing(t testing.TB) []string {
	t.Helper()
	if os.Getenv("HERALD_CASSANDRA_RING_HOSTS") == "" {
		t.Log("the ring is not in env.sh: start it with deploy/local/up.sh cassandra-ring, and export HERALD_CASSANDRA_RING_HOSTS as deploy/local/cassandra-cluster.sh env prints it")
	}
	return strings.Split(need(t, "HERALD_CASSANDRA_RING_HOSTS"), ",")
}

// ZooKeeper returns the test ZooKeeper's servers (HERALD_ZOOKEEPER_SERVERS):
// the coordination lab's tests run on it. It has no login (loopback
// only; no Herald service uses ZooKeeper).
func ZooKeeper(t testing.TB) []string {
	return strings.Split(need(t, "HERALD_ZOOKEEPER_SERVERS"), ",")
}

// RedisSentinels returns the test Sentinels (HERALD_REDIS_SENTINELS,
// deploy/local/redis-sentinel.sh), which watch a primary and a replica of
// their own under the master name "herald", with Herald's Redis login.
func RedisSentinels(t testing.TB) []string {
	return strings.Split(need(t, "HERALD_REDIS_SENTINELS"), ",")
}

// Kafka returns the test Kafka's brokers (HERALD_KAFKA_BROKERS).
func Kafka(t testing.TB) []string { return strings.Split(need(t, "HERALD_KAFKA_BROKERS"), ",") }

// KafkaAuth returns Herald's SASL/PLAIN login to the test Kafka
// (HERALD_KAFKA_USER, HERALD_KAFKA_PASSWORD_FILE).
func KafkaAuth(t testing.TB) (user, password string) {
	t.Helper()
	return login(t, "KAFKA")
}

// KafkaLogin is RedisLogin for the test Kafka (HERALD_KAFKA_USER,
// HERALD_KAFKA_PASSWORD_FILE), for a Herald process's configuration.
func KafkaLogin(t testing.TB) (user, passwordFile string) {
	t.Helper()
	return need(t, "HERALD_KAFKA_USER"), need(t, "HERALD_KAFKA_PASSWORD_FILE")
}

// RedisOptions returns the client options of the test Redis: its address,
// and the ACL user and password Herald logs in with (HERALD_REDIS_USER,
// HERALD_REDIS_PASSWORD_FILE). For a cluster client, copy Addr, Username
// and Password into redis.UniversalOptions.
func RedisOptions(t testing.TB) *redis.Options {
	t.Helper()
	addr := Redis(t)
	user, password := login(t, "REDIS")
	return &redis.Options{Addr: addr, Username: user, Password: password}
}

// NATSOptions returns the connect options of Herald's login to the test
// NATS server (HERALD_NATS_USER, HERALD_NATS_PASSWORD_FILE), to pass to
// nats.Connect with NATS(t).
func NATSOptions(t testing.TB) []nats.Option {
	t.Helper()
	user, password := login(t, "NATS")
	return []nats.Option{nats.UserInfo(user, password)}
}

// EtcdConfig returns the client configuration of the test etcd: its
// endpoints, Herald's user and password (HERALD_ETCD_USER,
// HERALD_ETCD_PASSWORD_FILE), a 5 s dial timeout and no client logs.
func EtcdConfig(t testing.TB) clientv3.Config {
	t.Helper()
	eps := Etcd(t)
	user, password := login(t, "ETCD")
	return clientv3.Config{Endpoints: eps, Username: user, Password: password, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
}

// CassandraAuth returns Herald's login to the test Cassandra
// (HERALD_CASSANDRA_USER, HERALD_CASSANDRA_PASSWORD_FILE), for
// gocql.ClusterConfig.Authenticator, or for cassandrastore.Config's
// Username and Password.
func CassandraAuth(t testing.TB) gocql.PasswordAuthenticator {
	t.Helper()
	user, password := login(t, "CASSANDRA")
	return gocql.PasswordAuthenticator{Username: user, Password: password}
}

// RedisLogin returns Herald's user on the test Redis and the path of the
// file that holds its password (HERALD_REDIS_USER,
// HERALD_REDIS_PASSWORD_FILE), for a Herald process's configuration
// (backend.CacheConfig.Login), which takes the file as its flags do.
func RedisLogin(t testing.TB) (user, passwordFile string) {
	t.Helper()
	return need(t, "HERALD_REDIS_USER"), need(t, "HERALD_REDIS_PASSWORD_FILE")
}

// NATSLogin is RedisLogin for the test NATS server (HERALD_NATS_USER,
// HERALD_NATS_PASSWORD_FILE).
func NATSLogin(t testing.TB) (user, passwordFile string) {
	t.Helper()
	return need(t, "HERALD_NATS_USER"), need(t, "HERALD_NATS_PASSWORD_FILE")
}

// CassandraLogin is RedisLogin for the test Cassandra (HERALD_CASSANDRA_USER,
// HERALD_CASSANDRA_PASSWORD_FILE; backend.StoreConfig.Login).
func CassandraLogin(t testing.TB) (user, passwordFile string) {
	t.Helper()
	return need(t, "HERALD_CASSANDRA_USER"), need(t, "HERALD_CASSANDRA_PASSWORD_FILE")
}

// login returns the user in HERALD_<SERVER>_USER and the password in the
// file HERALD_<SERVER>_PASSWORD_FILE names, without its trailing newline
// (as node.Login reads it in the services).
func login(t testing.TB, server string) (user, password string) {
	t.Helper()
	user = need(t, "HERALD_"+server+"_USER")
	fileVar := "HERALD_" + server + "_PASSWORD_FILE"
	file := need(t, fileVar)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%s: %v", fileVar, err)
	}
	password = strings.TrimRight(string(b), "\r\n")
	if password == "" {
		t.Fatalf("%s=%s: the file is empty", fileVar, file)
	}
	return user, password
}

func need(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v != "" {
		return v
	}
	msg := name + " is not set: start the servers with deploy/local/up.sh and export the variables from deploy/local/env.sh, or run make test"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
