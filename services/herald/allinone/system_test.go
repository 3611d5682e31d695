package allinone_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/herald/allinone"
	"github.com/herald-feed/herald/services/platform/discovery"
	"github.com/herald-feed/herald/services/platform/node"
	timeline "github.com/herald-feed/herald/services/timeline/app"
)

// callTimeout bounds every RPC a test makes, so a hung system fails the test
// instead of the whole run.
const callTimeout = 10 * time.Second

// testLog returns a logger that writes WARN and above to t.Log, and drops
// records once the test has finished (a late log from a background
// goroutine would otherwise panic).
func testLog(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct {
	mu     sync.Mutex
	t      *testing.T
	closed bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// startSystem starts all four services in one node on a loopback port, over
// embedded etcd, NATS and Pebble under dir and the memory cache, and returns
// a client connection to it. stop shuts the node down and waits for it; it
// also runs at cleanup, and a second call does nothing.
func startSystem(t *testing.T, dir string) (*grpc.ClientConn, func()) {
	t.Helper()
	return startNode(t, dir, []string{"graph", "post", "fanout", "timeline"}, func(ctx context.Context, n *node.Node) error {
		return allinone.Register(ctx, n, allinone.Config{})
	})
}

// startNode is startSystem with the services that register adds; services
// names the ones to wait for in etcd.
func startNode(t *testing.T, dir string, services []string, register func(context.Context, *node.Node) error) (*grpc.ClientConn, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.New(ctx, node.Config{
		Name:       "test",
		Embedded:   true,
		DataDir:    dir,
		ListenAddr: "127.0.0.1:0",
		LeaseTTL:   5 * time.Second,
		Log:        testLog(t),
	})
	if err != nil {
		cancel()
		t.Fatalf("node.New: %v", err)
	}
	if err := register(ctx, n); err != nil {
		cancel()
		n.Close()
		t.Fatalf("register services: %v", err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- n.Run(ctx) }()

	conn, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		<-runErr
		n.Close()
		t.Fatalf("dial %s: %v", n.Addr(), err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			// Close the client first so open streams end and the graceful
			// drain does not wait for them.
			conn.Close()
			cancel()
			select {
			case err := <-runErr:
				if err != nil {
					t.Errorf("node.Run returned %v; want nil", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("node.Run did not return within 30s of cancel")
			}
			n.Close()
		})
	}
	t.Cleanup(stop)

	// Serving means: the gRPC health check says SERVING, and every service
	// is registered in etcd, so that peers find each other at once.
	hc := healthpb.NewHealthClient(conn)
	ready := eventually(t, 20*time.Second, func() bool {
		select {
		case err := <-runErr:
			runErr <- err
			return false
		default:
		}
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		defer ccancel()
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return false
		}
		for _, s := range services {
			addrs, err := discovery.Endpoints(cctx, n.Etcd, n.Namespace(), s)
			if err != nil || !slices.Contains(addrs, n.Addr()) {
				return false
			}
		}
		return true
	})
	if !ready {
		stop()
		t.Fatalf("node at %s not serving %v within 20s", n.Addr(), services)
	}
	return conn, stop
}

// eventually polls cond every 10ms until it holds or d has passed, and
// reports whether it held.
func eventually(t *testing.T, d time.Duration, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// client holds the three public APIs on one connection.
type client struct {
	post  feedv1.PostServiceClient
	graph feedv1.GraphServiceClient
	tl    feedv1.TimelineServiceClient
	conn  *grpc.ClientConn
}

func newClient(conn *grpc.ClientConn) *client {
	return &client{
		post:  feedv1.NewPostServiceClient(conn),
		graph: feedv1.NewGraphServiceClient(conn),
		tl:    feedv1.NewTimelineServiceClient(conn),
		conn:  conn,
	}
}

func rpcCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callTimeout)
}

func (c *client) createPost(t *testing.T, author, text, key string) *feedv1.Post {
	t.Helper()
	ctx, cancel := rpcCtx()
	defer cancel()
	resp, err := c.post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: author, Text: text, IdempotencyKey: key})
	if err != nil {
		t.Fatalf("CreatePost(%s, %q, %q) error = %v; want nil", author, text, key, err)
	}
	p := resp.GetPost()
	if p.GetAuthorId() != author || p.GetText() != text || p.GetCreateTime() == nil {
		t.Fatalf("CreatePost(%s, %q) = %v; want author %s, the same text and a create_time", author, text, p, author)
	}
	postID(t, p.GetPostId())
	return p
}

func (c *client) follow(t *testing.T, follower, followee string) {
	t.Helper()
	ctx, cancel := rpcCtx()
	defer cancel()
	if _, err := c.graph.Follow(ctx, &feedv1.FollowRequest{FollowerId: follower, FolloweeId: followee}); err != nil {
		t.Fatalf("Follow(%s, %s) error = %v; want nil", follower, followee, err)
	}
}

func (c *client) unfollow(t *testing.T, follower, followee string) {
	t.Helper()
	ctx, cancel := rpcCtx()
	defer cancel()
	if _, err := c.graph.Unfollow(ctx, &feedv1.UnfollowRequest{FollowerId: follower, FolloweeId: followee}); err != nil {
		t.Fatalf("Unfollow(%s, %s) error = %v; want nil", follower, followee, err)
	}
}

func (c *client) homePage(t *testing.T, user string, size int32, token string) ([]*feedv1.Post, string) {
	t.Helper()
	ctx, cancel := rpcCtx()
	defer cancel()
	resp, err := c.tl.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: user, PageSize: size, PageToken: token})
	if err != nil {
		t.Fatalf("GetHomeTimeline(%s, %d, %q) error = %v; want nil", user, size, token, err)
	}
	checkNewestFirst(t, "GetHomeTimeline("+user+")", resp.GetPosts())
	return resp.GetPosts(), resp.GetNextPageToken()
}

