package coordlab

import (
	"context"
	"errors"
)

// Locker is a distributed mutual-exclusion lock as one client holds it.
// Lock blocks until this client holds the lock or ctx ends, and returns the
// lock's fencing token: a number that is strictly greater for every later
// holder, so that a resource can refuse a holder whose lock has passed on.
// A Locker is used by one goroutine at a time and holds the lock at most
// once.
type Locker interface {
	Lock(ctx context.Context) (token int64, err error)
	Unlock(ctx context.Context) error
}

// Elector is one candidate in a leader election. Campaign blocks until the
// candidate leads or ctx ends, and returns its term, which is strictly
// greater for every later leader (a fencing token for what the leader
// does). Resign gives the leadership up. Leader says which candidate leads
// now, by the ID the candidate was made with.
type Elector interface {
	Campaign(ctx context.Context) (term int64, err error)
	Resign(ctx context.Context) error
	Leader(ctx context.Context) (id string, err error)
}

var (
	// ErrNotHeld is returned by Unlock or Resign when this client does not
	// hold the lock or lead.
	ErrNotHeld = errors.New("coordlab: lock not held")
	// ErrLockLost is returned when this client's session or lease ended
	// while it held the lock or led: the lock may already be someone
	// else's.
	ErrLockLost = errors.New("coordlab: lock lost: the session or lease ended")
	// ErrNoLeader is returned by Leader when no candidate leads.
	ErrNoLeader = errors.New("coordlab: no leader")
)
