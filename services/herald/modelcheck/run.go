package modelcheck

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/herald/systemtest"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// Config sizes a run.
type Config struct {
	// Seed seeds the generator; the same seed gives the same graph and
	// the same operations (though not the same interleaving in bursts).
	Seed uint64
	// Users is how many users the graph has. Default 60.
	Users int
	// Ops is how many operations run after the graph is built. Default 400.
	Ops int
	// Prefix starts every user ID, so runs can share a deployment.
	// Default "mc_".
	Prefix string
	// Cap is the home timeline cap. Default DefaultCap.
	Cap int
	// Settle bounds the wait for the system to match the model after the
	// last operation returns. Default 2 × waitfor.Deadline.
	Settle time.Duration
	// BurstProb is the chance that a step is a burst of 2 to MaxBurst
	// concurrent operations. Default 0.25.
	BurstProb float64
	// MaxBurst is the largest burst. Default 6.
	MaxBurst int
}

func (c *Config) defaults() {
	if c.Users <= 0 {
		c.Users = 60
	}
	if c.Ops <= 0 {
		c.Ops = 400
	}
	if c.Prefix == "" {
		c.Prefix = "mc_"
	}
	if c.Cap <= 0 {
		c.Cap = DefaultCap
	}
	if c.Settle <= 0 {
		c.Settle = 2 * waitfor.Deadline
	}
	if c.BurstProb <= 0 {
		c.BurstProb = 0.25
	}
	if c.MaxBurst < 2 {
		c.MaxBurst = 6
	}
}

// PageSize is the page size of every timeline read.
const PageSize = 50

// zipfExp shapes the follower counts: user i (0-based rank) is followed
// by each other user with probability about 0.9/(i+1)^zipfExp, so the top
// account is followed by nearly everyone and most by one or two.
const zipfExp = 0.9

type opKind int

const (
	opPost opKind = iota
	opFollow
	opUnfollow
	opDelete
	opRead
	// opFlap follows and unfollows one pair back to back, in one
	// goroutine, ending in a state the model knows; it races the
	// backfill of each Followed event against the purge of the next
	// Unfollowed one.
	opFlap
)

var opNames = [...]string{"post", "follow", "unfollow", "delete", "read", "flap"}

func (k opKind) String() string { return opNames[k] }

type op struct {
	kind     opKind
	user     string // author, follower or reader
	other    string // followee
	post     uint64 // post to delete
	text     string
	key      string // idempotency key of a post
	flaps    []bool // opFlap: follow (true) or unfollow (false), in order
	deleted  []uint64
	resultID uint64 // opPost: the created post's ID

	seq        int           // position in the run; the graph's follows are -1
	start, end time.Duration // since the run began
}

func (o *op) String() string {
	s := fmt.Sprintf("#%d %v %s", o.seq, o.kind, o.user)
	switch o.kind {
	case opPost:
		s += fmt.Sprintf(" -> %d", o.resultID)
	case opFollow, opUnfollow:
		s += " " + o.other
	case opFlap:
		s += fmt.Sprintf(" %s %v", o.other, o.flaps)
	case opDelete:
		s += fmt.Sprintf(" %d", o.post)
	}
	return s + fmt.Sprintf(" [%v..%v]", o.start.Round(time.Millisecond), o.end.Round(time.Millisecond))
}

// run is one model check in progress.
type run struct {
	t     testing.TB
	name  string // starts each failure: "modelcheck seed 3"
	cfg   Config
	c     *systemtest.Client
	rng   *rand.Rand
	model *Model
	users []string
	cum   []float64 // cumulative popularity weights of users, for sampling
	count map[opKind]int
	began time.Time
	log   []*op // every operation run, in the order they were applied
}

