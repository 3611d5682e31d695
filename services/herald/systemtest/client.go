package systemtest

import (
	"context"
	"crypto/ed25519"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/auth"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// CallTimeout bounds every RPC the suite makes, so a hung system fails the
// test instead of the whole run.
const CallTimeout = 10 * time.Second

// Client holds Herald's three public APIs, each on its own connection, so
// that a cluster can give every service its own resolver connection and the
// all-in-one can pass one connection three times.
type Client struct {
	Post     feedv1.PostServiceClient
	Graph    feedv1.GraphServiceClient
	Timeline feedv1.TimelineServiceClient

	// postConn carries hand-encoded PostService calls (see rawCreatePost).
	postConn grpc.ClientConnInterface
	// http is the HTTP API's connection when the Client calls over HTTP
	// (NewHTTPClient), else nil.
	http *HTTPConn

	// Key is a signing key the system trusts for users' tokens, and
	// ServiceKey the one of its service tokens, for RunAuth to forge
	// good and bad tokens with. The connections themselves act as the
	// user each call names (auth.ActAsNamedUser).
	Key        ed25519.PrivateKey
	ServiceKey ed25519.PrivateKey
}

// NewClient returns a Client whose calls go to the post, graph and
// timeline connections.
func NewClient(post, graph, timeline grpc.ClientConnInterface) *Client {
	return &Client{
		Post:     feedv1.NewPostServiceClient(post),
		Graph:    feedv1.NewGraphServiceClient(graph),
		Timeline: feedv1.NewTimelineServiceClient(timeline),
		postConn: post,
	}
}

// NewHTTPClient returns a Client whose calls go over the HTTP/JSON API at
// base (http://host:port), each signed for the user it names with key (the
// deployment's development key), as NewClient's connections are.
func NewHTTPClient(base string, key ed25519.PrivateKey) *Client {
	conn := NewHTTPConn(base, auth.NewSigner(key))
	c := NewClient(conn, conn, conn)
	c.http, c.Key = conn, key
	return c
}

// RPCContext returns a context that ends after CallTimeout.
func RPCContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), CallTimeout)
}

// CreatePost creates a post and fails t unless it succeeds and returns a
// post with author, text, a create_time and a well-formed ID.
func (c *Client) CreatePost(t testing.TB, author, text, key string) *feedv1.Post {
	t.Helper()
	ctx, cancel := RPCContext()
	defer cancel()
	req := &feedv1.CreatePostRequest{AuthorId: author, Text: text, IdempotencyKey: key}
	resp, err := c.Post.CreatePost(ctx, req)
	// A test that posts in a burst past the rate limit waits, as a
	// client should, as long as the server's RetryInfo says.
	for err != nil && status.Code(err) == codes.ResourceExhausted {
		if !waitRetryInfo(ctx, err) {
			break
		}
		resp, err = c.Post.CreatePost(ctx, req)
	}
	if err != nil {
		t.Fatalf("CreatePost(%s, %q, %q) error = %v; want nil", author, text, key, err)
	}
	p := resp.GetPost()
	if p.GetAuthorId() != author || p.GetText() != text || p.GetCreateTime() == nil {
		t.Fatalf("CreatePost(%s, %q) = %v; want author %s, the same text and a create_time", author, text, p, author)
	}
	PostID(t, p.GetPostId())
	return p
}

// waitRetryInfo waits for the delay of err's google.rpc.RetryInfo, and
// reports false if err has none or ctx ends first.
func waitRetryInfo(ctx context.Context, err error) bool {
	d, ok := RetryDelay(err)
	if !ok {
		return false
	}
	select {
	case <-time.After(d):
		return true
	case <-ctx.Done():
		return false
	}
}

// Follow makes follower follow followee, failing t on error.
func (c *Client) Follow(t testing.TB, follower, followee string) {
	t.Helper()
	ctx, cancel := RPCContext()
	defer cancel()
	if _, err := c.Graph.Follow(ctx, &feedv1.FollowRequest{FollowerId: follower, FolloweeId: followee}); err != nil {
		t.Fatalf("Follow(%s, %s) error = %v; want nil", follower, followee, err)
	}
}

// Unfollow makes follower stop following followee, failing t on error.
func (c *Client) Unfollow(t testing.TB, follower, followee string) {
	t.Helper()
	ctx, cancel := RPCContext()
	defer cancel()
	if _, err := c.Graph.Unfollow(ctx, &feedv1.UnfollowRequest{FollowerId: follower, FolloweeId: followee}); err != nil {
		t.Fatalf("Unfollow(%s, %s) error = %v; want nil", follower, followee, err)
	}
}

