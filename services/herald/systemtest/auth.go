package systemtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/auth"
)

// RunAuth checks authentication and the access table against the system
// behind c, whose Key must be a key the system trusts for users'
// tokens: every row of the table, every kind of bad token, and that a
// refused call writes nothing. Like Run, it uses fixed user names.
func RunAuth(t *testing.T, c *Client) {
	if c.Key == nil {
		t.Fatal("RunAuth needs Client.Key: a key the system trusts")
	}
	t.Run("Table", func(t *testing.T) { testAccessTable(t, c) })
	t.Run("BadTokens", func(t *testing.T) { testBadTokens(t, c) })
}

// as returns a context whose call carries token: "" sends none.
func as(token string) (context.Context, context.CancelFunc) {
	ctx, cancel := RPCContext()
	if token == "" {
		return auth.WithoutToken(ctx), cancel
	}
	return metadata.AppendToOutgoingContext(ctx, auth.MetadataKey, "Bearer "+token), cancel
}

func (c *Client) token(t testing.TB, user string) string {
	t.Helper()
	tok, err := auth.NewSigner(c.Key).Token(user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func testAccessTable(t *testing.T, c *Client) {
	const alice, bob, carol = "auth_alice", "auth_bob", "auth_carol"
	aliceTok, bobTok := c.token(t, alice), c.token(t, bob)
	p := c.CreatePost(t, alice, "alice's own post", "")
	c.Follow(t, carol, alice)

	// Each call that acts as a user: without a token, UNAUTHENTICATED;
	// with bob's token acting as alice, PERMISSION_DENIED naming the
	// field. Neither writes anything, which the checks after the table
	// confirm.
	actsAs := []struct {
		name  string
		field string
		call  func(ctx context.Context) error
	}{
		{"CreatePost", "author_id", func(ctx context.Context) error {
			_, err := c.Post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: alice, Text: "forged"})
			return err
		}},
		{"DeletePost", "author_id", func(ctx context.Context) error {
			_, err := c.Post.DeletePost(ctx, &feedv1.DeletePostRequest{AuthorId: alice, PostId: p.GetPostId()})
			return err
		}},
		{"Follow", "follower_id", func(ctx context.Context) error {
			_, err := c.Graph.Follow(ctx, &feedv1.FollowRequest{FollowerId: alice, FolloweeId: bob})
			return err
		}},
		{"Unfollow", "follower_id", func(ctx context.Context) error {
			_, err := c.Graph.Unfollow(ctx, &feedv1.UnfollowRequest{FollowerId: carol, FolloweeId: alice})
			return err
		}},
		{"GetHomeTimeline", "user_id", func(ctx context.Context) error {
			_, err := c.Timeline.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: alice})
			return err
		}},
		{"StreamHomeTimeline", "user_id", func(ctx context.Context) error {
			st, err := c.Timeline.StreamHomeTimeline(ctx, &feedv1.StreamHomeTimelineRequest{UserId: alice})
			if err != nil {
				return err
			}
			_, err = st.Recv()
			return err
		}},
	}
	for _, tt := range actsAs {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := as("")
			defer cancel()
			WantStatus(t, tt.name+" without a token", tt.call(ctx), codes.Unauthenticated, "")
			ctx, cancel = as(bobTok)
			defer cancel()
			WantStatus(t, tt.name+" as another user", tt.call(ctx), codes.PermissionDenied, tt.field)
		})
	}
	// A service's identity does not make it a user.
	if c.ServiceKey != nil {
		svc, err := auth.NewServiceSigner(c.ServiceKey).Token("fanout", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := as(svc)
		defer cancel()
		_, err = c.Post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: alice, Text: "from a service"})
		WantStatus(t, "CreatePost with a service token", err, codes.PermissionDenied, "author_id")
	}

	// Nothing was written by the refused calls.
	if got := c.AllUserPosts(t, alice); len(got) != 1 || got[0] != p.GetPostId() {
		t.Errorf("alice's posts after refused calls = %v; want only %s", got, p.GetPostId())
	}
	if got := c.Following(t, alice); len(got) != 0 {
		t.Errorf("alice follows %v after a refused Follow; want nobody", got)
	}
	if got := c.Following(t, carol); len(got) != 1 || got[0] != alice {
		t.Errorf("carol follows %v after a refused Unfollow; want [%s]", got, alice)
	}

	// The reads anyone may make, with no token and with another user's.
	for _, tok := range []string{"", bobTok} {
		who := "anonymous"
		if tok != "" {
			who = "bob"
		}
		ctx, cancel := as(tok)
		if _, err := c.Post.GetPost(ctx, &feedv1.GetPostRequest{PostId: p.GetPostId()}); err != nil {
			t.Errorf("GetPost as %s: %v; want OK", who, err)
		}
		if _, err := c.Post.ListUserPosts(ctx, &feedv1.ListUserPostsRequest{AuthorId: alice}); err != nil {
			t.Errorf("ListUserPosts as %s: %v; want OK", who, err)
		}
		if _, err := c.Graph.ListFollowers(ctx, &feedv1.ListFollowersRequest{UserId: alice}); err != nil {
			t.Errorf("ListFollowers as %s: %v; want OK", who, err)
		}
		if _, err := c.Graph.ListFollowing(ctx, &feedv1.ListFollowingRequest{UserId: carol}); err != nil {
			t.Errorf("ListFollowing as %s: %v; want OK", who, err)
		}
		cancel()
	}
	ctx, cancel := as("")
	defer cancel()
	if _, err := healthpb.NewHealthClient(c.postConn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health check without a token: %v; want OK", err)
	}

	// And the owner may do what the others may not.
	ctx, cancel = as(aliceTok)
	defer cancel()
	if _, err := c.Timeline.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: alice}); err != nil {
		t.Errorf("GetHomeTimeline as alice with her token: %v", err)
	}
	if _, err := c.Post.DeletePost(ctx, &feedv1.DeletePostRequest{AuthorId: alice, PostId: p.GetPostId()}); err != nil {
		t.Errorf("DeletePost as alice with her token: %v", err)
	}
}

