package timeline

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

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

// errLoaderGone is what a stream waiting for its user's following list
// sees when the stream that was reading it ended first: the waiter reads
// the list itself rather than fail for another client's disconnect.
var errLoaderGone = errors.New("the stream loading the following list ended")

// Defaults of HubConfig.
const (
	DefaultMaxStreamsPerUser = 8
	DefaultMaxStreams        = 10_000
	DefaultStreamBuffer      = 256
)

// indexBatch is how many authors the hub indexes, or unindexes, per hold
// of its lock when a user's first stream opens or last one closes: a user
// following thousands must not hold up Deliver for every other stream.
const indexBatch = 512

// HubConfig bounds a Hub's streams. Zero fields take their defaults.
type HubConfig struct {
	// MaxStreamsPerUser bounds the streams one user holds open on this
	// instance: one per device, with room to spare. Default 8.
	MaxStreamsPerUser int
	// MaxStreams bounds the streams open on this instance. Default
	// 10,000. A stream costs its buffer (Buffer posts of 72 bytes, the
	// texts shared), two goroutines and gRPC's per-stream state (up to
	// 64 KiB of queued frames): under 100 KiB, so under 1 GiB at the
	// bound. A user with open streams also costs their following set in
	// the index, once whatever their streams: about 130 bytes a followee
	// (measured; less for authors that other watching users follow too),
	// 0.65 MiB at the graph's default following limit of 5000
	// (feed.DefaultMaxFollowing). 10,000 users at that limit would hold
	// 6.5 GiB, which is why the bound is not higher; an instance with
	// less memory should lower it.
	MaxStreams int
	// Buffer is how many posts a stream may have queued; a stream whose
	// buffer fills is ended with ErrSlowReader. Default 256.
	Buffer int
}

// Hub routes new posts to the open streams of the authors' followers. The
// timeline service feeds it from the event log (see app), so a stream sees
// every post of the accounts its reader follows, pushed or not.
//
// The index is per user, not per stream. A user with open streams on this
// instance has one watcher, shared by all of them: the set of authors the
// user sees (their following list, read from the graph once, when the
// first stream opens, and themselves), and the user's streams. byAuthor
// maps each author to the watchers that see them, so Deliver finds a
// post's streams with one lookup; Followed and Unfollowed change a
// watcher once, whatever its streams. A user's K streams over F followees
// thus cost 2(F+1)+K index entries and K buffers, and the second to K-th
// stream cost no graph read. The first stream reads the following list
// outside the lock, and indexes it in batches of indexBatch, releasing
// the lock between them; the user's other streams wait for it, and read
// the list themselves if that stream's client leaves first. Follow
// changes during the read are kept: a list read before an unfollow does
// not undo it. The watcher is unindexed in batches too, when its last
// stream closes.
//
// Limits: at most MaxStreamsPerUser streams per user and MaxStreams per
// instance (defaults 8 and 10,000); past either, opening a stream fails
// with feed.ErrResourceExhausted, which names the limit and its value.
// The check and the taking of the slot are one critical section, so
// racing opens cannot overshoot; a closed stream frees its slot. A stream
// whose Buffer (default 256) fills is ended with ErrSlowReader, even
// while its client reads nothing at all (see Service.Stream).
type Hub struct {
	cfg HubConfig

	mu       sync.Mutex
	byAuthor map[string]watcherSet
	watchers map[string]*watcher
	// perUser counts each user's open streams, and open the instance's,
	// from admission on: a stream counts while it waits for its user's
	// following list too.
	perUser map[string]int
	open    int
	closing chan struct{} // closed by Close
	closed  bool

	openGauge prometheus.Gauge
	refused   *prometheus.CounterVec
	cut       prometheus.Counter
}

// watcher is one user's streams and the authors they see.
type watcher struct {
	user    string
	authors map[string]struct{}
	streams map[*stream]struct{}
	// ready is closed once the following list is indexed, or failed to
	// load: then err says why, and the watcher is out of Hub.watchers.
	ready chan struct{}
	err   error
	// unfollowed, while the list loads, holds the followees unfollowed
	// meanwhile, so that a list read before the unfollow does not bring
	// them back. Nil once loaded.
	unfollowed map[string]struct{}
}