// home returns the post IDs on the first page (up to 100) of user's home
// timeline.
func (c *client) home(t *testing.T, user string) []string {
	t.Helper()
	ps, _ := c.homePage(t, user, 100, "")
	return ids(ps)
}

func (c *client) userPosts(t *testing.T, author string, size int32, token string) ([]*feedv1.Post, string) {
	t.Helper()
	ctx, cancel := rpcCtx()
	defer cancel()
	resp, err := c.post.ListUserPosts(ctx, &feedv1.ListUserPostsRequest{AuthorId: author, PageSize: size, PageToken: token})
	if err != nil {
		t.Fatalf("ListUserPosts(%s, %d, %q) error = %v; want nil", author, size, token, err)
	}
	checkNewestFirst(t, "ListUserPosts("+author+")", resp.GetPosts())
	return resp.GetPosts(), resp.GetNextPageToken()
}

// allUserPosts returns the IDs of all of author's posts, paging through.
func (c *client) allUserPosts(t *testing.T, author string) []string {
	t.Helper()
	var out []string
	token := ""
	for {
		ps, next := c.userPosts(t, author, 100, token)
		out = append(out, ids(ps)...)
		if next == "" {
			return out
		}
		token = next
	}
}

func (c *client) followers(t *testing.T, user string) []string {
	t.Helper()
	ctx, cancel := rpcCtx()
	defer cancel()
	resp, err := c.graph.ListFollowers(ctx, &feedv1.ListFollowersRequest{UserId: user, PageSize: 1000})
	if err != nil {
		t.Fatalf("ListFollowers(%s) error = %v; want nil", user, err)
	}
	return resp.GetUserIds()
}

func (c *client) following(t *testing.T, user string) []string {
	t.Helper()
	ctx, cancel := rpcCtx()
	defer cancel()
	resp, err := c.graph.ListFollowing(ctx, &feedv1.ListFollowingRequest{UserId: user, PageSize: 1000})
	if err != nil {
		t.Fatalf("ListFollowing(%s) error = %v; want nil", user, err)
	}
	return resp.GetUserIds()
}

// waitHome polls user's home timeline until cond holds on its IDs, for up
// to d, and fails with what it last saw otherwise.
func (c *client) waitHome(t *testing.T, user string, d time.Duration, what string, cond func(ids []string) bool) []string {
	t.Helper()
	var got []string
	if !eventually(t, d, func() bool {
		got = c.home(t, user)
		return cond(got)
	}) {
		t.Fatalf("home timeline of %s after %v = %v; want %s", user, d, got, what)
	}
	return got
}

func postID(t *testing.T, s string) uint64 {
	t.Helper()
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		t.Fatalf("post_id %q is not a decimal 64-bit ID: %v", s, err)
	}
	return id
}

// checkNewestFirst fails unless ps is in strictly decreasing post ID order.
func checkNewestFirst(t *testing.T, what string, ps []*feedv1.Post) {
	t.Helper()
	for i := 1; i < len(ps); i++ {
		if a, b := postID(t, ps[i-1].GetPostId()), postID(t, ps[i].GetPostId()); a <= b {
			t.Fatalf("%s: post %d has ID %d after %d; want strictly decreasing IDs", what, i, b, a)
		}
	}
}

func ids(ps []*feedv1.Post) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.GetPostId()
	}
	return out
}

func containsAll(have []string, want ...string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func containsNone(have []string, unwanted ...string) bool {
	for _, u := range unwanted {
		if slices.Contains(have, u) {
			return false
		}
	}
	return true
}

// wantStatus fails unless err is a status with code and, when field is not
// empty, a message naming field.
func wantStatus(t *testing.T, call string, err error, code codes.Code, field string) {
	t.Helper()
	st, _ := status.FromError(err)
	if err == nil || st.Code() != code {
		t.Errorf("%s error = %v; want code %v", call, err, code)
		return
	}
	if field != "" && !strings.Contains(st.Message(), field) {
		t.Errorf("%s error message = %q; want it to name %q", call, st.Message(), field)
	}
}

// TestSystem runs the API behaviours against one shared all-in-one system.
// Each subtest uses its own users.
func TestSystem(t *testing.T) {
	conn, stop := startSystem(t, t.TempDir())
	defer stop()
	c := newClient(conn)

	t.Run("Visibility", func(t *testing.T) { testVisibility(t, c) })
	t.Run("OrderingAndPaging", func(t *testing.T) { testOrderingAndPaging(t, c) })
	t.Run("Idempotency", func(t *testing.T) { testIdempotency(t, c) })
	t.Run("FollowUnfollow", func(t *testing.T) { testFollowUnfollow(t, c) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, c) })
	t.Run("LiveStream", func(t *testing.T) { testLiveStream(t, c) })
	t.Run("BadInput", func(t *testing.T) { testBadInput(t, c) })
	t.Run("UnknownPost", func(t *testing.T) {
		ctx, cancel := rpcCtx()
		defer cancel()
		_, err := c.post.GetPost(ctx, &feedv1.GetPostRequest{PostId: "123"})
		wantStatus(t, `GetPost("123")`, err, codes.NotFound, "")
	})
}

