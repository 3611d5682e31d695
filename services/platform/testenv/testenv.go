// Package testenv finds the real servers that adapter and cluster tests run
// against. `make test` starts them with the scripts in deploy/local and
// exports their addresses; see those scripts for the variables.
//
// A test that needs a server that is not configured skips on a developer's
// machine, but fails when CI is set: in CI a missing server is a broken
// build, never a silent pass.
package testenv

import (
	"os"
	"strings"
	"testing"
)

// Redis returns the address of the test Redis (HERALD_REDIS_ADDR).
func Redis(t testing.TB) string { return need(t, "HERALD_REDIS_ADDR") }

// NATS returns the URL of the test NATS server (HERALD_NATS_URL).
func NATS(t testing.TB) string { return need(t, "HERALD_NATS_URL") }

// Etcd returns the test etcd endpoints (HERALD_ETCD_ENDPOINTS).
func Etcd(t testing.TB) []string { return strings.Split(need(t, "HERALD_ETCD_ENDPOINTS"), ",") }

// Cassandra returns the test Cassandra hosts (HERALD_CASSANDRA_HOSTS).
func Cassandra(t testing.TB) []string { return strings.Split(need(t, "HERALD_CASSANDRA_HOSTS"), ",") }

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
