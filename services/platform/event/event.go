// Package event is Herald's event port: the events that travel between
// services, as native Go types, and the small interfaces of the log that
// carries them. The post and graph services publish events; the fan-out
// consumes them through one durable consumer shared by its instances; the
// timeline service tails them to feed live streams.
//
// The domain packages use only this package. An adapter (bus, on NATS
// JetStream) encodes and decodes the events, maps kinds to subjects or
// topics, and classifies failures. Every adapter passes the contract suite
// in eventtest.
//
// What Herald relies on from a log is at-least-once delivery and nothing
// about order: every handler is idempotent, and the fan-out's writes
// commute (a timeline is a set of post IDs ordered by ID), so a redelivered,
// duplicated or reordered event leaves the same timelines.
package event

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/herald-feed/herald/services/platform/feed"
)

// Kind names a kind of event. It is also the event's subject (or topic)
// relative to the deployment's namespace: "post.created" is published as
// "herald.post.created".
type Kind string

// The kinds of event.
const (
	KindPostCreated Kind = "post.created"
	KindPostDeleted Kind = "post.deleted"
	KindFollowed    Kind = "graph.followed"
	KindUnfollowed  Kind = "graph.unfollowed"
	// KindFanoutChunk carries one chunk of a large post's followers,
	// published by the fan-out for the fan-out, so that every instance
	// takes a share of one post.
	KindFanoutChunk Kind = "fanout.chunk"
)

// Kinds lists every kind, in a fixed order.
var Kinds = []Kind{KindPostCreated, KindPostDeleted, KindFollowed, KindUnfollowed, KindFanoutChunk}

// Event is one of PostCreated, PostDeleted, Followed, Unfollowed and
// FanoutChunk.
type Event interface {
	// Kind says which event this is.
	Kind() Kind
	// DedupeID identifies the event for a log that drops a republished
	// copy (JetStream's Nats-Msg-Id); "" if copies are harmless and need
	// no ID. A log without dedupe delivers every copy, which the handlers'
	// idempotence absorbs.
	DedupeID() string
}

// PostCreated says a post was stored.
type PostCreated struct {
	Post    feed.PostID
	Author  string
	Created time.Time
}

// PostDeleted says a post was deleted.
type PostDeleted struct {
	Post   feed.PostID
	Author string
}

// Followed says Follower now follows Followee.
type Followed struct{ Follower, Followee string }

// Unfollowed says Follower no longer follows Followee.
type Unfollowed struct{ Follower, Followee string }

// FanoutChunk is one chunk of a post's followers whose timelines are to get
// the post. Index counts the post's chunks from 1.
type FanoutChunk struct {
	Post      feed.PostID
	Author    string
	Created   time.Time
	Index     uint32
	Followers []string
}

func (PostCreated) Kind() Kind { return KindPostCreated }
func (PostDeleted) Kind() Kind { return KindPostDeleted }
func (Followed) Kind() Kind    { return KindFollowed }
func (Unfollowed) Kind() Kind  { return KindUnfollowed }
func (FanoutChunk) Kind() Kind { return KindFanoutChunk }

// DedupeID implements Event: one ID per post, so that the outbox relay's
// republish of a post is dropped.
func (e PostCreated) DedupeID() string { return "post-" + e.Post.String() }

// DedupeID implements Event.
func (e PostDeleted) DedupeID() string { return "delete-" + e.Post.String() }

// DedupeID implements Event: a follow may be repeated, and each repeat is
// its own (harmless) event.
func (Followed) DedupeID() string { return "" }

// DedupeID implements Event.
func (Unfollowed) DedupeID() string { return "" }

