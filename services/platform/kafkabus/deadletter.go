package kafkabus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
)

// Dead letters: an event that a consumer's handler rejected as permanent,
// or that failed MaxDeliver times, is copied to <namespace>.dead with the
// reason and where it was, and its offset committed, so that it never
// holds up the partition behind it. The topic has one partition, so that a
// dead letter's offset (event.DeadLetter.Seq) names it alone, and is
// compacted: a replay appends a tombstone under the dead letter's key, and
// the listing leaves out what a tombstone follows. Kafka cannot delete one
// record, so this is how a replayed dead letter leaves the list.

// deadLetter copies r to the dead-letter topic with reason, retrying after
// a second while the copy fails, until ctx ends (then r stays unsettled, to
// be handled again).
func (b *Bus) deadLetter(ctx context.Context, consumer string, r *kgo.Record, reason error) bool {
	key := fmt.Sprintf("%s/%s/%d/%d", consumer, r.Topic, r.Partition, r.Offset)
	dead := &kgo.Record{Topic: b.deadTopic(), Key: []byte(key), Value: r.Value, Headers: []kgo.RecordHeader{
		{Key: headerKind, Value: []byte(header(r, headerKind))},
		{Key: headerReason, Value: []byte(reason.Error())},
		{Key: headerConsumer, Value: []byte(consumer)},
		{Key: headerTopic, Value: []byte(r.Topic)},
		{Key: headerPartition, Value: []byte(strconv.Itoa(int(r.Partition)))},
		{Key: headerOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
		{Key: headerKey, Value: r.Key},
	}}
	for {
		err := b.produce(context.WithoutCancel(ctx), dead)
		if err == nil {
			break
		}
		b.log.Error("dead-letter publish failed; retrying", "at", where(r), "consumer", consumer, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
	}
	b.metrics.DeadLetters.WithLabelValues(consumer).Inc()
	b.log.Error("event dead-lettered", "at", where(r), "consumer", consumer, "reason", reason)
	return true
}

// deadLetters reads the whole dead-letter topic and returns the records no
// tombstone has followed, oldest first.
func (b *Bus) deadLetters(ctx context.Context) ([]*kgo.Record, error) {
	topic := b.deadTopic()
	ends, err := b.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, feed.Unavailable("kafka", fmt.Errorf("list offsets of %s: %w", topic, err))
	}
	end, ok := ends.Lookup(topic, 0)
	switch {
	case !ok || errors.Is(end.Err, kerr.UnknownTopicOrPartition):
		// Not in the brokers' metadata yet (New created it a moment
		// ago), or deleted: either way it holds no dead letters.
		return nil, nil
	case end.Err != nil:
		return nil, feed.Unavailable("kafka", fmt.Errorf("list offsets of %s: %w", topic, end.Err))
	}
	starts, err := b.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, feed.Unavailable("kafka", fmt.Errorf("list offsets of %s: %w", topic, err))
	}
	if start, ok := starts.Lookup(topic, 0); ok && start.Err == nil && start.Offset >= end.Offset {
		return nil, nil
	}
	cl, err := kgo.NewClient(b.clientOpts(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topic: {0: kgo.NewOffset().AtStart()},
	}))...)
	if err != nil {
		return nil, feed.Unavailable("kafka", err)
	}
	defer cl.Close()
	latest := map[string]*kgo.Record{}
	for last := int64(-1); last+1 < end.Offset; {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, feed.Unavailable("kafka", fmt.Errorf("read %s: %w", topic, err))
		}
		if err := fetches.Err0(); err != nil {
			return nil, feed.Unavailable("kafka", fmt.Errorf("read %s: %w", topic, err))
		}
		fetches.EachRecord(func(r *kgo.Record) {
			last = r.Offset
			latest[string(r.Key)] = r
		})
	}
	var out []*kgo.Record
	for _, r := range latest {
		if r.Value != nil {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b *kgo.Record) int { return cmp.Compare(a.Offset, b.Offset) })
	return out, nil
}

// DeadLetters implements event.Admin: Seq is the dead letter's offset in
// the dead-letter topic.
func (b *Bus) DeadLetters(ctx context.Context, limit int) ([]event.DeadLetter, error) {
	recs, err := b.deadLetters(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]event.DeadLetter, 0, min(limit, len(recs)))
	for _, r := range recs[:min(limit, len(recs))] {
		out = append(out, event.DeadLetter{
			Seq:      uint64(r.Offset),
			Kind:     event.Kind(header(r, headerKind)),
			Consumer: header(r, headerConsumer),
			Reason:   header(r, headerReason),
			Time:     r.Timestamp,
			Data:     r.Value,
		})
	}
	return out, nil
}

// Replay implements event.Admin: it republishes dead letter seq to its
// original topic under its original key, where its consumer takes it
// again, then appends the tombstone that takes it off the list. A replay
// retried after the republish sends a second copy, which the handlers'
// idempotence absorbs.
func (b *Bus) Replay(ctx context.Context, seq uint64) error {
	recs, err := b.deadLetters(ctx)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(recs, func(r *kgo.Record) bool { return uint64(r.Offset) == seq })
	if i < 0 {
		return fmt.Errorf("dead letter %d: %w", seq, feed.ErrNotFound)
	}
	dead := recs[i]
	topic := header(dead, headerTopic)
	if topic == "" || topic == b.deadTopic() {
		return fmt.Errorf("dead letter %d has no original topic", seq)
	}
	replay := &kgo.Record{Topic: topic, Key: []byte(header(dead, headerKey)), Value: dead.Value,
		Headers: []kgo.RecordHeader{{Key: headerKind, Value: []byte(header(dead, headerKind))}}}
	if len(replay.Key) == 0 {
		replay.Key = nil
	}
	if err := b.produce(ctx, replay); err != nil {
		return err
	}
	return b.produce(ctx, &kgo.Record{Topic: b.deadTopic(), Key: dead.Key})
}

// ConsumerState implements event.Admin: Pending is the group's lag, the
// events past its committed offsets. Kafka keeps no count of events in
// flight or redelivered; those are 0.
func (b *Bus) ConsumerState(ctx context.Context, durable string) (event.ConsumerState, error) {
	group := b.cfg.Namespace + "." + durable
	lags, err := b.adm.Lag(ctx, group)
	if err != nil {
		return event.ConsumerState{}, feed.Unavailable("kafka", fmt.Errorf("lag of group %s: %w", group, err))
	}
	l, ok := lags[group]
	if !ok {
		return event.ConsumerState{}, feed.Unavailable("kafka", errors.New("no lag for group "+group))
	}
	if err := l.Error(); err != nil {
		return event.ConsumerState{}, feed.Unavailable("kafka", fmt.Errorf("lag of group %s: %w", group, err))
	}
	return event.ConsumerState{Pending: uint64(max(l.Lag.Total(), 0))}, nil
}
