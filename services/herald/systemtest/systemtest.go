// Package systemtest is the behaviour suite of Herald's public API, run
// over gRPC against a whole running system: the in-process all-in-one node
// and the multi-process cluster both pass it. It checks what the API
// promises: visibility, ordering and paging, idempotency, follow and
// unfollow, delete, the live stream and the rejection of bad input.
//
// Run uses fixed user names, so each deployment (one durable store) must
// see at most one Run.
package systemtest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// Run checks every API behaviour against the system behind c, one subtest
// each. Each subtest uses its own users.
func Run(t *testing.T, c *Client) {
	t.Run("Visibility", func(t *testing.T) { testVisibility(t, c) })
	t.Run("OrderingAndPaging", func(t *testing.T) { testOrderingAndPaging(t, c) })
	t.Run("Idempotency", func(t *testing.T) { testIdempotency(t, c) })
	t.Run("FollowUnfollow", func(t *testing.T) { testFollowUnfollow(t, c) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, c) })
	t.Run("LiveStream", func(t *testing.T) { testLiveStream(t, c) })
	t.Run("BadInput", func(t *testing.T) { testBadInput(t, c) })
	t.Run("UnknownPost", func(t *testing.T) {
		ctx, cancel := RPCContext()
		defer cancel()
		_, err := c.Post.GetPost(ctx, &feedv1.GetPostRequest{PostId: "123"})
		WantStatus(t, `GetPost("123")`, err, codes.NotFound, "")
	})
}

func testVisibility(t *testing.T, c *Client) {
	const a, b = "vis_a", "vis_b"
	c.Follow(t, b, a)
	// Read b's timeline first, so the post must arrive by fan-out into a
	// cached timeline rather than by the rebuild of a missing one.
	if got := c.Home(t, b); len(got) != 0 {
		t.Fatalf("home timeline of %s before any post = %v; want empty", b, got)
	}

	p := c.CreatePost(t, a, "hello from a", "")
	posted := time.Now()

	// The author reads their own write: the first read has it.
	own, _ := c.HomePage(t, a, 20, "")
	if len(own) == 0 || own[0].GetPostId() != p.GetPostId() || own[0].GetText() != p.GetText() || own[0].GetAuthorId() != a {
		t.Errorf("home timeline of %s right after CreatePost = %v; want %v first", a, own, p)
	}

	// The follower sees it. How soon is a figure (herald_fanout_lag_seconds,
	// make bench-lag), not a pass mark: a loaded machine may take longer.
	var got []*feedv1.Post
	seen := waitfor.True(waitfor.Deadline, waitfor.Interval, func() bool {
		got, _ = c.HomePage(t, b, 20, "")
		return len(got) > 0 && got[0].GetPostId() == p.GetPostId()
	})
	if !seen {
		t.Fatalf("home timeline of %s %v after %s posted = %v; want %s first", b, waitfor.Deadline, a, IDs(got), p.GetPostId())
	}
	t.Logf("visible to the follower %v after CreatePost returned", time.Since(posted))
	if g := got[0]; g.GetText() != p.GetText() || g.GetAuthorId() != a || !g.GetCreateTime().AsTime().Equal(p.GetCreateTime().AsTime()) {
		t.Errorf("follower's copy = %v; want %v", g, p)
	}
}

