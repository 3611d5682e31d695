package timeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

func newHub(t *testing.T, cfg HubConfig) *Hub {
	t.Helper()
	return NewHub(cfg, prometheus.NewRegistry())
}

// joined counts user's streams that have joined its watcher.
func joined(hub *Hub, user string) int {
	hub.mu.Lock()
	defer hub.mu.Unlock()
	if w, ok := hub.watchers[user]; ok {
		return len(w.streams)
	}
	return 0
}

// admitted counts user's streams that hold a slot, the instance's if user
// is "".
func admitted(hub *Hub, user string) int {
	hub.mu.Lock()
	defer hub.mu.Unlock()
	if user == "" {
		return hub.open
	}
	return hub.perUser[user]
}

// pumps counts the stream senders whose stacks also hold frames.
func pumps(frames ...string) int {
	return goroutinesIn(append([]string{"(*stream).pump"}, frames...)...)
}

// waitJoined waits until user has n streams in its watcher.
func waitJoined(t *testing.T, hub *Hub, user string, n int) {
	t.Helper()
	waitfor.Until(t, waitfor.Deadline, fmt.Sprintf("%d streams of %s open", n, user), func() (bool, any) {
		got := joined(hub, user)
		return got == n, fmt.Sprintf("%d streams", got)
	})
}

// ready counts the streams whose user's following list is indexed.
func ready(hub *Hub) int {
	hub.mu.Lock()
	defer hub.mu.Unlock()
	n := 0
	for _, w := range hub.watchers {
		if w.unfollowed == nil {
			n += len(w.streams)
		}
	}
	return n
}

// waitReady waits until n streams have their following lists indexed.
func waitReady(t *testing.T, hub *Hub, n int) {
	t.Helper()
	waitfor.Until(t, waitfor.Deadline, fmt.Sprintf("%d streams with their following lists indexed", n), func() (bool, any) {
		got := ready(hub)
		return got == n, fmt.Sprintf("%d", got)
	})
}

// wantRefused opens a stream of user and checks that the limit refuses
// it: ErrResourceExhausted, with a message naming the limit and its value.
func wantRefused(t *testing.T, e *env, hub *Hub, user, limit string, value int) {
	t.Helper()
	err := e.svc.Stream(context.Background(), hub, user, func(feed.Post) error {
		t.Errorf("a refused stream of %s sent a post", user)
		return nil
	})
	if !errors.Is(err, feed.ErrResourceExhausted) {
		t.Fatalf("Stream(%s) past the %s = %v; want ErrResourceExhausted", user, limit, err)
	}
	if msg := err.Error(); !strings.Contains(msg, limit) || !strings.Contains(msg, fmt.Sprint(value)) {
		t.Errorf("Stream(%s) past the %s = %q; want a message naming the limit and %d", user, limit, msg, value)
	}
}

func TestStreamPerUserLimit(t *testing.T) {
	e := newEnv(t, envOpts{})
	hub := newHub(t, HubConfig{})
	e.follows.follow("alice", "bob")
	var streams []*openStream
	for range DefaultMaxStreamsPerUser {
		streams = append(streams, startStream(t, e.svc, hub, "alice", nil))
	}
	waitJoined(t, hub, "alice", DefaultMaxStreamsPerUser)

	wantRefused(t, e, hub, "alice", "per-user stream limit", DefaultMaxStreamsPerUser)
	if got := testutil.ToFloat64(hub.refused.WithLabelValues("user")); got != 1 {
		t.Errorf("herald_timeline_streams_refused_total{limit=user} = %v; want 1", got)
	}
	// The limit is per user.
	carol := startStream(t, e.svc, hub, "carol", nil)
	subscribed(t, hub, "carol")

	// A closed stream frees its slot.
	streams[0].stop()
	if err := streams[0].result(t); err != nil {
		t.Fatalf("stopped stream = %v; want nil", err)
	}
	again := startStream(t, e.svc, hub, "alice", nil)
	waitJoined(t, hub, "alice", DefaultMaxStreamsPerUser)
	bob1, carol1 := mkPost(1, "bob"), mkPost(2, "carol")
	hub.Deliver(bob1)
	hub.Deliver(carol1)
	again.expect(t, "alice's stream opened in the freed slot", bob1)
	for i, s := range streams[1:] {
		s.expect(t, fmt.Sprintf("alice's stream %d", i+1), bob1)
	}
	carol.expect(t, "carol's stream", carol1)
	if got := testutil.ToFloat64(hub.openGauge); got != DefaultMaxStreamsPerUser+1 {
		t.Errorf("herald_timeline_streams_open = %v; want %d", got, DefaultMaxStreamsPerUser+1)
	}
}

