package rediscache

import (
	"sync"
	"time"
)

// renewFraction sets how often a read renews its user's active mark and
// timeline TTL: at most once per ActiveWindow/renewFraction per Cache.
// Renewing on every read cost two writes per read (SET of the mark with
// GET, PEXPIRE of the timeline), the larger part of a warm read's Redis
// work. A user then stays active for at least (1 - 1/renewFraction) of
// the window after their last read, rather than the whole window.
const renewFraction = 16

// maxRenewals bounds the users a Cache remembers; past it, it forgets
// them all, and their next reads renew again.
const maxRenewals = 100_000

// renewals remembers when each user's mark was last renewed through this
// Cache.
type renewals struct {
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	last map[string]time.Time
}

func newRenewals(every time.Duration, now func() time.Time) *renewals {
	return &renewals{every: every, now: now, last: make(map[string]time.Time)}
}

// fresh reports whether user's mark was renewed within every.
func (r *renewals) fresh(user string) bool {
	if r.every <= 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.last[user]
	return ok && r.now().Sub(t) < r.every
}

// renewed records that user's mark was renewed at start (when the renewing
// call began, so that its time in flight counts against the window).
func (r *renewals) renewed(user string, start time.Time) {
	if r.every <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.last) >= maxRenewals {
		clear(r.last)
	}
	r.last[user] = start
}

// forget makes user's next read renew the mark.
func (r *renewals) forget(user string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.last, user)
}
