package eventtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// testDeadLetterAndReplay: an event that fails MaxDeliver times, and one
// rejected as permanent, land in the dead letters with their reasons; a
// replay sends one back to its consumer and removes it.
func testDeadLetterAndReplay(t *testing.T, l Log) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitfor.Deadline)
	defer cancel()
	created := event.PostCreated{Post: 1, Author: "alice", Created: time.Now()}
	deleted := event.PostDeleted{Post: 2, Author: "alice"}
	publish(t, l, created, deleted)

	var mu sync.Mutex
	healthy := false
	seen := map[event.Kind]int{}
	consume(t, l, event.ConsumerConfig{
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

	var dead []event.DeadLetter
	waitfor.Until(t, waitfor.Deadline, "2 dead letters", func() (bool, any) {
		var err error
		if dead, err = l.DeadLetters(ctx, 10); err != nil {
			t.Fatal(err)
		}
		return len(dead) >= 2, dead
	})
	byKind := map[event.Kind]event.DeadLetter{}
	for _, d := range dead {
		byKind[d.Kind] = d
	}
	if d := byKind[event.KindPostCreated]; d.Consumer != "dlq" || !strings.Contains(d.Reason, "failed 2 deliveries") || !strings.Contains(d.Reason, "cache down") {
		t.Errorf("dead letter for %s = %+v; want consumer dlq and a reason naming 2 deliveries and the cause", event.KindPostCreated, d)
	}
	if d := byKind[event.KindPostDeleted]; !strings.Contains(d.Reason, "undeletable") || d.Time.IsZero() || len(d.Data) == 0 {
		t.Errorf("dead letter for %s = %+v; want the permanent reason, a time and the event's bytes", event.KindPostDeleted, d)
	}
	mu.Lock()
	if seen[event.KindPostCreated] != 2 || seen[event.KindPostDeleted] != 1 {
		t.Errorf("deliveries = %v; want 2 (MaxDeliver) and 1 (permanent)", seen)
	}
	healthy = true
	mu.Unlock()

	if err := l.Replay(ctx, byKind[event.KindPostCreated].Seq); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, waitfor.Deadline, "the replayed event's third delivery", func() (bool, any) {
		mu.Lock()
		defer mu.Unlock()
		n := seen[event.KindPostCreated]
		return n == 3, fmt.Sprintf("%d deliveries in all", n)
	})
	left, err := l.DeadLetters(ctx, 10)
	if err != nil || len(left) != 1 || left[0].Kind != event.KindPostDeleted {
		t.Errorf("DeadLetters after the replay = %+v, %v; want only the %s one", left, err, event.KindPostDeleted)
	}
	if err := l.Replay(ctx, byKind[event.KindPostCreated].Seq); !errors.Is(err, feed.ErrNotFound) {
		t.Errorf("Replay of a replayed dead letter = %v; want feed.ErrNotFound", err)
	}
	if err := l.Replay(ctx, 1<<40); !errors.Is(err, feed.ErrNotFound) {
		t.Errorf("Replay of a dead letter that never was = %v; want feed.ErrNotFound", err)
	}
}

// testUndecodableAndPanics: a message that does not decode never reaches
// the handler; it is counted and dead-lettered, and a tail skips it. A
// handler that panics does not take the process down: its event is
// dead-lettered with the stack.
func testUndecodableAndPanics(t *testing.T, l Log, reg *prometheus.Registry) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitfor.Deadline)
	defer cancel()

	var tailed seen
	tctx, stopTail := context.WithCancel(ctx)
	tailDone := make(chan error, 1)
	go func() { tailDone <- l.Tail(tctx, []event.Kind{event.KindPostCreated}, tailed.tail) }()
	defer func() { stopTail(); <-tailDone }()
	// Wait for the tail to go live, so that it sees the bad message.
	ping := 0
	waitfor.Until(t, waitfor.Deadline, "the tail to go live", func() (bool, any) {
		if len(tailed.all()) > 0 {
			return true, nil
		}
		ping++
		publish(t, l, event.PostCreated{Post: feed.PostID(1000 + ping), Author: "ping"})
		time.Sleep(50 * time.Millisecond) // pace the pings; the wait is for the arrival
		return false, fmt.Sprintf("%d pings", ping)
	})

	if err := l.PublishRaw(ctx, event.KindPostCreated, []byte{0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	publish(t, l, event.PostCreated{Post: 7, Author: "boom"})
	var mu sync.Mutex
	handled := 0
	consume(t, l, event.ConsumerConfig{Durable: "bad", Kinds: []event.Kind{event.KindPostCreated}, AckWait: 5 * time.Second, MaxDeliver: 3},
		func(_ context.Context, ev event.Event) error {
			mu.Lock()
			handled++
			mu.Unlock()
			if ev.(event.PostCreated).Author == "boom" {
				panic("handler bug")
			}
			return nil
		})

	var dead []event.DeadLetter
	waitfor.Until(t, waitfor.Deadline, "the undecodable and the panicking event in the dead letters", func() (bool, any) {
		var err error
		if dead, err = l.DeadLetters(ctx, 10); err != nil {
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
	if got := counter(t, reg, "herald_bus_undecodable_events_total", "bad"); got != 1 {
		t.Errorf("herald_bus_undecodable_events_total{consumer=bad} = %v; want 1", got)
	}
	if got := counter(t, reg, "herald_bus_handler_panics_total", "bad"); got != 1 {
		t.Errorf("herald_bus_handler_panics_total{consumer=bad} = %v; want 1", got)
	}
	if got := counter(t, reg, "herald_bus_dead_letters_total", "bad"); got != 2 {
		t.Errorf("herald_bus_dead_letters_total{consumer=bad} = %v; want 2", got)
	}
	// The tail skipped the bad message and counted it.
	waitfor.Until(t, waitfor.Deadline, "the tail to count the undecodable message", func() (bool, any) {
		got := counter(t, reg, "herald_bus_undecodable_events_total", "tail")
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

// counter returns the value of the counter name{consumer=consumer} in reg,
// 0 if it has none.
func counter(t *testing.T, reg *prometheus.Registry, name, consumer string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if hasLabel(m, "consumer", consumer) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}
