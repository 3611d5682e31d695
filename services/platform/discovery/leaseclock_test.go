package discovery

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestLeaseClock: the clock is valid after a grant and each renewal, turns
// invalid by itself once its bound passes with no renewal (what a process
// paused past its TTL sees when it wakes, whatever its session believes),
// comes back with a renewal while etcd still has the lease, and stays
// invalid once etcd has revoked it.
func TestLeaseClock(t *testing.T) {
	cli := startEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const ttl = 5 * time.Second
	granted := time.Now()
	lease, err := cli.Grant(ctx, int64(ttl/time.Second))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := NewLeaseClock(cli, lease.ID, ttl, granted)
	c.now = func() time.Time { return now }

	ok, until := c.Valid()
	if !ok {
		t.Fatalf("Valid() right after the grant = false (until %v)", until)
	}
	if want := granted.Add(ttl - c.margin); !until.Equal(want) {
		t.Errorf("bound after the grant = %v; want the grant's time + TTL - margin = %v", until, want)
	}

	// A pause past the bound: no renewal ran meanwhile.
	now = until.Add(time.Millisecond)
	if ok, _ := c.Valid(); ok {
		t.Fatal("Valid() past the bound with no renewal = true; want false")
	}
	// etcd still has the lease (the pause was on the clock only): a
	// renewal sent now makes it valid until now + TTL - margin.
	if err := c.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	ok, until = c.Valid()
	if want := now.Add(ttl - c.margin); !ok || !until.Equal(want) {
		t.Errorf("after a renewal Valid() = %v, %v; want true, %v (the request's send time + TTL - margin)", ok, until, want)
	}

	// etcd expires the lease (here: revokes it): the next renewal says so,
	// and the clock stays invalid even before its bound.
	if _, err := cli.Revoke(ctx, lease.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.Renew(ctx); !errors.Is(err, ErrLeaseGone) {
		t.Fatalf("Renew after a revoke = %v; want ErrLeaseGone", err)
	}
	if ok, _ := c.Valid(); ok {
		t.Error("Valid() after etcd lost the lease = true; want false")
	}
	if err := c.Run(ctx, ttl); !errors.Is(err, ErrLeaseGone) {
		t.Errorf("Run on a lost lease = %v; want ErrLeaseGone at once", err)
	}
}
