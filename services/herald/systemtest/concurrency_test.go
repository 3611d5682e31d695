package systemtest

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestEachBoundsAndJoins(t *testing.T) {
	var in, peak atomic.Int32
	items := []int{1, 2, 3, 4, 5, 6, 7, 8}
	err := Each(items, 3, func(i int) error {
		n := in.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		defer in.Add(-1)
		time.Sleep(time.Millisecond) // overlap the calls
		if i%4 == 0 {
			return errors.New("bad " + string(rune('0'+i)))
		}
		return nil
	})
	if peak.Load() > 3 {
		t.Errorf("Each ran %d at once; want at most 3", peak.Load())
	}
	if err == nil || !strings.Contains(err.Error(), "bad 4") || !strings.Contains(err.Error(), "bad 8") {
		t.Errorf("Each error = %v; want both failures joined", err)
	}
}

func TestRetry(t *testing.T) {
	calls := 0
	err := Retry(time.Minute, time.Second, func(_ context.Context, n int) error {
		if calls++; n < 2 {
			return status.Error(codes.Unavailable, "down")
		}
		return nil
	}, nil)
	if err != nil || calls != 3 {
		t.Errorf("Retry over two UNAVAILABLE = %v after %d calls; want nil after 3", err, calls)
	}
	calls = 0
	var failed []error
	err = Retry(time.Minute, time.Second, func(context.Context, int) error {
		calls++
		return status.Error(codes.InvalidArgument, "bad")
	}, func(err error) { failed = append(failed, err) })
	if status.Code(err) != codes.InvalidArgument || calls != 1 || len(failed) != 1 {
		t.Errorf("Retry of INVALID_ARGUMENT = %v after %d calls (%d seen); want it returned at once", err, calls, len(failed))
	}
	err = Retry(0, time.Second, func(context.Context, int) error { return status.Error(codes.Unavailable, "down") }, nil)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "retry budget") {
		t.Errorf("Retry past its budget = %v; want the last UNAVAILABLE, naming the budget", err)
	}
}

// TestRetryRateLimited: a rate-limited attempt is retried after the
// RetryInfo delay; one with no RetryInfo is not retried.
func TestRetryRateLimited(t *testing.T) {
	st, err := status.New(codes.ResourceExhausted, "rate limit").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	err = Retry(time.Minute, time.Second, func(ctx context.Context, n int) error {
		calls++
		if n < 2 {
			return st.Err()
		}
		return nil
	}, nil)
	if err != nil || calls != 3 {
		t.Errorf("Retry over two rate-limited attempts = %v after %d calls; want nil after 3", err, calls)
	}
	calls = 0
	err = Retry(time.Minute, time.Second, func(ctx context.Context, n int) error {
		calls++
		return status.Error(codes.ResourceExhausted, "no retry info")
	}, nil)
	if status.Code(err) != codes.ResourceExhausted || calls != 1 {
		t.Errorf("Retry(ResourceExhausted without RetryInfo) = %v after %d calls; want it returned after 1", err, calls)
	}
}
