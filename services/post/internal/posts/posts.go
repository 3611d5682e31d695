// Package posts is the post service's domain: it validates posts, mints
// their IDs, stores them with an outbox marker and publishes their events.
package posts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/herald-feed/herald/services/platform/cache"
	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/idgen"
	"github.com/herald-feed/herald/services/platform/pagetoken"
	"github.com/herald-feed/herald/services/platform/tracing"
)

// Store is the part of the durable store the post service uses.
type Store interface {
	CreatePost(ctx context.Context, p feed.Post, key string) (feed.Post, bool, error)
	GetPosts(ctx context.Context, ids []feed.PostID) ([]feed.Post, error)
	DeletePost(ctx context.Context, id feed.PostID) (feed.Post, error)
	ListByAuthor(ctx context.Context, author string, before feed.PostID, limit int) ([]feed.Post, error)
	MarkPublished(ctx context.Context, id feed.PostID) error
}

// Cache is the post-body cache.
type Cache interface {
	GetPosts(ctx context.Context, ids []feed.PostID) (map[feed.PostID]feed.Post, error)
	PutPosts(ctx context.Context, posts []feed.Post) error
	DeletePosts(ctx context.Context, ids []feed.PostID) error
}

// Recent is the cache of authors' recent-post lists. The post service
// writes it itself, before CreatePost returns, so that an author reads
// their own post at once, whatever the fan-out's lag.
type Recent interface {
	Add(ctx context.Context, entries []cache.Entry) error
	Remove(ctx context.Context, entries []cache.Entry) error
}

// Publisher appends events to the event log.
type Publisher = event.Publisher

// IDs mints post IDs.
type IDs interface {
	Next() (feed.PostID, error)
}

// Service implements the post operations.
type Service struct {
	store  Store
	cache  Cache
	recent Recent
	bus    Publisher
	ids    IDs
	tokens *pagetoken.Codec
	log    *slog.Logger
}

// New returns a Service.
func New(s Store, c Cache, r Recent, b Publisher, ids IDs, tokens *pagetoken.Codec, log *slog.Logger) *Service {
	return &Service{store: s, cache: c, recent: r, bus: b, ids: ids, tokens: tokens, log: log}
}

// Create validates and stores a post and publishes its PostCreated event.
// Once the store has it, the post is accepted: if the publish fails, the
// outbox marker stays set and the relay publishes it later.
func (s *Service) Create(ctx context.Context, author, text, key string) (feed.Post, error) {
	if err := errors.Join(
		feed.ValidateUserID("author_id", author),
		feed.ValidateText(text),
		feed.ValidateIdempotencyKey(key),
	); err != nil {
		return feed.Post{}, firstInvalid(err)
	}
	id, err := s.ids.Next()
	if err != nil {
		return feed.Post{}, err
	}
	p := feed.Post{ID: id, Author: author, Text: text, Created: idgen.Time(id)}
	sctx, span := tracing.Tracer().Start(ctx, "store post", trace.WithAttributes(attribute.Int64("herald.post.id", int64(id))))
	stored, created, err := s.store.CreatePost(sctx, p, key)
	span.SetAttributes(attribute.Bool("herald.post.created", created))
	tracing.End(span, err)
	if err != nil {
		return feed.Post{}, err
	}
	if !created {
		// A retry: the first call stored it and published it, or left its
		// outbox marker for the relay.
		return stored, nil
	}
	// The post is durable and accepted: finish the follow-up writes even
	// if the client has gone, but do not let a slow cache or NATS (a
	// restart, a lost ack) hold the answer back. The fan-out adds the post
	// to the recent list again, and the relay publishes a post whose
	// publish was cut short.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), PublishTimeout)
	defer cancel()
	if err := s.cache.PutPosts(fctx, []feed.Post{stored}); err != nil {
		s.log.Warn("cache post body", "post", stored.ID, "err", err)
	}
	if err := s.recent.Add(fctx, []cache.Entry{{User: author, Post: stored.ID}}); err != nil {
		s.log.Warn("add to recent posts", "post", stored.ID, "err", err)
	}
	if err := s.Publish(fctx, stored); err != nil {
		s.log.Warn("publish failed; the outbox relay will retry", "post", stored.ID, "err", err)
	}
	return stored, nil
}

// PublishTimeout bounds CreatePost's follow-up writes after the durable
// one: the post cache, the recent list and the event stream's ack. Each
// takes about a millisecond when its server is up, and a publish fails at
// once while NATS is disconnected. Under overload an ack can take seconds;
// waiting for it slows the client down, where giving up early would send
// the post through the relay, 5 s later. So the bound is the relay's
// timeout.
const PublishTimeout = 5 * time.Second

