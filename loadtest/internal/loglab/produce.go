package loglab

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/event/eventcodec"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/kafkabus"
	"github.com/herald-feed/herald/services/platform/node"
)

// ProduceResult is one producer cell: one log, one durability setting.
type ProduceResult struct {
	Bus     string `json:"bus"`
	Setting string `json:"setting"`
	// Durability says what an acknowledged publish survives.
	Durability string `json:"durability"`
	// Producer names what published: the adapter's Publish, or the raw
	// kgo producer of the acks=1 cells.
	Producer  string  `json:"producer"`
	InFlight  int     `json:"in_flight"`
	Events    int64   `json:"events"`
	Errors    int64   `json:"errors"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
	FirstErr  string  `json:"first_error,omitempty"`
	// Skipped says why the cell did not run (no server given).
	Skipped string `json:"skipped,omitempty"`
	Error   string `json:"error,omitempty"`
}

// publishFunc publishes one event and returns once the log has stored it.
type publishFunc func(ctx context.Context, ev event.Event) error

// produceCell is one row of the producer section.
type produceCell struct {
	bus, setting, durability, producer string
	target                             target
	// raw publishes with the lab's acks=1 producer instead of the adapter.
	raw bool
	// cold marks the first cell on a cluster of JVMs the lab started.
	cold bool
}

func (l *lab) produceCells() []produceCell {
	s := l.cfg.Servers
	js := func(urls []string, replicas int) target {
		return target{bus: JetStream, urls: urls, login: node.Login{}, replicas: replicas}
	}
	shared := js(s.JetStream, 1)
	shared.login = s.NATSLogin
	kafka1 := target{bus: Kafka, urls: s.Kafka, login: s.KafkaLogin, replicas: 1}
	kafka3 := target{bus: Kafka, urls: s.Kafka3, replicas: 3}
	const adapter, rawAck1 = "adapter Publish", "raw kgo, acks=1, not idempotent"
	return []produceCell{
		{JetStream, "R1, default sync", "the server's page cache; fsync every 2 min", adapter, shared, false, false},
		{JetStream, "R1, sync always", "fsync on the one server before the ack", adapter, js(s.JetStreamSync, 1), false, false},
		{JetStream, "R3, default sync", "a majority of 3 (Raft), in their page caches", adapter, js(s.JetStreamR3, 3), false, false},
		{JetStream, "R3, sync always", "a majority of 3 (Raft), each fsynced", adapter, js(s.JetStreamR3Sync, 3), false, false},
		{Kafka, "1 broker, acks=1", "the leader's page cache", rawAck1, kafka1, true, false},
		{Kafka, "1 broker, acks=all", "the leader's page cache: on one broker the same as acks=1", adapter + " (idempotent, acks=all)", kafka1, false, false},
		{Kafka, "3 brokers, acks=1", "the leader's page cache; lost if it dies before the followers fetch", rawAck1, kafka3, true, true},
		{Kafka, "3 brokers, acks=all, min.insync 2", "every in-sync replica (at least 2 of 3), in their page caches", adapter + " (idempotent, acks=all)", kafka3, false, false},
	}
}

func (l *lab) produce(ctx context.Context) []ProduceResult {
	var out []ProduceResult
	for i, c := range l.produceCells() {
		r := ProduceResult{Bus: c.bus, Setting: c.setting, Durability: c.durability, Producer: c.producer, InFlight: l.cfg.InFlight}
		if len(c.target.urls) == 0 {
			r.Skipped = "no server given"
			out = append(out, r)
			continue
		}
		if ctx.Err() != nil {
			r.Skipped = "interrupted"
			out = append(out, r)
			continue
		}
		l.cfg.logf("produce: %s %s (%s) on %v", c.bus, c.setting, c.producer, c.target.urls)
		if err := l.produceCell(ctx, c, fmt.Sprintf("%sp%d", l.cfg.Namespace, i), &r); err != nil {
			r.Error = err.Error()
			l.cfg.logf("produce: %s %s: %v", c.bus, c.setting, err)
		} else {
			l.cfg.logf("  %.0f events/s, p50 %.2f ms, p99 %.2f ms (%d events in %.1f s, %d errors)", r.PerSecond, r.P50Ms, r.P99Ms, r.Events, r.Seconds, r.Errors)
		}
		out = append(out, r)
	}
	return out
}

func (l *lab) produceCell(ctx context.Context, c produceCell, ns string, r *ProduceResult) error {
	lg, closeLog, err := c.target.open(ctx, ns, l.log)
	if err != nil {
		return err
	}
	defer func() {
		closeLog()
		if err := c.target.drop(context.WithoutCancel(ctx), ns, l.log); err != nil {
			l.cfg.logf("produce: cleaning up %s: %v", ns, err)
		}
	}()
	if err := awaitWrites(ctx, lg); err != nil {
		return err
	}
	publish := publishFunc(lg.Publish)
	if c.raw {
		kcfg, err := c.target.kafkaConfig(ns)
		if err != nil {
			return err
		}
		p, closeRaw, err := rawAcks1(kcfg, lg.(topicser).Topics()[0])
		if err != nil {
			return err
		}
		defer closeRaw()
		publish = p
	}
	// The warm-up lets the clients find the leaders and open their
	// connections, a new topic's partitions reach the metadata, and a cold
	// broker's JIT compile its hot paths.
	warmup := l.cfg.Warmup
	if c.cold {
		warmup = l.cfg.ColdWarmup
	}
	if warmup > 0 {
		w := measure(ctx, publish, l.cfg.InFlight, l.cfg.ProduceEvents, warmup, 0)
		if w.Events == 0 {
			return fmt.Errorf("warm-up: no publish succeeded (%d errors; first: %s)", w.Errors, w.FirstErr)
		}
	}
	m := measure(ctx, publish, l.cfg.InFlight, l.cfg.ProduceEvents, l.cfg.ProduceDuration, 1_000_000)
	r.Events, r.Errors, r.Seconds, r.PerSecond = m.Events, m.Errors, m.Seconds, m.PerSecond
	r.P50Ms, r.P99Ms, r.MaxMs, r.FirstErr = m.P50Ms, m.P99Ms, m.MaxMs, m.FirstErr
	return nil
}

// topicser is the part of kafkabus.Bus the raw producer needs: the topic
// the post events go to.
type topicser interface{ Topics() []string }

// kindHeader is the record header kafkabus carries an event's kind in.
const kindHeader = "herald-kind"

// rawAcks1 returns a publish on a kgo producer that waits for the
// partition leader only (acks=1) and, as acks=1 requires, is not
// idempotent; the records are laid out as kafkabus lays them out (the
// kind's topic, keyed by author, the kind in a header, the eventcodec
// protobuf as the value), and the client keeps franz-go's other
// defaults, as the adapter's does.
func rawAcks1(cfg kafkabus.Config, topic string) (publishFunc, func(), error) {
	cl, err := kafkaClient(cfg, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(), kgo.RecordDeliveryTimeout(kafkabus.DefaultPublishTimeout))
	if err != nil {
		return nil, nil, err
	}
	publish := func(ctx context.Context, ev event.Event) error {
		pc, ok := ev.(event.PostCreated)
		if !ok {
			return fmt.Errorf("raw producer: %T is not a post.created", ev)
		}
		data, err := eventcodec.Marshal(ev)
		if err != nil {
			return err
		}
		rec := &kgo.Record{Topic: topic, Key: []byte(pc.Author), Value: data,
			Headers: []kgo.RecordHeader{{Key: kindHeader, Value: []byte(ev.Kind())}}}
		return cl.ProduceSync(ctx, rec).FirstErr()
	}
	return publish, cl.Close, nil
}

// measurement is one bounded burst of publishes.
type measurement struct {
	Events, Errors      int64
	Seconds, PerSecond  float64
	P50Ms, P99Ms, MaxMs float64
	FirstErr            string
}

// authorOf spreads the producer cells' events over 50 authors, so that
// they spread over a Kafka topic's partitions as Herald's do.
func authorOf(i uint64) string { return fmt.Sprintf("author%02d", i%50) }

// measure publishes up to n PostCreated events with inFlight publishes
// at once, each goroutine waiting for its ack before the next, until n
// are done or d has passed; post IDs start at firstID. Publishes in
// flight at the deadline finish and count. Throughput is the successful
// publishes over the time until the last one returned.
func measure(ctx context.Context, publish publishFunc, inFlight, n int, d time.Duration, firstID uint64) measurement {
	var (
		next     atomic.Uint64
		ok, fail atomic.Int64
		mu       sync.Mutex
		hist     = hdrhistogram.New(1, (10 * time.Minute).Microseconds(), 3)
		firstErr string
		wg       sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	var last atomic.Int64 // nanoseconds since start of the last completion
	for range inFlight {
		wg.Go(func() {
			h := hdrhistogram.New(1, (10 * time.Minute).Microseconds(), 3)
			for ctx.Err() == nil && time.Now().Before(deadline) {
				i := next.Add(1)
				if i > uint64(n) {
					break
				}
				id := firstID + i
				ev := event.PostCreated{Post: feed.PostID(id), Author: authorOf(id), Created: time.Now()}
				t0 := time.Now()
				err := publish(ctx, ev)
				el := time.Since(t0)
				last.Store(int64(time.Since(start)))
				if err != nil {
					if fail.Add(1) == 1 {
						mu.Lock()
						firstErr = err.Error()
						mu.Unlock()
					}
					continue
				}
				ok.Add(1)
				_ = h.RecordValue(max(el.Microseconds(), 1))
			}
			mu.Lock()
			hist.Merge(h)
			mu.Unlock()
		})
	}
	wg.Wait()
	m := measurement{Events: ok.Load(), Errors: fail.Load(), Seconds: time.Duration(last.Load()).Seconds(), FirstErr: firstErr}
	if m.Seconds > 0 {
		m.PerSecond = float64(m.Events) / m.Seconds
	}
	if m.Events > 0 {
		m.P50Ms = float64(hist.ValueAtQuantile(50)) / 1000
		m.P99Ms = float64(hist.ValueAtQuantile(99)) / 1000
		m.MaxMs = float64(hist.Max()) / 1000
	}
	return m
}