type stream struct {
	w     *watcher
	posts chan feed.Post
	// slow is closed when Deliver finds posts full; cut says so, under
	// Hub.mu, so that Deliver queues nothing more to a stream being ended.
	slow chan struct{}
	cut  bool
}

// NewHub returns an empty Hub whose metrics register with reg.
func NewHub(cfg HubConfig, reg prometheus.Registerer) *Hub {
	if cfg.MaxStreamsPerUser <= 0 {
		cfg.MaxStreamsPerUser = DefaultMaxStreamsPerUser
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = DefaultStreamBuffer
	}
	h := &Hub{
		cfg:      cfg,
		byAuthor: make(map[string]watcherSet),
		watchers: make(map[string]*watcher),
		perUser:  make(map[string]int),
		closing:  make(chan struct{}),
		openGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_timeline_streams_open",
			Help: "StreamHomeTimeline streams open on this instance, including those waiting for their user's following list.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_timeline_streams_refused_total",
			Help: "StreamHomeTimeline streams refused with RESOURCE_EXHAUSTED, by the limit reached: user (-max-streams-per-user) or instance (-max-streams).",
		}, []string{"limit"}),
		cut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_timeline_streams_slow_total",
			Help: "StreamHomeTimeline streams ended with UNAVAILABLE because their buffer filled: the reader was slow, or did not read at all.",
		}),
	}
	reg.MustRegister(h.openGauge, h.refused, h.cut)
	return h
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

// subscribe admits a stream of user and joins it to the user's watcher,
// reading the following list through load if the watcher is new.
func (h *Hub) subscribe(ctx context.Context, user string, load func(context.Context) ([]string, error)) (*stream, error) {
	if err := h.admit(user); err != nil {
		return nil, err
	}
	st := &stream{posts: make(chan feed.Post, h.cfg.Buffer), slow: make(chan struct{})}
	for {
		err := h.join(ctx, st, user, load)
		if err == nil {
			return st, nil
		}
		if errors.Is(err, errLoaderGone) && ctx.Err() == nil {
			continue
		}
		h.release(user)
		return nil, err
	}
}

// admit takes a stream slot for user, or says which limit refuses it. The
// check and the count are one critical section, so concurrent opens
// cannot overshoot a limit.
func (h *Hub) admit(user string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return ErrShuttingDown
	case h.open >= h.cfg.MaxStreams:
		h.refused.WithLabelValues("instance").Inc()
		return fmt.Errorf("%w: this instance has %d open streams, its stream limit; retry later", feed.ErrResourceExhausted, h.cfg.MaxStreams)
	case h.perUser[user] >= h.cfg.MaxStreamsPerUser:
		h.refused.WithLabelValues("user").Inc()
		return fmt.Errorf("%w: user %s has %d open streams, the per-user stream limit; close one to open another", feed.ErrResourceExhausted, user, h.cfg.MaxStreamsPerUser)
	}
	h.open++
	h.perUser[user]++
	h.openGauge.Inc()
	return nil
}

// release gives back a slot admit took.
func (h *Hub) release(user string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.open--
	if h.perUser[user]--; h.perUser[user] <= 0 {
		delete(h.perUser, user)
	}
	h.openGauge.Dec()
}

// join adds st to user's watcher, creating it and loading its following
// list if it is new, or waiting for the stream that is loading it.
func (h *Hub) join(ctx context.Context, st *stream, user string, load func(context.Context) ([]string, error)) error {
	h.mu.Lock()
	w, ok := h.watchers[user]
	if !ok {
		// A user always sees their own posts, from the start.
		w = &watcher{
			user: user, authors: map[string]struct{}{user: {}}, streams: make(map[*stream]struct{}),
			ready: make(chan struct{}), unfollowed: make(map[string]struct{}),
		}
		h.watchers[user] = w
		addTo(h.byAuthor, user, w)
	}
	w.streams[st] = struct{}{}
	st.w = w
	h.mu.Unlock()
	if !ok {
		return h.load(ctx, st, load)
	}
	select {
	case <-w.ready:
	case <-ctx.Done():
		h.leave(st)
		return ctx.Err()
	case <-h.closing:
		h.leave(st)
		return ErrShuttingDown
	}
	if w.err != nil {
		h.leave(st)
		return w.err
	}
	return nil
}

