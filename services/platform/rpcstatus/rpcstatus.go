// Package rpcstatus maps Herald's domain errors to gRPC status codes. It is
// the one place where that mapping lives; every rpc layer calls From.
package rpcstatus

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/pagetoken"
)

// From returns the gRPC status error for err. nil stays nil.
func From(err error) error {
	if err == nil {
		return nil
	}
	var inv *feed.InvalidError
	switch {
	case errors.As(err, &inv):
		return status.Error(codes.InvalidArgument, inv.Error())
	case errors.Is(err, pagetoken.ErrInvalid):
		return status.Error(codes.InvalidArgument, "invalid page_token: "+err.Error())
	case errors.Is(err, feed.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, feed.ErrPermissionDenied):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, feed.ErrResourceExhausted):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, feed.ErrFailedPrecondition):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, feed.ErrDataLoss):
		return status.Error(codes.DataLoss, err.Error())
	case errors.Is(err, feed.ErrUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Internal, err.Error())
}

// Unwrap turns a status error received from a peer Herald service back into
// a domain error, so that it can be wrapped and mapped again on the way out
// instead of turning into INTERNAL.
func Unwrap(service string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.NotFound:
		return feed.ErrNotFound
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return feed.Unavailable(service, err)
	}
	return err
}
