package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/herald-feed/herald/services/platform/discovery"
)

// Lease is one etcd session of the process: its lease holds the
// registrations, the post service's worker ID and the elections, and its
// clock says by this process's own clock whether the lease is certainly
// alive (discovery.LeaseClock).
//
// A process outlives a lease. When the session ends (etcd expired the
// lease, or the client gave it up after a TTL without an answer: a lost
// quorum, a partition, a long pause), the process keeps serving the calls
// that need no lease, and takes a new lease as soon as etcd answers
// again: it revokes the old one (whatever it still held goes), runs the
// OnLease hooks with the new one (the post service claims a worker ID
// again), and registers its services again.
type Lease struct {
	Session *concurrency.Session
	Clock   *discovery.LeaseClock

	stop     context.CancelFunc // ends the clock's renewals
	replaced chan struct{}      // closed when a newer lease takes its place
}

// Done is closed once the lease's session has ended.
func (l *Lease) Done() <-chan struct{} { return l.Session.Done() }

// Lost reports whether the session has ended.
func (l *Lease) Lost() bool {
	select {
	case <-l.Session.Done():
		return true
	default:
		return false
	}
}

// Lease returns the process's current lease: its first, or the newest
// it took after losing one. It may be lost already; Lease.Done says so.
func (n *Node) Lease() *Lease {
	n.leaseMu.Lock()
	defer n.leaseMu.Unlock()
	return n.lease
}

// NextLease waits until a lease newer than l is the current one, and
// returns it; or ctx's error.
func (n *Node) NextLease(ctx context.Context, l *Lease) (*Lease, error) {
	select {
	case <-l.replaced:
		return n.Lease(), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// OnLease runs f with the current lease at once, returning its error, and
// then with each lease the process takes after losing one, before it
// registers its services under it. An error from a later call makes the
// process drop that lease and try a new one.
func (n *Node) OnLease(ctx context.Context, f func(ctx context.Context, l *Lease) error) error {
	n.leaseHooks = append(n.leaseHooks, f)
	return f(ctx, n.Lease())
}

// newLease starts a session with the configured TTL, and its clock.
func (n *Node) newLease(ctx context.Context) (*Lease, error) {
	granted := time.Now() // no later than etcd grants the lease
	// The session's keep-alives run until Close, not until the shutdown
	// signal: see Node.Lease.
	life, stop := context.WithCancel(context.WithoutCancel(n.life))
	sess, err := discovery.StartSession(ctx, life, n.Etcd, n.cfg.LeaseTTL)
	if err != nil {
		stop()
		return nil, err
	}
	ttl := max(n.cfg.LeaseTTL.Truncate(time.Second), time.Second) // as NewSession grants it
	clock := discovery.NewLeaseClock(n.Etcd, sess.Lease(), ttl, granted)
	go clock.Run(life, ttl)
	return &Lease{Session: sess, Clock: clock, stop: stop, replaced: make(chan struct{})}, nil
}

// release ends l's renewals and revokes its lease, within a short bound:
// Session.Close waits up to the TTL for etcd, and if etcd is away the
// lease expires anyway.
func (n *Node) release(l *Lease) {
	l.stop()
	l.Session.Orphan()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n.Etcd.Revoke(ctx, l.Session.Lease())
}

// renewLease replaces the lost lease old: it tries, with growing pauses,
// until a new session is granted, the OnLease hooks accept it, and the
// services are registered under it. It returns only then, or with ctx's
// error, or done's if done closes first.
func (n *Node) renewLease(ctx context.Context, done <-chan struct{}, old *Lease) error {
	lost := time.Now()
	n.leasesLost.Inc()
	n.Log.Warn("etcd lease lost: serving on, unregistered; taking a new lease", "lease", fmt.Sprintf("%x", old.Session.Lease()))
	wait := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		l, err := n.tryLease(ctx, old)
		if err == nil {
			n.Log.Info("etcd lease renewed: registered again", "lease", fmt.Sprintf("%x", l.Session.Lease()),
				"after", time.Since(lost).Round(time.Millisecond), "attempts", attempt)
			return nil
		}
		n.Log.Warn("taking a new etcd lease", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			return errors.New("stopped while taking a new etcd lease")
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// tryLease makes one attempt of renewLease.
func (n *Node) tryLease(ctx context.Context, old *Lease) (*Lease, error) {
	actx, cancel := context.WithTimeout(ctx, max(n.cfg.LeaseTTL, 5*time.Second))
	defer cancel()
	l, err := n.newLease(actx)
	if err != nil {
		return nil, err
	}
	// What the old lease still holds (if etcd has not expired it yet: the
	// client gave up first) goes now, so that nothing stays registered or
	// claimed under two leases.
	n.release(old)
	for _, f := range n.leaseHooks {
		if err := f(actx, l); err != nil {
			n.release(l)
			return nil, err
		}
	}
	for _, s := range n.services {
		if err := discovery.Register(actx, l.Session, n.cfg.Namespace, s, n.Addr()); err != nil {
			n.release(l)
			return nil, err
		}
	}
	n.leaseMu.Lock()
	prev := n.lease
	n.lease = l
	n.leaseMu.Unlock()
	close(prev.replaced)
	return l, nil
}