func testVisibility(t *testing.T, c *client) {
	const a, b = "vis_a", "vis_b"
	c.follow(t, b, a)
	// Read b's timeline first, so the post must arrive by fan-out into a
	// cached timeline rather than by the rebuild of a missing one.
	if got := c.home(t, b); len(got) != 0 {
		t.Fatalf("home timeline of %s before any post = %v; want empty", b, got)
	}

	p := c.createPost(t, a, "hello from a", "")
	posted := time.Now()

	// The author reads their own write: the first read has it.
	own, _ := c.homePage(t, a, 20, "")
	if len(own) == 0 || own[0].GetPostId() != p.GetPostId() || own[0].GetText() != p.GetText() || own[0].GetAuthorId() != a {
		t.Errorf("home timeline of %s right after CreatePost = %v; want %v first", a, own, p)
	}

	// The follower sees it within 1 second.
	var got []*feedv1.Post
	seen := eventually(t, time.Until(posted.Add(time.Second)), func() bool {
		got, _ = c.homePage(t, b, 20, "")
		return len(got) > 0 && got[0].GetPostId() == p.GetPostId()
	})
	if !seen {
		t.Fatalf("home timeline of %s 1s after %s posted = %v; want %s first", b, a, ids(got), p.GetPostId())
	}
	t.Logf("visible to the follower %v after CreatePost returned", time.Since(posted))
	if g := got[0]; g.GetText() != p.GetText() || g.GetAuthorId() != a || !g.GetCreateTime().AsTime().Equal(p.GetCreateTime().AsTime()) {
		t.Errorf("follower's copy = %v; want %v", g, p)
	}
}

func testOrderingAndPaging(t *testing.T, c *client) {
	const a, b = "ord_a", "ord_b"
	const n = 45
	c.follow(t, b, a)
	c.home(t, b)
	var want []string
	for i := range n {
		want = append(want, c.createPost(t, a, fmt.Sprintf("post %d", i), "").GetPostId())
	}
	c.waitHome(t, b, 5*time.Second, fmt.Sprintf("all %d posts of %s", n, a), func(got []string) bool {
		return containsAll(got, want...)
	})
	slices.Reverse(want) // newest first

	// page walks b's timeline 10 at a time; between pages it calls between.
	page := func(t *testing.T, between func(page int)) []string {
		var all []string
		token := ""
		var last uint64
		for i := 0; ; i++ {
			if i > 10 {
				t.Fatalf("more than 10 pages of 10 for %d posts", n)
			}
			ps, next := c.homePage(t, b, 10, token)
			if len(ps) > 10 {
				t.Fatalf("page %d has %d posts; want at most 10", i, len(ps))
			}
			if wantLen := min(10, n-len(all)); len(ps) != wantLen {
				t.Fatalf("page %d has %d posts; want %d", i, len(ps), wantLen)
			}
			if i > 0 && len(ps) > 0 {
				if first := postID(t, ps[0].GetPostId()); first >= last {
					t.Fatalf("page %d starts at %d, not older than the previous page's last %d", i, first, last)
				}
			}
			if len(ps) > 0 {
				last = postID(t, ps[len(ps)-1].GetPostId())
			}
			all = append(all, ids(ps)...)
			if next == "" {
				break
			}
			token = next
			if between != nil {
				between(i)
			}
		}
		return all
	}

	t.Run("NewestFirstNoGaps", func(t *testing.T) {
		got := page(t, nil)
		if !slices.Equal(got, want) {
			t.Fatalf("pages of 10 = %v; want %v", got, want)
		}
	})

	t.Run("StableWhileNewPostsArrive", func(t *testing.T) {
		got := page(t, func(i int) {
			p := c.createPost(t, a, fmt.Sprintf("new while paging %d", i), "")
			// Wait until the new post is in b's timeline, so the next page
			// is read with it there.
			c.waitHome(t, b, 5*time.Second, "the new post "+p.GetPostId(), func(got []string) bool {
				return slices.Contains(got, p.GetPostId())
			})
		})
		if !slices.Equal(got, want) {
			t.Fatalf("pages of 10 with posts arriving in between = %v; want exactly the %d originals %v", got, n, want)
		}
	})

	t.Run("DefaultPageSize", func(t *testing.T) {
		ps, next := c.homePage(t, b, 0, "")
		if len(ps) != 20 || next == "" {
			t.Errorf("GetHomeTimeline(page_size 0) = %d posts, next %q; want 20 and a next token", len(ps), next)
		}
		ps, next = c.userPosts(t, a, 0, "")
		if len(ps) != 20 || next == "" {
			t.Errorf("ListUserPosts(page_size 0) = %d posts, next %q; want 20 and a next token", len(ps), next)
		}
	})

	t.Run("PageSizeCoercedTo100", func(t *testing.T) {
		const big = "ord_big"
		for i := range 105 {
			c.createPost(t, big, fmt.Sprintf("big %d", i), "")
		}
		ps, next := c.homePage(t, big, 500, "")
		if len(ps) != 100 || next == "" {
			t.Fatalf("GetHomeTimeline(page_size 500) = %d posts, next %q; want 100 and a next token", len(ps), next)
		}
		rest, next := c.homePage(t, big, 500, next)
		if len(rest) != 5 || next != "" {
			t.Errorf("second page of GetHomeTimeline(page_size 500) = %d posts, next %q; want 5 and no next token", len(rest), next)
		}
		ups, next := c.userPosts(t, big, 500, "")
		if len(ups) != 100 || next == "" {
			t.Fatalf("ListUserPosts(page_size 500) = %d posts, next %q; want 100 and a next token", len(ups), next)
		}
		rest, next = c.userPosts(t, big, 500, next)
		if len(rest) != 5 || next != "" {
			t.Errorf("second page of ListUserPosts(page_size 500) = %d posts, next %q; want 5 and no next token", len(rest), next)
		}
	})

	t.Run("NegativePageSize", func(t *testing.T) {
		ctx, cancel := rpcCtx()
		defer cancel()
		_, err := c.tl.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: b, PageSize: -1})
		wantStatus(t, "GetHomeTimeline(page_size -1)", err, codes.InvalidArgument, "page_size")
		_, err = c.post.ListUserPosts(ctx, &feedv1.ListUserPostsRequest{AuthorId: a, PageSize: -1})
		wantStatus(t, "ListUserPosts(page_size -1)", err, codes.InvalidArgument, "page_size")
		_, err = c.graph.ListFollowers(ctx, &feedv1.ListFollowersRequest{UserId: a, PageSize: -5})
		wantStatus(t, "ListFollowers(page_size -5)", err, codes.InvalidArgument, "page_size")
		_, err = c.graph.ListFollowing(ctx, &feedv1.ListFollowingRequest{UserId: b, PageSize: -5})
		wantStatus(t, "ListFollowing(page_size -5)", err, codes.InvalidArgument, "page_size")
	})
}

