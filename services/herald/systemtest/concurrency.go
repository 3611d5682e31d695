package systemtest

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Each runs fn on every item, at most limit at a time, and returns every
// error, joined. It is the test kits' one bounded-concurrency loop.
func Each[T any](items []T, limit int, fn func(T) error) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, max(limit, 1))
	)
	for _, it := range items {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(it); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Retry is the test kits' one retry loop. It calls fn, each attempt under
// a context of its own bounded by attempt, until fn succeeds, fails with a
// code other than UNAVAILABLE or DEADLINE_EXCEEDED (which it returns), or
// budget has passed since the first attempt. A RESOURCE_EXHAUSTED with
// a google.rpc.RetryInfo (a rate limit) is retried after its delay. Between attempts it backs off
// 100 ms, 200 ms, ... up to 1 s. fn learns the attempt's number, from 0,
// so that it can tell "an earlier attempt did it" from a first failure;
// failed, if not nil, sees each failed attempt's error.
//
// Retrying is safe only for calls that may be repeated: a post with an
// idempotency key, a follow, a read.
func Retry(budget, attempt time.Duration, fn func(ctx context.Context, n int) error, failed func(error)) error {
	start := time.Now()
	for n := 0; ; n++ {
		ctx, cancel := context.WithTimeout(context.Background(), attempt)
		err := fn(ctx, n)
		cancel()
		if err == nil {
			return nil
		}
		if failed != nil {
			failed(err)
		}
		wait := min(time.Duration(n+1)*100*time.Millisecond, time.Second)
		switch status.Code(err) {
		case codes.Unavailable, codes.DeadlineExceeded:
		case codes.ResourceExhausted:
			// A rate limit: wait as long as the server says.
			d, ok := RetryDelay(err)
			if !ok {
				return err
			}
			wait = d
		default:
			return err
		}
		if time.Since(start) > budget {
			return errors.Join(errors.New("still failing after the retry budget"), err)
		}
		time.Sleep(wait)
	}
}

// RetryDelay returns the delay of err's google.rpc.RetryInfo detail, and
// false if it has none.
func RetryDelay(err error) (time.Duration, bool) {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}