func TestStreamInstanceLimit(t *testing.T) {
	e := newEnv(t, envOpts{})
	hub := newHub(t, HubConfig{MaxStreams: 3})
	alice := startStream(t, e.svc, hub, "alice", nil)
	startStream(t, e.svc, hub, "bob", nil)
	startStream(t, e.svc, hub, "carol", nil)
	for _, u := range []string{"alice", "bob", "carol"} {
		subscribed(t, hub, u)
	}
	wantRefused(t, e, hub, "dave", "instance", 3)
	if got := testutil.ToFloat64(hub.refused.WithLabelValues("instance")); got != 1 {
		t.Errorf("herald_timeline_streams_refused_total{limit=instance} = %v; want 1", got)
	}

	alice.stop()
	alice.result(t)
	dave := startStream(t, e.svc, hub, "dave", nil)
	subscribed(t, hub, "dave")
	dave1 := mkPost(1, "dave")
	hub.Deliver(dave1)
	dave.expect(t, "dave's stream in the freed slot", dave1)
}

// TestStreamLimitsConcurrent: admission and registration are one critical
// section, so opens racing each other cannot overshoot either limit. The
// graph is held, so that no admitted stream can end and free its slot
// while the others race.
func TestStreamLimitsConcurrent(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   HubConfig
		users func(i int) string
		limit string
		want  int
	}{
		{"PerUser", HubConfig{}, func(int) string { return "alice" }, "per-user stream limit", DefaultMaxStreamsPerUser},
		{"Instance", HubConfig{MaxStreams: 5}, func(i int) string { return fmt.Sprintf("user%d", i) }, "instance", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			gate := make(chan struct{})
			e.follows.setGate(gate)
			hub := newHub(t, tc.cfg)
			const n = 40
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			refused := make(chan error, n)
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					err := e.svc.Stream(ctx, hub, tc.users(i), func(feed.Post) error { return nil })
					if errors.Is(err, feed.ErrResourceExhausted) {
						refused <- err
					}
				})
			}
			t.Cleanup(func() {
				cancel()
				wg.Wait()
			})
			close(start)
			waitfor.Until(t, waitfor.Deadline, fmt.Sprintf("%d of %d opens refused", n-tc.want, n), func() (bool, any) {
				return len(refused) == n-tc.want, fmt.Sprintf("%d refused", len(refused))
			})
			if got := admitted(hub, ""); got != tc.want {
				t.Errorf("%d streams admitted; want %d", got, tc.want)
			}
			err := <-refused
			if !strings.Contains(err.Error(), tc.limit) {
				t.Errorf("refusal = %q; want it to name the %s", err, tc.limit)
			}
			close(gate)
			waitReady(t, hub, tc.want)
			if got := len(refused) + 1; got != n-tc.want || admitted(hub, "") != tc.want {
				t.Errorf("after the graph answered: %d refused, %d admitted; want %d, %d", got, admitted(hub, ""), n-tc.want, tc.want)
			}
		})
	}
}

