package systemtest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/auth"
	"github.com/herald-feed/herald/services/platform/feed"
)

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
func rawCreatePost(c *Client, author, text string) error {
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	req = protowire.AppendString(req, author)
	req = protowire.AppendTag(req, 2, protowire.BytesType)
	req = protowire.AppendString(req, text)
	var resp []byte
	ctx, cancel := RPCContext()
	defer cancel()
	// The connection cannot read a hand-encoded request to find its
	// user, so the call carries author's token itself.
	if c.Key != nil && feed.ValidateUserID("author_id", author) == nil {
		tok, err := auth.NewSigner(c.Key).Token(author, time.Hour)
		if err != nil {
			return err
		}
		ctx = metadata.AppendToOutgoingContext(ctx, auth.MetadataKey, "Bearer "+tok)
	}
	if c.http != nil {
		return c.http.rawCreatePost(ctx, author, text)
	}
	return c.postConn.Invoke(ctx, feedv1.PostService_CreatePost_FullMethodName, &req, &resp, grpc.ForceCodec(rawCodec{}))
}

func testBadInput(t *testing.T, c *Client) {
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
			{"only zero-width spaces", author, "\u200b\u200b\u200b", "text"},
			{"only invisible characters", author, "\u2800 \u3164\u00ad\ufeff\u200d", "text"},
			{"only combining marks", author, "\u0301\u0301", "text"},
			{"right-to-left override", author, "see example.com/\u202egpj.exe", "text"},
			{"right-to-left isolate", author, "a\u2067b\u2069", "text"},
			{"empty author", "", "hi", "author_id"},
			{"65-character author", strings.Repeat("a", 65), "hi", "author_id"},
			{"upper-case author", "Alice", "hi", "author_id"},
			{"author with a dash", "al-ice", "hi", "author_id"},
			{"author with a space", "a b", "hi", "author_id"},
		}
		for _, tt := range tests {
			ctx, cancel := RPCContext()
			_, err := c.Post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: tt.author, Text: tt.text})
			cancel()
			WantStatus(t, fmt.Sprintf("%s: CreatePost(%.20q, %.20q)", tt.name, tt.author, tt.text), err, codes.InvalidArgument, tt.field)
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
			field := tt.field
			if c.http != nil {
				// Over HTTP the JSON body itself does not decode: the
				// gateway refuses it before any field is read.
				field = "invalid UTF-8"
			}
			WantStatus(t, fmt.Sprintf("%s: CreatePost(%q, %q)", tt.name, tt.author, tt.text), err, codes.InvalidArgument, field)
		}
		keys := []struct{ name, key string }{
			{"non-ASCII key", "\u043a\u043b\u044e\u0447"},
			{"key with a newline", "key\n1"},
			{"key with a NUL", "key\x00"},
			{"key with a space", "key 1"},
		}
		for _, tt := range keys {
			ctx, cancel := RPCContext()
			_, err := c.Post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: author, Text: "hi", IdempotencyKey: tt.key})
			cancel()
			WantStatus(t, fmt.Sprintf("%s: CreatePost(%s, %q, key %q)", tt.name, author, "hi", tt.key), err, codes.InvalidArgument, "idempotency_key")
		}
		if got := c.AllUserPosts(t, author); len(got) != 0 {
			t.Errorf("ListUserPosts(%s) after only bad CreatePosts = %v; want none stored", author, got)
		}
	})

	t.Run("CreatePostAccepted", func(t *testing.T) {
		const ok = "bad_ok"
		var want []string
		texts := []string{
			strings.Repeat("é", 500), strings.Repeat("a", 500), "a\nb", "x",
			"\u05e9\u05dc\u05d5\u05dd\u200f!",            // Hebrew with a right-to-left mark
			"\U0001F468\u200d\U0001F469\u200d\U0001F467", // an emoji ZWJ sequence
			"cafe\u0301", // e and a combining acute
		}
		for _, text := range texts {
			want = append(want, c.CreatePost(t, ok, text, "").GetPostId())
		}
		slices.Reverse(want)
		if got := c.AllUserPosts(t, ok); !slices.Equal(got, want) {
			t.Errorf("ListUserPosts(%s) = %v; want %v", ok, got, want)
		}

		// Every printable ASCII character but space may be in a key, and
		// the key still makes a retry return the first post.
		const okKey = "bad_ok_key"
		key := `!"#$%&'()*+,-./09:;<=>?@AZ[\]^_az{|}~` + "`"
		first := c.CreatePost(t, okKey, "punctuated key", key)
		if again := c.CreatePost(t, okKey, "punctuated key", key); again.GetPostId() != first.GetPostId() {
			t.Errorf("CreatePost(%s) retry with key %q = post %s; want the first post %s", okKey, key, again.GetPostId(), first.GetPostId())
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
			ctx, cancel := RPCContext()
			_, err := c.Graph.Follow(ctx, &feedv1.FollowRequest{FollowerId: tt.follower, FolloweeId: tt.followee})
			WantStatus(t, fmt.Sprintf("%s: Follow(%q, %q)", tt.name, tt.follower, tt.followee), err, codes.InvalidArgument, tt.field)
			_, err = c.Graph.Unfollow(ctx, &feedv1.UnfollowRequest{FollowerId: tt.follower, FolloweeId: tt.followee})
			WantStatus(t, fmt.Sprintf("%s: Unfollow(%q, %q)", tt.name, tt.follower, tt.followee), err, codes.InvalidArgument, tt.field)
			cancel()
		}
		if got := c.Following(t, follower); len(got) != 0 {
			t.Errorf("ListFollowing(%s) after only bad Follows = %v; want none", follower, got)
		}
		if got := c.Followers(t, follower); len(got) != 0 {
			t.Errorf("ListFollowers(%s) after a self-follow = %v; want none", follower, got)
		}
		if got := c.Followers(t, followee); len(got) != 0 {
			t.Errorf("ListFollowers(%s) after only bad Follows = %v; want none", followee, got)
		}

		ctx, cancel := RPCContext()
		defer cancel()
		_, err := c.Graph.ListFollowers(ctx, &feedv1.ListFollowersRequest{UserId: "Nope"})
		WantStatus(t, `ListFollowers("Nope")`, err, codes.InvalidArgument, "user_id")
		_, err = c.Timeline.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: "no-pe"})
		WantStatus(t, `GetHomeTimeline("no-pe")`, err, codes.InvalidArgument, "user_id")
		_, err = c.Post.ListUserPosts(ctx, &feedv1.ListUserPostsRequest{AuthorId: ""})
		WantStatus(t, `ListUserPosts("")`, err, codes.InvalidArgument, "author_id")
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

