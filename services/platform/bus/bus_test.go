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

	"google.golang.org/protobuf/proto"

	eventv1 "github.com/herald-feed/herald/proto/herald/event/v1"
	"github.com/herald-feed/herald/services/platform/embedded"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

func newBus(t *testing.T) *Bus {
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := New(ctx, nc, Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPublishDedupesByMsgID(t *testing.T) {
	b := newBus(t)
	ctx := context.Background()
	ev := &eventv1.PostCreated{PostId: 7, AuthorId: "alice"}
	for i := 0; i < 3; i++ {
		if err := b.Publish(ctx, SubjectPostCreated, "post-7", ev); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := b.JetStream().Stream(ctx, b.Stream())
	info, _ := s.Info(ctx)
	if info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages after 3 publishes with one Nats-Msg-Id; want 1", info.State.Msgs)
	}
}

// TestConsumeRedeliversUntilAck: a handler error naks the message, which
// comes back; a permanent error terminates it.
func TestConsumeRedeliversUntilAck(t *testing.T) {
	b := newBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b.Publish(ctx, SubjectPostCreated, "a", &eventv1.PostCreated{PostId: 1})
	b.Publish(ctx, SubjectPostDeleted, "b", &eventv1.PostDeleted{PostId: 2})

	var mu sync.Mutex
	attempts := map[string]int{}
	acked := make(chan struct{})
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() {
		done <- b.Consume(cctx, ConsumerConfig{
			Durable: "test", Subjects: []string{"post.>"}, AckWait: 5 * time.Second, MaxDeliver: 5,
			BackOff: []time.Duration{50 * time.Millisecond},
		}, func(_ context.Context, subject string, data []byte) error {
			mu.Lock()
			defer mu.Unlock()
			attempts[subject]++
			if subject == SubjectPostDeleted {
				return errors.Join(errors.New("bad message"), ErrPermanent)
			}
			var ev eventv1.PostCreated
			if err := proto.Unmarshal(data, &ev); err != nil || ev.PostId != 1 {
				t.Errorf("got %v, %v; want post 1", &ev, err)
			}
			if attempts[subject] < 3 {
				return errors.New("cache down")
			}
			close(acked)
			return nil
		})
	}()
	select {
	case <-acked:
	case <-ctx.Done():
		t.Fatal("message was not redelivered until acked")
	}
	// Prove that nothing comes back: once the server has recorded both
	// messages as done (acked, or terminated) and holds none pending,
	// neither can be redelivered. An ack is asynchronous, so wait for it.
	cons, err := b.JetStream().Consumer(ctx, b.Stream(), "test")
	if err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, waitfor.Deadline, "the consumer to record both messages done", func() (bool, any) {
		info, err := cons.Info(ctx)
		if err != nil {
			return false, err
		}
		return info.AckFloor.Stream == 2 && info.NumAckPending == 0 && info.NumPending == 0,
			fmt.Sprintf("ack floor %d, %d awaiting ack, %d pending", info.AckFloor.Stream, info.NumAckPending, info.NumPending)
	})
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Consume returned %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if attempts[SubjectPostCreated] != 3 || attempts[SubjectPostDeleted] != 1 {
		t.Errorf("attempts = %v; want 3 for the failing-then-acked message and 1 for the terminated one", attempts)
	}
}

// TestDeadLetterAndReplay: a message that fails MaxDeliver times, and one
// rejected as permanent, land in the dead-letter stream with their
// reasons; a replay sends one back to its consumer and removes it.
func TestDeadLetterAndReplay(t *testing.T) {
	b := newBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b.Publish(ctx, SubjectPostCreated, "a", &eventv1.PostCreated{PostId: 1})
	b.Publish(ctx, SubjectPostDeleted, "b", &eventv1.PostDeleted{PostId: 2})

	var mu sync.Mutex
	healthy := false
	seen := map[string]int{}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() {
		done <- b.Consume(cctx, ConsumerConfig{
			Durable: "dlq", Subjects: []string{"post.>"}, AckWait: 5 * time.Second, MaxDeliver: 2,
			BackOff: []time.Duration{20 * time.Millisecond},
		}, func(_ context.Context, subject string, _ []byte) error {
			mu.Lock()
			defer mu.Unlock()
			seen[subject]++
			switch {
			case subject == SubjectPostDeleted:
				return errors.Join(errors.New("undecodable"), ErrPermanent)
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
	if d := bySubject[SubjectPostCreated]; d.Consumer != "dlq" || !strings.Contains(d.Reason, "failed 2 deliveries") || !strings.Contains(d.Reason, "cache down") {
		t.Errorf("dead letter for %s = %+v; want consumer dlq and a reason naming 2 deliveries and the cause", SubjectPostCreated, d)
	}
	if d := bySubject[SubjectPostDeleted]; !strings.Contains(d.Reason, "undecodable") {
		t.Errorf("dead letter for %s = %+v; want the permanent reason", SubjectPostDeleted, d)
	}
	mu.Lock()
	if seen[SubjectPostCreated] != 2 || seen[SubjectPostDeleted] != 1 {
		t.Errorf("deliveries = %v; want 2 (MaxDeliver) and 1 (permanent)", seen)
	}
	healthy = true
	mu.Unlock()

	if err := b.Replay(ctx, bySubject[SubjectPostCreated].Seq); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, waitfor.Deadline, "the replayed message's third delivery", func() (bool, any) {
		mu.Lock()
		defer mu.Unlock()
		n := seen[SubjectPostCreated]
		return n == 3, fmt.Sprintf("%d deliveries in all", n)
	})
	left, err := b.DeadLetters(ctx, 10)
	if err != nil || len(left) != 1 || left[0].Subject != SubjectPostDeleted {
		t.Errorf("DeadLetters after the replay = %+v, %v; want only the %s one", left, err, SubjectPostDeleted)
	}
	if err := b.Replay(ctx, bySubject[SubjectPostCreated].Seq); !errors.Is(err, feed.ErrNotFound) {
		t.Errorf("Replay of a replayed dead letter = %v; want feed.ErrNotFound", err)
	}
}