// load reads the following list of st's new watcher, outside the lock,
// and indexes it in batches. If the read fails, the watcher goes: its
// waiters fail with the same error, or read the list themselves if it
// failed only because st's own client left.
func (h *Hub) load(ctx context.Context, st *stream, load func(context.Context) ([]string, error)) error {
	w := st.w
	authors, err := load(ctx)
	if err != nil {
		shared := err
		if ctx.Err() != nil {
			shared = errLoaderGone
		}
		h.mu.Lock()
		delete(w.streams, st)
		if h.watchers[w.user] == w {
			delete(h.watchers, w.user)
		}
		w.err = shared
		close(w.ready)
		h.mu.Unlock()
		h.drop(w)
		return err
	}
	for len(authors) > 0 {
		n := min(len(authors), indexBatch)
		h.mu.Lock()
		for _, a := range authors[:n] {
			if _, gone := w.unfollowed[a]; !gone {
				h.see(w, a)
			}
		}
		h.mu.Unlock()
		authors = authors[n:]
	}
	h.mu.Lock()
	w.unfollowed = nil
	close(w.ready)
	h.mu.Unlock()
	return nil
}

// unsubscribe ends st: it leaves its watcher and frees its slot.
func (h *Hub) unsubscribe(st *stream) {
	h.leave(st)
	h.release(st.w.user)
}

// leave takes st out of its watcher, and unindexes the watcher if st was
// its last stream.
func (h *Hub) leave(st *stream) {
	w := st.w
	h.mu.Lock()
	delete(w.streams, st)
	// A watcher still loading has its loader's stream, so an empty one is
	// loaded, or failed and already out of watchers.
	idle := len(w.streams) == 0 && h.watchers[w.user] == w
	if idle {
		delete(h.watchers, w.user)
	}
	h.mu.Unlock()
	if idle {
		h.drop(w)
	}
}

// drop unindexes w, which is out of watchers and has no stream, in
// batches. Nothing writes w.authors once w is out of watchers, so it is
// read here without the lock.
func (h *Hub) drop(w *watcher) {
	batch := make([]string, 0, min(len(w.authors), indexBatch))
	flush := func() {
		h.mu.Lock()
		for _, a := range batch {
			removeFrom(h.byAuthor, a, w)
		}
		h.mu.Unlock()
		batch = batch[:0]
	}
	for a := range w.authors {
		if batch = append(batch, a); len(batch) == indexBatch {
			flush()
		}
	}
	flush()
}

// see makes w's streams see author's posts. The caller holds h.mu.
func (h *Hub) see(w *watcher, author string) {
	w.authors[author] = struct{}{}
	addTo(h.byAuthor, author, w)
}

// Followed adds followee to follower's open streams.
func (h *Hub) Followed(follower, followee string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w, ok := h.watchers[follower]
	if !ok {
		return
	}
	if w.unfollowed != nil {
		delete(w.unfollowed, followee)
	}
	h.see(w, followee)
}

// Unfollowed removes followee from follower's open streams. A user's own
// posts stay.
func (h *Hub) Unfollowed(follower, followee string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w, ok := h.watchers[follower]
	if !ok || follower == followee {
		return
	}
	if w.unfollowed != nil {
		w.unfollowed[followee] = struct{}{}
	}
	delete(w.authors, followee)
	removeFrom(h.byAuthor, followee, w)
}

// Wants reports whether any open stream follows author, so the caller can
// skip loading posts nobody is waiting for.
func (h *Hub) Wants(author string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.byAuthor[author].one != nil
}

// Deliver sends p to every open stream that follows its author. It never
// blocks: a stream whose buffer is full is ended with ErrSlowReader, and
// gets nothing more.
func (h *Hub) Deliver(p feed.Post) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.byAuthor[p.Author]
	if set.one == nil {
		return
	}
	h.deliver(set.one, p)
	for w := range set.more {
		h.deliver(w, p)
	}
}