// TestStreamSharedIndex: a user's streams share one following set, read
// from the graph once, so K streams over F followees hold O(F+K) index
// entries, and follow changes update the set once.
func TestStreamSharedIndex(t *testing.T) {
	const f = 2000
	e := newEnv(t, envOpts{cfg: Config{MaxFollowing: f}})
	hub := newHub(t, HubConfig{})
	followees := make([]string, f)
	for i := range followees {
		followees[i] = fmt.Sprintf("f%04d", i)
	}
	e.follows.follow("alice", followees...)
	// byAuthor and the watcher's set each hold F followees and alice.
	entries := func(k int) int { return 2*(f+1) + k }

	first := startStream(t, e.svc, hub, "alice", nil)
	waitReady(t, hub, 1)
	if got := hub.indexEntries(); got != entries(1) {
		t.Errorf("index entries with 1 stream over %d followees = %d; want %d", f, got, entries(1))
	}
	streams := []*openStream{first}
	for range DefaultMaxStreamsPerUser - 1 {
		streams = append(streams, startStream(t, e.svc, hub, "alice", nil))
	}
	waitReady(t, hub, DefaultMaxStreamsPerUser)
	if got := hub.indexEntries(); got != entries(DefaultMaxStreamsPerUser) {
		t.Errorf("index entries with %d streams over %d followees = %d; want %d: one per extra stream", DefaultMaxStreamsPerUser, f, got, entries(DefaultMaxStreamsPerUser))
	}
	if n := e.follows.count(); n != 1 {
		t.Errorf("Following called %d times for %d streams of one user; want 1", n, DefaultMaxStreamsPerUser)
	}

	hub.Followed("alice", "zed")
	if got := hub.indexEntries(); got != entries(DefaultMaxStreamsPerUser)+2 {
		t.Errorf("index entries after one follow = %d; want %d", got, entries(DefaultMaxStreamsPerUser)+2)
	}
	last, zed1, own := mkPost(1, followees[f-1]), mkPost(2, "zed"), mkPost(3, "alice")
	hub.Deliver(last)
	hub.Deliver(zed1)
	hub.Deliver(own)
	for i, s := range streams {
		s.expect(t, fmt.Sprintf("alice's stream %d", i), last, zed1, own)
	}

	// The last stream to close drops the set.
	for _, s := range streams {
		s.stop()
		s.result(t)
	}
	if got := hub.indexEntries(); got != 0 {
		t.Errorf("index entries after every stream closed = %d; want 0", got)
	}
	if hub.Wants(followees[0]) || hub.Wants("alice") {
		t.Errorf("Wants after every stream closed = true; want false")
	}
	// A stream opened afterwards reads the list again.
	startStream(t, e.svc, hub, "alice", nil)
	waitJoined(t, hub, "alice", 1)
	if n := e.follows.count(); n != 2 {
		t.Errorf("Following called %d times; want 2: the set went with the last stream", n)
	}
}

// TestStreamLoaderLeaves: if the stream reading its user's following list
// ends before the graph answers, a stream waiting for that list reads it
// itself, rather than fail for another client's disconnect.
func TestStreamLoaderLeaves(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.follows.follow("alice", "bob")
	gate := make(chan struct{})
	e.follows.setGate(gate)
	hub := newHub(t, HubConfig{})
	loader := startStream(t, e.svc, hub, "alice", nil)
	waitJoined(t, hub, "alice", 1)
	waiter := startStream(t, e.svc, hub, "alice", nil)
	waitJoined(t, hub, "alice", 2)

	loader.stop()
	if err := loader.result(t); !errors.Is(err, context.Canceled) {
		t.Errorf("loader stopped while loading = %v; want context.Canceled", err)
	}
	waitfor.Until(t, waitfor.Deadline, "the waiter to read the list itself", func() (bool, any) {
		n := e.follows.count()
		return n == 2, fmt.Sprintf("%d calls", n)
	})
	close(gate)
	waitReady(t, hub, 1)
	bob1 := mkPost(1, "bob")
	hub.Deliver(bob1)
	waiter.expect(t, "the waiter's stream", bob1)
	if got := admitted(hub, "alice"); got != 1 {
		t.Errorf("alice holds %d slots; want 1", got)
	}
}