func testIdempotency(t *testing.T, c *client) {
	const a, other, fan = "idem_a", "idem_other", "idem_fan"
	c.follow(t, fan, a)
	c.home(t, fan)

	first := c.createPost(t, a, "once", "key-1")
	again := c.createPost(t, a, "once", "key-1")
	if again.GetPostId() != first.GetPostId() {
		t.Fatalf("CreatePost retry with the same key = post %s; want the first post %s", again.GetPostId(), first.GetPostId())
	}
	if !again.GetCreateTime().AsTime().Equal(first.GetCreateTime().AsTime()) {
		t.Errorf("CreatePost retry create_time = %v; want the first's %v", again.GetCreateTime().AsTime(), first.GetCreateTime().AsTime())
	}
	if got := c.allUserPosts(t, a); !slices.Equal(got, []string{first.GetPostId()}) {
		t.Fatalf("ListUserPosts(%s) after a retried CreatePost = %v; want exactly [%s]", a, got, first.GetPostId())
	}

	second := c.createPost(t, a, "once", "key-2")
	if second.GetPostId() == first.GetPostId() {
		t.Fatalf("CreatePost with a different key = post %s; want a new post", second.GetPostId())
	}
	if got, want := c.allUserPosts(t, a), []string{second.GetPostId(), first.GetPostId()}; !slices.Equal(got, want) {
		t.Fatalf("ListUserPosts(%s) after two keys = %v; want %v", a, got, want)
	}

	theirs := c.createPost(t, other, "once", "key-1")
	if theirs.GetPostId() == first.GetPostId() {
		t.Fatalf("CreatePost by %s with %s's key = post %s; want a distinct post", other, a, theirs.GetPostId())
	}
	if got := c.allUserPosts(t, other); !slices.Equal(got, []string{theirs.GetPostId()}) {
		t.Fatalf("ListUserPosts(%s) = %v; want [%s]", other, got, theirs.GetPostId())
	}
	if got := c.allUserPosts(t, a); len(got) != 2 {
		t.Fatalf("ListUserPosts(%s) after %s used the same key = %v; want 2 posts", a, other, got)
	}

	// The follower gets each post once, however often it was submitted.
	got := c.waitHome(t, fan, 5*time.Second, "both posts of "+a, func(got []string) bool {
		return containsAll(got, first.GetPostId(), second.GetPostId())
	})
	if want := []string{second.GetPostId(), first.GetPostId()}; !slices.Equal(got, want) {
		t.Errorf("home timeline of %s = %v; want %v", fan, got, want)
	}
}

func testFollowUnfollow(t *testing.T, c *client) {
	const a, b, marker = "fu_a", "fu_b", "fu_marker"
	early := c.createPost(t, a, "before anyone followed", "")
	c.follow(t, b, marker)
	c.home(t, b) // b's timeline is cached from here on

	t.Run("FollowIdempotent", func(t *testing.T) {
		c.follow(t, b, a)
		c.follow(t, b, a)
		if got := c.followers(t, a); !slices.Equal(got, []string{b}) {
			t.Errorf("ListFollowers(%s) after following twice = %v; want [%s]", a, got, b)
		}
		if got := c.following(t, b); !slices.Equal(got, []string{a, marker}) {
			t.Errorf("ListFollowing(%s) = %v; want [%s %s]", b, got, a, marker)
		}
	})

	t.Run("Backfill", func(t *testing.T) {
		c.waitHome(t, b, 5*time.Second, "the earlier post "+early.GetPostId()+" backfilled", func(got []string) bool {
			return slices.Contains(got, early.GetPostId())
		})
	})

	later := c.createPost(t, a, "while followed", "")
	c.waitHome(t, b, 5*time.Second, "the new post "+later.GetPostId(), func(got []string) bool {
		return slices.Contains(got, later.GetPostId())
	})

	t.Run("UnfollowIdempotent", func(t *testing.T) {
		c.unfollow(t, b, a)
		c.unfollow(t, b, a)
		if got := c.followers(t, a); len(got) != 0 {
			t.Errorf("ListFollowers(%s) after unfollowing twice = %v; want none", a, got)
		}
		if got := c.following(t, b); !slices.Equal(got, []string{marker}) {
			t.Errorf("ListFollowing(%s) after unfollowing %s = %v; want [%s]", b, a, got, marker)
		}
	})

	t.Run("UnfollowPurges", func(t *testing.T) {
		c.waitHome(t, b, 5*time.Second, "none of "+a+"'s posts", func(got []string) bool {
			return containsNone(got, early.GetPostId(), later.GetPostId())
		})
	})

	t.Run("NoNewPostsAfterUnfollow", func(t *testing.T) {
		after := c.createPost(t, a, "after the unfollow", "")
		// Events fan out in order: once a later post by an account b still
		// follows has arrived, the post by a has been handled too.
		m := c.createPost(t, marker, "marker", "")
		got := c.waitHome(t, b, 5*time.Second, "the marker post "+m.GetPostId(), func(got []string) bool {
			return slices.Contains(got, m.GetPostId())
		})
		if slices.Contains(got, after.GetPostId()) {
			t.Errorf("home timeline of %s = %v; want no post %s by unfollowed %s", b, got, after.GetPostId(), a)
		}
	})
}

