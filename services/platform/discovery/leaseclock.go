package discovery

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// LeaseClock says, by this process's own clock, whether a lease is still
// certainly alive. A lease holder cannot learn in time that etcd expired
// its lease: a process paused (a GC pause, SIGSTOP, a stalled VM) past the
// TTL resumes believing it still holds whatever the lease guarded, while
// another process may already hold it (Jepsen's etcd 3.4.3 analysis). The
// session's Done channel closes only once the client has noticed. So the
// clock renews the lease itself, and counts each renewal from the moment
// its request was sent: etcd restarts the TTL no earlier than that, so
// the lease lives at least until send + TTL. Valid is true only before
// that bound, less a margin for the two clocks' drift, and a process that
// slept past it finds it false the moment it wakes, before it acts.
type LeaseClock struct {
	cli    *clientv3.Client
	lease  clientv3.LeaseID
	margin time.Duration
	now    func() time.Time

	mu    sync.Mutex
	until time.Time // the lease lives at least until then, by our clock
	gone  bool      // etcd said the lease no longer exists
}

// ErrLeaseGone is Renew's error once etcd says the lease no longer exists.
var ErrLeaseGone = errors.New("lease no longer exists")

// NewLeaseClock returns a clock for lease, valid until granted + ttl less
// the margin: granted is a time at or before the lease's grant or last
// renewal (a session's start, say). The margin is a tenth of the TTL, and
// at least 500 ms.
func NewLeaseClock(cli *clientv3.Client, lease clientv3.LeaseID, ttl time.Duration, granted time.Time) *LeaseClock {
	c := &LeaseClock{cli: cli, lease: lease, margin: max(ttl/10, 500*time.Millisecond), now: time.Now}
	c.until = granted.Add(ttl)
	return c
}

// Valid says whether the lease is certainly alive now, and until when it
// is by the last renewal.
func (c *LeaseClock) Valid() (bool, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	until := c.until.Add(-c.margin)
	return !c.gone && c.now().Before(until), until
}

// Renew renews the lease once and moves the bound to the request's send
// time plus the TTL etcd granted. Once etcd says the lease is gone it
// returns ErrLeaseGone, and Valid stays false.
func (c *LeaseClock) Renew(ctx context.Context) error {
	sent := c.now()
	resp, err := c.cli.KeepAliveOnce(ctx, c.lease)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		c.gone = true
		return ErrLeaseGone
	case err != nil:
		return err
	case resp.TTL <= 0:
		c.gone = true
		return ErrLeaseGone
	}
	if until := sent.Add(time.Duration(resp.TTL) * time.Second); until.After(c.until) {
		c.until = until
	}
	return nil
}

// Run renews the lease every quarter of ttl until ctx ends or the lease is
// gone, so that a renewal late by up to half the TTL leaves the bound
// ahead. A failed renewal is retried at the next tick: meanwhile Valid
// turns false by itself once the last bound passes.
func (c *LeaseClock) Run(ctx context.Context, ttl time.Duration) error {
	t := time.NewTicker(max(ttl/4, 100*time.Millisecond))
	defer t.Stop()
	for {
		// Each renewal may take up to half the TTL: its send time is what
		// moves the bound, so a slow answer costs nothing, and one cut
		// short on a loaded machine would leave the bound to lapse.
		rctx, cancel := context.WithTimeout(ctx, max(ttl/2, time.Second))
		err := c.Renew(rctx)
		cancel()
		if errors.Is(err, ErrLeaseGone) {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
