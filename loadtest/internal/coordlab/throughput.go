package coordlab

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ThroughputResult is one throughput cell: InFlight workers, each issuing
// one operation at a time, for at most a number of operations or a time.
type ThroughputResult struct {
	System    string  `json:"system"`
	Op        string  `json:"op"`
	InFlight  int     `json:"in_flight"`
	Ops       int     `json:"ops"`
	Errors    int     `json:"errors"`
	Seconds   float64 `json:"seconds"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	// FirstError is the first failed operation's error, if any failed.
	FirstError string `json:"first_error,omitempty"`
}

// MeasureThroughput runs op from inFlight workers (closed loop: a worker
// issues its next operation when the last one returns) until maxOps
// operations have started or maxDur has passed. op gets the worker's index
// and the operation's sequence number.
func MeasureThroughput(ctx context.Context, system, name string, inFlight, maxOps int, maxDur time.Duration, op func(ctx context.Context, worker, i int) error) ThroughputResult {
	res := ThroughputResult{System: system, Op: name, InFlight: inFlight}
	// A timer, not a deadline, ends the cell (see MeasureHandoffs).
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer time.AfterFunc(maxDur, cancel).Stop()
	var (
		next     atomic.Int64
		mu       sync.Mutex
		all      []time.Duration
		errs     int
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	for w := range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			bad := 0
			var werr error
			for ctx.Err() == nil {
				i := int(next.Add(1))
				if i > maxOps {
					break
				}
				t0 := time.Now()
				if err := op(ctx, w, i); err != nil {
					if ctx.Err() != nil {
						break // cut off by the deadline: not a failure
					}
					bad++
					if werr == nil {
						werr = err
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			errs += bad
			if firstErr == nil {
				firstErr = werr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(all)
	res.Ops, res.Errors = len(all), errs
	res.Seconds = elapsed.Seconds()
	if res.Seconds > 0 {
		res.OpsPerSec = float64(res.Ops) / res.Seconds
	}
	res.P50Ms, res.P99Ms = ms(quantile(all, 0.50)), ms(quantile(all, 0.99))
	if firstErr != nil {
		res.FirstError = firstErr.Error()
	}
	return res
}
