// Package waitfor is how Herald's tests wait for an outcome: poll a
// condition until it holds or a deadline passes, and on failure say what was
// last seen.
//
// Functional tests assert outcomes, never speed. Their deadlines are
// generous (Deadline), so that a loaded two-core machine never reaches one
// while the system works; a speed target belongs in a benchmark or a drill,
// which reports a figure. A test whose bound is itself the behaviour under
// test (an instance leaves etcd once its lease expires) derives it from the
// configured setting, with a margin that holds under load, and says so.
package waitfor

import (
	"fmt"
	"testing"
	"time"
)

// Deadline is how long a functional test waits for an outcome that, on an
// idle machine, takes milliseconds: long enough that load alone never
// reaches it.
const Deadline = 30 * time.Second

// Interval is how often Until and True poll unless told otherwise.
const Interval = 10 * time.Millisecond

// True polls cond every interval until it returns true or d has passed, and
// reports whether it held. cond is always called at least once, and once
// more after the deadline, so a slow poll does not lose the last chance.
// It needs no testing.TB, so goroutines and helpers may use it.
func True(d, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// Until polls cond every Interval until it reports done, for up to d. If
// the deadline passes first it fails t with what (the outcome wanted) and
// the state cond last returned, so the log says why.
func Until(t testing.TB, d time.Duration, what string, cond func() (done bool, seen any)) {
	t.Helper()
	var last any
	start := time.Now()
	if True(d, Interval, func() bool {
		var ok bool
		ok, last = cond()
		return ok
	}) {
		return
	}
	t.Fatalf("waited %v for %s; last saw %s", time.Since(start).Round(time.Millisecond), what, describe(last))
}

func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "nothing"
	case string:
		return v
	case error:
		return "error: " + v.Error()
	}
	return fmt.Sprintf("%v", v)
}
