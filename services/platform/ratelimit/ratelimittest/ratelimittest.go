// Package ratelimittest is the contract suite of ratelimit.Limiter. Every
// adapter runs it from its own tests:
//
//	func TestContract(t *testing.T) {
//		ratelimittest.Run(t, func(t *testing.T) ratelimit.Limiter { return ratelimit.NewMemory() })
//	}
//
// Every case names its buckets after the test and a random number, so
// adapters whose state outlives a test (a shared Redis) need no cleanup
// between cases or runs. The suite runs on the real clock: a case whose
// outcome could change as buckets refill uses a rate slow enough that no
// stall of a loaded machine refills one, or bounds the refill by the time
// it measured.
package ratelimittest

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/ratelimit"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// Run runs the suite. open returns the Limiter under test; it is called
// once per case, and closes what it opened with t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) ratelimit.Limiter) {
	tests := []struct {
		name string
		fn   func(t *testing.T, l ratelimit.Limiter)
	}{
		{"BurstThenRefused", testBurstThenRefused},
		{"KeysAreIndependent", testKeysAreIndependent},
		{"Refills", testRefills},
		{"ConcurrentNeverOverAllows", testConcurrent},
		{"LimitsCoexist", testLimitsCoexist},
		{"InvalidLimit", testInvalidLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// slow is a bucket that refills one token a minute, so that within a case
// it refills nothing. Its rate is fractional on purpose: an adapter whose
// backend counts whole tokens a period must still get it right.
var slow = ratelimit.Limit{Rate: 1.0 / 60, Burst: 3}

// margin absorbs rounding: an adapter may keep time in nanoseconds, or in
// a float of seconds (Redis's Lua).
const margin = time.Millisecond

// key returns a bucket name of the test's own, unique across runs.
func key(t *testing.T, name string) string {
	return fmt.Sprintf("%s/%s/%x", t.Name(), name, rand.Uint64())
}

func allow(t *testing.T, l ratelimit.Limiter, key string, lim ratelimit.Limit) ratelimit.Result {
	t.Helper()
	r, err := l.Allow(t.Context(), key, lim)
	if err != nil {
		t.Fatalf("Allow(%q, %+v): %v", key, lim, err)
	}
	if r.Allowed && r.RetryAfter != 0 {
		t.Errorf("Allow(%q, %+v) = %+v; want RetryAfter 0 on an allowed call", key, lim, r)
	}
	if !r.Allowed && r.RetryAfter <= 0 {
		t.Errorf("Allow(%q, %+v) = %+v; want RetryAfter > 0 on a refused call", key, lim, r)
	}
	return r
}

// interval is how long one token takes to refill.
func interval(lim ratelimit.Limit) time.Duration {
	return time.Duration(float64(time.Second) / lim.Rate)
}

// refilled bounds how many tokens lim refills in d: the whole tokens in d,
// plus one for a token that was partly refilled when d began.
func refilled(lim ratelimit.Limit, d time.Duration) int {
	return int(math.Floor(d.Seconds()*lim.Rate)) + 1
}

// drain takes tokens from key until a call is refused, and returns how
// many were allowed and the refusal.
func drain(t *testing.T, l ratelimit.Limiter, key string, lim ratelimit.Limit) (int, ratelimit.Result) {
	t.Helper()
	// A bucket that refills faster than the calls take never refuses;
	// bound the loop so the failure says so.
	limit := 100 * lim.Burst
	for n := 0; n < limit; n++ {
		if r := allow(t, l, key, lim); !r.Allowed {
			return n, r
		}
	}
	t.Fatalf("Allow(%q, %+v) allowed %d calls in a row; want a refusal after about %d", key, lim, limit, lim.Burst)
	return 0, ratelimit.Result{}
}

// testBurstThenRefused: a fresh bucket allows Burst calls at once and
// refuses the next, saying when one token will be back: within one refill
// interval, and no sooner than the interval less the time the burst took.
func testBurstThenRefused(t *testing.T, l ratelimit.Limiter) {
	k := key(t, "a")
	start := time.Now()
	for i := range slow.Burst {
		if r := allow(t, l, k, slow); !r.Allowed {
			t.Fatalf("call %d of a burst of %d = %+v; want allowed", i+1, slow.Burst, r)
		}
	}
	r := allow(t, l, k, slow)
	elapsed := time.Since(start)
	if r.Allowed {
		t.Fatalf("call %d after a burst of %d = %+v; want refused", slow.Burst+1, slow.Burst, r)
	}
	iv := interval(slow)
	if r.RetryAfter > iv+margin || r.RetryAfter < iv-elapsed-margin {
		t.Errorf("refused call's RetryAfter = %v; want within [%v, %v]: one token's refill, less the %v the burst took",
			r.RetryAfter, iv-elapsed, iv, elapsed)
	}
	// A refusal takes no token, so the next one says the same, less the
	// time between them.
	r2 := allow(t, l, k, slow)
	if r2.Allowed || r2.RetryAfter > r.RetryAfter+margin {
		t.Errorf("second refused call = %+v; want refused with RetryAfter <= %v: a refusal must not take a token", r2, r.RetryAfter)
	}
}

// testKeysAreIndependent: exhausting one key's bucket never refuses
// another's.
func testKeysAreIndependent(t *testing.T, l ratelimit.Limiter) {
	a, b := key(t, "a"), key(t, "b")
	if n, _ := drain(t, l, a, slow); n != slow.Burst {
		t.Fatalf("%q allowed %d calls before a refusal; want Burst %d", a, n, slow.Burst)
	}
	for i := range slow.Burst {
		if r := allow(t, l, b, slow); !r.Allowed {
			t.Fatalf("call %d on %q, after %q was exhausted, = %+v; want allowed", i+1, b, a, r)
		}
	}
	if r := allow(t, l, a, slow); r.Allowed {
		t.Errorf("%q after %q's burst = %+v; want still refused", a, b, r)
	}
}

// testRefills: once a refused bucket has had time to refill, calls are
// allowed again, and only as many as it refilled.
func testRefills(t *testing.T, l ratelimit.Limiter) {
	lim := ratelimit.Limit{Rate: 20, Burst: 2}
	k := key(t, "a")
	drain(t, l, k, lim)
	// Polling also checks that refusals take no tokens: if they did, a
	// poll every Interval would keep a 20-a-second bucket empty.
	waitfor.Until(t, waitfor.Deadline, "a refused bucket to refill and allow a call", func() (bool, any) {
		r := allow(t, l, k, lim)
		return r.Allowed, fmt.Sprintf("%+v", r)
	})
}

// testConcurrent: many goroutines taking from one bucket at once are
// allowed its Burst, plus what it refilled while they ran, and never more.
func testConcurrent(t *testing.T, l ratelimit.Limiter) {
	const goroutines, calls = 32, 20
	lim := ratelimit.Limit{Rate: 5, Burst: 40}
	k := key(t, "a")
	var allowed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	ctx := t.Context()
	start := time.Now()
	for range goroutines {
		wg.Go(func() {
			for range calls {
				r, err := l.Allow(ctx, k, lim)
				if err != nil {
					errs <- err
					return
				}
				if r.Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Allow(%q): %v", k, err)
	}
	got := int(allowed.Load())
	most := lim.Burst + refilled(lim, elapsed)
	if got < lim.Burst || got > most {
		t.Errorf("%d goroutines x %d calls in %v were allowed %d; want from Burst %d to %d (Burst plus what refilled)",
			goroutines, calls, elapsed, got, lim.Burst, most)
	}
}

// testLimitsCoexist: buckets under different limits, used in turn, each
// keep their own Burst and refill interval.
func testLimitsCoexist(t *testing.T, l ratelimit.Limiter) {
	limits := []ratelimit.Limit{
		{Rate: 1.0 / 60, Burst: 1},
		{Rate: 0.5, Burst: 4},
		{Rate: 2.5, Burst: 7},
		{Rate: 3, Burst: 10},
	}
	keys := make([]string, len(limits))
	for i := range limits {
		keys[i] = key(t, fmt.Sprint(i))
	}
	allowed := make([]int, len(limits))
	refused := make([]bool, len(limits))
	refusal := make([]ratelimit.Result, len(limits))
	start := time.Now()
	// Round robin until every bucket has refused once: the buckets' calls
	// interleave, as different users' do.
	for round := 0; slices.Contains(refused, false); round++ {
		if round > 100 {
			t.Fatalf("after %d rounds, allowed %v and refused %v; want every bucket refused after about its Burst", round, allowed, refused)
		}
		for i, lim := range limits {
			if refused[i] {
				continue
			}
			if r := allow(t, l, keys[i], lim); r.Allowed {
				allowed[i]++
			} else {
				refused[i], refusal[i] = true, r
			}
		}
	}
	elapsed := time.Since(start)
	for i, lim := range limits {
		if most := lim.Burst + refilled(lim, elapsed); allowed[i] < lim.Burst || allowed[i] > most {
			t.Errorf("bucket %+v allowed %d calls before a refusal; want from %d to %d", lim, allowed[i], lim.Burst, most)
		}
		if iv := interval(lim); refusal[i].RetryAfter > iv+margin {
			t.Errorf("bucket %+v refused with RetryAfter %v; want at most its refill interval %v", lim, refusal[i].RetryAfter, iv)
		}
	}
}

// testInvalidLimit: a Limit that cannot be a bucket is an error, and not
// one that blames the backend.
func testInvalidLimit(t *testing.T, l ratelimit.Limiter) {
	for _, lim := range []ratelimit.Limit{
		{Rate: 0, Burst: 1},
		{Rate: -1, Burst: 1},
		{Rate: math.NaN(), Burst: 1},
		{Rate: math.Inf(1), Burst: 1},
		{Rate: 1, Burst: 0},
	} {
		r, err := l.Allow(t.Context(), key(t, "a"), lim)
		if err == nil || errors.Is(err, feed.ErrUnavailable) {
			t.Errorf("Allow with %+v = %+v, %v; want an error that is not feed.ErrUnavailable", lim, r, err)
		}
	}
}
