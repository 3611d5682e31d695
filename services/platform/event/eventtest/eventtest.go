// Package eventtest is the contract suite of the event port: every adapter
// of event.Log runs it (the JetStream bus now; Kafka next), so that the
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

// Run runs the suite. open returns an empty log of its own, which the test
// may publish to and consume from; each call is a fresh deployment.
func Run(t *testing.T, opts Options, open func(t *testing.T) event.Log) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, open(t)) })
	t.Run("RedeliverUntilAck", func(t *testing.T) { testRedeliver(t, open(t)) })
	t.Run("SharedDurable", func(t *testing.T) { testSharedDurable(t, open(t)) })
	t.Run("AckedStaysAcked", func(t *testing.T) { testAckedStaysAcked(t, open(t)) })
	t.Run("Republish", func(t *testing.T) { testRepublish(t, open(t), opts) })
	t.Run("TailFromNow", func(t *testing.T) { testTail(t, open(t)) })
	t.Run("ShutdownWaitsForHandlers", func(t *testing.T) { testShutdown(t, open(t)) })
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

// testSharedDurable: two consumers under one name share the events: each
// event is handled, and both consumers take some.
func testSharedDurable(t *testing.T, l event.Log) {
	const n = 40
	var a, b seen
	release := make(chan struct{})
	var inA, inB atomic.Int32
	// Each handler holds every event until both consumers have one, so
	// that neither can take all the events alone: a consumer holds at most
	// its workers' events and the few it pulled ahead, and the rest wait
	// for the other. (Holding only the first event left a consumer's
	// other worker free to take every event before the other consumer's
	// first pull.)
	hold := func(s *seen, mine *atomic.Int32) event.Handler {
		return func(_ context.Context, ev event.Event) error {
			mine.Add(1)
			<-release
			s.add(ev)
			return nil
		}
	}
	c := cfg("shared")
	c.Workers = 2
	consume(t, l, c, hold(&a, &inA))
	consume(t, l, c, hold(&b, &inB))
	var evs []event.Event
	for i := range n {
		evs = append(evs, event.PostCreated{Post: feed.PostID(100 + i), Author: "alice", Created: created})
	}
	publish(t, l, evs...)
	waitfor.Until(t, waitfor.Deadline, "both consumers to take an event", func() (bool, any) {
		return inA.Load() > 0 && inB.Load() > 0, fmt.Sprintf("taken: %d and %d", inA.Load(), inB.Load())
	})
	close(release)
	waitfor.Until(t, waitfor.Deadline, fmt.Sprintf("all %d events handled", n), func() (bool, any) {
		missing := 0
		for _, ev := range evs {
			if a.count(ev)+b.count(ev) == 0 {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d not handled yet", missing)
	})
	if len(a.all()) == 0 || len(b.all()) == 0 {
		t.Errorf("consumers handled %d and %d events; want both to take a share", len(a.all()), len(b.all()))
	}
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
	// One worker handles the events in log order: once the marker,
	// published last, is handled, so is every copy before it.
	waitfor.Until(t, waitfor.Deadline, "the marker event", func() (bool, any) { return got.count(marker) == 1, got.all() })
	for _, e := range []event.Event{ev, chunk} {
		n := got.count(e)
		switch {
		case n == 0:
			t.Errorf("%#v, published twice, was not delivered", e)
		case opts.Dedupes && n != 1:
			t.Errorf("%#v, published twice with DedupeID %q, was delivered %d times; want once", e, e.DedupeID(), n)
		}
	}
}

// testTail: a tail gets the events published after it started, and none
// from before.
func testTail(t *testing.T, l event.Log) {
	old := event.PostCreated{Post: 51, Author: "alice", Created: created}
	publish(t, l, old)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var got seen
	go func() { done <- l.Tail(ctx, []event.Kind{event.KindPostCreated}, got.add) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Tail returned %v; want nil after its context ended", err)
		}
	})
	// The tail starts asynchronously: publish pings until one arrives.
	ping := 0
	waitfor.Until(t, waitfor.Deadline, "the tail to go live", func() (bool, any) {
		for _, e := range got.all() {
			if e.(event.PostCreated).Author == "ping" {
				return true, nil
			}
		}
		ping++
		publish(t, l, event.PostCreated{Post: feed.PostID(1000 + ping), Author: "ping", Created: created}, event.Followed{Follower: "x", Followee: "ping"})
		time.Sleep(50 * time.Millisecond) // pace the pings; the wait is for the arrival
		return false, fmt.Sprintf("%d pings published", ping)
	})
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