// Run builds the graph, runs the operations against c, waits for the
// system to quiesce and checks every user's home timeline against the
// model. It fails t on any RPC error or mismatch.
func Run(t testing.TB, c *systemtest.Client, cfg Config) {
	t.Helper()
	cfg.defaults()
	r := &run{
		t: t, cfg: cfg, c: c,
		name:  fmt.Sprintf("modelcheck seed %d", cfg.Seed),
		rng:   rand.New(rand.NewPCG(cfg.Seed, 0x6d6f64656c636865)),
		model: NewModel(cfg.Cap),
		count: map[opKind]int{},
		began: time.Now(),
	}
	t.Logf("modelcheck: seed %d (rerun with -modelcheck.seed=%d), %d users, %d ops", cfg.Seed, cfg.Seed, cfg.Users, cfg.Ops)
	var total float64
	for i := range cfg.Users {
		r.users = append(r.users, fmt.Sprintf("%su%02d", cfg.Prefix, i))
		total += 1 / math.Pow(float64(i+1), zipfExp)
		r.cum = append(r.cum, total)
	}

	start := time.Now()
	r.buildGraph()
	graphDone := time.Now()
	r.runOps()
	opsDone := time.Now()
	settled, _ := r.settle()
	t.Logf("modelcheck: graph %v, ops %v %v, settled in %v; %d posts (%d live)",
		graphDone.Sub(start).Round(time.Millisecond), opsDone.Sub(graphDone).Round(time.Millisecond), r.count,
		settled.Round(time.Millisecond), len(r.model.posts), len(r.model.Live()))
}

// Check waits up to settle for every one of users' home timelines to equal
// what m computes: the same IDs in the same order, nothing missing and
// nothing twice, over the first pages up to m's cap. It fails t with a
// diff for each user that still differs, and returns how long the system
// took to match and whether it did. Unlike Run it makes no writes, so a
// test can drive the system its own way, record what it did in m, and
// check the outcome.
func Check(t testing.TB, c *systemtest.Client, m *Model, users []string, settle time.Duration) (time.Duration, bool) {
	t.Helper()
	cfg := Config{Cap: m.cap, Settle: settle}
	cfg.defaults()
	r := &run{t: t, name: "modelcheck", cfg: cfg, c: c, model: m, users: users, began: time.Now()}
	took, bad := r.settle()
	return took, len(bad) == 0
}

// Tally is how the home timelines differed from the model when a check
// ended: each count is of distinct post IDs, over all the users checked.
type Tally struct {
	// Took is how long the system took to match, or the whole settle
	// time if it did not.
	Took time.Duration
	// OK is true if every timeline matched.
	OK bool
	// Lost are live posts of the model missing from a timeline that
	// should hold them.
	Lost int
	// Extra are posts a timeline held that the model does not want
	// there: a post the model does not know (a write done twice), a
	// deleted one, or one from an author the user does not follow.
	Extra int
	// Duplicated are posts a timeline returned more than once.
	Duplicated int
	// Unread is how many users' timelines could not be read at all.
	Unread int
}

// CheckTally is Check, returning what differed as counts as well.
func CheckTally(t testing.TB, c *systemtest.Client, m *Model, users []string, settle time.Duration) Tally {
	t.Helper()
	cfg := Config{Cap: m.cap, Settle: settle}
	cfg.defaults()
	r := &run{t: t, name: "modelcheck", cfg: cfg, c: c, model: m, users: users, began: time.Now()}
	took, bad := r.settle()
	lost, extra, dup := map[uint64]bool{}, map[uint64]bool{}, map[uint64]bool{}
	tally := Tally{Took: took, OK: len(bad) == 0}
	for _, b := range bad {
		if b.err != nil {
			tally.Unread++
		}
		for _, id := range b.diff.Missing {
			lost[id] = true
		}
		for _, id := range b.diff.Extra {
			extra[id] = true
		}
		for _, id := range b.diff.Duplicates {
			dup[id] = true
		}
	}
	tally.Lost, tally.Extra, tally.Duplicated = len(lost), len(extra), len(dup)
	return tally
}

// popular picks a user with probability proportional to its popularity.
func (r *run) popular() string {
	x := r.rng.Float64() * r.cum[len(r.cum)-1]
	i, _ := slices.BinarySearch(r.cum, x)
	return r.users[min(i, len(r.users)-1)]
}

func (r *run) anyUser() string { return r.users[r.rng.IntN(len(r.users))] }

// buildGraph makes the heavy-tailed initial graph, with the follows sent
// concurrently.
func (r *run) buildGraph() {
	var ops []*op
	for _, follower := range r.users {
		for j, followee := range r.users {
			if follower == followee {
				continue
			}
			if r.rng.Float64() < 0.9/math.Pow(float64(j+1), zipfExp) {
				ops = append(ops, &op{kind: opFollow, user: follower, other: followee, seq: -1})
			}
		}
	}
	r.exec(ops, 16)
	clear(r.count)
	counts := make([]int, len(r.users))
	for i, u := range r.users {
		counts[i] = r.model.FollowerCount(u)
	}
	r.t.Logf("modelcheck: %d follows; follower counts by popularity rank: %v", len(ops), counts)
}