func testBadTokens(t *testing.T, c *Client) {
	const user = "auth_dave"
	now := time.Now()
	claims := func(sub string, iat, exp time.Time) jwt.RegisteredClaims {
		return jwt.RegisteredClaims{Subject: sub, IssuedAt: jwt.NewNumericDate(iat), ExpiresAt: jwt.NewNumericDate(exp)}
	}
	_, stranger, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(c.Key.Public())
	if err != nil {
		t.Fatal(err)
	}
	sign := func(m jwt.SigningMethod, key any, c jwt.Claims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := c.token(t, user)
	expired, err := auth.NewSigner(c.Key, auth.WithClock(func() time.Time { return now.Add(-2 * time.Hour) })).Token(user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	future, err := auth.NewSigner(c.Key, auth.WithClock(func() time.Time { return now.Add(time.Hour) })).Token(user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	bad := map[string]string{
		"expired":              expired,
		"not yet valid":        future,
		"signed by a stranger": sign(jwt.SigningMethodEdDSA, stranger, claims(user, now, now.Add(time.Hour))),
		"alg none":             sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(user, now, now.Add(time.Hour))),
		"ES256 by a stranger":  sign(jwt.SigningMethodES256, ecKey, claims(user, now, now.Add(time.Hour))),
		// The public key used as an HMAC secret: the classic confusion.
		"HS256 keyed by the public key": sign(jwt.SigningMethodHS256, pubDER, claims(user, now, now.Add(time.Hour))),
		"without exp":                   sign(jwt.SigningMethodEdDSA, c.Key, jwt.RegisteredClaims{Subject: user}),
		"sub not a user ID":             sign(jwt.SigningMethodEdDSA, c.Key, claims("Dave Smith", now, now.Add(time.Hour))),
		"tampered payload":              parts[0] + "." + tamper(parts[1]) + "." + parts[2],
		"no signature":                  parts[0] + "." + parts[1] + ".",
		"malformed":                     "not-a-jwt",
		"empty parts":                   "..",
	}
	for name, tok := range bad {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := as(tok)
			defer cancel()
			_, err := c.Post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: user, Text: "with a bad token"})
			WantStatus(t, "CreatePost with a token "+name, err, codes.Unauthenticated, "")
			// A bad token is refused on public calls too.
			_, err = c.Post.GetPost(ctx, &feedv1.GetPostRequest{PostId: "1"})
			WantStatus(t, "GetPost with a token "+name, err, codes.Unauthenticated, "")
		})
	}
	// A header that is not a bearer credential.
	ctx, cancel := RPCContext()
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, auth.MetadataKey, "Basic ZGF2ZTpwdw==")
	_, err = c.Post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: user, Text: "basic auth"})
	WantStatus(t, "CreatePost with Basic credentials", err, codes.Unauthenticated, "")

	if got := c.AllUserPosts(t, user); len(got) != 0 {
		t.Errorf("%s has posts %v after only refused calls; want none", user, got)
	}
	// The same user with a good token is fine.
	ctx, cancel = as(good)
	defer cancel()
	if _, err := c.Post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: user, Text: "with a good token"}); err != nil {
		t.Errorf("CreatePost with a good token: %v", err)
	}
}