func (h *Hub) deliver(w *watcher, p feed.Post) {
	for st := range w.streams {
		if st.cut {
			continue
		}
		select {
		case st.posts <- p:
		default:
			st.cut = true
			close(st.slow)
			h.cut.Inc()
		}
	}
}

// indexEntries counts the entries the hub holds for its streams: per
// author the watchers that see them, per watcher its authors and its
// streams. Tests assert on it that a stream's cost does not grow with
// its user's following count.
func (h *Hub) indexEntries() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, set := range h.byAuthor {
		n += 1 + len(set.more)
	}
	for _, w := range h.watchers {
		n += len(w.authors) + len(w.streams)
	}
	return n
}

// Stream sends each new post by user or an account user follows to send,
// until ctx ends, the hub closes, the reader falls a buffer behind, or
// send fails.
//
// send runs on a goroutine of its own, one call at a time, in order, so
// that a reader who stops reading is cut off even while send is blocked
// on them: gRPC's Send waits for HTTP/2 flow control, which a silent
// client never grants, and Stream returns ErrSlowReader once the buffer
// fills, whatever send is doing. A send still blocked then must return
// by itself, as gRPC's does once the handler has returned and the stream
// ended; the goroutine starts no more sends after Stream returns (bar one
// it had begun as Stream returned) and exits.
func (s *Service) Stream(ctx context.Context, hub *Hub, user string, send func(feed.Post) error) error {
	return s.StreamOpened(ctx, hub, user, nil, send)
}

// StreamOpened is Stream, calling opened (unless nil) once the stream is
// admitted and subscribed, before any post: the gRPC server sends the
// stream's headers then, so that a client (the HTTP gateway, and the
// browser behind it) knows the stream is live before its first post.
func (s *Service) StreamOpened(ctx context.Context, hub *Hub, user string, opened func(), send func(feed.Post) error) error {
	if err := feed.ValidateUserID("user_id", user); err != nil {
		return err
	}
	st, err := hub.subscribe(ctx, user, func(ctx context.Context) ([]string, error) {
		return s.following.Following(ctx, user, s.cfg.MaxFollowing)
	})
	if err != nil {
		return err
	}
	defer hub.unsubscribe(st)
	if opened != nil {
		opened()
	}
	stop := make(chan struct{})
	defer close(stop)
	failed := make(chan error, 1)
	go st.pump(send, stop, failed)
	select {
	case <-ctx.Done():
		return nil
	case <-hub.closing:
		return ErrShuttingDown
	case <-st.slow:
		return ErrSlowReader
	case err := <-failed:
		return err
	}
}

// pump sends st's posts until stop closes or send fails; then it reports
// the error on failed, which has room for it.
func (st *stream) pump(send func(feed.Post) error, stop <-chan struct{}, failed chan<- error) {
	for {
		select {
		case <-stop:
			return
		case p := <-st.posts:
			select {
			case <-stop:
				return
			default:
			}
			if err := send(p); err != nil {
				failed <- err
				return
			}
		}
	}
}

// watcherSet is the watchers that see one author. Most authors are seen
// by one user with open streams on an instance, so the first is held
// inline and a map made only for a second: a (user, followee) pair then
// costs about 130 bytes of index in all, rather than 300 with a map per
// author. one is nil only in an empty set, which byAuthor does not keep.
type watcherSet struct {
	one  *watcher
	more map[*watcher]struct{}
}

func addTo(m map[string]watcherSet, k string, w *watcher) {
	set := m[k]
	switch {
	case set.one == nil:
		set.one = w
	case set.one == w:
		return
	default:
		if set.more == nil {
			set.more = make(map[*watcher]struct{})
		}
		set.more[w] = struct{}{}
	}
	m[k] = set
}

func removeFrom(m map[string]watcherSet, k string, w *watcher) {
	set, ok := m[k]
	if !ok {
		return
	}
	if set.one == w {
		set.one = nil
		for next := range set.more {
			set.one = next
			delete(set.more, next)
			break
		}
	} else {
		delete(set.more, w)
	}
	if set.one == nil {
		delete(m, k)
		return
	}
	if len(set.more) == 0 {
		set.more = nil
	}
	m[k] = set
}