func testOrderingAndPaging(t *testing.T, c *Client) {
	const a, b = "ord_a", "ord_b"
	const n = 45
	c.Follow(t, b, a)
	c.Home(t, b)
	var want []string
	for i := range n {
		want = append(want, c.CreatePost(t, a, fmt.Sprintf("post %d", i), "").GetPostId())
	}
	c.WaitHome(t, b, waitfor.Deadline, fmt.Sprintf("all %d posts of %s", n, a), func(got []string) bool {
		return ContainsAll(got, want...)
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
			ps, next := c.HomePage(t, b, 10, token)
			if len(ps) > 10 {
				t.Fatalf("page %d has %d posts; want at most 10", i, len(ps))
			}
			if wantLen := min(10, n-len(all)); len(ps) != wantLen {
				t.Fatalf("page %d has %d posts; want %d", i, len(ps), wantLen)
			}
			if i > 0 && len(ps) > 0 {
				if first := PostID(t, ps[0].GetPostId()); first >= last {
					t.Fatalf("page %d starts at %d, not older than the previous page's last %d", i, first, last)
				}
			}
			if len(ps) > 0 {
				last = PostID(t, ps[len(ps)-1].GetPostId())
			}
			all = append(all, IDs(ps)...)
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
			p := c.CreatePost(t, a, fmt.Sprintf("new while paging %d", i), "")
			// Wait until the new post is in b's timeline, so the next page
			// is read with it there.
			c.WaitHome(t, b, waitfor.Deadline, "the new post "+p.GetPostId(), func(got []string) bool {
				return slices.Contains(got, p.GetPostId())
			})
		})
		if !slices.Equal(got, want) {
			t.Fatalf("pages of 10 with posts arriving in between = %v; want exactly the %d originals %v", got, n, want)
		}
	})

	t.Run("DefaultPageSize", func(t *testing.T) {
		ps, next := c.HomePage(t, b, 0, "")
		if len(ps) != 20 || next == "" {
			t.Errorf("GetHomeTimeline(page_size 0) = %d posts, next %q; want 20 and a next token", len(ps), next)
		}
		ps, next = c.UserPosts(t, a, 0, "")
		if len(ps) != 20 || next == "" {
			t.Errorf("ListUserPosts(page_size 0) = %d posts, next %q; want 20 and a next token", len(ps), next)
		}
	})

	t.Run("PageSizeCoercedTo100", func(t *testing.T) {
		const big = "ord_big"
		for i := range 105 {
			c.CreatePost(t, big, fmt.Sprintf("big %d", i), "")
		}
		ps, next := c.HomePage(t, big, 500, "")
		if len(ps) != 100 || next == "" {
			t.Fatalf("GetHomeTimeline(page_size 500) = %d posts, next %q; want 100 and a next token", len(ps), next)
		}
		rest, next := c.HomePage(t, big, 500, next)
		if len(rest) != 5 || next != "" {
			t.Errorf("second page of GetHomeTimeline(page_size 500) = %d posts, next %q; want 5 and no next token", len(rest), next)
		}
		ups, next := c.UserPosts(t, big, 500, "")
		if len(ups) != 100 || next == "" {
			t.Fatalf("ListUserPosts(page_size 500) = %d posts, next %q; want 100 and a next token", len(ups), next)
		}
		rest, next = c.UserPosts(t, big, 500, next)
		if len(rest) != 5 || next != "" {
			t.Errorf("second page of ListUserPosts(page_size 500) = %d posts, next %q; want 5 and no next token", len(rest), next)
		}
	})

	t.Run("NegativePageSize", func(t *testing.T) {
		ctx, cancel := RPCContext()
		defer cancel()
		_, err := c.Timeline.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: b, PageSize: -1})
		WantStatus(t, "GetHomeTimeline(page_size -1)", err, codes.InvalidArgument, "page_size")
		_, err = c.Post.ListUserPosts(ctx, &feedv1.ListUserPostsRequest{AuthorId: a, PageSize: -1})
		WantStatus(t, "ListUserPosts(page_size -1)", err, codes.InvalidArgument, "page_size")
		_, err = c.Graph.ListFollowers(ctx, &feedv1.ListFollowersRequest{UserId: a, PageSize: -5})
		WantStatus(t, "ListFollowers(page_size -5)", err, codes.InvalidArgument, "page_size")
		_, err = c.Graph.ListFollowing(ctx, &feedv1.ListFollowingRequest{UserId: b, PageSize: -5})
		WantStatus(t, "ListFollowing(page_size -5)", err, codes.InvalidArgument, "page_size")
	})
}

