package coordlab

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Contender is one client of a lock in a measurement: its Locker, and
// Close, which ends its session and connection.
type Contender struct {
	Locker Locker
	Close  func()
}

// LockRecipe makes the contenders of one lock: each its own connection and
// session, as separate processes would have. Every watch event a contender
// receives is added to events.
type LockRecipe struct {
	Name         string
	System       string
	NewContender func(ctx context.Context, events *atomic.Int64) (Contender, error)
	// Cleanup deletes the lock's znodes or keys once the contenders are closed.
	Cleanup func(ctx context.Context) error
}

// HandoffResult is one hand-off measurement: Contenders clients take the
// lock in turn for a bounded number of hand-offs or a bounded time.
type HandoffResult struct {
	Recipe     string `json:"recipe"`
	System     string `json:"system"`
	Contenders int    `json:"contenders"`
	// HoldMs is how long each holder kept the lock.
	HoldMs float64 `json:"hold_ms"`
	// Handoffs counts the measured hand-offs: every acquisition after the first.
	Handoffs int     `json:"handoffs"`
	Seconds  float64 `json:"seconds"`
	// The hand-off latency: from the holder starting its Unlock to the
	// next holder's Lock returning.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// EventsPerHandoff is the watch events every client together received
	// between the first acquisition and the last, per hand-off: ZooKeeper
	// watch events, and etcd watch responses that carry events (see
	// CountWatchEvents).
	EventsPerHandoff float64 `json:"events_per_handoff"`
	// Overlaps counts acquisitions while another contender was still
	// inside; TokenRegressions counts tokens not above the previous
	// holder's. Both are 0 for a working lock.
	Overlaps         int    `json:"overlaps"`
	TokenRegressions int    `json:"token_regressions"`
	Error            string `json:"error,omitempty"`
}

// handoffState is what the contenders of a cell share. The distributed lock
// orders them; the mutex is only for the measurement's own bookkeeping, and
// is never held across a call to the servers.
type handoffState struct {
	mu            sync.Mutex
	inside        int
	overlaps      int
	regressions   int
	lastToken     int64
	acquisitions  int64
	releasedAt    time.Time
	samples       []time.Duration
	eventsAtFirst int64
	eventsAtLast  int64
	firstAt       time.Time
	lastAt        time.Time
	done          bool
	next          chan struct{} // closed at every acquisition
}

// MeasureHandoffs runs n contenders of rec against each other until
// maxHandoffs hand-offs or maxDur have passed, whichever is first. Each
// holder holds the lock for hold (a short critical section; with none, a
// naive lock's woken waiters often have not set their watches again
// before the next release, which hides part of the herd). After
// releasing, a contender waits for someone else to acquire before it asks
// again, so that with two or more contenders every hand-off goes to a
// client that was waiting, never back to the one that just let go.
func MeasureHandoffs(ctx context.Context, rec LockRecipe, n, maxHandoffs int, hold, maxDur time.Duration) HandoffResult {
	res := HandoffResult{Recipe: rec.Name, System: rec.System, Contenders: n, HoldMs: ms(hold)}
	events := new(atomic.Int64)
	cs := make([]Contender, n)
	defer func() {
		for _, c := range cs {
			if c.Close != nil {
				c.Close()
			}
		}
		if rec.Cleanup != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_ = rec.Cleanup(cctx)
		}
	}()
	dial, dctx := errgroup.WithContext(ctx)
	dial.SetLimit(16)
	for i := range cs {
		dial.Go(func() error {
			c, err := rec.NewContender(dctx, events)
			cs[i] = c
			return err
		})
	}
	if err := dial.Wait(); err != nil {
		res.Error = "connect: " + err.Error()
		return res
	}

	st := &handoffState{next: make(chan struct{})}
	// Cancelled by a timer, not a deadline: a deadline would travel with
	// every request to the servers, and etcd answers a request whose
	// deadline passes with "request timed out", which can arrive before
	// the client's own context reports the deadline, and look like a
	// failure of the recipe.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer time.AfterFunc(maxDur, cancel).Stop()
	g, gctx := errgroup.WithContext(rctx)
	for _, c := range cs {
		g.Go(func() error { return contend(gctx, cancel, c.Locker, st, events, n, maxHandoffs, hold) })
	}
	err := g.Wait()
	if err != nil && ctx.Err() == nil {
		res.Error = err.Error()
	}

	st.mu.Lock()
	defer st.mu.Unlock()
	res.Handoffs = len(st.samples)
	res.Overlaps, res.TokenRegressions = st.overlaps, st.regressions
	if res.Handoffs > 0 {
		res.Seconds = st.lastAt.Sub(st.firstAt).Seconds()
		slices.Sort(st.samples)
		res.P50Ms = ms(quantile(st.samples, 0.50))
		res.P99Ms = ms(quantile(st.samples, 0.99))
		res.MaxMs = ms(st.samples[len(st.samples)-1])
		res.EventsPerHandoff = float64(st.eventsAtLast-st.eventsAtFirst) / float64(res.Handoffs)
	}
	return res
}

// contend is one contender's loop: lock, note the hand-off, unlock, wait
// for someone else to take the lock, again.
func contend(ctx context.Context, stop context.CancelFunc, l Locker, st *handoffState, events *atomic.Int64, n, maxHandoffs int, hold time.Duration) error {
	for {
		token, err := l.Lock(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		now := time.Now()
		st.mu.Lock()
		st.inside++
		if st.inside > 1 {
			st.overlaps++
		}
		if st.acquisitions > 0 && token <= st.lastToken {
			st.regressions++
		}
		st.lastToken = token
		switch {
		case st.acquisitions == 0:
			st.eventsAtFirst, st.firstAt = events.Load(), now
		case !st.done:
			st.samples = append(st.samples, now.Sub(st.releasedAt))
			st.eventsAtLast, st.lastAt = events.Load(), now
			st.done = len(st.samples) >= maxHandoffs
		}
		st.acquisitions++
		gen := st.acquisitions
		close(st.next)
		st.next = make(chan struct{})
		done := st.done
		st.mu.Unlock()

		if hold > 0 {
			// The critical section's work, which the lock exists for.
			time.Sleep(hold)
		}
		st.mu.Lock()
		st.inside--
		st.releasedAt = time.Now()
		st.mu.Unlock()
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err = l.Unlock(uctx)
		cancel()
		if err != nil {
			return fmt.Errorf("unlock: %w", err)
		}
		if done {
			stop()
			return nil
		}
		if n == 1 {
			continue
		}
		st.mu.Lock()
		next, moved := st.next, st.acquisitions > gen
		st.mu.Unlock()
		if !moved {
			select {
			case <-next:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// quantile returns the nearest-rank q-quantile of sorted samples.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(float64(len(sorted))*q)) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