// HomePage returns one page of user's home timeline and the next page
// token, failing t on error or if the page is not newest first.
func (c *Client) HomePage(t testing.TB, user string, size int32, token string) ([]*feedv1.Post, string) {
	t.Helper()
	ctx, cancel := RPCContext()
	defer cancel()
	resp, err := c.Timeline.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: user, PageSize: size, PageToken: token})
	if err != nil {
		t.Fatalf("GetHomeTimeline(%s, %d, %q) error = %v; want nil", user, size, token, err)
	}
	CheckNewestFirst(t, "GetHomeTimeline("+user+")", resp.GetPosts())
	return resp.GetPosts(), resp.GetNextPageToken()
}

// Home returns the post IDs on the first page (up to 100) of user's home
// timeline.
func (c *Client) Home(t testing.TB, user string) []string {
	t.Helper()
	ps, _ := c.HomePage(t, user, 100, "")
	return IDs(ps)
}

// UserPosts returns one page of author's posts and the next page token,
// failing t on error or if the page is not newest first.
func (c *Client) UserPosts(t testing.TB, author string, size int32, token string) ([]*feedv1.Post, string) {
	t.Helper()
	ctx, cancel := RPCContext()
	defer cancel()
	resp, err := c.Post.ListUserPosts(ctx, &feedv1.ListUserPostsRequest{AuthorId: author, PageSize: size, PageToken: token})
	if err != nil {
		t.Fatalf("ListUserPosts(%s, %d, %q) error = %v; want nil", author, size, token, err)
	}
	CheckNewestFirst(t, "ListUserPosts("+author+")", resp.GetPosts())
	return resp.GetPosts(), resp.GetNextPageToken()
}

// AllUserPosts returns the IDs of all of author's posts, paging through.
func (c *Client) AllUserPosts(t testing.TB, author string) []string {
	t.Helper()
	var out []string
	token := ""
	for {
		ps, next := c.UserPosts(t, author, 100, token)
		out = append(out, IDs(ps)...)
		if next == "" {
			return out
		}
		token = next
	}
}

// Followers returns up to 1000 of user's followers.
func (c *Client) Followers(t testing.TB, user string) []string {
	t.Helper()
	ctx, cancel := RPCContext()
	defer cancel()
	resp, err := c.Graph.ListFollowers(ctx, &feedv1.ListFollowersRequest{UserId: user, PageSize: 1000})
	if err != nil {
		t.Fatalf("ListFollowers(%s) error = %v; want nil", user, err)
	}
	return resp.GetUserIds()
}

// Following returns up to 1000 of the accounts user follows.
func (c *Client) Following(t testing.TB, user string) []string {
	t.Helper()
	ctx, cancel := RPCContext()
	defer cancel()
	resp, err := c.Graph.ListFollowing(ctx, &feedv1.ListFollowingRequest{UserId: user, PageSize: 1000})
	if err != nil {
		t.Fatalf("ListFollowing(%s) error = %v; want nil", user, err)
	}
	return resp.GetUserIds()
}

// WaitHome polls user's home timeline until cond holds on its IDs, for up
// to d, and fails with what it last saw otherwise; what describes the
// wanted state in that message.
func (c *Client) WaitHome(t testing.TB, user string, d time.Duration, what string, cond func(ids []string) bool) []string {
	t.Helper()
	var got []string
	if !waitfor.True(d, waitfor.Interval, func() bool {
		got = c.Home(t, user)
		return cond(got)
	}) {
		t.Fatalf("home timeline of %s after %v = %v; want %s", user, d, got, what)
	}
	return got
}

// PostID parses a post ID, failing t unless it is a non-zero decimal
// 64-bit number.
func PostID(t testing.TB, s string) uint64 {
	t.Helper()
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		t.Fatalf("post_id %q is not a decimal 64-bit ID: %v", s, err)
	}
	return id
}

// CheckNewestFirst fails t unless ps is in strictly decreasing post ID
// order; what names the call in the message.
func CheckNewestFirst(t testing.TB, what string, ps []*feedv1.Post) {
	t.Helper()
	for i := 1; i < len(ps); i++ {
		if a, b := PostID(t, ps[i-1].GetPostId()), PostID(t, ps[i].GetPostId()); a <= b {
			t.Fatalf("%s: post %d has ID %d after %d; want strictly decreasing IDs", what, i, b, a)
		}
	}
}

// IDs returns the IDs of ps, in order.
func IDs(ps []*feedv1.Post) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.GetPostId()
	}
	return out
}

// ContainsAll reports whether have holds every one of want.
func ContainsAll(have []string, want ...string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// ContainsNone reports whether have holds none of unwanted.
func ContainsNone(have []string, unwanted ...string) bool {
	for _, u := range unwanted {
		if slices.Contains(have, u) {
			return false
		}
	}
	return true
}

// WantStatus reports an error on t unless err is a status with code and,
// when field is not empty, a message naming field; call names the call in
// the message.
func WantStatus(t testing.TB, call string, err error, code codes.Code, field string) {
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