func testIdempotency(t *testing.T, c *Client) {
	const a, other, fan = "idem_a", "idem_other", "idem_fan"
	c.Follow(t, fan, a)
	c.Home(t, fan)

	first := c.CreatePost(t, a, "once", "key-1")
	again := c.CreatePost(t, a, "once", "key-1")
	if again.GetPostId() != first.GetPostId() {
		t.Fatalf("CreatePost retry with the same key = post %s; want the first post %s", again.GetPostId(), first.GetPostId())
	}
	if !again.GetCreateTime().AsTime().Equal(first.GetCreateTime().AsTime()) {
		t.Errorf("CreatePost retry create_time = %v; want the first's %v", again.GetCreateTime().AsTime(), first.GetCreateTime().AsTime())
	}
	if got := c.AllUserPosts(t, a); !slices.Equal(got, []string{first.GetPostId()}) {
		t.Fatalf("ListUserPosts(%s) after a retried CreatePost = %v; want exactly [%s]", a, got, first.GetPostId())
	}

	second := c.CreatePost(t, a, "once", "key-2")
	if second.GetPostId() == first.GetPostId() {
		t.Fatalf("CreatePost with a different key = post %s; want a new post", second.GetPostId())
	}
	if got, want := c.AllUserPosts(t, a), []string{second.GetPostId(), first.GetPostId()}; !slices.Equal(got, want) {
		t.Fatalf("ListUserPosts(%s) after two keys = %v; want %v", a, got, want)
	}

	theirs := c.CreatePost(t, other, "once", "key-1")
	if theirs.GetPostId() == first.GetPostId() {
		t.Fatalf("CreatePost by %s with %s's key = post %s; want a distinct post", other, a, theirs.GetPostId())
	}
	if got := c.AllUserPosts(t, other); !slices.Equal(got, []string{theirs.GetPostId()}) {
		t.Fatalf("ListUserPosts(%s) = %v; want [%s]", other, got, theirs.GetPostId())
	}
	if got := c.AllUserPosts(t, a); len(got) != 2 {
		t.Fatalf("ListUserPosts(%s) after %s used the same key = %v; want 2 posts", a, other, got)
	}

	// The follower gets each post once, however often it was submitted.
	got := c.WaitHome(t, fan, waitfor.Deadline, "both posts of "+a, func(got []string) bool {
		return ContainsAll(got, first.GetPostId(), second.GetPostId())
	})
	if want := []string{second.GetPostId(), first.GetPostId()}; !slices.Equal(got, want) {
		t.Errorf("home timeline of %s = %v; want %v", fan, got, want)
	}
}

func testFollowUnfollow(t *testing.T, c *Client) {
	const a, b, marker = "fu_a", "fu_b", "fu_marker"
	early := c.CreatePost(t, a, "before anyone followed", "")
	c.Follow(t, b, marker)
	c.Home(t, b) // b's timeline is cached from here on

	t.Run("FollowIdempotent", func(t *testing.T) {
		c.Follow(t, b, a)
		c.Follow(t, b, a)
		if got := c.Followers(t, a); !slices.Equal(got, []string{b}) {
			t.Errorf("ListFollowers(%s) after following twice = %v; want [%s]", a, got, b)
		}
		if got := c.Following(t, b); !slices.Equal(got, []string{a, marker}) {
			t.Errorf("ListFollowing(%s) = %v; want [%s %s]", b, got, a, marker)
		}
	})

	t.Run("Backfill", func(t *testing.T) {
		c.WaitHome(t, b, waitfor.Deadline, "the earlier post "+early.GetPostId()+" backfilled", func(got []string) bool {
			return slices.Contains(got, early.GetPostId())
		})
	})

	later := c.CreatePost(t, a, "while followed", "")
	c.WaitHome(t, b, waitfor.Deadline, "the new post "+later.GetPostId(), func(got []string) bool {
		return slices.Contains(got, later.GetPostId())
	})

	t.Run("UnfollowIdempotent", func(t *testing.T) {
		c.Unfollow(t, b, a)
		c.Unfollow(t, b, a)
		if got := c.Followers(t, a); len(got) != 0 {
			t.Errorf("ListFollowers(%s) after unfollowing twice = %v; want none", a, got)
		}
		if got := c.Following(t, b); !slices.Equal(got, []string{marker}) {
			t.Errorf("ListFollowing(%s) after unfollowing %s = %v; want [%s]", b, a, got, marker)
		}
	})

	t.Run("UnfollowPurges", func(t *testing.T) {
		c.WaitHome(t, b, waitfor.Deadline, "none of "+a+"'s posts", func(got []string) bool {
			return ContainsNone(got, early.GetPostId(), later.GetPostId())
		})
	})

	t.Run("NoNewPostsAfterUnfollow", func(t *testing.T) {
		after := c.CreatePost(t, a, "after the unfollow", "")
		// Events fan out in order: once a later post by an account b still
		// follows has arrived, the post by a has been handled too.
		m := c.CreatePost(t, marker, "marker", "")
		got := c.WaitHome(t, b, waitfor.Deadline, "the marker post "+m.GetPostId(), func(got []string) bool {
			return slices.Contains(got, m.GetPostId())
		})
		if slices.Contains(got, after.GetPostId()) {
			t.Errorf("home timeline of %s = %v; want no post %s by unfollowed %s", b, got, after.GetPostId(), a)
		}
	})
}

