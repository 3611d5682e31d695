package feed

import (
	"errors"
	"fmt"
)

// Sentinel errors. Adapters and services wrap them with %w; the rpc layer
// maps them to gRPC codes in one place (see package rpcstatus).
var (
	// ErrNotFound means the named thing does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable means a backend (store, cache, bus, peer service) could
	// not be reached. Callers may retry.
	ErrUnavailable = errors.New("unavailable")
	// ErrPermissionDenied means the caller may not change the thing.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrDataLoss means stored data is corrupt: no retry can read it, so
	// unlike ErrUnavailable it is not worth one.
	ErrDataLoss = errors.New("data loss")
	// ErrResourceExhausted means a per-user or per-instance limit refused
	// the call (open streams, for example). Callers may retry later.
	ErrResourceExhausted = errors.New("resource exhausted")
	// ErrFailedPrecondition means the call is valid but the state it would
	// change refuses it (a user at the following limit, for example); a
	// retry fails the same way until that state changes.
	ErrFailedPrecondition = errors.New("failed precondition")
)

// InvalidError reports bad input in one named request field.
type InvalidError struct {
	Field  string
	Reason string
}

func (e *InvalidError) Error() string { return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason) }

// Invalid returns an *InvalidError for field.
func Invalid(field, reason string) error { return &InvalidError{Field: field, Reason: reason} }

// DataLoss wraps err, a corrupt record in the named backend, as
// ErrDataLoss.
func DataLoss(backend string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrDataLoss, backend, err)
}

// Unavailable wraps err, from the named backend, as ErrUnavailable.
func Unavailable(backend string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, backend, err)
}