func testDelete(t *testing.T, c *client) {
	const a, b1, b2 = "del_a", "del_b1", "del_b2"
	c.follow(t, b1, a)
	c.follow(t, b2, a)
	c.home(t, b1)
	c.home(t, b2)
	keep := c.createPost(t, a, "keep me", "")
	doomed := c.createPost(t, a, "delete me", "")
	for _, u := range []string{b1, b2} {
		c.waitHome(t, u, 5*time.Second, "both posts of "+a, func(got []string) bool {
			return containsAll(got, keep.GetPostId(), doomed.GetPostId())
		})
	}
	ctx, cancel := rpcCtx()
	defer cancel()

	t.Run("OthersPostDenied", func(t *testing.T) {
		_, err := c.post.DeletePost(ctx, &feedv1.DeletePostRequest{PostId: doomed.GetPostId(), AuthorId: b1})
		wantStatus(t, "DeletePost(someone else's post)", err, codes.PermissionDenied, "")
		if _, err := c.post.GetPost(ctx, &feedv1.GetPostRequest{PostId: doomed.GetPostId()}); err != nil {
			t.Errorf("GetPost after a denied delete error = %v; want the post", err)
		}
		if got := c.home(t, b1); !slices.Contains(got, doomed.GetPostId()) {
			t.Errorf("home timeline of %s after a denied delete = %v; want it to hold %s", b1, got, doomed.GetPostId())
		}
	})

	t.Run("GoneEverywhere", func(t *testing.T) {
		if _, err := c.post.DeletePost(ctx, &feedv1.DeletePostRequest{PostId: doomed.GetPostId(), AuthorId: a}); err != nil {
			t.Fatalf("DeletePost by its author error = %v; want nil", err)
		}
		// No polling from here on: the post is gone when DeletePost returns.
		_, err := c.post.GetPost(ctx, &feedv1.GetPostRequest{PostId: doomed.GetPostId()})
		wantStatus(t, "GetPost(deleted post)", err, codes.NotFound, "")
		for _, u := range []string{a, b1, b2} {
			got := c.home(t, u)
			if slices.Contains(got, doomed.GetPostId()) {
				t.Errorf("home timeline of %s right after DeletePost = %v; want no %s", u, got, doomed.GetPostId())
			}
			if !slices.Contains(got, keep.GetPostId()) {
				t.Errorf("home timeline of %s right after DeletePost = %v; want it to keep %s", u, got, keep.GetPostId())
			}
		}
		// A one-post page skips the deleted post instead of coming back
		// empty.
		if ps, _ := c.homePage(t, b1, 1, ""); len(ps) != 1 || ps[0].GetPostId() != keep.GetPostId() {
			t.Errorf("first 1-post page of %s = %v; want [%s]", b1, ids(ps), keep.GetPostId())
		}
		if got := c.allUserPosts(t, a); !slices.Equal(got, []string{keep.GetPostId()}) {
			t.Errorf("ListUserPosts(%s) after DeletePost = %v; want [%s]", a, got, keep.GetPostId())
		}
		_, err = c.post.DeletePost(ctx, &feedv1.DeletePostRequest{PostId: doomed.GetPostId(), AuthorId: a})
		wantStatus(t, "DeletePost(already deleted)", err, codes.NotFound, "")
	})

	t.Run("UnknownPost", func(t *testing.T) {
		_, err := c.post.DeletePost(ctx, &feedv1.DeletePostRequest{PostId: "123456789", AuthorId: a})
		wantStatus(t, "DeletePost(unknown ID)", err, codes.NotFound, "")
	})

	t.Run("MalformedID", func(t *testing.T) {
		for _, id := range []string{"abc", "", "-1", "0", "18446744073709551616"} {
			_, err := c.post.DeletePost(ctx, &feedv1.DeletePostRequest{PostId: id, AuthorId: a})
			wantStatus(t, fmt.Sprintf("DeletePost(%q)", id), err, codes.InvalidArgument, "post_id")
			_, err = c.post.GetPost(ctx, &feedv1.GetPostRequest{PostId: id})
			wantStatus(t, fmt.Sprintf("GetPost(%q)", id), err, codes.InvalidArgument, "post_id")
		}
	})
}

// openStream opens user's live stream and returns a channel of what it
// receives; the channel closes when the stream ends.
func openStream(t *testing.T, c *client, user string) <-chan *feedv1.Post {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := c.tl.StreamHomeTimeline(ctx, &feedv1.StreamHomeTimelineRequest{UserId: user})
	if err != nil {
		t.Fatalf("StreamHomeTimeline(%s) error = %v; want nil", user, err)
	}
	out := make(chan *feedv1.Post, 64)
	go func() {
		defer close(out)
		for {
			resp, err := st.Recv()
			if err != nil {
				if err != io.EOF && status.Code(err) != codes.Canceled {
					out <- &feedv1.Post{Text: "stream error: " + err.Error()}
				}
				return
			}
			out <- resp.GetPost()
		}
	}()
	return out
}

