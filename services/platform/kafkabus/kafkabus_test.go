package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-feed/herald/services/platform/event/eventtest"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/testenv"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// testConfig returns the configuration of the test Kafka (deploy/local/kafka.sh)
// in a namespace of the test's own, so that every test has fresh topics
// and groups.
func testConfig(t *testing.T, reg prometheus.Registerer) Config {
	t.Helper()
	user, password := testenv.KafkaAuth(t)
	return Config{
		Brokers: testenv.Kafka(t), User: user, Password: password,
		Namespace: fmt.Sprintf("test%08x", rand.Uint32()), Partitions: 3, Metrics: reg,
	}
}

func open(t *testing.T, cfg Config) *Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Deadline)
	defer cancel()
	b, err := New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The topics go with the test: a namespace's four topics each
		// hold a partition's files on the broker.
		ctx, cancel := context.WithTimeout(context.Background(), waitfor.Deadline)
		defer cancel()
		if err := b.Delete(ctx); err != nil {
			t.Logf("delete topics %v: %v", b.Topics(), err)
		}
		b.Close()
	})
	return b
}

// TestContract runs the event port's contract suite on the real Kafka,
// each subtest in a namespace (and so topics and groups) of its own. Kafka
// keeps no dedupe window, so a republished event arrives twice.
func TestContract(t *testing.T) {
	eventtest.Run(t, eventtest.Options{Dedupes: false}, func(t *testing.T, reg prometheus.Registerer) eventtest.Log {
		return open(t, testConfig(t, reg))
	})
}

// TestNewRefusesAWrongLogin: a wrong password is UNAVAILABLE at New,
// naming the brokers, not a bus that fails later.
func TestNewRefusesAWrongLogin(t *testing.T) {
	cfg := testConfig(t, nil)
	cfg.Password = "not-" + cfg.Password
	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Deadline)
	defer cancel()
	b, err := New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		b.Close()
		t.Fatal("New with a wrong password succeeded; want an error")
	}
	if !errors.Is(err, feed.ErrUnavailable) {
		t.Errorf("New with a wrong password = %v; want feed.ErrUnavailable", err)
	}
}

// TestNewChecksItsConfig: no brokers, or a replication factor below one,
// is an error before anything connects.
func TestNewChecksItsConfig(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := New(t.Context(), Config{}, log); err == nil {
		t.Error("New with no brokers succeeded; want an error naming -kafka-brokers")
	}
	if _, err := New(t.Context(), Config{Brokers: []string{"127.0.0.1:1"}, Replicas: -1}, log); err == nil {
		t.Error("New with replication factor -1 succeeded; want an error")
	}
}