// runOps runs cfg.Ops random operations, some in concurrent bursts.
func (r *run) runOps() {
	for n := 0; n < r.cfg.Ops; {
		size := 1
		if r.rng.Float64() < r.cfg.BurstProb {
			size = 2 + r.rng.IntN(r.cfg.MaxBurst-1)
		}
		size = min(size, r.cfg.Ops-n)
		r.exec(r.burst(size, n), size)
		n += size
	}
}

// burst generates size operations that commute in the model: no two touch
// one follow edge or delete one post.
func (r *run) burst(size, seq int) []*op {
	edges := map[[2]string]bool{}
	deletes := map[uint64]bool{}
	var ops []*op
	for len(ops) < size {
		o := r.next(seq + len(ops))
		o.seq = seq + len(ops)
		switch o.kind {
		case opFollow, opUnfollow, opFlap:
			e := [2]string{o.user, o.other}
			if edges[e] {
				continue
			}
			edges[e] = true
		case opDelete:
			if deletes[o.post] {
				continue
			}
			deletes[o.post] = true
		}
		ops = append(ops, o)
	}
	return ops
}

// next generates one operation from the model's current state.
func (r *run) next(seq int) *op {
	for {
		x := r.rng.Float64()
		switch {
		case x < 0.40:
			author := r.anyUser()
			if r.rng.IntN(2) == 0 {
				author = r.popular() // popular accounts post more
			}
			return &op{kind: opPost, user: author, key: fmt.Sprintf("mc-%d-%d", r.cfg.Seed, seq),
				text: fmt.Sprintf("post %d by %s: %s", seq, author, words[r.rng.IntN(len(words))])}
		case x < 0.56:
			follower, followee := r.anyUser(), r.popular()
			if follower == followee {
				continue
			}
			return &op{kind: opFollow, user: follower, other: followee}
		case x < 0.70:
			follower := r.anyUser()
			fs := r.model.Followees(follower)
			if len(fs) == 0 || r.rng.IntN(10) == 0 {
				// Unfollowing an account one does not follow is allowed and
				// must change nothing.
				followee := r.anyUser()
				if followee == follower {
					continue
				}
				return &op{kind: opUnfollow, user: follower, other: followee}
			}
			return &op{kind: opUnfollow, user: follower, other: fs[r.rng.IntN(len(fs))]}
		case x < 0.82:
			live := r.model.Live()
			if len(live) == 0 {
				continue
			}
			p := live[r.rng.IntN(len(live))]
			return &op{kind: opDelete, user: p.Author, post: p.ID}
		case x < 0.95:
			u := r.anyUser()
			var deleted []uint64
			for _, p := range r.model.posts {
				if p.Deleted {
					deleted = append(deleted, p.ID)
				}
			}
			return &op{kind: opRead, user: u, deleted: deleted}
		default:
			follower, followee := r.anyUser(), r.popular()
			if follower == followee {
				continue
			}
			flaps := make([]bool, 2+r.rng.IntN(3))
			next := !r.model.Follows(follower, followee)
			for i := range flaps {
				flaps[i] = next
				next = !next
			}
			return &op{kind: opFlap, user: follower, other: followee, flaps: flaps}
		}
	}
}

// exec runs ops with at most limit at once, then applies their results to
// the model. It fails t now if any failed: the model would be unknown.
func (r *run) exec(ops []*op, limit int) {
	r.t.Helper()
	var (
		mu   sync.Mutex
		errs []string
	)
	systemtest.Each(ops, limit, func(o *op) error {
		o.start = time.Since(r.began)
		err := r.do(o)
		o.end = time.Since(r.began)
		if err != nil {
			mu.Lock()
			errs = append(errs, err.Error())
			mu.Unlock()
		}
		return nil
	})
	if len(errs) > 0 {
		r.t.Fatalf("modelcheck seed %d: %d operations failed:\n%s", r.cfg.Seed, len(errs), strings.Join(errs, "\n"))
	}
	r.log = append(r.log, ops...)
	for _, o := range ops {
		r.count[o.kind]++
		switch o.kind {
		case opPost:
			r.model.AddPost(o.resultID, o.user)
		case opFollow:
			r.model.Follow(o.user, o.other)
		case opUnfollow:
			r.model.Unfollow(o.user, o.other)
		case opDelete:
			r.model.DeletePost(o.post)
		case opFlap:
			if o.flaps[len(o.flaps)-1] {
				r.model.Follow(o.user, o.other)
			} else {
				r.model.Unfollow(o.user, o.other)
			}
		}
	}
}

