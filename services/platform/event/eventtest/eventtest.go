// Package eventtest is the contract suite of the event port: every adapter
// of event.Log runs it (bus on JetStream, kafkabus on Kafka), so that the
// services can rely on the same behaviour from each.
package eventtest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// Options says what an adapter guarantees beyond the port's minimum.
type Options struct {
	// Dedupes: the log drops a republished event with the same DedupeID
	// (JetStream's Nats-Msg-Id window). Without it, each copy arrives, and
	// the suite checks only that one did.
	Dedupes bool
}

// Log is what an adapter under test gives the suite: the port, its
// operator's interface, and a way to publish bytes that do not decode.
type Log interface {
	event.AdminLog
	// PublishRaw appends data as it is under kind, undecodable or not.
	PublishRaw(ctx context.Context, kind event.Kind, data []byte) error
}

// Run runs the suite. open returns an empty log of its own, which the test
// may publish to and consume from, with its metrics registered in reg;
// each call is a fresh deployment.
func Run(t *testing.T, opts Options, open func(t *testing.T, reg prometheus.Registerer) Log) {
	plain := func(t *testing.T) Log { return open(t, nil) }
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, plain(t)) })
	t.Run("RedeliverUntilAck", func(t *testing.T) { testRedeliver(t, plain(t)) })
	t.Run("SharedDurable", func(t *testing.T) { testSharedDurable(t, plain(t)) })
	t.Run("AckedStaysAcked", func(t *testing.T) { testAckedStaysAcked(t, plain(t)) })
	t.Run("Republish", func(t *testing.T) { testRepublish(t, plain(t), opts) })
	t.Run("TailFromNow", func(t *testing.T) { testTail(t, plain(t)) })
	t.Run("TraceContext", func(t *testing.T) { testTraceContext(t, plain(t)) })
	t.Run("ShutdownWaitsForHandlers", func(t *testing.T) { testShutdown(t, plain(t)) })
	t.Run("DeadLetterAndReplay", func(t *testing.T) { testDeadLetterAndReplay(t, plain(t)) })
	t.Run("UndecodableAndPanics", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		testUndecodableAndPanics(t, open(t, reg), reg)
	})
}

var created = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// seen records the events a handler got, in order.
type seen struct {
	mu  sync.Mutex
	evs []event.Event
}

func (s *seen) add(ev event.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evs = append(s.evs, ev)
}

// tail is add as a Tail handler.
func (s *seen) tail(_ context.Context, ev event.Event) { s.add(ev) }

func (s *seen) all() []event.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.evs)
}

func (s *seen) count(ev event.Event) int {
	n := 0
	for _, e := range s.all() {
		if reflect.DeepEqual(e, ev) {
			n++
		}
	}
	return n
}

// consume runs l.Consume in the background until the test ends, and
// returns a function that stops it and waits for it to return.
func consume(t *testing.T, l event.Log, cc event.ConsumerConfig, h event.Handler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Consume(ctx, cc, h) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Consume(%s) returned %v; want nil after its context ended", cc.Durable, err)
				}
			case <-time.After(waitfor.Deadline):
				t.Errorf("Consume(%s) did not return within %v of its context ending", cc.Durable, waitfor.Deadline)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func publish(t *testing.T, l event.Log, evs ...event.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Deadline)
	defer cancel()
	for _, ev := range evs {
		if err := l.Publish(ctx, ev); err != nil {
			t.Fatalf("Publish(%#v): %v", ev, err)
		}
	}
}

func cfg(durable string) event.ConsumerConfig {
	return event.ConsumerConfig{
		Durable: durable, Kinds: event.Kinds, AckWait: 30 * time.Second, MaxDeliver: 5,
		BackOff: []time.Duration{10 * time.Millisecond}, MaxAckPending: 100, Workers: 1,
	}
}

// testRoundTrip: every kind of event arrives as it was published.
func testRoundTrip(t *testing.T, l event.Log) {
	evs := []event.Event{
		event.PostCreated{Post: 11, Author: "alice", Created: created},
		event.PostDeleted{Post: 11, Author: "alice"},
		event.Followed{Follower: "bob", Followee: "alice"},
		event.Unfollowed{Follower: "bob", Followee: "alice"},
		event.FanoutChunk{Post: 12, Author: "alice", Created: created, Index: 2, Followers: []string{"bob", "carol"}},
	}
	publish(t, l, evs...)
	var got seen
	consume(t, l, cfg("roundtrip"), func(_ context.Context, ev event.Event) error { got.add(ev); return nil })
	waitfor.Until(t, waitfor.Deadline, fmt.Sprintf("all %d events", len(evs)), func() (bool, any) {
		return len(got.all()) >= len(evs), got.all()
	})
	for _, ev := range evs {
		if got.count(ev) == 0 {
			t.Errorf("consumed %#v; want %#v among them", got.all(), ev)
		}
	}
}

