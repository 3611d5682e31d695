// Package schedule issues requests open-loop: each request has an intended
// start time fixed in advance by the rate, and is started then whether or
// not earlier requests have finished. Latency measured from the intended
// start includes any time a request spent waiting to be issued, so a stalled
// server cannot hide its stall by slowing the load down (coordinated
// omission).
package schedule

import (
	"context"
	"sync"
	"time"
)

// Schedule is a constant-rate timeline of requests starting at Start.
type Schedule struct {
	Start time.Time
	Rate  float64 // requests per second; 0 means none
}

// At returns the intended start of request i (from 0).
func (s Schedule) At(i int) time.Time {
	return s.Start.Add(time.Duration(float64(i) * float64(time.Second) / s.Rate))
}

// Count returns how many requests fall within d of Start.
func (s Schedule) Count(d time.Duration) int {
	if s.Rate <= 0 || d <= 0 {
		return 0
	}
	n := int(s.Rate * d.Seconds())
	// Floating point can put request n exactly at d; it belongs to the
	// next window.
	for n > 0 && !s.At(n-1).Before(s.Start.Add(d)) {
		n--
	}
	for s.At(n).Before(s.Start.Add(d)) {
		n++
	}
	return n
}

// Result says how a Run ended.
type Result struct {
	Scheduled int // requests whose intended start fell within the run
	Issued    int // requests actually started
}

// Run calls fire(i, intended) in a new goroutine for each of the n requests,
// at its intended time or as soon after it as a slot is free: at most
// maxInFlight run at once (0 means no limit). fire must call done when the
// request has finished. Run stops issuing when all n are issued or ctx
// ends, and returns once every fire it started has returned, so that no
// request outlives it: ending ctx does not end the requests in flight.
func (s Schedule) Run(ctx context.Context, n, maxInFlight int, fire func(i int, intended time.Time, done func())) Result {
	var fired sync.WaitGroup
	defer fired.Wait()
	res := Result{Scheduled: n}
	var slots chan struct{}
	if maxInFlight > 0 {
		slots = make(chan struct{}, maxInFlight)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for i := range n {
		at := s.At(i)
		if d := time.Until(at); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return res
			case <-timer.C:
			}
		}
		if slots != nil {
			// Waiting for a slot does not move the intended start: the
			// wait is counted in the request's latency.
			select {
			case <-ctx.Done():
				return res
			case slots <- struct{}{}:
			}
		} else if ctx.Err() != nil {
			return res
		}
		done := func() {}
		if slots != nil {
			done = func() { <-slots }
		}
		res.Issued++
		fired.Go(func() { fire(i, at, done) })
	}
	return res
}