// do runs one operation. Transient failures are retried, which is safe:
// posts carry an idempotency key and the other writes are idempotent.
func (r *run) do(o *op) error {
	switch o.kind {
	case opPost:
		return retry(func(ctx context.Context, _ int) error {
			resp, err := r.c.Post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: o.user, Text: o.text, IdempotencyKey: o.key})
			if err != nil {
				return fmt.Errorf("CreatePost(%s, %q): %w", o.user, o.text, err)
			}
			id, err := strconv.ParseUint(resp.GetPost().GetPostId(), 10, 64)
			if err != nil || id == 0 {
				return fmt.Errorf("CreatePost(%s) returned post ID %q; want a decimal 64-bit ID", o.user, resp.GetPost().GetPostId())
			}
			o.resultID = id
			return nil
		})
	case opFollow:
		return r.follow(o.user, o.other, true)
	case opUnfollow:
		return r.follow(o.user, o.other, false)
	case opFlap:
		for _, f := range o.flaps {
			if err := r.follow(o.user, o.other, f); err != nil {
				return err
			}
		}
		return nil
	case opDelete:
		return retry(func(ctx context.Context, attempt int) error {
			_, err := r.c.Post.DeletePost(ctx, &feedv1.DeletePostRequest{PostId: strconv.FormatUint(o.post, 10), AuthorId: o.user})
			if status.Code(err) == codes.NotFound && attempt > 0 {
				return nil // an earlier attempt deleted it
			}
			if err != nil {
				return fmt.Errorf("DeletePost(%d, %s): %w", o.post, o.user, err)
			}
			return nil
		})
	case opRead:
		return retry(func(ctx context.Context, _ int) error {
			resp, err := r.c.Timeline.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: o.user, PageSize: PageSize})
			if err != nil {
				return fmt.Errorf("GetHomeTimeline(%s): %w", o.user, err)
			}
			ids, err := parseIDs(resp.GetPosts())
			if err != nil {
				return fmt.Errorf("GetHomeTimeline(%s): %w", o.user, err)
			}
			// What holds at any time, quiesced or not: newest first, no
			// duplicates, and a post deleted before the read began is gone.
			for i := 1; i < len(ids); i++ {
				if ids[i] >= ids[i-1] {
					return fmt.Errorf("GetHomeTimeline(%s) mid-run = %v; want strictly decreasing IDs (%d after %d)", o.user, ids, ids[i], ids[i-1])
				}
			}
			for _, id := range ids {
				if slices.Contains(o.deleted, id) {
					return fmt.Errorf("GetHomeTimeline(%s) mid-run = %v; holds post %d, deleted before the read began", o.user, ids, id)
				}
			}
			return nil
		})
	}
	return fmt.Errorf("unknown op %v", o.kind)
}

func (r *run) follow(follower, followee string, follow bool) error {
	return retry(func(ctx context.Context, _ int) error {
		var err error
		if follow {
			_, err = r.c.Graph.Follow(ctx, &feedv1.FollowRequest{FollowerId: follower, FolloweeId: followee})
		} else {
			_, err = r.c.Graph.Unfollow(ctx, &feedv1.UnfollowRequest{FollowerId: follower, FolloweeId: followee})
		}
		if err != nil {
			return fmt.Errorf("follow=%v(%s, %s): %w", follow, follower, followee, err)
		}
		return nil
	})
}

// retry calls fn through systemtest.Retry while it fails with
// UNAVAILABLE or DEADLINE_EXCEEDED, for up to retryBudget, each call
// under systemtest.CallTimeout.
func retry(fn func(ctx context.Context, attempt int) error) error {
	return systemtest.Retry(retryBudget, systemtest.CallTimeout, fn, nil)
}

// retryBudget bounds the retries of one operation: enough to ride out an
// instance's restart.
const retryBudget = 10 * time.Second

func parseIDs(ps []*feedv1.Post) ([]uint64, error) {
	ids := make([]uint64, len(ps))
	for i, p := range ps {
		id, err := strconv.ParseUint(p.GetPostId(), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("post ID %q: %v", p.GetPostId(), err)
		}
		ids[i] = id
	}
	return ids, nil
}