// testRedeliver: a failed event comes back until a handler acks it; a
// permanent failure does not come back.
func testRedeliver(t *testing.T, l event.Log) {
	flaky := event.PostCreated{Post: 21, Author: "alice", Created: created}
	doomed := event.PostDeleted{Post: 22, Author: "alice"}
	marker := event.Followed{Follower: "marker", Followee: "alice"}
	publish(t, l, flaky, doomed)
	var got seen
	consume(t, l, cfg("redeliver"), func(_ context.Context, ev event.Event) error {
		got.add(ev)
		switch {
		case reflect.DeepEqual(ev, doomed):
			return fmt.Errorf("never works: %w", event.ErrPermanent)
		case reflect.DeepEqual(ev, flaky) && got.count(flaky) < 3:
			return errors.New("cache down")
		}
		return nil
	})
	waitfor.Until(t, waitfor.Deadline, "the flaky event's third delivery", func() (bool, any) {
		return got.count(flaky) >= 3, got.all()
	})
	// Both are settled now; an event published after them arrives after
	// any redelivery of theirs would have been scheduled by the backoff.
	publish(t, l, marker)
	waitfor.Until(t, waitfor.Deadline, "the marker event", func() (bool, any) { return got.count(marker) == 1, got.all() })
	if n := got.count(flaky); n != 3 {
		t.Errorf("the event that failed twice was delivered %d times; want 3", n)
	}
	if n := got.count(doomed); n != 1 {
		t.Errorf("the permanently failing event was delivered %d times; want 1", n)
	}
}

