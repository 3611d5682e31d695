package cassandrastore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"time"

	"github.com/gocql/gocql"

	"github.com/herald-feed/herald/services/platform/feed"
)

const (
	// Each direction of an edge lives in its own table, in the partition
	// of the user it belongs to, with that user's count of such edges in
	// the partition's static column n: followers (user, follower) and
	// following (user, followee). The edge and the count change in one
	// Paxos round on that partition: "since = null" says the edge is new,
	// "n = ?" that nobody changed the count since it was read.
	stmtFollowerCount    = `SELECT n FROM followers WHERE user = ? LIMIT 1`
	stmtAddFollower      = `UPDATE followers SET n = ?, since = ? WHERE user = ? AND follower = ? IF n = ? AND since = null`
	stmtSetFollowerCount = `UPDATE followers SET n = ? WHERE user = ? IF n = ?`
	stmtDelFollower      = `DELETE FROM followers WHERE user = ? AND follower = ? IF EXISTS`
	stmtFollowerSince    = `SELECT since FROM followers WHERE user = ? AND follower = ?`

	stmtFollowingCount    = `SELECT n FROM following WHERE user = ? LIMIT 1`
	stmtAddFollowing      = `UPDATE following SET n = ?, since = ? WHERE user = ? AND followee = ? IF n = ? AND since = null`
	stmtSetFollowingCount = `UPDATE following SET n = ? WHERE user = ? IF n = ?`
	stmtDelFollowing      = `DELETE FROM following WHERE user = ? AND followee = ? IF EXISTS`
	stmtFolloweeSince     = `SELECT since FROM following WHERE user = ? AND followee = ?`
	// A following partition written before migration 0002 has rows and a
	// null n; its count is its rows.
	stmtCountFollowing = `SELECT COUNT(*) FROM following WHERE user = ? AND followee > ''`

	// "> ''" skips the row Cassandra returns for a partition that holds
	// only its static count (a user whose followers all left, or who
	// unfollowed everyone), whose clustering column is null.
	stmtFollowers  = `SELECT follower FROM followers WHERE user = ? AND follower > ''`
	stmtIsFollower = `SELECT follower FROM followers WHERE user = ? AND follower = ?`
	stmtFollowing  = `SELECT followee FROM following WHERE user = ? AND followee > ''`
)

// edgeTable is one direction of the graph: its table, named in errors, its
// clustering column and its statements.
type edgeTable struct {
	name, other                     string
	count, add, setCount, del, edge string
	// countRows counts a partition's rows, for a table whose partitions
	// may predate n. Empty: a null n means no rows.
	countRows string
}

var (
	followersTable = &edgeTable{
		name: "followers", other: "follower",
		count: stmtFollowerCount, add: stmtAddFollower, setCount: stmtSetFollowerCount, del: stmtDelFollower, edge: stmtFollowerSince,
	}
	followingTable = &edgeTable{
		name: "following", other: "followee",
		count: stmtFollowingCount, add: stmtAddFollowing, setCount: stmtSetFollowingCount, del: stmtDelFollowing, edge: stmtFolloweeSince,
		countRows: stmtCountFollowing,
	}
)

// edges is one direction of the graph in a Store: the table, and the
// locks under which this process takes turns at its counts.
type edges struct {
	*edgeTable
	locks *countLocks
}

var errContention = errors.New("edge count contended; retry")

// countLocks take turns, within this process, at the compare-and-set
// rounds on one table's partition of a user (a followee's followers, a
// follower's following). Paxos commits one change to a partition at a
// time, and proposers racing for the same partition mostly make each other
// lose: on the local test node, 150 concurrent follows of one account took
// 6 s racing, several giving up, and 1 s taking turns. Taking turns, a
// round loses only to another process, which casRetry handles. A lock is a
// one-slot channel so that a waiter can give up when its context ends.
// Users hash onto a fixed set of locks; a shared lock only makes two
// accounts take turns. Each table has its own set, and no call holds locks
// of both at once.
type countLocks struct {
	seed  maphash.Seed
	locks [64]chan struct{}
}

