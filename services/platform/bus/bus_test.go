package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herald-feed/herald/services/platform/embedded"
	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/event/eventtest"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// startNATS starts an embedded JetStream server for the test and returns a
// connection to it.
func startNATS(t *testing.T) *nats.Conn {
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

func newBusOn(t *testing.T, nc *nats.Conn, namespace string, reg prometheus.Registerer) *Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Deadline)
	defer cancel()
	b, err := New(ctx, nc, Config{Namespace: namespace, Metrics: reg}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newBus(t *testing.T) *Bus { return newBusOn(t, startNATS(t), "", nil) }

// TestContract runs the event port's contract suite on one JetStream
// server, each subtest in a namespace (and so a stream) of its own.
func TestContract(t *testing.T) {
	nc := startNATS(t)
	n := 0
	eventtest.Run(t, eventtest.Options{Dedupes: true}, func(t *testing.T) event.Log {
		n++
		return newBusOn(t, nc, fmt.Sprintf("contract%d", n), nil)
	})
}

// TestDeadLetterAndReplay: an event that fails MaxDeliver times, and one
// rejected as permanent, land in the dead-letter stream with their
// reasons; a replay sends one back to its consumer and removes it.
func TestDeadLetterAndReplay(t *testing.T) {
	b := newBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitfor.Deadline)
	defer cancel()
	created := event.PostCreated{Post: 1, Author: "alice", Created: time.Now()}
	deleted := event.PostDeleted{Post: 2, Author: "alice"}
	for _, ev := range []event.Event{created, deleted} {
		if err := b.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	healthy := false
	seen := map[event.Kind]int{}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() {
		done <- b.Consume(cctx, event.ConsumerConfig{
			Durable: "dlq", Kinds: []event.Kind{event.KindPostCreated, event.KindPostDeleted}, AckWait: 5 * time.Second, MaxDeliver: 2,
			BackOff: []time.Duration{20 * time.Millisecond},
		}, func(_ context.Context, ev event.Event) error {
			mu.Lock()
			defer mu.Unlock()
			seen[ev.Kind()]++
			switch {
			case ev.Kind() == event.KindPostDeleted:
				return errors.Join(errors.New("undeletable"), event.ErrPermanent)
			case !healthy:
				return errors.New("cache down")
			}
			return nil
		})
	}()
	defer func() { stop(); <-done }()

	var dead []DeadLetter
	waitfor.Until(t, waitfor.Deadline, "2 dead letters", func() (bool, any) {
		var err error
		if dead, err = b.DeadLetters(ctx, 10); err != nil {
			t.Fatal(err)
		}
		return len(dead) >= 2, dead
	})
	bySubject := map[string]DeadLetter{}
	for _, d := range dead {
		bySubject[d.Subject] = d
	}
	if d := bySubject[string(event.KindPostCreated)]; d.Consumer != "dlq" || !strings.Contains(d.Reason, "failed 2 deliveries") || !strings.Contains(d.Reason, "cache down") {
		t.Errorf("dead letter for %s = %+v; want consumer dlq and a reason naming 2 deliveries and the cause", event.KindPostCreated, d)
	}
	if d := bySubject[string(event.KindPostDeleted)]; !strings.Contains(d.Reason, "undeletable") {
		t.Errorf("dead letter for %s = %+v; want the permanent reason", event.KindPostDeleted, d)
	}
	mu.Lock()
	if seen[event.KindPostCreated] != 2 || seen[event.KindPostDeleted] != 1 {
		t.Errorf("deliveries = %v; want 2 (MaxDeliver) and 1 (permanent)", seen)
	}
	healthy = true
	mu.Unlock()

	if err := b.Replay(ctx, bySubject[string(event.KindPostCreated)].Seq); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, waitfor.Deadline, "the replayed event's third delivery", func() (bool, any) {
		mu.Lock()
		defer mu.Unlock()
		n := seen[event.KindPostCreated]
		return n == 3, fmt.Sprintf("%d deliveries in all", n)
	})
	left, err := b.DeadLetters(ctx, 10)
	if err != nil || len(left) != 1 || left[0].Subject != string(event.KindPostDeleted) {
		t.Errorf("DeadLetters after the replay = %+v, %v; want only the %s one", left, err, event.KindPostDeleted)
	}
	if err := b.Replay(ctx, bySubject[string(event.KindPostCreated)].Seq); !errors.Is(err, feed.ErrNotFound) {
		t.Errorf("Replay of a replayed dead letter = %v; want feed.ErrNotFound", err)
	}
}