// DedupeID implements Event: a redelivered post republishes its chunks
// under the same IDs, so the log drops them. The ID names the chunk's
// followers, not only its place: if the follower list shifted between two
// deliveries (an unfollow before the retry), chunk 2 holds other followers
// and must not be dropped as a copy of the first delivery's chunk 2, or a
// follower would miss the post. Writing a follower twice is harmless.
func (e FanoutChunk) DedupeID() string {
	h := fnv.New64a()
	for _, f := range e.Followers {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	return fmt.Sprintf("chunk-%d-%d-%016x", e.Post, e.Index, h.Sum64())
}

// Publisher appends events to the log. Publish returns once the log has
// stored the event; an error wrapping feed.ErrUnavailable means the log
// is away and the caller may retry.
type Publisher interface {
	Publish(ctx context.Context, ev Event) error
}

// ErrPermanent marks a handler error that no retry can fix, such as an
// undecodable event. The log moves the event to its dead letters instead
// of redelivering it.
var ErrPermanent = errors.New("permanent failure")

// Handler handles one event. A nil error acknowledges it; an error
// wrapping ErrPermanent dead-letters it at once; any other error has it
// delivered again after the consumer's backoff, up to MaxDeliver times.
type Handler func(ctx context.Context, ev Event) error

// ConsumerConfig describes a durable consumer: one named position in the
// log, shared by every instance that consumes under the same name, so that
// the events are spread across them.
type ConsumerConfig struct {
	// Durable names the consumer.
	Durable string
	// Kinds are the events it receives.
	Kinds []Kind
	// AckWait is how long the log waits for a handler before it assumes
	// the instance died and delivers the event again.
	AckWait time.Duration
	// MaxDeliver bounds deliveries of one event; past it the event is
	// dead-lettered.
	MaxDeliver int
	// BackOff is the delay before the second, third, ... delivery of a
	// failed event; the last value repeats. Default 1s, 2s, 5s, 10s, 30s.
	BackOff []time.Duration
	// MaxAckPending bounds events in flight across all instances: the
	// backpressure on the consumer.
	MaxAckPending int
	// Workers bounds the events this instance handles at once. Default 1.
	Workers int
}

// DefaultBackOff is the redelivery delay of a ConsumerConfig without one.
var DefaultBackOff = []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second}

// Consumer runs handlers on events.
type Consumer interface {
	// Consume runs h on each event of the durable consumer until ctx
	// ends, then returns once the handlers in flight have finished, so
	// that a shutdown acknowledges or returns every event it took.
	Consume(ctx context.Context, cc ConsumerConfig, h Handler) error
	// Tail runs h on each event of kinds published from now on, until ctx
	// ends: no acknowledgements and no shared position, for readers of
	// the live edge only. h's context carries the event's trace.
	Tail(ctx context.Context, kinds []Kind, h func(context.Context, Event)) error
}

// Log is an event log: what an adapter implements.
type Log interface {
	Publisher
	Consumer
}

// DeadLetter is one event that a durable consumer gave up on: its handler
// rejected it as permanent, or it failed MaxDeliver times. The log keeps
// it, with the reason, until an operator replays it.
type DeadLetter struct {
	// Seq identifies the dead letter within the log's dead letters
	// (JetStream: its dead-letter stream sequence; Kafka: its offset in
	// the dead-letter topic). Replay takes it.
	Seq      uint64
	Kind     Kind   // the event's kind, which names its subject or topic
	Consumer string // the durable consumer that gave up
	Reason   string
	Time     time.Time
	Data     []byte // the event as it was published
}

// ConsumerState is what the log says of a durable consumer's backlog. A
// log that cannot tell a figure reports it as 0.
type ConsumerState struct {
	// Pending counts events not yet delivered to the consumer (Kafka: its
	// lag, events past its committed offsets).
	Pending uint64
	// AckPending counts events delivered and not yet acknowledged, bounded
	// by the consumer's MaxAckPending (JetStream only).
	AckPending int
	// Redelivered counts events delivered more than once and not yet
	// acknowledged (JetStream only).
	Redelivered int
}

// Admin is what an operator's tools (feedctl) and the services' gauges
// need of a log beyond the port.
type Admin interface {
	// DeadLetters returns up to limit dead letters, oldest first.
	DeadLetters(ctx context.Context, limit int) ([]DeadLetter, error)
	// Replay republishes dead letter seq to its original kind, where its
	// consumer takes it again, and removes it from the dead letters. An
	// unknown seq is an error wrapping feed.ErrNotFound.
	Replay(ctx context.Context, seq uint64) error
	// ConsumerState returns durable's backlog.
	ConsumerState(ctx context.Context, durable string) (ConsumerState, error)
}

// AdminLog is a log with its operator's interface: what a Herald process
// is given, whichever adapter it runs on.
type AdminLog interface {
	Log
	Admin
}
