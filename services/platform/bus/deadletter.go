package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
)

// Dead letters: a message that a consumer's handler rejected as permanent,
// or that failed MaxDeliver times, is copied to the dead-letter stream
// (<stream>_DEAD, subjects <namespace>.dead.<subject>) with the reason, and
// terminated, so it never blocks the stream behind it. An operator lists
// and replays dead letters with feedctl.

// Headers on a dead letter.
const (
	headerReason   = "Herald-Reason"
	headerSubject  = "Herald-Subject"
	headerConsumer = "Herald-Consumer"
	headerSeq      = "Herald-Stream-Seq"
)

func (b *Bus) deadStream() string { return b.cfg.Stream + "_DEAD" }

// deadLetter copies m to the dead-letter stream with reason, then
// terminates it. If the copy fails, m is nacked instead, so it is neither
// lost nor acknowledged.
func (b *Bus) deadLetter(ctx context.Context, consumer string, m jetstream.Msg, reason error) {
	rel := b.rel(m.Subject())
	dm := nats.NewMsg(b.cfg.Namespace + ".dead." + rel)
	dm.Data = m.Data()
	dm.Header.Set(headerReason, reason.Error())
	dm.Header.Set(headerSubject, rel)
	dm.Header.Set(headerConsumer, consumer)
	var opts []jetstream.PublishOpt
	if md, err := m.Metadata(); err == nil {
		seq := strconv.FormatUint(md.Sequence.Stream, 10)
		dm.Header.Set(headerSeq, seq)
		opts = append(opts, jetstream.WithMsgID("dead-"+consumer+"-"+seq))
	}
	if _, err := b.js.PublishMsg(ctx, dm, opts...); err != nil {
		b.log.Error("dead-letter publish failed; the message will be redelivered", "subject", m.Subject(), "err", err)
		_ = m.NakWithDelay(30 * time.Second)
		return
	}
	b.metrics.DeadLetters.WithLabelValues(consumer).Inc()
	b.log.Error("message dead-lettered", "subject", m.Subject(), "consumer", consumer, "reason", reason)
	_ = m.Term()
}

// DeadLetters implements event.Admin: Seq is the dead-letter stream's
// sequence.
func (b *Bus) DeadLetters(ctx context.Context, limit int) ([]event.DeadLetter, error) {
	s, err := b.js.Stream(ctx, b.deadStream())
	if err != nil {
		return nil, feed.Unavailable("nats", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, feed.Unavailable("nats", err)
	}
	var out []event.DeadLetter
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && len(out) < limit && info.State.Msgs > 0; seq++ {
		raw, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // replayed and deleted
		}
		if err != nil {
			return nil, feed.Unavailable("nats", err)
		}
		out = append(out, event.DeadLetter{
			Seq:      raw.Sequence,
			Kind:     event.Kind(raw.Header.Get(headerSubject)),
			Consumer: raw.Header.Get(headerConsumer),
			Reason:   raw.Header.Get(headerReason),
			Time:     raw.Time,
			Data:     raw.Data,
		})
	}
	return out, nil
}

// Replay implements event.Admin: it republishes dead letter seq to its
// original subject, where its consumer takes it again, and then removes it
// from the dead-letter stream.
// Handlers are idempotent, so a replay of a message that did partly apply
// is safe.
func (b *Bus) Replay(ctx context.Context, seq uint64) error {
	s, err := b.js.Stream(ctx, b.deadStream())
	if err != nil {
		return feed.Unavailable("nats", err)
	}
	raw, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("dead letter %d: %w", seq, feed.ErrNotFound)
	}
	if err != nil {
		return feed.Unavailable("nats", err)
	}
	subject := raw.Header.Get(headerSubject)
	if subject == "" || strings.HasPrefix(subject, "dead.") {
		return fmt.Errorf("dead letter %d has no original subject", seq)
	}
	// The message ID makes a retried replay of one dead letter land once.
	if _, err := b.js.Publish(ctx, b.abs(subject), raw.Data, jetstream.WithMsgID("replay-"+strconv.FormatUint(seq, 10))); err != nil {
		return feed.Unavailable("nats", err)
	}
	if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return feed.Unavailable("nats", err)
	}
	return nil
}

// ConsumerState implements event.Admin.
func (b *Bus) ConsumerState(ctx context.Context, durable string) (event.ConsumerState, error) {
	c, err := b.js.Consumer(ctx, b.cfg.Stream, durable)
	if err != nil {
		return event.ConsumerState{}, feed.Unavailable("nats", err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return event.ConsumerState{}, feed.Unavailable("nats", err)
	}
	return event.ConsumerState{Pending: info.NumPending, AckPending: info.NumAckPending, Redelivered: info.NumRedelivered}, nil
}