// awaitPost reads posts from ch until one has id, for up to d, and returns
// the posts it skipped on the way.
func awaitPost(t *testing.T, ch <-chan *feedv1.Post, id string, d time.Duration) (*feedv1.Post, []*feedv1.Post) {
	t.Helper()
	timeout := time.After(d)
	var skipped []*feedv1.Post
	for {
		select {
		case p, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended before post %s arrived; got %v first", id, skipped)
			}
			if p.GetPostId() == id {
				return p, skipped
			}
			skipped = append(skipped, p)
		case <-timeout:
			t.Fatalf("stream did not deliver post %s within %v; got %v", id, d, skipped)
		}
	}
}

func testLiveStream(t *testing.T, c *client) {
	const a, b, stranger, late = "live_a", "live_b", "live_stranger", "live_late"
	c.follow(t, b, a)
	ch := openStream(t, c, b)

	// The server subscribes the stream after the call returns; post until
	// one arrives, which shows the stream is live.
	live := false
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; !live && time.Now().Before(deadline); i++ {
		c.createPost(t, a, fmt.Sprintf("ping %d", i), "")
		select {
		case got, ok := <-ch:
			if !ok {
				t.Fatalf("stream of %s ended while waiting for it to go live", b)
			}
			if got.GetAuthorId() != a {
				t.Fatalf("stream of %s delivered %v while only %s posted; want a post by %s", b, got, a, a)
			}
			live = true
		case <-time.After(200 * time.Millisecond):
		}
	}
	if !live {
		t.Fatalf("stream of %s delivered no post by %s within 5s", b, a)
	}

	t.Run("FolloweePost", func(t *testing.T) {
		noise := c.createPost(t, stranger, "not followed", "")
		want := c.createPost(t, a, "live post", "")
		got, skipped := awaitPost(t, ch, want.GetPostId(), 5*time.Second)
		if got.GetText() != "live post" || got.GetAuthorId() != a || !got.GetCreateTime().AsTime().Equal(want.GetCreateTime().AsTime()) {
			t.Errorf("streamed post = %v; want %v", got, want)
		}
		for _, p := range skipped {
			if p.GetPostId() == noise.GetPostId() || p.GetAuthorId() != a {
				t.Errorf("stream of %s delivered %v; want only posts by accounts it follows", b, p)
			}
		}
	})

	t.Run("OwnPost", func(t *testing.T) {
		want := c.createPost(t, b, "my own live post", "")
		got, _ := awaitPost(t, ch, want.GetPostId(), 5*time.Second)
		if got.GetText() != want.GetText() || got.GetAuthorId() != b {
			t.Errorf("streamed own post = %v; want %v", got, want)
		}
	})

	t.Run("FollowWhileStreaming", func(t *testing.T) {
		c.follow(t, b, late)
		want := c.createPost(t, late, "followed after the stream opened", "")
		got, _ := awaitPost(t, ch, want.GetPostId(), 5*time.Second)
		if got.GetAuthorId() != late {
			t.Errorf("streamed post = %v; want %v", got, want)
		}
	})
}

// rawCodec sends and receives pre-encoded protobuf bytes, so that a test can
// send what the generated client refuses to encode (invalid UTF-8).
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// rawCreatePost calls CreatePost with author and text encoded by hand.
func rawCreatePost(c *client, author, text string) error {
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	req = protowire.AppendString(req, author)
	req = protowire.AppendTag(req, 2, protowire.BytesType)
	req = protowire.AppendString(req, text)
	var resp []byte
	ctx, cancel := rpcCtx()
	defer cancel()
	return c.conn.Invoke(ctx, feedv1.PostService_CreatePost_FullMethodName, &req, &resp, grpc.ForceCodec(rawCodec{}))
}

