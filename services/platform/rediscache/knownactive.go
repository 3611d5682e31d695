package rediscache

import (
	"sync"
	"time"
)

// knownActive remembers, for a short while, the users whose active marks
// a fan-out chunk found in Redis, so that the next chunks for them can
// write without reading the marks again. That read, an MGET of one mark
// per follower, was about a fifth of Redis's work per delivery
// (docs/benchmarks.md, "The fan-out's active-mark read").
//
// It only ever says "active" for a user Redis said was active at most
// fresh ago, and never "inactive": a user it does not know is looked up
// in Redis, so a user who has just become active (a read, a rebuild's
// Claim) is never skipped. What a stale "active" risks is a write after
// the mark expired, and that is safe while fresh is well inside the
// margin by which a timeline outlives its mark (New): the timeline is
// still there, with its TTL, and the read that finds it without its mark
// treats it as missing, as it always did. So fresh is a quarter of that
// margin, and an entry's age counts from before the MGET was sent.
//
// It keeps two generations, each at most fresh/2 old at its start:
// lookups see both, and a generation is dropped once fresh has passed
// since it began. Any failed write to Redis forgets everything, since a
// restart or failover may have lost the marks (see forget).
type knownActive struct {
	fresh time.Duration
	max   int              // users per generation; past it, no more are remembered
	now   func() time.Time // time.Now, but for tests: the marks expire in Redis's real time

	mu        sync.Mutex
	cur, prev map[string]struct{}
	// curFrom and prevFrom are when each generation began: every entry
	// in it was confirmed by a read sent at or after that time.
	curFrom, prevFrom time.Time
}

// newKnownActive returns a memo of up to max users per generation, or
// nil, which remembers nothing, if max or fresh is not positive.
func newKnownActive(max int, fresh time.Duration) *knownActive {
	if max <= 0 || fresh <= 0 {
		return nil
	}
	return &knownActive{fresh: fresh, max: max, now: time.Now, cur: make(map[string]struct{}), prev: make(map[string]struct{})}
}

// rotate drops what is older than fresh; k.mu is held.
func (k *knownActive) rotate(now time.Time) {
	if now.Sub(k.curFrom) < k.fresh/2 {
		return
	}
	if now.Sub(k.curFrom) >= k.fresh {
		clear(k.prev)
		clear(k.cur)
		k.curFrom, k.prevFrom = now, now
		return
	}
	k.prev, k.cur = k.cur, k.prev
	clear(k.cur)
	k.prevFrom, k.curFrom = k.curFrom, now
}

// unknown returns the indexes of the users not known to be active, and
// the time to pass to confirm once their marks have been read.
func (k *knownActive) unknown(users []string) ([]int, time.Time) {
	all := make([]int, 0, len(users))
	if k == nil {
		for i := range users {
			all = append(all, i)
		}
		return all, time.Time{}
	}
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rotate(now)
	for i, u := range users {
		if _, ok := k.cur[u]; ok {
			continue
		}
		if _, ok := k.prev[u]; ok && now.Sub(k.prevFrom) < k.fresh {
			continue
		}
		all = append(all, i)
	}
	return all, now
}

// confirm records users as active as of sent, when the read that found
// their marks was sent.
func (k *knownActive) confirm(users []string, sent time.Time) {
	if k == nil || len(users) == 0 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rotate(k.now())
	gen := k.cur
	switch {
	case !sent.Before(k.curFrom):
	case !sent.Before(k.prevFrom):
		gen = k.prev // the read began before the rotation
	default:
		return // older than anything kept
	}
	for _, u := range users {
		if len(gen) >= k.max {
			return
		}
		gen[u] = struct{}{}
	}
}

// forget drops every user.
func (k *knownActive) forget() {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	clear(k.cur)
	clear(k.prev)
}