// mismatch is one user whose timeline differs from the model.
type mismatch struct {
	user      string
	got, want []uint64
	diff      Diff
	err       error
}

// settle polls every user's timeline until all equal the model, for up to
// cfg.Settle, and reports each user that still differs. It returns how
// long the system took to match, and the users that still differed.
func (r *run) settle() (time.Duration, []mismatch) {
	r.t.Helper()
	start := time.Now()
	deadline := start.Add(r.cfg.Settle)
	for {
		bad := r.checkAll()
		if len(bad) == 0 {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			for i, m := range bad {
				if i == 10 {
					r.t.Errorf("%s: ... and %d more users differ", r.name, len(bad)-10)
					break
				}
				if m.err != nil {
					r.t.Errorf("%s: home timeline of %s: %v", r.name, m.user, m.err)
					continue
				}
				history := ""
				if r.log != nil {
					history = "\n history:\n" + r.history(m)
				}
				r.t.Errorf("%s: home timeline of %s %v after the last operation:\n got  %v\n want %v\n diff:%s\n follows %v%s",
					r.name, m.user, r.cfg.Settle, m.got, m.want, m.diff.describe(r.model), r.model.Followees(m.user), history)
			}
			return time.Since(start), bad
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// history lists the operations that bear on m: follows and unfollows
// between m's user and the authors of the stray posts, and the creation
// and deletion of those posts.
func (r *run) history(m mismatch) string {
	authors := map[string]bool{}
	posts := map[uint64]bool{}
	for _, ids := range [][]uint64{m.diff.Missing, m.diff.Extra, m.diff.Duplicates} {
		for _, id := range ids {
			posts[id] = true
			if p := r.model.posts[id]; p != nil {
				authors[p.Author] = true
			}
		}
	}
	var b strings.Builder
	for _, o := range r.log {
		relevant := false
		switch o.kind {
		case opFollow, opUnfollow, opFlap:
			relevant = o.user == m.user && authors[o.other]
		case opPost:
			relevant = posts[o.resultID]
		case opDelete:
			relevant = posts[o.post]
		case opRead:
			relevant = o.user == m.user
		}
		if relevant {
			fmt.Fprintf(&b, "   %v\n", o)
		}
	}
	return b.String()
}

// checkAll reads every user's timeline, 8 users at a time, and returns
// those that differ from the model.
func (r *run) checkAll() []mismatch {
	var (
		mu  sync.Mutex
		bad []mismatch
	)
	systemtest.Each(r.users, 8, func(u string) error {
		want := r.model.Home(u)
		got, err := r.readHome(u, len(want))
		d, ok := Compare(got, want)
		if err != nil || !ok {
			mu.Lock()
			bad = append(bad, mismatch{user: u, got: got, want: want, diff: d, err: err})
			mu.Unlock()
		}
		return nil
	})
	slices.SortFunc(bad, func(a, b mismatch) int { return strings.Compare(a.user, b.user) })
	return bad
}

// readHome reads user's timeline a page at a time until it has more than
// n entries (so an extra entry shows), the timeline ends, or n/PageSize+2
// pages have been read.
func (r *run) readHome(user string, n int) ([]uint64, error) {
	var got []uint64
	token := ""
	for range n/PageSize + 2 {
		var resp *feedv1.GetHomeTimelineResponse
		err := retry(func(ctx context.Context, _ int) (err error) {
			resp, err = r.c.Timeline.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: user, PageSize: PageSize, PageToken: token})
			return err
		})
		if err != nil {
			return got, fmt.Errorf("GetHomeTimeline(%s, token %q): %w", user, token, err)
		}
		ids, err := parseIDs(resp.GetPosts())
		if err != nil {
			return got, err
		}
		got = append(got, ids...)
		token = resp.GetNextPageToken()
		if token == "" || len(got) > n {
			break
		}
	}
	if len(got) > r.cfg.Cap && n == r.cfg.Cap {
		// Pages past the cap may come from the durable store; the model
		// covers only the capped first pages.
		got = got[:n]
	}
	return got, nil
}

var words = []string{
	"hello", "fan-out", "celebrity", "timeline", "café", "naïve résumé", "日本語のテキスト",
	"emoji 🎉", "line one\nline two", "quiet day", "lorem ipsum dolor sit amet",
}