func newCountLocks() *countLocks {
	l := &countLocks{seed: maphash.MakeSeed()}
	for i := range l.locks {
		l.locks[i] = make(chan struct{}, 1)
	}
	return l
}

// lock takes user's lock and returns its unlock.
func (l *countLocks) lock(ctx context.Context, user string) (func(), error) {
	c := l.locks[maphash.String(l.seed, user)%uint64(len(l.locks))]
	select {
	case c <- struct{}{}:
		return func() { <-c }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// casRetry paces the compare-and-set loop on an edge count when another
// process changed the count between our read and our round. The reply
// carries the new count, so the next round could start at once, but
// processes that keep colliding each wait a random, growing pause first.
// Past the store's request timeout the call gives up as unavailable.
type casRetry struct {
	deadline time.Time
	pause    time.Duration
}

func (s *Store) newCASRetry() *casRetry {
	return &casRetry{deadline: time.Now().Add(s.timeout), pause: time.Millisecond}
}

// lost waits before the next round, or says to give up.
func (r *casRetry) lost(ctx context.Context) error {
	if time.Now().After(r.deadline) {
		return feed.Unavailable("cassandra", errContention)
	}
	t := time.NewTimer(rand.N(r.pause) + time.Millisecond)
	defer t.Stop()
	r.pause = min(2*r.pause, 64*time.Millisecond)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Follow implements store.Graph: FollowLimited with no limit.
func (s *Store) Follow(ctx context.Context, follower, followee string) (bool, error) {
	return s.FollowLimited(ctx, follower, followee, 0)
}

// FollowLimited implements store.Graph. Each direction of the edge is
// written by a lightweight transaction on its own partition, with that
// partition's count (see edgeTable). Following goes first: its round
// checks the follower's count against maxFollowing and raises it with the
// edge, so racing follows by one user, from any number of processes,
// cannot pass the limit together. Followers goes second, and its round
// makes changed exact even across client retries: followers is the source
// of truth for the edge and the follower count.
//
// The two rounds are not atomic together. A call that fails between them
// leaves a following row without its followers row, which counts against
// the limit (a count is never below the edges it bounds) until the
// client's retry completes the edge or an Unfollow removes it; meanwhile
// timeline rebuilds, which read following, merge the followee and fan-out
// does not push to the follower. A Follow and an Unfollow of the same edge
// racing each other can leave the two tables out of step in either
// direction until the edge's next Follow or Unfollow; a followers row so
// left alone is not counted, and takes the follower one past the limit.
// That, and the rows of partitions from before migration 0002 (counted
// once, by a plain read, when first needed), are the only ways past it.
func (s *Store) FollowLimited(ctx context.Context, follower, followee string, maxFollowing int64) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	_, since, err := s.addEdge(ctx, s.following, follower, followee, time.Now().UTC(), maxFollowing)
	if errors.Is(err, feed.ErrFailedPrecondition) {
		// A followers row without its following row (left by a call that
		// failed half way before following went first) is an edge that
		// exists: following it again completes it, past the limit.
		if ok, ierr := s.IsFollowing(ctx, follower, followee); ierr != nil || !ok {
			return false, cmp.Or(ierr, err)
		}
		_, since, err = s.addEdge(ctx, s.following, follower, followee, since, 0)
	}
	if err != nil {
		return false, err
	}
	changed, _, err := s.addEdge(ctx, s.followers, followee, follower, since, 0)
	return changed, err
}

// addEdge adds the edge (user, other) to e and counts it in user's n,
// unless it exists. With maxEdges > 0 (the following limit: its error
// says so) it refuses an edge that would take n past maxEdges, with an
// error wrapping feed.ErrFailedPrecondition. It returns when the edge was
// made: since, for a new edge.
func (s *Store) addEdge(ctx context.Context, e edges, user, other string, since time.Time, maxEdges int64) (changed bool, at time.Time, err error) {
	unlock, err := e.locks.lock(ctx, user)
	if err != nil {
		return false, since, err
	}
	defer unlock()
	n, err := s.readN(ctx, e, user)
	if err != nil {
		return false, since, err
	}
	for retry := s.newCASRetry(); ; {
		have, err := s.have(ctx, e, user, n)
		if err != nil {
			return false, since, err
		}
		if maxEdges > 0 && have >= maxEdges {
			// At the limit only an edge that exists passes.
			var cur time.Time
			err := s.session.Query(e.edge, user, other).WithContext(ctx).Scan(&cur)
			if err == nil {
				return false, cur, nil
			}
			if !errors.Is(err, gocql.ErrNotFound) {
				return false, since, fail("read "+e.name, err)
			}
			return false, since, fmt.Errorf("%w: %s already follows %d accounts; the limit is %d", feed.ErrFailedPrecondition, user, have, maxEdges)
		}
		var (
			curN     *int64
			curSince *time.Time
		)
		applied, err := s.session.Query(e.add, have+1, since, user, other, n).
			WithContext(ctx).MapScanCAS(map[string]any{"n": &curN, "since": &curSince})
		if err != nil {
			return false, since, fail("add to "+e.name, err)
		}
		if applied {
			return true, since, nil
		}
		if curSince != nil {
			return false, *curSince, nil // the edge exists
		}
		n = curN
		if err := retry.lost(ctx); err != nil {
			return false, since, err
		}
	}
}

// Unfollow implements store.Graph, with the same atomicity as Follow and
// the opposite order: followers first, then following, both on every call
// (so that a retry completes what a failed call left half done). A call
// that fails between them leaves the edge counted against the follower's
// limit, never uncounted.
func (s *Store) Unfollow(ctx context.Context, follower, followee string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	changed, err := s.removeEdge(ctx, s.followers, followee, follower)
	if err != nil {
		return false, err
	}
	if _, err := s.removeEdge(ctx, s.following, follower, followee); err != nil {
		return false, err
	}
	return changed, nil
}

// removeEdge deletes the edge (user, other) from e and uncounts it, if it
// exists: one conditional batch on user's partition deletes the edge and
// lowers n, or does neither.
func (s *Store) removeEdge(ctx context.Context, e edges, user, other string) (bool, error) {
	unlock, err := e.locks.lock(ctx, user)
	if err != nil {
		return false, err
	}
	defer unlock()
	n, err := s.readN(ctx, e, user)
	if err != nil {
		return false, err
	}
	for retry := s.newCASRetry(); ; {
		have, err := s.have(ctx, e, user, n)
		if err != nil {
			return false, err
		}
		b := s.session.NewBatch(gocql.LoggedBatch).WithContext(ctx)
		b.Query(e.setCount, max(have, 1)-1, user, n)
		b.Query(e.del, user, other)
		// A batch that is not applied returns the partition's rows that its
		// conditions read: the static row and, if it exists, the edge.
		var (
			rowOther *string
			rowN     *int64
		)
		row := map[string]any{e.other: &rowOther, "n": &rowN}
		applied, iter, err := s.session.MapExecuteBatchCAS(b, row)
		if err != nil {
			return false, fail("remove from "+e.name, err)
		}
		if applied {
			iter.Close()
			return true, nil
		}
		// Every row carries the static count.
		n = rowN
		edge := false
		for {
			if rowOther != nil && *rowOther == other {
				edge = true
			}
			rowOther = nil
			row = map[string]any{e.other: &rowOther, "n": &rowN}
			if !iter.MapScan(row) {
				break
			}
		}
		if err := iter.Close(); err != nil {
			return false, fail("remove from "+e.name, err)
		}
		if !edge {
			return false, nil
		}
		if err := retry.lost(ctx); err != nil {
			return false, err
		}
	}
}

// readN returns user's count in e, nil if it was never set.
func (s *Store) readN(ctx context.Context, e edges, user string) (*int64, error) {
	var n *int64
	err := s.session.Query(e.count, user).WithContext(ctx).Scan(&n)
	if err != nil && err != gocql.ErrNotFound {
		return nil, fail("read "+e.name+" count", err)
	}
	return n, nil
}

// have returns how many edges user has in e, given n as read: n, or when
// n was never set, the partition's rows if e may predate its count.
func (s *Store) have(ctx context.Context, e edges, user string, n *int64) (int64, error) {
	if n != nil {
		return *n, nil
	}
	if e.countRows == "" {
		return 0, nil
	}
	var rows int64
	if err := s.session.Query(e.countRows, user).WithContext(ctx).Scan(&rows); err != nil {
		return 0, fail("count "+e.name, err)
	}
	return rows, nil
}

// FollowerCount implements store.Graph.
func (s *Store) FollowerCount(ctx context.Context, user string) (int64, error) {
	return s.countOf(ctx, s.followers, user)
}

// FollowingCount implements store.Graph.
func (s *Store) FollowingCount(ctx context.Context, user string) (int64, error) {
	return s.countOf(ctx, s.following, user)
}

func (s *Store) countOf(ctx context.Context, e edges, user string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n, err := s.readN(ctx, e, user)
	if err != nil {
		return 0, err
	}
	return s.have(ctx, e, user, n)
}

// Followers implements store.Graph. The paging state is Cassandra's own,
// opaque to callers, who carry it in a signed page token. Followers come in
// the partition's clustering order.
func (s *Store) Followers(ctx context.Context, user string, state []byte, limit int) ([]string, []byte, error) {
	return s.page(ctx, "Followers", stmtFollowers, user, state, limit)
}

// Following implements store.Graph, paging like Followers.
func (s *Store) Following(ctx context.Context, user string, state []byte, limit int) ([]string, []byte, error) {
	return s.page(ctx, "Following", stmtFollowing, user, state, limit)
}

// page reads one page of stmt. Cassandra hands back a paging state whenever
// a page comes back full, even when no row follows, so a full page peeks
// one row past itself: the state goes back to the caller only if that row
// exists, and the last page ends with a nil state, never an empty page
// after it.
func (s *Store) page(ctx context.Context, op, stmt, user string, state []byte, limit int) ([]string, []byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if limit <= 0 {
		return nil, nil, nil
	}
	iter := s.session.Query(stmt, user).WithContext(ctx).PageSize(limit).PageState(state).Iter()
	next := append([]byte(nil), iter.PageState()...)
	ids := make([]string, 0, iter.NumRows())
	var id string
	for iter.Scan(&id) {
		ids = append(ids, id)
	}
	if err := iter.Close(); err != nil {
		var reqErr gocql.RequestError
		if state != nil && errors.As(err, &reqErr) && reqErr.Code() == gocql.ErrCodeProtocol {
			// Page tokens are signed, so this is a token from another
			// store (Pebble, before a switch) or an older server.
			return nil, nil, feed.Invalid("page_token", "not a paging state of this store: "+reqErr.Message())
		}
		return nil, nil, fail(op, err)
	}
	if len(next) == 0 {
		return ids, nil, nil
	}
	peek := s.session.Query(stmt, user).WithContext(ctx).PageSize(1).PageState(next).Iter()
	more := peek.NumRows() > 0
	if err := peek.Close(); err != nil {
		return nil, nil, fail(op, err)
	}
	if !more {
		next = nil
	}
	return ids, next, nil
}

// IsFollowing implements store.Graph. It reads followers, the table whose
// rows the lightweight transactions keep exact.
func (s *Store) IsFollowing(ctx context.Context, follower, followee string) (bool, error) {
	var got string
	err := s.session.Query(stmtIsFollower, followee, follower).WithContext(ctx).Scan(&got)
	if errors.Is(err, gocql.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fail("IsFollowing", err)
	}
	return true, nil
}