// TestUndecodableAndPanics: a message that does not decode never reaches
// the handler; it is counted and dead-lettered, and a tail skips it. A
// handler that panics does not take the process down: its event is
// dead-lettered with the stack.
func TestUndecodableAndPanics(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := newBusOn(t, startNATS(t), "", reg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitfor.Deadline)
	defer cancel()

	var tailed []event.Event
	var mu sync.Mutex
	tctx, stopTail := context.WithCancel(ctx)
	tailDone := make(chan error, 1)
	go func() {
		tailDone <- b.Tail(tctx, []event.Kind{event.KindPostCreated}, func(ev event.Event) {
			mu.Lock()
			tailed = append(tailed, ev)
			mu.Unlock()
		})
	}()
	defer func() { stopTail(); <-tailDone }()
	// Wait for the tail to go live, so that it sees the bad message.
	ping := 0
	waitfor.Until(t, waitfor.Deadline, "the tail to go live", func() (bool, any) {
		mu.Lock()
		n := len(tailed)
		mu.Unlock()
		if n > 0 {
			return true, nil
		}
		ping++
		if err := b.Publish(ctx, event.PostCreated{Post: feed.PostID(1000 + ping), Author: "ping"}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		return false, fmt.Sprintf("%d pings", ping)
	})

	if err := b.PublishRaw(ctx, string(event.KindPostCreated), "", []byte{0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, event.PostCreated{Post: 7, Author: "boom"}); err != nil {
		t.Fatal(err)
	}
	handled := 0
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(cctx, event.ConsumerConfig{Durable: "bad", Kinds: []event.Kind{event.KindPostCreated}, AckWait: 5 * time.Second, MaxDeliver: 3},
			func(_ context.Context, ev event.Event) error {
				mu.Lock()
				handled++
				mu.Unlock()
				if ev.(event.PostCreated).Author == "boom" {
					panic("handler bug")
				}
				return nil
			})
	}()
	defer func() { stop(); <-done }()

	var dead []DeadLetter
	waitfor.Until(t, waitfor.Deadline, "the undecodable and the panicking event in the dead letters", func() (bool, any) {
		var err error
		if dead, err = b.DeadLetters(ctx, 10); err != nil {
			t.Fatal(err)
		}
		return len(dead) >= 2, dead
	})
	var undecodable, panicked bool
	for _, d := range dead {
		undecodable = undecodable || strings.Contains(d.Reason, "undecodable")
		panicked = panicked || (strings.Contains(d.Reason, "handler panicked: handler bug") && strings.Contains(d.Reason, "goroutine"))
	}
	if !undecodable || !panicked {
		t.Errorf("dead letters = %+v; want one for the undecodable message and one naming the panic with its stack", dead)
	}
	if got := testutil.ToFloat64(b.undecodable.WithLabelValues("bad")); got != 1 {
		t.Errorf("herald_bus_undecodable_events_total{consumer=bad} = %v; want 1", got)
	}
	if got := testutil.ToFloat64(b.panics.WithLabelValues("bad")); got != 1 {
		t.Errorf("herald_bus_handler_panics_total{consumer=bad} = %v; want 1", got)
	}
	// The tail skipped the bad message and counted it.
	waitfor.Until(t, waitfor.Deadline, "the tail to count the undecodable message", func() (bool, any) {
		got := testutil.ToFloat64(b.undecodable.WithLabelValues("tail"))
		return got == 1, fmt.Sprintf("herald_bus_undecodable_events_total{consumer=tail} = %v", got)
	})
	mu.Lock()
	defer mu.Unlock()
	// The pings and the panicking event reached the handler, once each;
	// the undecodable message never did.
	if handled != ping+1 {
		t.Errorf("handler ran %d times; want %d: once per ping and once for the event that panicked", handled, ping+1)
	}
}
