package timeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// openStream runs Service.Stream for user on a goroutine. Its posts arrive
// on posts (buffered far beyond what a test sends), and its result on done.
type openStream struct {
	posts chan feed.Post
	done  chan error
	stop  context.CancelFunc
}

func startStream(t *testing.T, svc *Service, hub *Hub, user string, send func(feed.Post) error) *openStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &openStream{posts: make(chan feed.Post, 4096), done: make(chan error, 1), stop: cancel}
	if send == nil {
		send = func(p feed.Post) error { s.posts <- p; return nil }
	}
	go func() { s.done <- svc.Stream(ctx, hub, user, send) }()
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s
}

// subscribed waits until user's stream is open in hub, its following
// list indexed.
func subscribed(t *testing.T, hub *Hub, user string) {
	t.Helper()
	waitfor.Until(t, waitfor.Deadline, user+"'s stream open", func() (bool, any) {
		hub.mu.Lock()
		defer hub.mu.Unlock()
		w := hub.watchers[user]
		return w != nil && w.unfollowed == nil, "no stream of " + user + " with its following list indexed"
	})
}

// expect receives len(want) posts from s and checks their IDs, in order.
func (s *openStream) expect(t *testing.T, what string, want ...feed.Post) {
	t.Helper()
	var got []feed.PostID
	deadline := time.After(waitfor.Deadline)
	for len(got) < len(want) {
		select {
		case p := <-s.posts:
			got = append(got, p.ID)
		case err := <-s.done:
			t.Fatalf("%s: stream ended with %v after %v; want %v", what, err, got, postIDs(want))
		case <-deadline:
			t.Fatalf("%s: stream sent %v; want %v", what, got, postIDs(want))
		}
	}
	if !slices.Equal(got, postIDs(want)) {
		t.Errorf("%s: stream sent %v; want %v", what, got, postIDs(want))
	}
}

// result waits for the stream's end.
func (s *openStream) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
		return err
	case <-time.After(waitfor.Deadline):
		t.Fatalf("stream did not end")
		return nil
	}
}

func mkPost(id feed.PostID, author string) feed.Post {
	return feed.Post{ID: id, Author: author, Text: fmt.Sprintf("%s %d", author, id)}
}

func TestStreamDelivers(t *testing.T) {
	e := newEnv(t, envOpts{})
	hub := newHub(t, HubConfig{})
	e.follows.follow("alice", "bob")
	e.follows.follow("carol", "bob", "dave")
	alice := startStream(t, e.svc, hub, "alice", nil)
	carol := startStream(t, e.svc, hub, "carol", nil)
	subscribed(t, hub, "alice")
	subscribed(t, hub, "carol")
	for _, tt := range []struct {
		author string
		want   bool
	}{{"alice", true}, {"bob", true}, {"carol", true}, {"dave", true}, {"erin", false}} {
		if got := hub.Wants(tt.author); got != tt.want {
			t.Errorf("Wants(%q) = %v; want %v", tt.author, got, tt.want)
		}
	}

	// Streams are FIFO: a post that should not reach a stream, sent before
	// one that should, would arrive first.
	erin1, dave1, bob1, alice1, carol1 := mkPost(1, "erin"), mkPost(2, "dave"), mkPost(3, "bob"), mkPost(4, "alice"), mkPost(5, "carol")
	for _, p := range []feed.Post{erin1, dave1, bob1, alice1, carol1} {
		hub.Deliver(p)
	}
	alice.expect(t, "alice's stream", bob1, alice1)
	carol.expect(t, "carol's stream", dave1, bob1, carol1)

	// Ending a stream unsubscribes it.
	carol.stop()
	if err := carol.result(t); err != nil {
		t.Errorf("Stream after its context ended = %v; want nil", err)
	}
	if hub.Wants("dave") || hub.Wants("carol") {
		t.Errorf("Wants(dave), Wants(carol) = %v, %v after carol's stream ended; want false, false", hub.Wants("dave"), hub.Wants("carol"))
	}
	if !hub.Wants("bob") {
		t.Errorf("Wants(bob) = false; want true: alice's stream is still open")
	}
	bob2 := mkPost(6, "bob")
	hub.Deliver(bob2)
	alice.expect(t, "alice's stream after carol's ended", bob2)
}

