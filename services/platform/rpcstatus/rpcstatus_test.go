package rpcstatus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/pagetoken"
)

func TestFrom(t *testing.T) {
	tests := []struct {
		err  error
		want codes.Code
		msg  string
	}{
		{feed.Invalid("author_id", "must not be empty"), codes.InvalidArgument, "author_id"},
		{fmt.Errorf("create: %w", feed.Invalid("text", "too long")), codes.InvalidArgument, "text"},
		{pagetoken.ErrInvalid, codes.InvalidArgument, "page_token"},
		{fmt.Errorf("post 7: %w", feed.ErrNotFound), codes.NotFound, "post 7"},
		{feed.ErrPermissionDenied, codes.PermissionDenied, ""},
		{feed.Unavailable("pebble", errors.New("disk gone")), codes.Unavailable, "pebble"},
		{fmt.Errorf("%w: at most 8 open streams per user", feed.ErrResourceExhausted), codes.ResourceExhausted, "8 open streams"},
		{fmt.Errorf("%w: follower_id follows 5000 accounts", feed.ErrFailedPrecondition), codes.FailedPrecondition, "follower_id"},
		{context.DeadlineExceeded, codes.DeadlineExceeded, ""},
		{status.Error(codes.Aborted, "x"), codes.Aborted, "x"},
		{errors.New("bug"), codes.Internal, "bug"},
	}
	for _, tt := range tests {
		got := status.Convert(From(tt.err))
		if got.Code() != tt.want || !strings.Contains(got.Message(), tt.msg) {
			t.Errorf("From(%v) = %v %q; want %v containing %q", tt.err, got.Code(), got.Message(), tt.want, tt.msg)
		}
	}
	if From(nil) != nil {
		t.Error("From(nil) != nil")
	}
}

func TestUnwrapRoundTrip(t *testing.T) {
	for _, c := range []codes.Code{codes.Unavailable, codes.DeadlineExceeded} {
		err := Unwrap("graph", status.Error(c, "down"))
		if got := status.Code(From(err)); got != codes.Unavailable {
			t.Errorf("From(Unwrap(%v)) = %v; want Unavailable", c, got)
		}
	}
	if !errors.Is(Unwrap("graph", status.Error(codes.NotFound, "x")), feed.ErrNotFound) {
		t.Error("Unwrap(NotFound) is not feed.ErrNotFound")
	}
}

func TestDataLossIsNotRetryable(t *testing.T) {
	err := From(fmt.Errorf("read post: %w", feed.DataLoss("pebble", errors.New("corrupt post record"))))
	if got := status.Code(err); got != codes.DataLoss {
		t.Errorf("From(corrupt record) code = %v; want DataLoss, which clients do not retry", got)
	}
}
