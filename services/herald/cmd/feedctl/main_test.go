package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/herald-feed/herald/services/platform/bus"
	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/kafkabus"
	"github.com/herald-feed/herald/services/platform/testenv"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// TestDeadLettersOnBothBuses: `feedctl deadletters` lists a dead letter
// with its reason, and `feedctl replay` sends it back to its consumer,
// on the real NATS and on the real Kafka.
func TestDeadLettersOnBothBuses(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	t.Run("jetstream", func(t *testing.T) {
		ns := fmt.Sprintf("fctl%08x", rand.Uint32())
		nc, err := nats.Connect(testenv.NATS(t), testenv.NATSOptions(t)...)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		b, err := bus.New(t.Context(), nc, bus.Config{Namespace: ns}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			for _, s := range []string{b.Stream(), b.Stream() + "_DEAD"} {
				_ = b.JetStream().DeleteStream(context.Background(), s)
			}
		})
		user, file := testenv.NATSLogin(t)
		testDeadLetters(t, b, "--bus", "jetstream", "--namespace", ns, "--nats", testenv.NATS(t), "--nats-user", user, "--nats-password-file", file)
	})
	t.Run("kafka", func(t *testing.T) {
		ns := fmt.Sprintf("fctl%08x", rand.Uint32())
		user, password := testenv.KafkaAuth(t)
		b, err := kafkabus.New(t.Context(), kafkabus.Config{Brokers: testenv.Kafka(t), User: user, Password: password, Namespace: ns, Partitions: 1}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Delete(context.Background(), "dlq"); b.Close() })
		_, file := testenv.KafkaLogin(t)
		testDeadLetters(t, b, "--bus", "kafka", "--namespace", ns, "--kafka-brokers", strings.Join(testenv.Kafka(t), ","), "--kafka-user", user, "--kafka-password-file", file)
	})
}

// testDeadLetters dead-letters one event on l, then lists and replays it
// with feedctl and the given flags.
func testDeadLetters(t *testing.T, l event.AdminLog, flags ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitfor.Deadline)
	defer cancel()
	ev := event.PostDeleted{Post: 42, Author: "alice"}
	if err := l.Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
	replayed := make(chan struct{})
	var calls int
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- l.Consume(cctx, event.ConsumerConfig{Durable: "dlq", Kinds: []event.Kind{event.KindPostDeleted}, AckWait: 5 * time.Second, MaxDeliver: 1},
			func(context.Context, event.Event) error {
				calls++
				if calls == 1 {
					return errors.Join(errors.New("store is read-only"), event.ErrPermanent)
				}
				close(replayed)
				return nil
			})
	}()
	defer func() { stop(); <-done }()
	waitfor.Until(t, waitfor.Deadline, "the dead letter", func() (bool, any) {
		dead, err := l.DeadLetters(ctx, 10)
		return err == nil && len(dead) == 1, fmt.Sprint(dead, err)
	})

	out := feedctl(t, append(flags, "deadletters")...)
	m := regexp.MustCompile(`(?m)^(\d+)  .*  post\.deleted  consumer=dlq  .*store is read-only`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("feedctl deadletters printed %q; want a line with the sequence, post.deleted, consumer=dlq and the reason", out)
	}
	if out := feedctl(t, append(flags, "replay", m[1])...); strings.TrimSpace(out) != "replayed "+m[1] {
		t.Errorf("feedctl replay %s printed %q; want %q", m[1], out, "replayed "+m[1])
	}
	select {
	case <-replayed:
	case <-time.After(waitfor.Deadline):
		t.Fatalf("the replayed event did not reach its consumer within %v", waitfor.Deadline)
	}
	if out := feedctl(t, append(flags, "deadletters")...); strings.TrimSpace(out) != "(no dead letters)" {
		t.Errorf("feedctl deadletters after the replay printed %q; want (no dead letters)", out)
	}
}

// feedctl runs feedctl with args and returns what it printed.
func feedctl(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	root := newRoot(&out)
	root.SetArgs(args)
	if err := root.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("feedctl %s: %v", strings.Join(args, " "), err)
	}
	return out.String()
}

// TestHealth: `feedctl health` exits 0 while the process (or the service
// named) is SERVING, and fails, naming the status, once it is not.
func TestHealth(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	hs.SetServingStatus("feed.v1.TimelineService", healthpb.HealthCheckResponse_SERVING)

	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		root := newRoot(&out)
		root.SetArgs(append([]string{"--addr", lis.Addr().String(), "--etcd=", "--timeout", "5s", "health"}, args...))
		root.SetErr(io.Discard)
		err := root.ExecuteContext(t.Context())
		return out.String(), err
	}
	for _, svc := range [][]string{nil, {"feed.v1.TimelineService"}} {
		if out, err := run(svc...); err != nil || strings.TrimSpace(out) != "SERVING" {
			t.Errorf("feedctl health %v = %q, %v; want SERVING", svc, out, err)
		}
	}
	hs.SetServingStatus("feed.v1.TimelineService", healthpb.HealthCheckResponse_NOT_SERVING)
	if _, err := run("feed.v1.TimelineService"); err == nil || !strings.Contains(err.Error(), "NOT_SERVING") {
		t.Errorf("feedctl health of a service NOT_SERVING: %v; want an error naming NOT_SERVING", err)
	}
	hs.Shutdown() // every service NOT_SERVING, as a draining process
	if _, err := run(); err == nil {
		t.Error("feedctl health of a process shutting down succeeded; want an error")
	}
}

// TestMigrate: `feedctl migrate` creates a fresh keyspace on the real
// Cassandra with every migration applied, and a second run changes
// nothing; a missing host or a bad replication map fails before it
// connects.
func TestMigrate(t *testing.T) {
	hosts := testenv.Cassandra(t)
	user, file := testenv.CassandraLogin(t)
	ks := fmt.Sprintf("migrate%08x", rand.Uint32())
	t.Cleanup(func() {
		cluster := gocql.NewCluster(hosts...)
		cluster.Authenticator = testenv.CassandraAuth(t)
		cluster.Timeout = 30 * time.Second
		if s, err := cluster.CreateSession(); err == nil {
			_ = s.Query("DROP KEYSPACE IF EXISTS " + ks).Exec()
			s.Close()
		}
	})
	files, err := filepath.Glob(filepath.Join("..", "..", "..", "platform", "cassandrastore", "migrations", "*.cql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("migration files: %v, %v", files, err)
	}
	want := fmt.Sprintf("keyspace %s on %s: schema at migration %d (%d applied)", ks, strings.Join(hosts, ","), len(files), len(files))
	args := []string{"migrate", "--cassandra", strings.Join(hosts, ","), "--cassandra-keyspace", ks, "--cassandra-user", user, "--cassandra-password-file", file}
	for _, run := range []string{"first", "second"} {
		if out := strings.TrimSpace(feedctl(t, args...)); out != want {
			t.Errorf("%s feedctl migrate printed %q; want %q", run, out, want)
		}
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"migrate", "--cassandra="}, "-cassandra is required"},
		{[]string{"migrate", "--cassandra", "127.0.0.1:1", "--cassandra-replication", "3"}, "want a CQL map"},
	} {
		t.Setenv("HERALD_CASSANDRA_HOSTS", "")
		var out bytes.Buffer
		root := newRoot(&out)
		root.SetArgs(tc.args)
		root.SetErr(io.Discard)
		if err := root.ExecuteContext(t.Context()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("feedctl %s: %v; want an error containing %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
