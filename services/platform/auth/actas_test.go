package auth_test

import (
	"context"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/auth"
)

// recorder is a stub of the feed.v1 services whose handlers record the
// authorization metadata of the latest call.
type recorder struct {
	feedv1.UnimplementedPostServiceServer
	feedv1.UnimplementedGraphServiceServer
	feedv1.UnimplementedTimelineServiceServer

	mu   sync.Mutex
	seen []string
}

func (r *recorder) record(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = slices.Clone(md.Get(auth.MetadataKey))
}

// last returns the authorization values of the latest call, and clears
// them.
func (r *recorder) last() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.seen
	r.seen = nil
	return s
}

func (r *recorder) CreatePost(ctx context.Context, _ *feedv1.CreatePostRequest) (*feedv1.CreatePostResponse, error) {
	r.record(ctx)
	return &feedv1.CreatePostResponse{}, nil
}

func (r *recorder) GetPost(ctx context.Context, _ *feedv1.GetPostRequest) (*feedv1.GetPostResponse, error) {
	r.record(ctx)
	return &feedv1.GetPostResponse{}, nil
}

func (r *recorder) Follow(ctx context.Context, _ *feedv1.FollowRequest) (*feedv1.FollowResponse, error) {
	r.record(ctx)
	return &feedv1.FollowResponse{}, nil
}

func (r *recorder) StreamHomeTimeline(_ *feedv1.StreamHomeTimelineRequest, ss grpc.ServerStreamingServer[feedv1.StreamHomeTimelineResponse]) error {
	r.record(ss.Context())
	return ss.Send(&feedv1.StreamHomeTimelineResponse{})
}

// serveRecorder starts the stub on loopback and returns it with a
// connection whose calls act as the users they name, signed by s.
func serveRecorder(t *testing.T, s *auth.Signer) (*recorder, *grpc.ClientConn) {
	t.Helper()
	r := &recorder{}
	srv := grpc.NewServer()
	feedv1.RegisterPostServiceServer(srv, r)
	feedv1.RegisterGraphServiceServer(srv, r)
	feedv1.RegisterTimelineServiceServer(srv, r)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, auth.ActAsNamedUser(s)...)
	conn, err := grpc.NewClient(lis.Addr().String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return r, conn
}

func TestActAsNamedUser(t *testing.T) {
	k := newEd25519(t)
	s := auth.NewSigner(k)
	v := newVerifier(t, auth.VerifierConfig{Keys: []auth.Key{s.Key()}, Now: time.Now})
	r, conn := serveRecorder(t, s)
	posts, graph, timeline := feedv1.NewPostServiceClient(conn), feedv1.NewGraphServiceClient(conn), feedv1.NewTimelineServiceClient(conn)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	// userOf returns the user whose token the latest call carried, or
	// "" if it carried none.
	userOf := func(call string) string {
		t.Helper()
		vals := r.last()
		switch len(vals) {
		case 0:
			return ""
		case 1:
		default:
			t.Fatalf("%s carried %d authorization headers; want at most one", call, len(vals))
		}
		tok, ok := auth.BearerToken(vals[0])
		if !ok {
			t.Fatalf("%s carried authorization %q; want a bearer token", call, vals[0])
		}
		id, err := v.Verify(tok)
		if err != nil {
			t.Fatalf("%s carried a token that does not verify: %v", call, err)
		}
		return id.User
	}

	for _, tt := range []struct {
		name string
		call func(ctx context.Context) error
		want string
	}{
		{"CreatePost as alice", func(ctx context.Context) error {
			_, err := posts.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: "alice", Text: "hi"})
			return err
		}, "alice"},
		{"CreatePost as alice again", func(ctx context.Context) error {
			_, err := posts.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: "alice", Text: "hi"})
			return err
		}, "alice"},
		{"Follow as carol", func(ctx context.Context) error {
			_, err := graph.Follow(ctx, &feedv1.FollowRequest{FollowerId: "carol", FolloweeId: "alice"})
			return err
		}, "carol"},
		{"GetPost, which names no user", func(ctx context.Context) error {
			_, err := posts.GetPost(ctx, &feedv1.GetPostRequest{PostId: "1"})
			return err
		}, ""},
		{"CreatePost naming an invalid user", func(ctx context.Context) error {
			_, err := posts.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: "Bad User", Text: "hi"})
			return err
		}, ""},
		{"CreatePost as alice WithoutToken", func(ctx context.Context) error {
			_, err := posts.CreatePost(auth.WithoutToken(ctx), &feedv1.CreatePostRequest{AuthorId: "alice", Text: "hi"})
			return err
		}, ""},
		{"StreamHomeTimeline as bob", func(ctx context.Context) error {
			st, err := timeline.StreamHomeTimeline(ctx, &feedv1.StreamHomeTimelineRequest{UserId: "bob"})
			if err != nil {
				return err
			}
			if _, err := st.Recv(); err != nil {
				return err
			}
			if _, err := st.Header(); err != nil {
				return err
			}
			if _, err := st.Recv(); err != io.EOF {
				t.Errorf("second Recv = %v; want io.EOF", err)
			}
			return nil
		}, "bob"},
		{"StreamHomeTimeline as bob WithoutToken", func(ctx context.Context) error {
			st, err := timeline.StreamHomeTimeline(auth.WithoutToken(ctx), &feedv1.StreamHomeTimelineRequest{UserId: "bob"})
			if err != nil {
				return err
			}
			_, err = st.Recv()
			return err
		}, ""},
	} {
		if err := tt.call(ctx); err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got := userOf(tt.name); got != tt.want {
			t.Errorf("%s carried a token of %q; want %q (\"\" for none)", tt.name, got, tt.want)
		}
	}

	// A caller's own authorization header is sent as it is.
	own := metadata.AppendToOutgoingContext(ctx, auth.MetadataKey, "Bearer mine")
	if _, err := posts.CreatePost(own, &feedv1.CreatePostRequest{AuthorId: "alice", Text: "hi"}); err != nil {
		t.Fatalf("CreatePost with the caller's header: %v", err)
	}
	if got := r.last(); !slices.Equal(got, []string{"Bearer mine"}) {
		t.Errorf("CreatePost with the caller's header carried authorization %q; want only [Bearer mine]", got)
	}
	st, err := timeline.StreamHomeTimeline(own, &feedv1.StreamHomeTimelineRequest{UserId: "bob"})
	if err == nil {
		_, err = st.Recv()
	}
	if err != nil {
		t.Fatalf("StreamHomeTimeline with the caller's header: %v", err)
	}
	if got := r.last(); !slices.Equal(got, []string{"Bearer mine"}) {
		t.Errorf("StreamHomeTimeline with the caller's header carried authorization %q; want only [Bearer mine]", got)
	}
}
