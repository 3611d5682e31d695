package coordlab

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
)

// The lab's znodes are open to every client: the servers listen on
// loopback only and hold throwaway data.
var openACL = zk.WorldACL(zk.PermAll)

// DialZK opens a ZooKeeper session with the servers (host:port) and waits
// until the session is established, or ctx ends. The client picks one server
// at random and moves to another if it loses it. The server clamps
// sessionTimeout to its minSessionTimeout..maxSessionTimeout (1 s to 30 s in
// deploy/local/zookeeper/zk.cfg).
func DialZK(ctx context.Context, servers []string, sessionTimeout time.Duration) (*zk.Conn, error) {
	conn, events, err := zk.Connect(servers, sessionTimeout, zk.WithLogInfo(false), zk.WithLogger(quietZKLogger{}))
	if err != nil {
		return nil, fmt.Errorf("zookeeper %s: %w", strings.Join(servers, ","), err)
	}
	for {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				return conn, nil
			}
		case <-ctx.Done():
			conn.Close()
			return nil, fmt.Errorf("zookeeper %s: no session: %w", strings.Join(servers, ","), context.Cause(ctx))
		}
	}
}

// quietZKLogger drops the client's log lines (reconnects, loops ending):
// the lab reports what a recipe sees through its errors instead.
type quietZKLogger struct{}

func (quietZKLogger) Printf(string, ...any) {}

// EnsureZKPath creates p and its missing parents as persistent znodes.
func EnsureZKPath(conn *zk.Conn, p string) error {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	cur := ""
	for _, part := range parts {
		cur += "/" + part
		_, err := conn.Create(cur, nil, 0, openACL)
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("create znode %s: %w", cur, err)
		}
	}
	return nil
}

// DeleteZKTree deletes p and everything under it, children first.
func DeleteZKTree(conn *zk.Conn, p string) error {
	children, _, err := conn.Children(p)
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list znode %s: %w", p, err)
	}
	for _, c := range children {
		if err := DeleteZKTree(conn, path.Join(p, c)); err != nil {
			return err
		}
	}
	if err := conn.Delete(p, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("delete znode %s: %w", p, err)
	}
	return nil
}

// zkQueue is ZooKeeper's queue recipe, which both the lock and the election
// use: each client creates an EPHEMERAL_SEQUENTIAL child of dir; the child
// with the lowest sequence number is first (holds the lock, leads); every
// other client watches only the child just before its own, so a release
// wakes one client, not all of them. An ephemeral child goes when its
// session does, so a crashed client's place is given up after the session
// timeout.
type zkQueue struct {
	conn   *zk.Conn
	dir    string
	prefix string // of the children's names: "lock-", "candidate-"
	events *atomic.Int64
}

// seqOf returns the sequence number ZooKeeper appended to a child's name
// (always the last ten digits).
func seqOf(name string) (int64, bool) {
	if len(name) < 10 {
		return 0, false
	}
	n, err := strconv.ParseInt(name[len(name)-10:], 10, 64)
	return n, err == nil
}

// enqueue creates this client's child and returns its path and creation
// zxid. The protected create (a GUID in the name) finds the child again if
// the connection drops before the reply arrives, instead of leaving an
// orphan ahead of us in the queue.
func (q *zkQueue) enqueue(data []byte) (node string, czxid int64, err error) {
	node, err = q.conn.CreateProtectedEphemeralSequential(q.dir+"/"+q.prefix, data, openACL)
	if errors.Is(err, zk.ErrNoNode) {
		if err = EnsureZKPath(q.conn, q.dir); err != nil {
			return "", 0, err
		}
		node, err = q.conn.CreateProtectedEphemeralSequential(q.dir+"/"+q.prefix, data, openACL)
	}
	if err != nil {
		return "", 0, fmt.Errorf("create ephemeral-sequential %s child of %s: %w", q.prefix, q.dir, err)
	}
	ok, st, err := q.conn.Exists(node)
	if err != nil {
		return "", 0, fmt.Errorf("stat %s: %w", node, err)
	}
	if !ok {
		return "", 0, fmt.Errorf("%s: %w", node, ErrLockLost)
	}
	return node, st.Czxid, nil
}

