package bus

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	eventv1 "github.com/herald-feed/herald/proto/herald/event/v1"
	"github.com/herald-feed/herald/services/platform/embedded"
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
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
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
	time.Sleep(300 * time.Millisecond) // a wrongly acked message would come back by now
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