func TestStreamFollowChanges(t *testing.T) {
	e := newEnv(t, envOpts{})
	hub := newHub(t, HubConfig{})
	e.follows.follow("alice", "bob")
	// alice has two devices connected.
	phone := startStream(t, e.svc, hub, "alice", nil)
	laptop := startStream(t, e.svc, hub, "alice", nil)
	waitfor.Until(t, waitfor.Deadline, "both of alice's streams open", func() (bool, any) {
		n := joined(hub, "alice")
		return n == 2, fmt.Sprintf("%d streams", n)
	})

	hub.Followed("alice", "carol")
	hub.Unfollowed("alice", "bob")
	hub.Unfollowed("alice", "alice") // never drops the user's own posts
	hub.Followed("erin", "dave")     // erin has no stream: no effect
	for _, tt := range []struct {
		author string
		want   bool
	}{{"alice", true}, {"bob", false}, {"carol", true}, {"dave", false}} {
		if got := hub.Wants(tt.author); got != tt.want {
			t.Errorf("Wants(%q) after the follow changes = %v; want %v", tt.author, got, tt.want)
		}
	}
	bob1, carol1, dave1, alice1 := mkPost(1, "bob"), mkPost(2, "carol"), mkPost(3, "dave"), mkPost(4, "alice")
	for _, p := range []feed.Post{bob1, carol1, dave1, alice1} {
		hub.Deliver(p)
	}
	phone.expect(t, "alice's phone", carol1, alice1)
	laptop.expect(t, "alice's laptop", carol1, alice1)

	// Following again restores bob.
	hub.Followed("alice", "bob")
	bob2 := mkPost(5, "bob")
	hub.Deliver(bob2)
	phone.expect(t, "alice's phone after following bob again", bob2)
	laptop.expect(t, "alice's laptop after following bob again", bob2)
}

func TestStreamSlowReader(t *testing.T) {
	e := newEnv(t, envOpts{})
	hub := newHub(t, HubConfig{})
	e.follows.follow("alice", "bob")
	e.follows.follow("carol", "dave")
	entered := make(chan struct{})
	release := make(chan struct{})
	first := true
	slow := startStream(t, e.svc, hub, "alice", func(feed.Post) error {
		if first {
			first = false
			close(entered)
			<-release // the reader stops reading, as a client granting no HTTP/2 window does
		}
		return nil
	})
	other := startStream(t, e.svc, hub, "carol", nil)
	subscribed(t, hub, "alice")
	subscribed(t, hub, "carol")

	hub.Deliver(mkPost(1, "bob"))
	<-entered
	// With the reader stuck in send, the buffer fills; Deliver must not
	// block, and the post past the buffer ends the stream, though send is
	// still blocked.
	for i := range DefaultStreamBuffer + 1 {
		hub.Deliver(mkPost(feed.PostID(2+i), "bob"))
	}
	err := slow.result(t)
	if !errors.Is(err, ErrSlowReader) || !errors.Is(err, feed.ErrUnavailable) {
		t.Errorf("slow stream ended with %v; want ErrSlowReader, an ErrUnavailable", err)
	}
	if hub.Wants("bob") || hub.Wants("alice") || joined(hub, "alice") != 0 {
		t.Errorf("the slow stream is still subscribed after it ended")
	}
	if n := pumps("TestStreamSlowReader"); n != 1 {
		t.Errorf("%d senders in the blocked send after the stream ended; want 1", n)
	}
	// The blocked send returns (gRPC's does once the handler has
	// returned); its goroutine then exits.
	close(release)
	waitfor.Until(t, waitfor.Deadline, "the slow stream's sender to exit", func() (bool, any) {
		n := pumps("TestStreamSlowReader")
		return n == 0, fmt.Sprintf("%d senders", n)
	})
	if got := testutil.ToFloat64(hub.cut); got != 1 {
		t.Errorf("herald_timeline_streams_slow_total = %v; want 1", got)
	}
	// Other streams go on.
	dave1 := mkPost(10_000, "dave")
	hub.Deliver(dave1)
	other.expect(t, "carol's stream after alice's was cut", dave1)
}