// sortedChildren returns dir's children that belong to this queue, lowest
// sequence number first.
func (q *zkQueue) sortedChildren() ([]string, error) {
	children, _, err := q.conn.Children(q.dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", q.dir, err)
	}
	mine := children[:0]
	for _, c := range children {
		if _, ok := seqOf(c); ok && strings.Contains(c, q.prefix) {
			mine = append(mine, c)
		}
	}
	slices.SortFunc(mine, func(a, b string) int {
		sa, _ := seqOf(a)
		sb, _ := seqOf(b)
		return cmp.Compare(sa, sb)
	})
	return mine, nil
}

// waitFirst blocks until node is the queue's first child, or ctx ends.
func (q *zkQueue) waitFirst(ctx context.Context, node string) error {
	me := path.Base(node)
	for {
		children, err := q.sortedChildren()
		if err != nil {
			return err
		}
		i := slices.Index(children, me)
		if i < 0 {
			// The session expired while we waited, and our child went with it.
			return fmt.Errorf("%s: %w", node, ErrLockLost)
		}
		if i == 0 {
			return nil
		}
		pred := q.dir + "/" + children[i-1]
		ok, _, ch, err := q.conn.ExistsW(pred)
		if err != nil {
			return fmt.Errorf("watch %s: %w", pred, err)
		}
		if !ok {
			continue // gone between the listing and the watch
		}
		select {
		case ev := <-ch:
			if ev.Err != nil {
				return fmt.Errorf("watch %s: %w", pred, ev.Err)
			}
			q.events.Add(1)
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// ZKLock is ZooKeeper's lock recipe: a queue of EPHEMERAL_SEQUENTIAL
// children of dir, where the first child holds the lock and each waiter
// watches only its predecessor. The fencing token is the holder's child's
// creation zxid, which increases with every child created anywhere in the
// ensemble, so it orders holders even across lock directories.
//
// go-zookeeper's own zk.Lock does the same predecessor watch, but cannot be
// cancelled (it waits on the watch without a context) and counts nothing,
// so the lab has its own.
type ZKLock struct {
	q       zkQueue
	node    string
	session int64
}

// NewZKLock returns a lock on the znode directory dir (created if missing)
// over conn. Every watch event the lock receives is added to events.
func NewZKLock(conn *zk.Conn, dir string, events *atomic.Int64) *ZKLock {
	return &ZKLock{q: zkQueue{conn: conn, dir: dir, prefix: "lock-", events: orNew(events)}}
}

// Lock implements Locker.
func (l *ZKLock) Lock(ctx context.Context) (int64, error) {
	if l.node != "" {
		return 0, fmt.Errorf("zookeeper lock %s: already held by this client", l.q.dir)
	}
	node, czxid, err := l.q.enqueue(nil)
	if err != nil {
		return 0, err
	}
	if err := l.q.waitFirst(ctx, node); err != nil {
		// Leave the queue, so that the client behind us does not wait on a
		// child nobody will delete before our session ends.
		_ = l.q.conn.Delete(node, -1)
		return 0, err
	}
	l.node, l.session = node, l.q.conn.SessionID()
	return czxid, nil
}

// Unlock implements Locker.
func (l *ZKLock) Unlock(context.Context) error {
	if l.node == "" {
		return ErrNotHeld
	}
	node := l.node
	l.node = ""
	if l.q.conn.SessionID() != l.session {
		return fmt.Errorf("%s: %w", node, ErrLockLost)
	}
	err := l.q.conn.Delete(node, -1)
	if errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("%s: %w", node, ErrLockLost)
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", node, err)
	}
	return nil
}

// ZKNaiveLock is the lock people write first: create the znode if it does
// not exist; if it does, watch it and try again when it goes. Every waiter
// watches the same znode, so every release wakes all of them, and all but
// one go back to waiting: the herd effect, N-1 watch events and N-1 failed
// creates per hand-off. The node is ephemeral, so a crashed holder's lock
// goes with its session. The fencing token is the node's creation zxid.
type ZKNaiveLock struct {
	conn    *zk.Conn
	node    string
	events  *atomic.Int64
	held    bool
	session int64
}

// NewZKNaiveLock returns a naive lock on the znode at node, whose parent
// must exist. Every watch event the lock receives is added to events.
func NewZKNaiveLock(conn *zk.Conn, node string, events *atomic.Int64) *ZKNaiveLock {
	return &ZKNaiveLock{conn: conn, node: node, events: orNew(events)}
}

// Lock implements Locker.
func (l *ZKNaiveLock) Lock(ctx context.Context) (int64, error) {
	if l.held {
		return 0, fmt.Errorf("zookeeper naive lock %s: already held by this client", l.node)
	}
	for {
		if err := context.Cause(ctx); err != nil {
			return 0, err
		}
		_, err := l.conn.Create(l.node, nil, zk.FlagEphemeral, openACL)
		if err == nil {
			ok, st, err := l.conn.Exists(l.node)
			if err != nil {
				return 0, fmt.Errorf("stat %s: %w", l.node, err)
			}
			if !ok || st.EphemeralOwner != l.conn.SessionID() {
				return 0, fmt.Errorf("%s: %w", l.node, ErrLockLost)
			}
			l.held, l.session = true, st.EphemeralOwner
			return st.Czxid, nil
		}
		if !errors.Is(err, zk.ErrNodeExists) {
			return 0, fmt.Errorf("create %s: %w", l.node, err)
		}
		ok, _, ch, err := l.conn.ExistsW(l.node)
		if err != nil {
			return 0, fmt.Errorf("watch %s: %w", l.node, err)
		}
		if !ok {
			continue
		}
		select {
		case ev := <-ch:
			if ev.Err != nil {
				return 0, fmt.Errorf("watch %s: %w", l.node, ev.Err)
			}
			l.events.Add(1)
		case <-ctx.Done():
			return 0, context.Cause(ctx)
		}
	}
}

// Unlock implements Locker. If the session changed since Lock (it expired
// and the client opened a new one), the node is someone else's now, or
// soon will be, and is left alone. A session that expired but that the
// client has not heard about yet is this recipe's remaining hole: its
// delete can remove the next holder's node.
func (l *ZKNaiveLock) Unlock(context.Context) error {
	if !l.held {
		return ErrNotHeld
	}
	l.held = false
	if l.conn.SessionID() != l.session {
		return fmt.Errorf("%s: %w", l.node, ErrLockLost)
	}
	err := l.conn.Delete(l.node, -1)
	if errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("%s: %w", l.node, ErrLockLost)
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", l.node, err)
	}
	return nil
}

// ZKElection is ZooKeeper's leader-election recipe: the same queue as
// ZKLock, each candidate's child holding its ID; the lowest child leads,
// and each candidate watches only its predecessor. The term is the leader's
// child's creation zxid.
type ZKElection struct {
	q    zkQueue
	id   string
	node string
}

// NewZKElection returns candidate id in the election under the znode
// directory dir (created if missing). Every watch event the candidate
// receives is added to events.
func NewZKElection(conn *zk.Conn, dir, id string, events *atomic.Int64) *ZKElection {
	return &ZKElection{q: zkQueue{conn: conn, dir: dir, prefix: "candidate-", events: orNew(events)}, id: id}
}

// Campaign implements Elector.
func (e *ZKElection) Campaign(ctx context.Context) (int64, error) {
	if e.node != "" {
		return 0, fmt.Errorf("zookeeper election %s: %s is already a candidate", e.q.dir, e.id)
	}
	node, czxid, err := e.q.enqueue([]byte(e.id))
	if err != nil {
		return 0, err
	}
	if err := e.q.waitFirst(ctx, node); err != nil {
		_ = e.q.conn.Delete(node, -1)
		return 0, err
	}
	e.node = node
	return czxid, nil
}

// Resign implements Elector.
func (e *ZKElection) Resign(context.Context) error {
	if e.node == "" {
		return ErrNotHeld
	}
	node := e.node
	e.node = ""
	if err := e.q.conn.Delete(node, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("delete %s: %w", node, err)
	}
	return nil
}

// Leader implements Elector: the ID in the lowest child.
func (e *ZKElection) Leader(ctx context.Context) (string, error) {
	for ctx.Err() == nil {
		children, err := e.q.sortedChildren()
		if errors.Is(err, zk.ErrNoNode) || (err == nil && len(children) == 0) {
			return "", ErrNoLeader
		}
		if err != nil {
			return "", err
		}
		data, _, err := e.q.conn.Get(e.q.dir + "/" + children[0])
		if errors.Is(err, zk.ErrNoNode) {
			continue // the leader left between the two calls; look again
		}
		if err != nil {
			return "", fmt.Errorf("read %s/%s: %w", e.q.dir, children[0], err)
		}
		return string(data), nil
	}
	return "", context.Cause(ctx)
}

func orNew(n *atomic.Int64) *atomic.Int64 {
	if n == nil {
		return new(atomic.Int64)
	}
	return n
}
