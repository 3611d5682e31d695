package coordlab

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// CountWatchEvents makes every watch opened through cli, by the caller or
// by the concurrency package's Mutex and Election, add one to n for each
// watch response that carries events: one delivery, which wakes the
// client once, as one ZooKeeper watch event does. (etcd can batch several
// events into one response, say a DELETE and the next holder's PUT.) Call
// it before the client is shared.
func CountWatchEvents(cli *clientv3.Client, n *atomic.Int64) {
	cli.Watcher = countingWatcher{Watcher: cli.Watcher, n: n}
}

type countingWatcher struct {
	clientv3.Watcher
	n *atomic.Int64
}

func (w countingWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	in := w.Watcher.Watch(ctx, key, opts...)
	out := make(chan clientv3.WatchResponse)
	go func() {
		defer close(out)
		for wr := range in {
			if len(wr.Events) > 0 {
				w.n.Add(1)
			}
			select {
			case out <- wr:
			case <-ctx.Done():
				// The reader has gone; drain until the watcher closes in.
				for range in {
				}
				return
			}
		}
	}()
	return out
}

// EtcdMutex is etcd's lock recipe, concurrency.Mutex: each client puts a
// key under the prefix, attached to its session's lease; the key with the
// lowest create revision holds the lock, and each waiter watches the
// deletion of the key just before its own. A crashed client's key goes when
// its lease expires. The fencing token is the holder's key's create
// revision, which etcd's lock documentation recommends: it is unique and
// strictly greater for every later holder.
type EtcdMutex struct {
	m *concurrency.Mutex
}

// NewEtcdMutex returns a lock on prefix held through session s. A session
// holds at most one lock on one prefix at a time.
func NewEtcdMutex(s *concurrency.Session, prefix string) *EtcdMutex {
	return &EtcdMutex{m: concurrency.NewMutex(s, prefix)}
}

// Lock implements Locker.
func (l *EtcdMutex) Lock(ctx context.Context) (int64, error) {
	if err := l.m.Lock(ctx); err != nil {
		if errors.Is(err, concurrency.ErrSessionExpired) {
			return 0, fmt.Errorf("etcd mutex %s: %w", l.m.Key(), ErrLockLost)
		}
		return 0, fmt.Errorf("etcd mutex: %w", err)
	}
	// IsOwner is the comparison "my key's create revision = the one I
	// got": the token without another round trip.
	owner := l.m.IsOwner()
	return owner.GetCompare().GetCreateRevision(), nil
}

// Unlock implements Locker.
func (l *EtcdMutex) Unlock(ctx context.Context) error {
	err := l.m.Unlock(ctx)
	if errors.Is(err, concurrency.ErrLockReleased) {
		return ErrNotHeld
	}
	if err != nil {
		return fmt.Errorf("etcd mutex: %w", err)
	}
	return nil
}

// EtcdNaiveLock is the naive lock on etcd: a transaction puts the key if it
// does not exist (create revision 0), attached to the session's lease;
// otherwise the client watches the key and tries again when it is deleted.
// Every waiter watches the same key, so every release wakes all of them:
// the herd effect. The fencing token is the key's create revision.
type EtcdNaiveLock struct {
	s   *concurrency.Session
	key string
	rev int64
}

// NewEtcdNaiveLock returns a naive lock on key, held through session s.
func NewEtcdNaiveLock(s *concurrency.Session, key string) *EtcdNaiveLock {
	return &EtcdNaiveLock{s: s, key: key}
}

// Lock implements Locker.
func (l *EtcdNaiveLock) Lock(ctx context.Context) (int64, error) {
	if l.rev != 0 {
		return 0, fmt.Errorf("etcd naive lock %s: already held by this client", l.key)
	}
	cli := l.s.Client()
	for {
		resp, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(l.key), "=", 0)).
			Then(clientv3.OpPut(l.key, "", clientv3.WithLease(l.s.Lease()))).
			Commit()
		if err != nil {
			return 0, fmt.Errorf("etcd naive lock %s: %w", l.key, err)
		}
		if resp.Succeeded {
			l.rev = resp.Header.Revision
			return l.rev, nil
		}
		if err := waitDeleted(ctx, cli, l.key, resp.Header.Revision+1); err != nil {
			return 0, fmt.Errorf("etcd naive lock %s: %w", l.key, err)
		}
	}
}

// waitDeleted watches key from revision rev until it is deleted. Starting
// at the revision after the failed transaction means a delete that came in
// between is not missed.
func waitDeleted(ctx context.Context, cli *clientv3.Client, key string, rev int64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range cli.Watch(wctx, key, clientv3.WithRev(rev)) {
		if err := wr.Err(); err != nil {
			return err
		}
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.DELETE {
				return nil
			}
		}
	}
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return errors.New("watch ended before the key was deleted")
}

// Unlock implements Locker: deletes the key if it is still ours (same
// create revision), so that a holder whose lease expired cannot delete the
// next holder's key.
func (l *EtcdNaiveLock) Unlock(ctx context.Context) error {
	if l.rev == 0 {
		return ErrNotHeld
	}
	rev := l.rev
	l.rev = 0
	resp, err := l.s.Client().Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(l.key), "=", rev)).
		Then(clientv3.OpDelete(l.key)).
		Commit()
	if err != nil {
		return fmt.Errorf("etcd naive lock %s: %w", l.key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("etcd naive lock %s: %w", l.key, ErrLockLost)
	}
	return nil
}

// EtcdElection is etcd's election recipe, concurrency.Election: the same
// queue of leased keys as the Mutex, each holding its candidate's ID. The
// term is the leader key's create revision.
type EtcdElection struct {
	e  *concurrency.Election
	id string
}

// NewEtcdElection returns candidate id in the election on prefix, through
// session s.
func NewEtcdElection(s *concurrency.Session, prefix, id string) *EtcdElection {
	return &EtcdElection{e: concurrency.NewElection(s, prefix), id: id}
}

// Campaign implements Elector.
func (e *EtcdElection) Campaign(ctx context.Context) (int64, error) {
	if err := e.e.Campaign(ctx, e.id); err != nil {
		return 0, fmt.Errorf("etcd election, candidate %s: %w", e.id, err)
	}
	return e.e.Rev(), nil
}

// Resign implements Elector.
func (e *EtcdElection) Resign(ctx context.Context) error {
	if e.e.Key() == "" {
		return ErrNotHeld
	}
	if err := e.e.Resign(ctx); err != nil {
		return fmt.Errorf("etcd election, candidate %s: %w", e.id, err)
	}
	return nil
}

// Leader implements Elector.
func (e *EtcdElection) Leader(ctx context.Context) (string, error) {
	resp, err := e.e.Leader(ctx)
	if errors.Is(err, concurrency.ErrElectionNoLeader) {
		return "", ErrNoLeader
	}
	if err != nil {
		return "", fmt.Errorf("etcd election leader: %w", err)
	}
	return string(resp.Kvs[0].Value), nil
}