func testBadInput(t *testing.T, c *client) {
	const author, follower, followee = "bad_author", "bad_follower", "bad_followee"

	t.Run("CreatePost", func(t *testing.T) {
		tests := []struct {
			name, author, text, field string
		}{
			{"empty text", author, "", "text"},
			{"whitespace-only text", author, " \n\t ", "text"},
			{"501 characters", author, strings.Repeat("a", 501), "text"},
			{"501 two-byte characters", author, strings.Repeat("é", 501), "text"},
			{"bell character", author, "a\x07b", "text"},
			{"tab character", author, "a\tb", "text"},
			{"NUL character", author, "a\x00b", "text"},
			{"empty author", "", "hi", "author_id"},
			{"65-character author", strings.Repeat("a", 65), "hi", "author_id"},
			{"upper-case author", "Alice", "hi", "author_id"},
			{"author with a dash", "al-ice", "hi", "author_id"},
			{"author with a space", "a b", "hi", "author_id"},
		}
		for _, tt := range tests {
			ctx, cancel := rpcCtx()
			_, err := c.post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: tt.author, Text: tt.text})
			cancel()
			wantStatus(t, fmt.Sprintf("%s: CreatePost(%.20q, %.20q)", tt.name, tt.author, tt.text), err, codes.InvalidArgument, tt.field)
		}
		// Invalid UTF-8 cannot go through the generated client, which
		// checks strings; send the bytes as an outside client could.
		raw := []struct{ name, author, text, field string }{
			{"invalid UTF-8 text", author, "\xff", "text"},
			{"invalid UTF-8 inside text", author, "ok \xc3\x28 no", "text"},
			{"invalid UTF-8 author", "a\xff", "hi", "author_id"},
		}
		for _, tt := range raw {
			err := rawCreatePost(c, tt.author, tt.text)
			wantStatus(t, fmt.Sprintf("%s: CreatePost(%q, %q)", tt.name, tt.author, tt.text), err, codes.InvalidArgument, tt.field)
		}
		if got := c.allUserPosts(t, author); len(got) != 0 {
			t.Errorf("ListUserPosts(%s) after only bad CreatePosts = %v; want none stored", author, got)
		}
	})

	t.Run("CreatePostAccepted", func(t *testing.T) {
		const ok = "bad_ok"
		var want []string
		for _, text := range []string{strings.Repeat("é", 500), strings.Repeat("a", 500), "a\nb", "x"} {
			want = append(want, c.createPost(t, ok, text, "").GetPostId())
		}
		slices.Reverse(want)
		if got := c.allUserPosts(t, ok); !slices.Equal(got, want) {
			t.Errorf("ListUserPosts(%s) = %v; want %v", ok, got, want)
		}
	})

	t.Run("Graph", func(t *testing.T) {
		tests := []struct {
			name, follower, followee, field string
		}{
			{"self-follow", follower, follower, "followee_id"},
			{"bad follower_id", "Bad_Follower", followee, "follower_id"},
			{"empty follower_id", "", followee, "follower_id"},
			{"bad followee_id", follower, "bad followee", "followee_id"},
			{"long followee_id", follower, strings.Repeat("x", 65), "followee_id"},
		}
		for _, tt := range tests {
			ctx, cancel := rpcCtx()
			_, err := c.graph.Follow(ctx, &feedv1.FollowRequest{FollowerId: tt.follower, FolloweeId: tt.followee})
			wantStatus(t, fmt.Sprintf("%s: Follow(%q, %q)", tt.name, tt.follower, tt.followee), err, codes.InvalidArgument, tt.field)
			_, err = c.graph.Unfollow(ctx, &feedv1.UnfollowRequest{FollowerId: tt.follower, FolloweeId: tt.followee})
			wantStatus(t, fmt.Sprintf("%s: Unfollow(%q, %q)", tt.name, tt.follower, tt.followee), err, codes.InvalidArgument, tt.field)
			cancel()
		}
		if got := c.following(t, follower); len(got) != 0 {
			t.Errorf("ListFollowing(%s) after only bad Follows = %v; want none", follower, got)
		}
		if got := c.followers(t, follower); len(got) != 0 {
			t.Errorf("ListFollowers(%s) after a self-follow = %v; want none", follower, got)
		}
		if got := c.followers(t, followee); len(got) != 0 {
			t.Errorf("ListFollowers(%s) after only bad Follows = %v; want none", followee, got)
		}

		ctx, cancel := rpcCtx()
		defer cancel()
		_, err := c.graph.ListFollowers(ctx, &feedv1.ListFollowersRequest{UserId: "Nope"})
		wantStatus(t, `ListFollowers("Nope")`, err, codes.InvalidArgument, "user_id")
		_, err = c.tl.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: "no-pe"})
		wantStatus(t, `GetHomeTimeline("no-pe")`, err, codes.InvalidArgument, "user_id")
		_, err = c.post.ListUserPosts(ctx, &feedv1.ListUserPostsRequest{AuthorId: ""})
		wantStatus(t, `ListUserPosts("")`, err, codes.InvalidArgument, "author_id")
	})

	t.Run("PageToken", func(t *testing.T) { testBadPageTokens(t, c) })
}

// tamper flips one character in the middle of a token, where every base64
// character carries six bits of the token.
func tamper(token string) string {
	b := []byte(token)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func testBadPageTokens(t *testing.T, c *client) {
	const u, v = "tok_u", "tok_v"
	for _, user := range []string{u, v} {
		for i := range 3 {
			c.createPost(t, user, fmt.Sprintf("%s %d", user, i), "")
		}
		for i := range 3 {
			c.follow(t, fmt.Sprintf("%s_fan%d", user, i), user)
		}
	}

	type lister struct {
		name  string
		first func(t *testing.T, user string) string // a real next token for user's list
		call  func(user, token string) error
	}
	listers := []lister{
		{
			name: "GetHomeTimeline",
			first: func(t *testing.T, user string) string {
				_, next := c.homePage(t, user, 1, "")
				return next
			},
			call: func(user, token string) error {
				ctx, cancel := rpcCtx()
				defer cancel()
				_, err := c.tl.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: user, PageSize: 1, PageToken: token})
				return err
			},
		},
		{
			name: "ListUserPosts",
			first: func(t *testing.T, user string) string {
				_, next := c.userPosts(t, user, 1, "")
				return next
			},
			call: func(user, token string) error {
				ctx, cancel := rpcCtx()
				defer cancel()
				_, err := c.post.ListUserPosts(ctx, &feedv1.ListUserPostsRequest{AuthorId: user, PageSize: 1, PageToken: token})
				return err
			},
		},
		{
			name: "ListFollowers",
			first: func(t *testing.T, user string) string {
				ctx, cancel := rpcCtx()
				defer cancel()
				resp, err := c.graph.ListFollowers(ctx, &feedv1.ListFollowersRequest{UserId: user, PageSize: 1})
				if err != nil {
					t.Fatalf("ListFollowers(%s) error = %v; want nil", user, err)
				}
				return resp.GetNextPageToken()
			},
			call: func(user, token string) error {
				ctx, cancel := rpcCtx()
				defer cancel()
				_, err := c.graph.ListFollowers(ctx, &feedv1.ListFollowersRequest{UserId: user, PageSize: 1, PageToken: token})
				return err
			},
		},
	}
	for _, l := range listers {
		t.Run(l.name, func(t *testing.T) {
			mine, theirs := l.first(t, u), l.first(t, v)
			if mine == "" || theirs == "" {
				t.Fatalf("%s next_page_token for 1-item pages = %q, %q; want tokens", l.name, mine, theirs)
			}
			if err := l.call(u, mine); err != nil {
				t.Fatalf("%s(%s) with its own next_page_token error = %v; want nil", l.name, u, err)
			}
			bad := []struct{ name, token string }{
				{"malformed", "zzz"},
				{"not base64", "!!!!"},
				{"tampered", tamper(mine)},
				{"truncated", mine[:len(mine)-2]},
				{"another user's", theirs},
			}
			for _, b := range bad {
				err := l.call(u, b.token)
				wantStatus(t, fmt.Sprintf("%s(%s) with a %s page_token %q", l.name, u, b.name, b.token), err, codes.InvalidArgument, "page_token")
			}
		})
	}

	t.Run("AnotherListsToken", func(t *testing.T) {
		homeTok := listers[0].first(t, u)
		err := listers[1].call(u, homeTok)
		wantStatus(t, "ListUserPosts with a GetHomeTimeline token", err, codes.InvalidArgument, "page_token")
	})
}

