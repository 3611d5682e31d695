package timeline

import (
	"context"
	"fmt"
	"sync"

	"github.com/herald-feed/herald/services/platform/feed"
)

// ErrSlowReader ends a stream whose reader fell too far behind; the client
// reconnects and pages the timeline to catch up, so it is UNAVAILABLE:
// retryable.
var ErrSlowReader = fmt.Errorf("%w: stream reader too slow; reconnect and read the timeline to catch up", feed.ErrUnavailable)

// ErrShuttingDown ends the open streams, and refuses new ones, once the
// instance has begun to shut down: UNAVAILABLE, so the client reconnects
// to another instance.
var ErrShuttingDown = fmt.Errorf("%w: server shutting down", feed.ErrUnavailable)

// streamBuffer is how many posts a stream may have queued.
const streamBuffer = 256

// Hub routes new posts to the open streams of the authors' followers. The
// timeline service feeds it from the event log (see app), so a stream sees
// every post of the accounts its reader follows, pushed or not.
type Hub struct {
	mu       sync.Mutex
	byAuthor map[string]map[*stream]struct{}
	byUser   map[string]map[*stream]struct{}
	closing  chan struct{} // closed by Close
	closed   bool
}

type stream struct {
	user    string
	authors map[string]struct{}
	posts   chan feed.Post
	slow    chan struct{}
	once    sync.Once
}

// NewHub returns an empty Hub.
func NewHub() *Hub {
	return &Hub{byAuthor: make(map[string]map[*stream]struct{}), byUser: make(map[string]map[*stream]struct{}), closing: make(chan struct{})}
}

// Close ends every open stream with ErrShuttingDown, and makes new ones
// fail with it: the first step of a shutdown, since an open stream would
// otherwise hold the drain until its timeout.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.closing)
	}
}

func (h *Hub) subscribe(user string, authors []string) (*stream, error) {
	st := &stream{user: user, authors: make(map[string]struct{}), posts: make(chan feed.Post, streamBuffer), slow: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrShuttingDown
	}
	addTo(h.byUser, user, st)
	for _, a := range authors {
		h.follow(st, a)
	}
	return st, nil
}

func (h *Hub) unsubscribe(st *stream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	removeFrom(h.byUser, st.user, st)
	for a := range st.authors {
		removeFrom(h.byAuthor, a, st)
	}
}

func (h *Hub) follow(st *stream, author string) {
	st.authors[author] = struct{}{}
	addTo(h.byAuthor, author, st)
}

// Followed adds followee to follower's open streams.
func (h *Hub) Followed(follower, followee string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for st := range h.byUser[follower] {
		h.follow(st, followee)
	}
}

// Unfollowed removes followee from follower's open streams.
func (h *Hub) Unfollowed(follower, followee string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for st := range h.byUser[follower] {
		if follower == followee {
			continue
		}
		delete(st.authors, followee)
		removeFrom(h.byAuthor, followee, st)
	}
}

// Wants reports whether any open stream follows author, so the caller can
// skip loading posts nobody is waiting for.
func (h *Hub) Wants(author string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.byAuthor[author]) > 0
}

// Deliver sends p to every open stream that follows its author. It never
// blocks: a stream whose buffer is full is ended with ErrSlowReader.
func (h *Hub) Deliver(p feed.Post) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for st := range h.byAuthor[p.Author] {
		select {
		case st.posts <- p:
		default:
			st.once.Do(func() { close(st.slow) })
		}
	}
}

// Stream sends each new post by user or an account user follows to send,
// until ctx ends or send fails.
func (s *Service) Stream(ctx context.Context, hub *Hub, user string, send func(feed.Post) error) error {
	if err := feed.ValidateUserID("user_id", user); err != nil {
		return err
	}
	followees, err := s.following.Following(ctx, user, s.cfg.MaxFollowing)
	if err != nil {
		return err
	}
	st, err := hub.subscribe(user, append(followees, user))
	if err != nil {
		return err
	}
	defer hub.unsubscribe(st)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hub.closing:
			return ErrShuttingDown
		case <-st.slow:
			return ErrSlowReader
		case p := <-st.posts:
			if err := send(p); err != nil {
				return err
			}
		}
	}
}

func addTo(m map[string]map[*stream]struct{}, k string, st *stream) {
	set, ok := m[k]
	if !ok {
		set = make(map[*stream]struct{})
		m[k] = set
	}
	set[st] = struct{}{}
}

func removeFrom(m map[string]map[*stream]struct{}, k string, st *stream) {
	if set, ok := m[k]; ok {
		delete(set, st)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}