func testBadPageTokens(t *testing.T, c *Client) {
	const u, v = "tok_u", "tok_v"
	for _, user := range []string{u, v} {
		for i := range 3 {
			c.CreatePost(t, user, fmt.Sprintf("%s %d", user, i), "")
		}
		for i := range 3 {
			c.Follow(t, fmt.Sprintf("%s_fan%d", user, i), user)
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
				_, next := c.HomePage(t, user, 1, "")
				return next
			},
			call: func(user, token string) error {
				ctx, cancel := RPCContext()
				defer cancel()
				_, err := c.Timeline.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: user, PageSize: 1, PageToken: token})
				return err
			},
		},
		{
			name: "ListUserPosts",
			first: func(t *testing.T, user string) string {
				_, next := c.UserPosts(t, user, 1, "")
				return next
			},
			call: func(user, token string) error {
				ctx, cancel := RPCContext()
				defer cancel()
				_, err := c.Post.ListUserPosts(ctx, &feedv1.ListUserPostsRequest{AuthorId: user, PageSize: 1, PageToken: token})
				return err
			},
		},
		{
			name: "ListFollowers",
			first: func(t *testing.T, user string) string {
				ctx, cancel := RPCContext()
				defer cancel()
				resp, err := c.Graph.ListFollowers(ctx, &feedv1.ListFollowersRequest{UserId: user, PageSize: 1})
				if err != nil {
					t.Fatalf("ListFollowers(%s) error = %v; want nil", user, err)
				}
				return resp.GetNextPageToken()
			},
			call: func(user, token string) error {
				ctx, cancel := RPCContext()
				defer cancel()
				_, err := c.Graph.ListFollowers(ctx, &feedv1.ListFollowersRequest{UserId: user, PageSize: 1, PageToken: token})
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
				WantStatus(t, fmt.Sprintf("%s(%s) with a %s page_token %q", l.name, u, b.name, b.token), err, codes.InvalidArgument, "page_token")
			}
		})
	}

	t.Run("AnotherListsToken", func(t *testing.T) {
		homeTok := listers[0].first(t, u)
		err := listers[1].call(u, homeTok)
		WantStatus(t, "ListUserPosts with a GetHomeTimeline token", err, codes.InvalidArgument, "page_token")
	})
}
