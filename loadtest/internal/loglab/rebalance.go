package loglab

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
)

// LongestGap returns the longest time between two consecutive times of
// sorted (ascending) that overlaps [from, to], and when it began. A gap
// that straddles from or to counts whole; one that only touches the window
// does not. If nothing comes after the window, the time from the last one
// to to is a gap too (the handling had not resumed when the window
// closed), and so is all of [from, to] if nothing came at all.
func LongestGap(sorted []time.Time, from, to time.Time) (gap time.Duration, at time.Time) {
	// sorted[i] is the first time after from; sorted[i-1] the gap's start.
	i, found := slices.BinarySearchFunc(sorted, from, func(t, from time.Time) int { return t.Compare(from) })
	for found && i < len(sorted) && sorted[i].Equal(from) {
		i++
	}
	prev := from
	if i > 0 {
		prev = sorted[i-1]
	}
	for ; i < len(sorted) && prev.Before(to); i++ {
		if g := sorted[i].Sub(prev); g > gap {
			gap, at = g, prev
		}
		prev = sorted[i]
	}
	if i == len(sorted) && prev.Before(to) {
		if g := to.Sub(prev); g > gap {
			gap, at = g, prev
		}
	}
	return gap, at
}

// RebalanceResult is the rebalance section on one bus: a steady publish
// rate, one consumer instance, a second that joins and later leaves
// cleanly.
type RebalanceResult struct {
	Bus        string  `json:"bus"`
	Rate       float64 `json:"rate"`
	PhaseS     float64 `json:"phase_s"`
	Events     int     `json:"events"`
	Lost       int     `json:"lost"`
	Duplicates int     `json:"duplicates"`
	// The longest gap between two handled events, and the longest an
	// event waited from its publish to its handler, in each phase: one
	// instance (steady, after its first half phase), after the join, after
	// the leave. On Kafka the wait shows what the gap can hide: while the
	// group moves some partitions, the others' events keep coming.
	SteadyGapMs   float64 `json:"steady_gap_ms"`
	JoinGapMs     float64 `json:"join_gap_ms"`
	LeaveGapMs    float64 `json:"leave_gap_ms"`
	SteadyDelayMs float64 `json:"steady_delay_ms"`
	JoinDelayMs   float64 `json:"join_delay_ms"`
	LeaveDelayMs  float64 `json:"leave_delay_ms"`
	// LeaveS is how long the leaving instance's Consume took to return.
	LeaveS  float64 `json:"leave_s"`
	Skipped string  `json:"skipped,omitempty"`
	Error   string  `json:"error,omitempty"`
}

func (l *lab) rebalance(ctx context.Context) []RebalanceResult {
	var out []RebalanceResult
	for _, t := range l.consumerTargets() {
		r := RebalanceResult{Bus: t.bus, Rate: l.cfg.RebalanceRate, PhaseS: l.cfg.RebalancePhase.Seconds()}
		switch {
		case len(t.urls) == 0:
			r.Skipped = "no server given"
		case ctx.Err() != nil:
			r.Skipped = "interrupted"
		default:
			l.cfg.logf("rebalance: %s, %.0f events/s, a second instance joins at %s and leaves at %s", t.bus, r.Rate, l.cfg.RebalancePhase, 2*l.cfg.RebalancePhase)
			if err := l.rebalanceRun(ctx, t, l.cfg.Namespace+"b"+short(t.bus), &r); err != nil {
				r.Error = err.Error()
				l.cfg.logf("rebalance: %s: %v", t.bus, err)
			} else {
				l.cfg.logf("  longest gap: steady %.0f ms, join %.0f ms, leave %.0f ms; longest wait: steady %.0f ms, join %.0f ms, leave %.0f ms",
					r.SteadyGapMs, r.JoinGapMs, r.LeaveGapMs, r.SteadyDelayMs, r.JoinDelayMs, r.LeaveDelayMs)
			}
		}
		out = append(out, r)
	}
	return out
}

// arrival is one handled event of the rebalance section.
type arrival struct {
	at    time.Time
	delay time.Duration // since its publish
}