// Publish appends p's PostCreated event and clears its outbox marker. The
// message ID is the post ID, so a republish by the relay is dropped by the
// stream's dedupe window.
func (s *Service) Publish(ctx context.Context, p feed.Post) error {
	if err := s.bus.Publish(ctx, event.PostCreated{Post: p.ID, Author: p.Author, Created: p.Created}); err != nil {
		return err
	}
	return s.store.MarkPublished(ctx, p.ID)
}

// Get returns one live post.
func (s *Service) Get(ctx context.Context, id feed.PostID) (feed.Post, error) {
	if hit, err := s.cache.GetPosts(ctx, []feed.PostID{id}); err == nil {
		if p, ok := hit[id]; ok {
			if p.Deleted {
				return feed.Post{}, fmt.Errorf("post %s: %w", id, feed.ErrNotFound)
			}
			return p, nil
		}
	}
	ps, err := s.store.GetPosts(ctx, []feed.PostID{id})
	if err != nil {
		return feed.Post{}, err
	}
	if len(ps) == 0 {
		return feed.Post{}, fmt.Errorf("post %s: %w", id, feed.ErrNotFound)
	}
	return ps[0], nil
}

// Delete removes a post that author wrote. It is gone from reads when
// Delete returns: the store drops it and the cache holds a tombstone. The
// PostDeleted event then clears it from cached timelines.
func (s *Service) Delete(ctx context.Context, id feed.PostID, author string) error {
	if err := feed.ValidateUserID("author_id", author); err != nil {
		return err
	}
	ps, err := s.store.GetPosts(ctx, []feed.PostID{id})
	if err != nil {
		return err
	}
	if len(ps) == 0 {
		// Gone from the store, the source of truth: perhaps a Delete whose
		// tombstone failed, now retried. A body still in the cache is then
		// stale, and is tombstoned now. Only such a body: a tombstone for
		// an ID nobody holds yet would hide the post later minted with it.
		if hit, err := s.cache.GetPosts(ctx, []feed.PostID{id}); err == nil {
			if p, ok := hit[id]; ok && !p.Deleted {
				if err := s.cache.DeletePosts(ctx, []feed.PostID{id}); err != nil {
					return err
				}
			}
		}
		return fmt.Errorf("post %s: %w", id, feed.ErrNotFound)
	}
	if ps[0].Author != author {
		return fmt.Errorf("post %s belongs to another author: %w", id, feed.ErrPermissionDenied)
	}
	if _, err := s.store.DeletePost(ctx, id); err != nil {
		return err
	}
	if err := s.cache.DeletePosts(ctx, []feed.PostID{id}); err != nil {
		// Reads check the cache first; a stale body there would resurrect
		// the post, so this is an error the client must retry. The retry
		// finds no post in the store, and writes the tombstone then (see
		// above).
		return err
	}
	if err := s.recent.Remove(ctx, []cache.Entry{{User: author, Post: id}}); err != nil {
		s.log.Warn("remove from recent posts", "post", id, "err", err)
	}
	if err := s.bus.Publish(ctx, event.PostDeleted{Post: id, Author: author}); err != nil {
		// Reads already filter the post out; only the cleanup of cached
		// timelines is lost, and trimming ages those entries out.
		s.log.Warn("publish PostDeleted", "post", id, "err", err)
	}
	return nil
}

// List returns a page of author's posts, newest first.
func (s *Service) List(ctx context.Context, author string, pageSize int32, token string) ([]feed.Post, string, error) {
	if err := feed.ValidateUserID("author_id", author); err != nil {
		return nil, "", err
	}
	scope := "posts:" + author
	req, err := s.tokens.ParseRequest(scope, pageSize, feed.MaxPageSize, token)
	if err != nil {
		return nil, "", err
	}
	size := req.Size
	ps, err := s.store.ListByAuthor(ctx, author, feed.PostID(req.Cursor.Last), size+1)
	if err != nil {
		return nil, "", err
	}
	var next string
	if len(ps) > size {
		ps = ps[:size]
		next = s.tokens.Encode(scope, pagetoken.Cursor{Last: uint64(ps[size-1].ID)})
	}
	return ps, next, nil
}

// firstInvalid returns the first error of a joined set, so the status
// names one field.
func firstInvalid(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		if errs := j.Unwrap(); len(errs) > 0 {
			return errs[0]
		}
	}
	return err
}