// TestDeliverSkipsCutStream: once Deliver has found a stream's buffer
// full, it queues nothing more to it, even if its sender drained some
// posts before the stream ended.
func TestDeliverSkipsCutStream(t *testing.T) {
	hub := newHub(t, HubConfig{Buffer: 4})
	st, err := hub.subscribe(context.Background(), "alice", func(context.Context) ([]string, error) { return []string{"bob"}, nil })
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	defer hub.unsubscribe(st)
	for i := range 5 {
		hub.Deliver(mkPost(feed.PostID(1+i), "bob"))
	}
	select {
	case <-st.slow:
	default:
		t.Fatalf("stream not cut after 5 posts into a buffer of 4")
	}
	<-st.posts
	<-st.posts
	hub.Deliver(mkPost(6, "bob"))
	hub.Deliver(mkPost(7, "alice"))
	if n := len(st.posts); n != 2 {
		t.Errorf("cut stream holds %d posts after 2 were read and 2 more delivered; want 2: nothing queued once cut", n)
	}
}

func TestStreamEnds(t *testing.T) {
	boom := errors.New("client gone")
	e := newEnv(t, envOpts{})
	hub := newHub(t, HubConfig{})
	e.follows.follow("alice", "bob")
	s := startStream(t, e.svc, hub, "alice", func(feed.Post) error { return boom })
	subscribed(t, hub, "alice")
	hub.Deliver(mkPost(1, "bob"))
	if err := s.result(t); !errors.Is(err, boom) {
		t.Errorf("Stream whose send failed = %v; want %v", err, boom)
	}
	if hub.Wants("alice") || hub.Wants("bob") {
		t.Errorf("the stream is still subscribed after its send failed")
	}
}

func TestStreamErrors(t *testing.T) {
	hub := newHub(t, HubConfig{})
	for _, user := range []string{"", "Alice", "a b"} {
		e := newEnv(t, envOpts{})
		err := e.svc.Stream(context.Background(), hub, user, func(feed.Post) error { return nil })
		var inv *feed.InvalidError
		if !errors.As(err, &inv) || inv.Field != "user_id" {
			t.Errorf("Stream(%q) = %v; want an InvalidError on user_id", user, err)
		}
		if n := e.follows.count(); n != 0 {
			t.Errorf("Stream(%q) called Following %d times; want 0", user, n)
		}
	}

	e := newEnv(t, envOpts{})
	e.follows.setErr(feed.Unavailable("graph", errDown))
	err := e.svc.Stream(context.Background(), hub, "alice", func(feed.Post) error { return nil })
	if !errors.Is(err, feed.ErrUnavailable) || !errors.Is(err, errDown) {
		t.Errorf("Stream with the graph down = %v; want ErrUnavailable wrapping %v", err, errDown)
	}
	if hub.Wants("alice") {
		t.Errorf("a stream that failed to start is subscribed")
	}
}

func TestHubClose(t *testing.T) {
	e := newEnv(t, envOpts{})
	hub := newHub(t, HubConfig{})
	e.follows.follow("alice", "bob")
	e.follows.follow("carol", "bob")
	alice := startStream(t, e.svc, hub, "alice", nil)
	carol := startStream(t, e.svc, hub, "carol", nil)
	subscribed(t, hub, "alice")
	subscribed(t, hub, "carol")

	hub.Close()
	for name, s := range map[string]*openStream{"alice": alice, "carol": carol} {
		if err := s.result(t); !errors.Is(err, ErrShuttingDown) || !errors.Is(err, feed.ErrUnavailable) {
			t.Errorf("%s's open stream ended with %v; want ErrShuttingDown, an ErrUnavailable", name, err)
		}
	}
	if hub.Wants("bob") {
		t.Errorf("Wants(bob) = true after Close ended every stream; want false")
	}
	hub.Close() // twice is harmless

	err := e.svc.Stream(context.Background(), hub, "alice", func(feed.Post) error {
		t.Errorf("a stream opened after Close sent a post")
		return nil
	})
	if !errors.Is(err, ErrShuttingDown) || !errors.Is(err, feed.ErrUnavailable) {
		t.Errorf("Stream after Close = %v; want ErrShuttingDown, an ErrUnavailable", err)
	}
	if hub.Wants("alice") {
		t.Errorf("a stream refused after Close is subscribed")
	}
}