func (l *lab) rebalanceRun(ctx context.Context, t target, ns string, r *RebalanceResult) error {
	const durable = "rebalance"
	pub, closeLog, err := l.openFresh(ctx, t, ns, "rebalance", durable)
	if err != nil {
		return err
	}
	defer closeLog()
	var (
		mu       sync.Mutex
		arrivals []arrival
		seen     = map[feed.PostID]bool{}
		dups     int
	)
	cc := event.ConsumerConfig{Durable: durable, Kinds: []event.Kind{event.KindPostCreated}, AckWait: 30 * time.Second, MaxDeliver: 5, Workers: 2}
	handler := func(ctx context.Context, ev event.Event) error {
		pc, ok := ev.(event.PostCreated)
		if !ok {
			return fmt.Errorf("%T: %w", ev, event.ErrPermanent)
		}
		now := time.Now()
		mu.Lock()
		if seen[pc.Post] {
			dups++
		}
		seen[pc.Post] = true
		arrivals = append(arrivals, arrival{now, now.Sub(pc.Created)})
		mu.Unlock()
		sleep(ctx, l.cfg.HandlerWork)
		return nil
	}
	stop1, err := l.consumers(ctx, t, ns, 1, cc, handler)
	if err != nil {
		return err
	}
	defer stop1()

	phase := l.cfg.RebalancePhase
	start := time.Now()
	n := int(l.cfg.RebalanceRate * (3 * phase).Seconds())
	var published, failed atomic.Int64
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		// Open loop: event i goes at start + i/rate whatever the earlier
		// ones are doing, at most 32 at once.
		sem := make(chan struct{}, 32)
		var wg sync.WaitGroup
		for i := range n {
			sleep(ctx, time.Until(start.Add(time.Duration(float64(i)/l.cfg.RebalanceRate*float64(time.Second)))))
			if ctx.Err() != nil {
				break
			}
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				ev := event.PostCreated{Post: feed.PostID(i + 1), Author: authorOf(uint64(i)), Created: time.Now()}
				if err := pub.Publish(ctx, ev); err != nil {
					failed.Add(1)
					return
				}
				published.Add(1)
			})
		}
		wg.Wait()
	}()

	sleep(ctx, time.Until(start.Add(phase)))
	joined := time.Now()
	stop2, err := l.consumers(ctx, t, ns, 1, cc, handler)
	if err != nil {
		return err
	}
	sleep(ctx, time.Until(start.Add(2*phase)))
	left := time.Now()
	stop2()
	r.LeaveS = time.Since(left).Seconds()
	<-pubDone
	stopped := start.Add(3 * phase)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d publishes failed", f, n)
	}
	all := waitFor(ctx, 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= n
	})
	stop1()

	mu.Lock()
	defer mu.Unlock()
	r.Events, r.Duplicates = n, dups
	r.Lost = n - len(seen)
	slices.SortFunc(arrivals, func(a, b arrival) int { return a.at.Compare(b.at) })
	times := make([]time.Time, len(arrivals))
	for i, a := range arrivals {
		times[i] = a.at
	}
	window := func(from, to time.Time) (gapMs, delayMs float64) {
		g, _ := LongestGap(times, from, to)
		var d time.Duration
		for _, a := range arrivals {
			if !a.at.Before(from) && !a.at.After(to) {
				d = max(d, a.delay)
			}
		}
		return ms(g), ms(d)
	}
	// The first half phase is the first instance's start-up (its group
	// join, the backlog published meanwhile), not the steady state.
	r.SteadyGapMs, r.SteadyDelayMs = window(start.Add(phase/2), joined)
	r.JoinGapMs, r.JoinDelayMs = window(joined, left)
	// Until the backlog left by the last phase is handled, at most 5 s
	// past the last publish.
	end := stopped
	if len(times) > 0 && times[len(times)-1].After(end) {
		end = times[len(times)-1]
		if limit := stopped.Add(5 * time.Second); end.After(limit) {
			end = limit
		}
	}
	r.LeaveGapMs, r.LeaveDelayMs = window(left, end)
	if !all {
		return fmt.Errorf("handled %d of %d events within 30 s of the last publish", len(seen), n)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
