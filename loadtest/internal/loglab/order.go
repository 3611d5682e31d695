package loglab

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
)

// OrderCounter counts, per key, the events a handler saw after a later
// event of the same key: an inversion. It is safe for concurrent use; the
// order of Observe calls is the order it judges.
type OrderCounter struct {
	mu         sync.Mutex
	max        map[string]uint64
	seen       map[orderKey]bool
	inverted   map[string]bool
	events     int
	inversions int
	duplicates int
}

type orderKey struct {
	key string
	seq uint64
}

// OrderCounts is what an OrderCounter has seen.
type OrderCounts struct {
	// Events counts Observe calls; Distinct the (key, seq) pairs among
	// them.
	Events, Distinct int
	// Inversions counts events that came after an event of the same key
	// with a higher seq. A duplicate counts as a duplicate only.
	Inversions int
	// KeysInverted counts the keys with at least one inversion.
	KeysInverted int
	// Duplicates counts events seen again.
	Duplicates int
}

// NewOrderCounter returns an empty counter.
func NewOrderCounter() *OrderCounter {
	return &OrderCounter{max: map[string]uint64{}, seen: map[orderKey]bool{}, inverted: map[string]bool{}}
}

// Observe records that seq of key arrived now.
func (c *OrderCounter) Observe(key string, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events++
	k := orderKey{key, seq}
	if c.seen[k] {
		c.duplicates++
		return
	}
	c.seen[k] = true
	if m, ok := c.max[key]; ok && seq < m {
		c.inversions++
		c.inverted[key] = true
		return
	}
	c.max[key] = seq
}

// Counts returns the counts so far.
func (c *OrderCounter) Counts() OrderCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return OrderCounts{Events: c.events, Distinct: len(c.seen), Inversions: c.inversions, KeysInverted: len(c.inverted), Duplicates: c.duplicates}
}

// OrderingResult is one run of the ordering section: one bus, one shape of
// consumer.
type OrderingResult struct {
	Bus       string `json:"bus"`
	Instances int    `json:"instances"`
	Workers   int    `json:"workers"`
	Authors   int    `json:"authors"`
	Events    int    `json:"events"`
	OrderCounts
	Seconds float64 `json:"seconds"`
	Skipped string  `json:"skipped,omitempty"`
	Error   string  `json:"error,omitempty"`
}

// orderShapes are the consumers of the ordering section: the control
// first.
var orderShapes = []struct{ instances, workers int }{{1, 1}, {2, 4}}

func (l *lab) ordering(ctx context.Context) []OrderingResult {
	var out []OrderingResult
	for _, t := range l.consumerTargets() {
		for i, s := range orderShapes {
			r := OrderingResult{Bus: t.bus, Instances: s.instances, Workers: s.workers, Authors: l.cfg.Authors, Events: l.cfg.Authors * l.cfg.PerAuthor}
			switch {
			case len(t.urls) == 0:
				r.Skipped = "no server given"
			case ctx.Err() != nil:
				r.Skipped = "interrupted"
			default:
				l.cfg.logf("ordering: %s, %d instance(s) × %d worker(s), %d authors × %d events", t.bus, s.instances, s.workers, l.cfg.Authors, l.cfg.PerAuthor)
				if err := l.orderRun(ctx, t, fmt.Sprintf("%so%s%d", l.cfg.Namespace, short(t.bus), i), &r); err != nil {
					r.Error = err.Error()
					l.cfg.logf("ordering: %s: %v", t.bus, err)
				} else {
					l.cfg.logf("  %d inversions (%d authors), %d duplicates, in %.1f s", r.Inversions, r.KeysInverted, r.Duplicates, r.Seconds)
				}
			}
			out = append(out, r)
		}
	}
	return out
}

// consumerTargets are the logs the consumer sections run on: the running
// single servers.
func (l *lab) consumerTargets() []target {
	s := l.cfg.Servers
	return []target{
		{bus: JetStream, urls: s.JetStream, login: s.NATSLogin, replicas: 1},
		{bus: Kafka, urls: s.Kafka, login: s.KafkaLogin, replicas: 1, sessionTimeout: l.cfg.SessionTimeout},
	}
}

func short(bus string) string {
	if bus == JetStream {
		return "j"
	}
	return "k"
}

// orderRun publishes the authors' events, each author's in order (one
// goroutine per author, each publish waiting for its ack), then consumes
// the backlog with r's instances and workers, counting inversions at the
// handlers.
func (l *lab) orderRun(ctx context.Context, t target, ns string, r *OrderingResult) error {
	const durable = "order"
	pub, closeLog, err := l.openFresh(ctx, t, ns, "ordering", durable)
	if err != nil {
		return err
	}
	defer closeLog()
	g, gctx := errgroup.WithContext(ctx)
	for a := range l.cfg.Authors {
		g.Go(func() error {
			for s := range l.cfg.PerAuthor {
				// Post IDs grow with the sequence, author by author.
				ev := event.PostCreated{Post: feed.PostID(s*l.cfg.Authors + a + 1), Author: fmt.Sprintf("author%02d", a), Created: time.Now()}
				if err := pub.Publish(gctx, ev); err != nil {
					return fmt.Errorf("publish %s #%d: %w", ev.Author, s, err)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}

	counter := NewOrderCounter()
	cc := event.ConsumerConfig{Durable: durable, Kinds: []event.Kind{event.KindPostCreated}, AckWait: 30 * time.Second, MaxDeliver: 5, Workers: r.Workers}
	handler := func(ctx context.Context, ev event.Event) error {
		pc, ok := ev.(event.PostCreated)
		if !ok {
			return fmt.Errorf("%T: %w", ev, event.ErrPermanent)
		}
		counter.Observe(pc.Author, uint64(pc.Post))
		sleep(ctx, l.cfg.HandlerWork)
		return nil
	}
	start := time.Now()
	stop, err := l.consumers(ctx, t, ns, r.Instances, cc, handler)
	if err != nil {
		return err
	}
	done := waitFor(ctx, time.Minute, func() bool { return counter.Counts().Distinct >= r.Events })
	r.Seconds = time.Since(start).Seconds()
	stop()
	r.OrderCounts = counter.Counts()
	if !done {
		return fmt.Errorf("handled %d of %d events within a minute", r.Distinct, r.Events)
	}
	return nil
}

// consumers starts n instances of durable consumer cc on t, each on a
// connection of its own, and returns the func that stops them and waits
// for their handlers (once; later calls do nothing).
func (l *lab) consumers(ctx context.Context, t target, ns string, n int, cc event.ConsumerConfig, h event.Handler) (stop func(), err error) {
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var closers []func()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			for _, c := range closers {
				c()
			}
		})
	}
	for range n {
		lg, closeLog, err := t.open(ctx, ns, l.log)
		if err != nil {
			stop()
			return nil, err
		}
		closers = append(closers, closeLog)
		wg.Go(func() {
			if err := lg.Consume(cctx, cc, h); err != nil {
				l.cfg.logf("consume %s on %s: %v", cc.Durable, t.bus, err)
			}
		})
	}
	return stop, nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// waitFor polls cond every 10 ms until it holds (true), or d passes or
// ctx ends (false).
func waitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if ctx.Err() != nil || time.Now().After(deadline) {
			return false
		}
		sleep(ctx, 10*time.Millisecond)
	}
	return true
}
