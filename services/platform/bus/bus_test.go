package bus

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-feed/herald/services/platform/embedded"
	"github.com/herald-feed/herald/services/platform/event/eventtest"
	"github.com/herald-feed/herald/services/platform/testenv"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// startNATS starts an embedded JetStream server for the test and returns a
// connection to it.
func startNATS(t testing.TB) *nats.Conn {
	t.Helper()
	ns, err := embedded.StartNATS(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Close)
	nc, err := ns.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func newBusOn(t testing.TB, nc *nats.Conn, namespace string, reg prometheus.Registerer) *Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Deadline)
	defer cancel()
	b, err := New(ctx, nc, Config{Namespace: namespace, Metrics: reg}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestContractOnServer runs the contract suite on the real nats-server
// (deploy/local/nats.sh), each subtest in a namespace of its own, whose
// streams go with it.
func TestContractOnServer(t *testing.T) {
	nc, err := nats.Connect(testenv.NATS(t), testenv.NATSOptions(t)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	eventtest.Run(t, eventtest.Options{Dedupes: true}, func(t *testing.T, reg prometheus.Registerer) eventtest.Log {
		b := newBusOn(t, nc, fmt.Sprintf("contract%08x", rand.Uint32()), reg)
		t.Cleanup(func() {
			for _, s := range []string{b.Stream(), b.deadStream()} {
				if err := b.js.DeleteStream(context.Background(), s); err != nil {
					t.Logf("delete stream %s: %v", s, err)
				}
			}
		})
		return b
	})
}

// TestContract runs the event port's contract suite on one embedded
// JetStream server, each subtest in a namespace (and so a stream) of its
// own.
func TestContract(t *testing.T) {
	nc := startNATS(t)
	n := 0
	eventtest.Run(t, eventtest.Options{Dedupes: true}, func(t *testing.T, reg prometheus.Registerer) eventtest.Log {
		n++
		return newBusOn(t, nc, fmt.Sprintf("contract%d", n), reg)
	})
}
