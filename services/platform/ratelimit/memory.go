package ratelimit

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// sweepEvery is how often Memory looks for full buckets to drop. A sweep
// walks every bucket under the lock, so it runs at most this often, from
// inside Allow: memory then holds the buckets of about the users seen in
// the last sweepEvery plus their refill time, and an idle Memory costs
// nothing and needs no goroutine to stop.
const sweepEvery = 10 * time.Second

// Memory is a Limiter whose buckets live in this process: the all-in-one's.
// It is safe for concurrent use; the zero value is not, use NewMemory.
//
// A bucket that has refilled to full behaves exactly like a bucket that
// was never made, so Memory drops full buckets and its size follows the
// users active lately, not every user ever seen.
type Memory struct {
	now func() time.Time // the clock; tests replace it

	// mu guards the map and every bucket's use of it. One lock over both
	// means a sweep never drops a bucket between a caller finding it and
	// taking its token, which would let a fresh full bucket grant a
	// second burst.
	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	limit Limit
	lim   *rate.Limiter
}

// NewMemory returns an empty in-process Limiter.
func NewMemory() *Memory {
	return &Memory{now: time.Now, buckets: make(map[string]*bucket)}
}

// Allow implements Limiter. A key's bucket follows the Limit of its latest
// call: a changed Limit keeps the tokens the bucket holds (capped at the
// new Burst) and refills them at the new Rate from then on.
func (m *Memory) Allow(_ context.Context, key string, l Limit) (Result, error) {
	if err := l.Validate(); err != nil {
		return Result{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if now.Sub(m.swept) >= sweepEvery {
		m.sweep(now)
	}
	b := m.buckets[key]
	switch {
	case b == nil:
		b = &bucket{limit: l, lim: rate.NewLimiter(rate.Limit(l.Rate), l.Burst)}
		m.buckets[key] = b
	case b.limit != l:
		b.lim.SetLimitAt(now, rate.Limit(l.Rate))
		b.lim.SetBurstAt(now, l.Burst)
		b.limit = l
	}
	// A reservation says how long until the token would be there; a
	// refused call cancels it, which puts the token back, so refusals
	// cost the caller nothing.
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return Result{RetryAfter: d}, nil
	}
	return Result{Allowed: true}, nil
}

// sweep drops the buckets that are full at now. m.mu must be held.
func (m *Memory) sweep(now time.Time) {
	for key, b := range m.buckets {
		if b.lim.TokensAt(now) >= float64(b.limit.Burst) {
			delete(m.buckets, key)
		}
	}
	m.swept = now
}

// Len returns how many buckets m holds: those used since the last sweep
// plus those not yet refilled at it.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.buckets)
}