// testSharedDurable: two consumers under one name share the events: every
// event is handled, and both consumers take some. Events are published,
// one author each, until both have handled one: a log spreads a
// consumer's events over its instances by key (Kafka, by partition) or
// by pull (JetStream), so one author's events may all go to one instance,
// and an instance that joins later may get its share only once the
// consumer has rebalanced.
func testSharedDurable(t *testing.T, l event.Log) {
	var a, b seen
	c := cfg("shared")
	c.Workers = 2
	handler := func(s *seen) event.Handler {
		return func(_ context.Context, ev event.Event) error { s.add(ev); return nil }
	}
	consume(t, l, c, handler(&a))
	consume(t, l, c, handler(&b))
	var evs []event.Event
	waitfor.Until(t, waitfor.Deadline, "both consumers to handle an event", func() (bool, any) {
		if len(a.all()) > 0 && len(b.all()) > 0 {
			return true, nil
		}
		for range 4 {
			ev := event.PostCreated{Post: feed.PostID(100 + len(evs)), Author: fmt.Sprintf("author%d", len(evs)), Created: created}
			publish(t, l, ev)
			evs = append(evs, ev)
		}
		time.Sleep(50 * time.Millisecond) // pace the events; the wait is for the handling
		return false, fmt.Sprintf("%d events published; handled %d and %d", len(evs), len(a.all()), len(b.all()))
	})
	waitfor.Until(t, waitfor.Deadline, "every event handled", func() (bool, any) {
		missing := 0
		for _, ev := range evs {
			if a.count(ev)+b.count(ev) == 0 {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d of %d not handled yet", missing, len(evs))
	})
}

// testAckedStaysAcked: a consumer that starts again under the same name
// goes on after the events it acknowledged.
func testAckedStaysAcked(t *testing.T, l event.Log) {
	first := event.PostCreated{Post: 31, Author: "alice", Created: created}
	second := event.PostCreated{Post: 32, Author: "alice", Created: created}
	publish(t, l, first)
	var before seen
	stop := consume(t, l, cfg("restart"), func(_ context.Context, ev event.Event) error { before.add(ev); return nil })
	waitfor.Until(t, waitfor.Deadline, "the first event", func() (bool, any) { return before.count(first) == 1, before.all() })
	stop()

	publish(t, l, second)
	var after seen
	consume(t, l, cfg("restart"), func(_ context.Context, ev event.Event) error { after.add(ev); return nil })
	waitfor.Until(t, waitfor.Deadline, "the second event after the restart", func() (bool, any) { return after.count(second) == 1, after.all() })
	if after.count(first) != 0 {
		t.Errorf("after a restart the consumer got %#v; want only the event published since: the first was acknowledged", after.all())
	}
}

// testRepublish: an event published twice is handled at least once, and
// exactly once by a log that dedupes.
func testRepublish(t *testing.T, l event.Log, opts Options) {
	ev := event.PostCreated{Post: 41, Author: "alice", Created: created}
	chunk := event.FanoutChunk{Post: 41, Author: "alice", Created: created, Index: 2, Followers: []string{"bob"}}
	marker := event.Followed{Follower: "marker", Followee: "alice"}
	publish(t, l, ev, chunk, ev, chunk, marker)
	var got seen
	consume(t, l, cfg("republish"), func(_ context.Context, ev event.Event) error { got.add(ev); return nil })
	// A log without dedupe delivers both copies of each; one with dedupe
	// delivers one. The events are of three kinds, which a log may keep
	// apart (Kafka: a topic each) and so deliver in any order: the marker
	// shows that the log has delivered what it would, once the copies it
	// should deliver have arrived.
	want := 2
	if opts.Dedupes {
		want = 1
	}
	waitfor.Until(t, waitfor.Deadline, fmt.Sprintf("the marker, and %d of each copied event", want), func() (bool, any) {
		return got.count(marker) == 1 && got.count(ev) >= want && got.count(chunk) >= want, got.all()
	})
	for _, e := range []event.Event{ev, chunk} {
		if n := got.count(e); n != want {
			t.Errorf("%#v, published twice (DedupeID %q), was delivered %d times; want %d", e, e.DedupeID(), n, want)
		}
	}
}

// testTail: a tail gets the events published after it started, and none
// from before.
func testTail(t *testing.T, l event.Log) {
	old := event.PostCreated{Post: 51, Author: "alice", Created: created}
	publish(t, l, old)
	var got seen
	liveTail(t, l, got.tail)
	fresh := event.PostCreated{Post: 52, Author: "alice", Created: created}
	publish(t, l, fresh)
	waitfor.Until(t, waitfor.Deadline, "the event published after the tail started", func() (bool, any) { return got.count(fresh) == 1, got.all() })
	if got.count(old) != 0 {
		t.Errorf("tail delivered %#v, published before it started", old)
	}
	for _, e := range got.all() {
		if e.Kind() != event.KindPostCreated {
			t.Errorf("tail of %s delivered %#v", event.KindPostCreated, e)
		}
	}
}

// liveTail starts a tail of post.created running h, and returns once it
// is live: the tail starts asynchronously, so it publishes pings (posts by
// "ping", and a follow that the tail must not take) until one arrives. h
// sees the pings too. The tail ends with the test.
func liveTail(t *testing.T, l event.Log, h func(context.Context, event.Event)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var live atomic.Bool
	go func() {
		done <- l.Tail(ctx, []event.Kind{event.KindPostCreated}, func(ctx context.Context, ev event.Event) {
			if e, ok := ev.(event.PostCreated); ok && e.Author == "ping" {
				live.Store(true)
			}
			h(ctx, ev)
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Tail returned %v; want nil after its context ended", err)
		}
	})
	ping := 0
	waitfor.Until(t, waitfor.Deadline, "the tail to go live", func() (bool, any) {
		if live.Load() {
			return true, nil
		}
		ping++
		publish(t, l, event.PostCreated{Post: feed.PostID(1000 + ping), Author: "ping", Created: created}, event.Followed{Follower: "x", Followee: "ping"})
		time.Sleep(50 * time.Millisecond) // pace the pings; the wait is for the arrival
		return false, fmt.Sprintf("%d pings published", ping)
	})
}

// testShutdown: Consume returns only once the handler in flight when its
// context ended has finished.
func testShutdown(t *testing.T, l event.Log) {
	publish(t, l, event.PostCreated{Post: 61, Author: "alice", Created: created})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{})
	var finished atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- l.Consume(ctx, cfg("shutdown"), func(hctx context.Context, _ event.Event) error {
			close(started)
			<-ctx.Done()                      // the shutdown has begun
			time.Sleep(50 * time.Millisecond) // the handler's last writes
			finished.Store(true)
			return nil
		})
	}()
	select {
	case <-started:
	case <-time.After(waitfor.Deadline):
		t.Fatalf("no event delivered within %v", waitfor.Deadline)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Consume returned %v; want nil", err)
		}
		if !finished.Load() {
			t.Error("Consume returned while its handler was still running; want it to wait for the handler")
		}
	case <-time.After(waitfor.Deadline):
		t.Fatalf("Consume did not return within %v of its context ending", waitfor.Deadline)
	}
}