// TestRestart checks that durable data survives a restart on the same data
// directory, that lost cached timelines are rebuilt, and that fan-out works
// again afterwards.
func TestRestart(t *testing.T) {
	const a, b = "rs_a", "rs_b"
	dir := t.TempDir()

	conn, stop := startSystem(t, dir)
	c := newClient(conn)
	c.follow(t, b, a)
	p1 := c.createPost(t, a, "before the restart 1", "k1")
	p2 := c.createPost(t, a, "before the restart 2", "")
	c.waitHome(t, b, 5*time.Second, "both posts", func(got []string) bool {
		return containsAll(got, p1.GetPostId(), p2.GetPostId())
	})
	_, token := c.homePage(t, b, 1, "")
	stop()

	conn, stop = startSystem(t, dir)
	defer stop()
	c = newClient(conn)

	ctx, cancel := rpcCtx()
	defer cancel()
	resp, err := c.post.GetPost(ctx, &feedv1.GetPostRequest{PostId: p1.GetPostId()})
	if err != nil || resp.GetPost().GetText() != p1.GetText() || resp.GetPost().GetAuthorId() != a {
		t.Errorf("GetPost(%s) after restart = %v, %v; want %v", p1.GetPostId(), resp.GetPost(), err, p1)
	}
	if got, want := c.allUserPosts(t, a), []string{p2.GetPostId(), p1.GetPostId()}; !slices.Equal(got, want) {
		t.Errorf("ListUserPosts(%s) after restart = %v; want %v", a, got, want)
	}
	if got := c.followers(t, a); !slices.Equal(got, []string{b}) {
		t.Errorf("ListFollowers(%s) after restart = %v; want [%s]", a, got, b)
	}
	// The memory cache is gone; the first read rebuilds b's timeline from
	// the durable store.
	if got, want := c.home(t, b), []string{p2.GetPostId(), p1.GetPostId()}; !slices.Equal(got, want) {
		t.Errorf("home timeline of %s after restart = %v; want %v", b, got, want)
	}
	// A page token from before the restart still pages on.
	if ps, _ := c.homePage(t, b, 1, token); len(ps) != 1 || ps[0].GetPostId() != p1.GetPostId() {
		t.Errorf("home timeline of %s with a token from before the restart = %v; want [%s]", b, ids(ps), p1.GetPostId())
	}
	// The idempotency key outlives the restart too.
	if again := c.createPost(t, a, p1.GetText(), "k1"); again.GetPostId() != p1.GetPostId() {
		t.Errorf("CreatePost retry with key k1 after restart = post %s; want %s", again.GetPostId(), p1.GetPostId())
	}

	p3 := c.createPost(t, a, "after the restart", "")
	if postID(t, p3.GetPostId()) <= postID(t, p2.GetPostId()) {
		t.Errorf("post ID after restart %s <= %s from before; want newer IDs", p3.GetPostId(), p2.GetPostId())
	}
	c.waitHome(t, b, 5*time.Second, "the post made after the restart, "+p3.GetPostId(), func(got []string) bool {
		return slices.Contains(got, p3.GetPostId())
	})
}

// TestBackendUnavailable runs the timeline service with no graph service
// anywhere: a read that must rebuild a timeline cannot, and says
// UNAVAILABLE rather than hanging or INTERNAL.
func TestBackendUnavailable(t *testing.T) {
	conn, stop := startNode(t, t.TempDir(), []string{"timeline"}, func(_ context.Context, n *node.Node) error {
		return timeline.Register(n, timeline.Config{})
	})
	defer stop()
	c := newClient(conn)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		start := time.Now()
		st, err := c.tl.StreamHomeTimeline(ctx, &feedv1.StreamHomeTimelineRequest{UserId: "down_s"})
		if err == nil {
			_, err = st.Recv()
		}
		if d := time.Since(start); status.Code(err) != codes.Unavailable || d > 8*time.Second {
			t.Errorf("StreamHomeTimeline with no graph service = %v after %v; want UNAVAILABLE within 8s", err, d)
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.tl.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: "down_u"})
	d := time.Since(start)
	if status.Code(err) != codes.Unavailable {
		t.Errorf("GetHomeTimeline with no graph service error = %v after %v; want code Unavailable", err, d)
	}
	if d > 8*time.Second {
		t.Errorf("GetHomeTimeline with no graph service took %v; want UNAVAILABLE within 8s", d)
	}
	wg.Wait()
}