// TestStreamLoadFails: when the graph fails, every stream waiting for the
// list fails with its error, and nothing stays indexed or counted.
func TestStreamLoadFails(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.follows.follow("alice", "bob")
	gate := make(chan struct{})
	e.follows.setGate(gate)
	e.follows.setErr(feed.Unavailable("graph", errDown))
	hub := newHub(t, HubConfig{})
	a := startStream(t, e.svc, hub, "alice", nil)
	b := startStream(t, e.svc, hub, "alice", nil)
	waitJoined(t, hub, "alice", 2)
	hub.Followed("alice", "carol") // while loading
	close(gate)
	for name, s := range map[string]*openStream{"first": a, "second": b} {
		if err := s.result(t); !errors.Is(err, feed.ErrUnavailable) || !errors.Is(err, errDown) {
			t.Errorf("%s stream with the graph down = %v; want ErrUnavailable wrapping %v", name, err, errDown)
		}
	}
	if n := e.follows.count(); n != 1 {
		t.Errorf("Following called %d times; want 1", n)
	}
	if got, open := hub.indexEntries(), admitted(hub, ""); got != 0 || open != 0 {
		t.Errorf("after the load failed: %d index entries, %d slots held; want 0, 0", got, open)
	}
}

// TestStreamFollowWhileLoading: follow changes that arrive while the
// following list loads are not undone by a list read before them.
func TestStreamFollowWhileLoading(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.follows.follow("alice", "bob", "dave")
	gate := make(chan struct{})
	e.follows.setGate(gate) // the list, bob and dave, is read before the gate
	hub := newHub(t, HubConfig{})
	s := startStream(t, e.svc, hub, "alice", nil)
	waitfor.Until(t, waitfor.Deadline, "the list read", func() (bool, any) { return e.follows.count() == 1, "no call" })
	hub.Unfollowed("alice", "bob")
	hub.Followed("alice", "carol")
	hub.Unfollowed("alice", "dave")
	hub.Followed("alice", "dave")
	close(gate)
	waitReady(t, hub, 1)
	for _, tt := range []struct {
		author string
		want   bool
	}{{"alice", true}, {"bob", false}, {"carol", true}, {"dave", true}} {
		if got := hub.Wants(tt.author); got != tt.want {
			t.Errorf("Wants(%q) = %v; want %v", tt.author, got, tt.want)
		}
	}
	bob1, carol1, dave1 := mkPost(1, "bob"), mkPost(2, "carol"), mkPost(3, "dave")
	for _, p := range []feed.Post{bob1, carol1, dave1} {
		hub.Deliver(p)
	}
	s.expect(t, "alice's stream", carol1, dave1)
}

// TestHubCloseWhileLoading: a stream waiting for its user's list ends
// with ErrShuttingDown on Close.
func TestHubCloseWhileLoading(t *testing.T) {
	e := newEnv(t, envOpts{})
	gate := make(chan struct{})
	e.follows.setGate(gate)
	hub := newHub(t, HubConfig{})
	loader := startStream(t, e.svc, hub, "alice", nil)
	waitJoined(t, hub, "alice", 1)
	waiter := startStream(t, e.svc, hub, "alice", nil)
	waitJoined(t, hub, "alice", 2)
	hub.Close()
	if err := waiter.result(t); !errors.Is(err, ErrShuttingDown) {
		t.Errorf("waiting stream after Close = %v; want ErrShuttingDown", err)
	}
	close(gate)
	if err := loader.result(t); !errors.Is(err, ErrShuttingDown) {
		t.Errorf("loading stream after Close = %v; want ErrShuttingDown", err)
	}
	if got, open := hub.indexEntries(), admitted(hub, ""); got != 0 || open != 0 {
		t.Errorf("after Close: %d index entries, %d slots held; want 0, 0", got, open)
	}
}