func testDelete(t *testing.T, c *Client) {
	const a, b1, b2 = "del_a", "del_b1", "del_b2"
	c.Follow(t, b1, a)
	c.Follow(t, b2, a)
	c.Home(t, b1)
	c.Home(t, b2)
	keep := c.CreatePost(t, a, "keep me", "")
	doomed := c.CreatePost(t, a, "delete me", "")
	for _, u := range []string{b1, b2} {
		c.WaitHome(t, u, waitfor.Deadline, "both posts of "+a, func(got []string) bool {
			return ContainsAll(got, keep.GetPostId(), doomed.GetPostId())
		})
	}
	ctx, cancel := RPCContext()
	defer cancel()

	t.Run("OthersPostDenied", func(t *testing.T) {
		_, err := c.Post.DeletePost(ctx, &feedv1.DeletePostRequest{PostId: doomed.GetPostId(), AuthorId: b1})
		WantStatus(t, "DeletePost(someone else's post)", err, codes.PermissionDenied, "")
		if _, err := c.Post.GetPost(ctx, &feedv1.GetPostRequest{PostId: doomed.GetPostId()}); err != nil {
			t.Errorf("GetPost after a denied delete error = %v; want the post", err)
		}
		if got := c.Home(t, b1); !slices.Contains(got, doomed.GetPostId()) {
			t.Errorf("home timeline of %s after a denied delete = %v; want it to hold %s", b1, got, doomed.GetPostId())
		}
	})

	t.Run("GoneEverywhere", func(t *testing.T) {
		if _, err := c.Post.DeletePost(ctx, &feedv1.DeletePostRequest{PostId: doomed.GetPostId(), AuthorId: a}); err != nil {
			t.Fatalf("DeletePost by its author error = %v; want nil", err)
		}
		// No polling from here on: the post is gone when DeletePost returns.
		_, err := c.Post.GetPost(ctx, &feedv1.GetPostRequest{PostId: doomed.GetPostId()})
		WantStatus(t, "GetPost(deleted post)", err, codes.NotFound, "")
		for _, u := range []string{a, b1, b2} {
			got := c.Home(t, u)
			if slices.Contains(got, doomed.GetPostId()) {
				t.Errorf("home timeline of %s right after DeletePost = %v; want no %s", u, got, doomed.GetPostId())
			}
			if !slices.Contains(got, keep.GetPostId()) {
				t.Errorf("home timeline of %s right after DeletePost = %v; want it to keep %s", u, got, keep.GetPostId())
			}
		}
		// A one-post page skips the deleted post instead of coming back
		// empty.
		if ps, _ := c.HomePage(t, b1, 1, ""); len(ps) != 1 || ps[0].GetPostId() != keep.GetPostId() {
			t.Errorf("first 1-post page of %s = %v; want [%s]", b1, IDs(ps), keep.GetPostId())
		}
		if got := c.AllUserPosts(t, a); !slices.Equal(got, []string{keep.GetPostId()}) {
			t.Errorf("ListUserPosts(%s) after DeletePost = %v; want [%s]", a, got, keep.GetPostId())
		}
		_, err = c.Post.DeletePost(ctx, &feedv1.DeletePostRequest{PostId: doomed.GetPostId(), AuthorId: a})
		WantStatus(t, "DeletePost(already deleted)", err, codes.NotFound, "")
	})

	t.Run("UnknownPost", func(t *testing.T) {
		_, err := c.Post.DeletePost(ctx, &feedv1.DeletePostRequest{PostId: "123456789", AuthorId: a})
		WantStatus(t, "DeletePost(unknown ID)", err, codes.NotFound, "")
	})

	t.Run("MalformedID", func(t *testing.T) {
		for _, id := range []string{"abc", "", "-1", "0", "18446744073709551616"} {
			_, err := c.Post.DeletePost(ctx, &feedv1.DeletePostRequest{PostId: id, AuthorId: a})
			WantStatus(t, fmt.Sprintf("DeletePost(%q)", id), err, codes.InvalidArgument, "post_id")
			_, err = c.Post.GetPost(ctx, &feedv1.GetPostRequest{PostId: id})
			WantStatus(t, fmt.Sprintf("GetPost(%q)", id), err, codes.InvalidArgument, "post_id")
		}
	})
}

// openStream opens user's live stream and returns a channel of what it
// receives; the channel closes when the stream ends.
