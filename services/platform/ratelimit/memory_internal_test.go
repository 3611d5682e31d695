package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

// clock is a fake time that moves only when the test says.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)} }
func memoryAt(c *clock) *Memory      { m := NewMemory(); m.now = c.now; return m }

func mustAllow(t *testing.T, m *Memory, key string, l Limit) Result {
	t.Helper()
	r, err := m.Allow(t.Context(), key, l)
	if err != nil {
		t.Fatalf("Allow(%q, %+v): %v", key, l, err)
	}
	return r
}

// TestMemoryRetryAfterExact: on a clock that stands still, RetryAfter is
// exactly one token's refill, a refusal takes nothing, and the token is
// there once that time has passed.
func TestMemoryRetryAfterExact(t *testing.T) {
	c := newClock()
	m := memoryAt(c)
	l := Limit{Rate: 4, Burst: 2}
	for i := range l.Burst {
		if r := mustAllow(t, m, "a", l); !r.Allowed {
			t.Fatalf("call %d = %+v; want allowed", i+1, r)
		}
	}
	for range 3 {
		if r := mustAllow(t, m, "a", l); r != (Result{RetryAfter: 250 * time.Millisecond}) {
			t.Fatalf("call after the burst = %+v; want refused with RetryAfter 250ms", r)
		}
	}
	c.add(250 * time.Millisecond)
	if r := mustAllow(t, m, "a", l); !r.Allowed {
		t.Fatalf("call 250ms after a refusal = %+v; want allowed", r)
	}
	if r := mustAllow(t, m, "a", l); r.Allowed {
		t.Fatalf("second call 250ms after a refusal = %+v; want refused: one token refilled", r)
	}
}

// TestMemoryEvictsIdleBuckets: buckets of users who stop calling go once
// they are full again, and a bucket that is not yet full stays, still
// refusing: eviction never hands out tokens.
func TestMemoryEvictsIdleBuckets(t *testing.T) {
	c := newClock()
	m := memoryAt(c)
	idle := Limit{Rate: 10, Burst: 5} // full again 500ms after its last call
	const users = 1000
	for i := range users {
		mustAllow(t, m, fmt.Sprintf("user%d", i), idle)
	}
	busy := Limit{Rate: 1.0 / 3600, Burst: 1} // full an hour after its last call
	if r := mustAllow(t, m, "busy", busy); !r.Allowed {
		t.Fatalf("busy's first call = %+v; want allowed", r)
	}
	if got := m.Len(); got != users+1 {
		t.Fatalf("Len() = %d after %d distinct keys; want %d", got, users+1, users+1)
	}

	c.add(sweepEvery + time.Second)
	mustAllow(t, m, "newcomer", idle) // a call after sweepEvery sweeps
	if got := m.Len(); got != 2 {
		t.Errorf("Len() = %d once %d idle buckets were full again; want 2 (busy and newcomer)", got, users)
	}
	if r := mustAllow(t, m, "busy", busy); r.Allowed {
		t.Errorf("busy after the sweep = %+v; want still refused: its bucket was not full", r)
	}
}

// TestMemoryLimitChange: a key's bucket takes the Limit of its latest
// call, keeping the tokens it had.
func TestMemoryLimitChange(t *testing.T) {
	c := newClock()
	m := memoryAt(c)
	for range 2 {
		mustAllow(t, m, "a", Limit{Rate: 1, Burst: 3})
	}
	// One token left; a Burst of 1 holds it, a faster rate refills it.
	faster := Limit{Rate: 100, Burst: 1}
	if r := mustAllow(t, m, "a", faster); !r.Allowed {
		t.Fatalf("call under %+v with a token left = %+v; want allowed", faster, r)
	}
	if r := mustAllow(t, m, "a", faster); r.Allowed || r.RetryAfter != 10*time.Millisecond {
		t.Fatalf("next call under %+v = %+v; want refused with RetryAfter 10ms", faster, r)
	}
}
