package guard_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/emptypb"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/auth"
	"github.com/herald-feed/herald/services/platform/guard"
	"github.com/herald-feed/herald/services/platform/ratelimit"
)

// seen is what one handler call saw of its caller.
type seen struct {
	id auth.Identity
	ok bool // auth.FromContext found an identity
}

// stub implements every feed.v1 call by recording the identity the
// guard gave it: a call that was refused records nothing.
type stub struct {
	feedv1.UnimplementedPostServiceServer
	feedv1.UnimplementedGraphServiceServer
	feedv1.UnimplementedTimelineServiceServer

	mu    sync.Mutex
	calls map[string][]seen // by method name
}

func (s *stub) record(ctx context.Context, method string) {
	id, ok := auth.FromContext(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[method] = append(s.calls[method], seen{id, ok})
}

// take returns the calls of method since the last take, and forgets them.
func (s *stub) take(method string) []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls[method]
	delete(s.calls, method)
	return c
}

func (s *stub) CreatePost(ctx context.Context, _ *feedv1.CreatePostRequest) (*feedv1.CreatePostResponse, error) {
	s.record(ctx, "CreatePost")
	return &feedv1.CreatePostResponse{}, nil
}

func (s *stub) DeletePost(ctx context.Context, _ *feedv1.DeletePostRequest) (*feedv1.DeletePostResponse, error) {
	s.record(ctx, "DeletePost")
	return &feedv1.DeletePostResponse{}, nil
}

func (s *stub) GetPost(ctx context.Context, _ *feedv1.GetPostRequest) (*feedv1.GetPostResponse, error) {
	s.record(ctx, "GetPost")
	return &feedv1.GetPostResponse{}, nil
}

func (s *stub) ListUserPosts(ctx context.Context, _ *feedv1.ListUserPostsRequest) (*feedv1.ListUserPostsResponse, error) {
	s.record(ctx, "ListUserPosts")
	return &feedv1.ListUserPostsResponse{}, nil
}

func (s *stub) Follow(ctx context.Context, _ *feedv1.FollowRequest) (*feedv1.FollowResponse, error) {
	s.record(ctx, "Follow")
	return &feedv1.FollowResponse{}, nil
}

func (s *stub) Unfollow(ctx context.Context, _ *feedv1.UnfollowRequest) (*feedv1.UnfollowResponse, error) {
	s.record(ctx, "Unfollow")
	return &feedv1.UnfollowResponse{}, nil
}

func (s *stub) ListFollowers(ctx context.Context, _ *feedv1.ListFollowersRequest) (*feedv1.ListFollowersResponse, error) {
	s.record(ctx, "ListFollowers")
	return &feedv1.ListFollowersResponse{}, nil
}

func (s *stub) ListFollowing(ctx context.Context, _ *feedv1.ListFollowingRequest) (*feedv1.ListFollowingResponse, error) {
	s.record(ctx, "ListFollowing")
	return &feedv1.ListFollowingResponse{}, nil
}

func (s *stub) GetHomeTimeline(ctx context.Context, _ *feedv1.GetHomeTimelineRequest) (*feedv1.GetHomeTimelineResponse, error) {
	s.record(ctx, "GetHomeTimeline")
	return &feedv1.GetHomeTimelineResponse{}, nil
}

func (s *stub) StreamHomeTimeline(_ *feedv1.StreamHomeTimelineRequest, ss grpc.ServerStreamingServer[feedv1.StreamHomeTimelineResponse]) error {
	s.record(ss.Context(), "StreamHomeTimeline")
	return ss.Send(&feedv1.StreamHomeTimelineResponse{})
}

// extraService is a feed.v1 service the access table has no rule for,
// as a newly added call would be.
var extraService = grpc.ServiceDesc{
	ServiceName: "feed.v1.ExtraService",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Call",
		Handler: func(_ any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(context.Context, any) (any, error) { return &emptypb.Empty{}, nil }
			return interceptor(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/feed.v1.ExtraService/Call"}, h)
		},
	}},
}

var discard = slog.New(slog.DiscardHandler)

// server is a gRPC server on loopback with the guard's interceptors, the
// stub services and health.
type server struct {
	stub *stub
	addr string
	reg  *prometheus.Registry
	g    *guard.Guard
}

// serve starts a server guarded by cfg. setup, if given, runs on the
// Guard before the server serves.
func serve(t *testing.T, cfg guard.Config, setup ...func(*guard.Guard)) *server {
	t.Helper()
	if cfg.Log == nil {
		cfg.Log = discard
	}
	s := &server{stub: &stub{calls: make(map[string][]seen)}, reg: prometheus.NewRegistry()}
	s.g = guard.New(cfg, s.reg)
	for _, f := range setup {
		f(s.g)
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(s.g.Unary), grpc.ChainStreamInterceptor(s.g.Stream))
	feedv1.RegisterPostServiceServer(srv, s.stub)
	feedv1.RegisterGraphServiceServer(srv, s.stub)
	feedv1.RegisterTimelineServiceServer(srv, s.stub)
	srv.RegisterService(&extraService, struct{}{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = lis.Addr().String()
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return s
}

// dial connects to s from the loopback address from (127.0.0.1 if "").
func (s *server) dial(t *testing.T, from string) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if from != "" {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}))
	}
	conn, err := grpc.NewClient(s.addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// keys are a deployment's: one that signs users' tokens, one services'.
type keys struct {
	user, service ed25519.PrivateKey
}

func newKeys(t *testing.T) keys {
	t.Helper()
	var k keys
	for _, p := range []*ed25519.PrivateKey{&k.user, &k.service} {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		*p = priv
	}
	return k
}

func (k keys) verifier(t *testing.T) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(auth.VerifierConfig{
		Keys:        []auth.Key{auth.NewSigner(k.user).Key()},
		ServiceKeys: []auth.Key{auth.NewServiceSigner(k.service).Key()},
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func token(t *testing.T, s *auth.Signer, subject string) string {
	t.Helper()
	tok, err := s.Token(subject, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// ctxWith returns a context for one call that sends the authorization
// headers given.
func ctxWith(t *testing.T, authorization ...string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	for _, a := range authorization {
		ctx = metadata.AppendToOutgoingContext(ctx, auth.MetadataKey, a)
	}
	return ctx
}

// call is one feed.v1 method, made with the user it acts as (or names,
// for a public call) set to user.
type call struct {
	service, method string
	// field holds the user the call acts as; "" for a public call.
	field string
	do    func(ctx context.Context, c *grpc.ClientConn, user string) error
}

func (c call) fullName() string { return "/feed.v1." + c.service + "/" + c.method }

var calls = []call{
	{"PostService", "CreatePost", "author_id", func(ctx context.Context, c *grpc.ClientConn, user string) error {
		_, err := feedv1.NewPostServiceClient(c).CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: user, Text: "hi"})
		return err
	}},
	{"PostService", "DeletePost", "author_id", func(ctx context.Context, c *grpc.ClientConn, user string) error {
		_, err := feedv1.NewPostServiceClient(c).DeletePost(ctx, &feedv1.DeletePostRequest{AuthorId: user, PostId: "1"})
		return err
	}},
	{"PostService", "GetPost", "", func(ctx context.Context, c *grpc.ClientConn, _ string) error {
		_, err := feedv1.NewPostServiceClient(c).GetPost(ctx, &feedv1.GetPostRequest{PostId: "1"})
		return err
	}},
	{"PostService", "ListUserPosts", "", func(ctx context.Context, c *grpc.ClientConn, user string) error {
		_, err := feedv1.NewPostServiceClient(c).ListUserPosts(ctx, &feedv1.ListUserPostsRequest{AuthorId: user})
		return err
	}},
	{"GraphService", "Follow", "follower_id", func(ctx context.Context, c *grpc.ClientConn, user string) error {
		_, err := feedv1.NewGraphServiceClient(c).Follow(ctx, &feedv1.FollowRequest{FollowerId: user, FolloweeId: "zed"})
		return err
	}},
	{"GraphService", "Unfollow", "follower_id", func(ctx context.Context, c *grpc.ClientConn, user string) error {
		_, err := feedv1.NewGraphServiceClient(c).Unfollow(ctx, &feedv1.UnfollowRequest{FollowerId: user, FolloweeId: "zed"})
		return err
	}},
	{"GraphService", "ListFollowers", "", func(ctx context.Context, c *grpc.ClientConn, user string) error {
		_, err := feedv1.NewGraphServiceClient(c).ListFollowers(ctx, &feedv1.ListFollowersRequest{UserId: user})
		return err
	}},
	{"GraphService", "ListFollowing", "", func(ctx context.Context, c *grpc.ClientConn, user string) error {
		_, err := feedv1.NewGraphServiceClient(c).ListFollowing(ctx, &feedv1.ListFollowingRequest{UserId: user})
		return err
	}},
	{"TimelineService", "GetHomeTimeline", "user_id", func(ctx context.Context, c *grpc.ClientConn, user string) error {
		_, err := feedv1.NewTimelineServiceClient(c).GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: user})
		return err
	}},
	{"TimelineService", "StreamHomeTimeline", "user_id", streamHome},
}

// streamHome opens StreamHomeTimeline and receives its first message: the
// guard checks the request when the handler receives it, so a refusal
// arrives at the first Recv.
func streamHome(ctx context.Context, c *grpc.ClientConn, user string) error {
	st, err := feedv1.NewTimelineServiceClient(c).StreamHomeTimeline(ctx, &feedv1.StreamHomeTimelineRequest{UserId: user})
	if err != nil {
		return err
	}
	_, err = st.Recv()
	return err
}

// TestEveryMethodHasARule: the access table covers every method of the
// feed.v1 API, and names nothing else.
func TestEveryMethodHasARule(t *testing.T) {
	var api []string
	for _, f := range []protoreflect.FileDescriptor{feedv1.File_feed_v1_post_proto, feedv1.File_feed_v1_graph_proto, feedv1.File_feed_v1_timeline_proto} {
		svcs := f.Services()
		for i := range svcs.Len() {
			ms := svcs.Get(i).Methods()
			for j := range ms.Len() {
				api = append(api, "/"+string(svcs.Get(i).FullName())+"/"+string(ms.Get(j).Name()))
			}
		}
	}
	// The generated clients call these names; the descriptors must agree.
	for _, name := range []string{
		feedv1.PostService_CreatePost_FullMethodName, feedv1.PostService_DeletePost_FullMethodName,
		feedv1.PostService_GetPost_FullMethodName, feedv1.PostService_ListUserPosts_FullMethodName,
		feedv1.GraphService_Follow_FullMethodName, feedv1.GraphService_Unfollow_FullMethodName,
		feedv1.GraphService_ListFollowers_FullMethodName, feedv1.GraphService_ListFollowing_FullMethodName,
		feedv1.TimelineService_GetHomeTimeline_FullMethodName, feedv1.TimelineService_StreamHomeTimeline_FullMethodName,
	} {
		if !slices.Contains(api, name) {
			t.Errorf("generated method %s is not in the feed.v1 descriptors %v", name, api)
		}
	}
	slices.Sort(api)
	rules := guard.Methods()
	slices.Sort(rules)
	if !slices.Equal(rules, api) {
		t.Errorf("guard.Methods() = %v; want every feed.v1 method and nothing else: %v", rules, api)
	}
	// And this test's table of calls covers them all too.
	var tested []string
	for _, c := range calls {
		tested = append(tested, c.fullName())
	}
	slices.Sort(tested)
	if !slices.Equal(tested, api) {
		t.Errorf("calls in this test = %v; want every feed.v1 method: %v", tested, api)
	}
}

// wantCode checks that err has code, and that its message says each of
// says.
func wantCode(t *testing.T, what string, err error, code codes.Code, says ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Errorf("%s = %v; want %v", what, err, code)
		return
	}
	for _, s := range says {
		if msg := status.Convert(err).Message(); !strings.Contains(msg, s) {
			t.Errorf("%s message %q does not say %q", what, msg, s)
		}
	}
}

func TestAccessTable(t *testing.T) {
	k := newKeys(t)
	s := serve(t, guard.Config{Verifier: k.verifier(t)})
	conn := s.dial(t, "")
	users := auth.NewSigner(k.user)
	alice, bob := "Bearer "+token(t, users, "alice"), "Bearer "+token(t, users, "bob")
	fanout := "Bearer " + token(t, auth.NewServiceSigner(k.service), "fanout")
	untrusted := "Bearer " + token(t, auth.NewSigner(newKeys(t).user), "alice")

	// reached checks that the latest call of c reached its handler once,
	// with identity want.
	reached := func(c call, what string, want auth.Identity) {
		t.Helper()
		got := s.stub.take(c.method)
		if len(got) != 1 || !got[0].ok || got[0].id != want {
			t.Errorf("%s %s: handler saw %+v; want one call by %v", c.method, what, got, want)
		}
	}
	notReached := func(c call, what string) {
		t.Helper()
		if got := s.stub.take(c.method); len(got) != 0 {
			t.Errorf("%s %s: handler ran (%+v); want the call refused before it", c.method, what, got)
		}
	}

	for _, c := range calls {
		t.Run(c.method, func(t *testing.T) {
			if c.field == "" {
				for _, tt := range []struct {
					what   string
					header []string
					want   auth.Identity
				}{
					{"without a token", nil, auth.Identity{}},
					{"with bob's token", []string{bob}, auth.Identity{User: "bob"}},
					{"with a service token", []string{fanout}, auth.Identity{Service: "fanout"}},
				} {
					if err := c.do(ctxWith(t, tt.header...), conn, "alice"); err != nil {
						t.Errorf("%s %s = %v; want OK", c.method, tt.what, err)
					}
					reached(c, tt.what, tt.want)
				}
			} else {
				wantCode(t, c.method+" as alice without a token", c.do(ctxWith(t), conn, "alice"), codes.Unauthenticated, c.field)
				notReached(c, "without a token")
				wantCode(t, c.method+" as alice with bob's token", c.do(ctxWith(t, bob), conn, "alice"), codes.PermissionDenied, c.field, "alice")
				notReached(c, "as another user")
				wantCode(t, c.method+" as alice with a service token", c.do(ctxWith(t, fanout), conn, "alice"), codes.PermissionDenied, c.field, "service")
				notReached(c, "with a service token")

				if err := c.do(ctxWith(t, alice), conn, "alice"); err != nil {
					t.Errorf("%s as alice with her token = %v; want OK", c.method, err)
				}
				reached(c, "with the user's own token", auth.Identity{User: "alice"})
				// A field that holds no user ID is the handler's to
				// refuse, as INVALID_ARGUMENT naming it.
				for _, bad := range []string{"", "Bad User"} {
					if err := c.do(ctxWith(t, bob), conn, bad); err != nil {
						t.Errorf("%s as %q with bob's token = %v; want it to reach the handler", c.method, bad, err)
					}
					reached(c, "naming an invalid user", auth.Identity{User: "bob"})
				}
			}
			// A bad credential is refused on every call.
			for _, tt := range []struct {
				what   string
				header []string
			}{
				{"with an untrusted token", []string{untrusted}},
				{"with a token that is not a JWT", []string{"Bearer nonsense"}},
				{"with Basic credentials", []string{"Basic YWxpY2U6cHc="}},
				{"with two authorization headers", []string{alice, alice}},
			} {
				wantCode(t, c.method+" "+tt.what, c.do(ctxWith(t, tt.header...), conn, "alice"), codes.Unauthenticated)
				notReached(c, tt.what)
			}
		})
	}

	// Health is open to anyone, whatever they send.
	for _, header := range [][]string{nil, {"Bearer nonsense"}} {
		if _, err := healthpb.NewHealthClient(conn).Check(ctxWith(t, header...), &healthpb.HealthCheckRequest{}); err != nil {
			t.Errorf("health Check with authorization %q = %v; want OK", header, err)
		}
	}
	// A feed.v1 call without a rule is refused, even with a good token.
	err := conn.Invoke(ctxWith(t, alice), "/feed.v1.ExtraService/Call", &emptypb.Empty{}, &emptypb.Empty{})
	wantCode(t, "ExtraService.Call, which has no rule", err, codes.PermissionDenied, "no access rule")
}

// TestAuthOff: with no Verifier every call reaches its handler, as an
// anonymous caller who may act as anyone, whatever header it sends.
func TestAuthOff(t *testing.T) {
	s := serve(t, guard.Config{})
	conn := s.dial(t, "")
	for _, c := range calls {
		for _, header := range [][]string{nil, {"Bearer nonsense"}} {
			if err := c.do(ctxWith(t, header...), conn, "alice"); err != nil {
				t.Errorf("%s as alice with authorization %q and auth off = %v; want OK", c.method, header, err)
			}
			if got := s.stub.take(c.method); len(got) != 1 || !got[0].id.Anonymous() {
				t.Errorf("%s with auth off: handler saw %+v; want one anonymous call", c.method, got)
			}
		}
	}
}

// slow is a rate no test outlasts: a refill never lets an extra call
// through, however slow the machine.
const slow = 0.001

func wantRetryInfo(t *testing.T, what string, err error) {
	t.Helper()
	wantCode(t, what, err, codes.ResourceExhausted)
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			if ri.GetRetryDelay().AsDuration() <= 0 {
				t.Errorf("%s: RetryInfo delay %v; want > 0", what, ri.GetRetryDelay().AsDuration())
			}
			return
		}
	}
	t.Errorf("%s: details %v; want a google.rpc.RetryInfo", what, status.Convert(err).Details())
}

func TestRateLimitPerUser(t *testing.T) {
	k := newKeys(t)
	s := serve(t, guard.Config{Verifier: k.verifier(t), Limits: map[guard.Class]ratelimit.Limit{guard.Posts: {Rate: slow, Burst: 3}}})
	conn := s.dial(t, "")
	users := auth.NewSigner(k.user)
	alice, bob := "Bearer "+token(t, users, "alice"), "Bearer "+token(t, users, "bob")
	create := calls[0]
	for i := range 3 {
		if err := create.do(ctxWith(t, alice), conn, "alice"); err != nil {
			t.Fatalf("alice's CreatePost %d of a burst of 3 = %v; want OK", i+1, err)
		}
	}
	wantRetryInfo(t, "alice's 4th CreatePost", create.do(ctxWith(t, alice), conn, "alice"))
	// One user's limit never slows another.
	if err := create.do(ctxWith(t, bob), conn, "bob"); err != nil {
		t.Errorf("bob's CreatePost after alice's limit = %v; want OK", err)
	}
	// Other classes are not limited.
	for range 5 {
		if err := calls[1].do(ctxWith(t, alice), conn, "alice"); err != nil {
			t.Fatalf("alice's DeletePost with only posts limited = %v; want OK", err)
		}
	}
	if got := s.stub.take("CreatePost"); len(got) != 4 {
		t.Errorf("CreatePost handler ran %d times; want 4 (alice's 3 and bob's 1)", len(got))
	}
}

// TestRateLimitAnonymousByAddress: anonymous reads share the bucket of
// their address; a user's reads, a stream's among them, have their own.
func TestRateLimitAnonymousByAddress(t *testing.T) {
	k := newKeys(t)
	s := serve(t, guard.Config{Verifier: k.verifier(t), Limits: map[guard.Class]ratelimit.Limit{guard.Reads: {Rate: slow, Burst: 2}}})
	local := s.dial(t, "")
	alice := "Bearer " + token(t, auth.NewSigner(k.user), "alice")
	getPost, listFollowers := calls[2], calls[6]
	if err := getPost.do(ctxWith(t), local, ""); err != nil {
		t.Fatalf("anonymous GetPost = %v; want OK", err)
	}
	// A second connection from the same address shares its bucket.
	if err := listFollowers.do(ctxWith(t), s.dial(t, ""), "bob"); err != nil {
		t.Fatalf("anonymous ListFollowers = %v; want OK", err)
	}
	wantRetryInfo(t, "anonymous 3rd read from 127.0.0.1", getPost.do(ctxWith(t), local, ""))

	// Alice's reads, the stream among them, are hers.
	if err := getPost.do(ctxWith(t, alice), local, ""); err != nil {
		t.Errorf("alice's GetPost after the address's limit = %v; want OK", err)
	}
	if err := streamHome(ctxWith(t, alice), local, "alice"); err != nil {
		t.Errorf("alice's StreamHomeTimeline = %v; want OK", err)
	}
	wantRetryInfo(t, "alice's stream after 2 reads", streamHome(ctxWith(t, alice), local, "alice"))
	if got := s.stub.take("StreamHomeTimeline"); len(got) != 1 {
		t.Errorf("StreamHomeTimeline handler ran %d times; want 1", len(got))
	}

	// Another address has its own bucket. Linux routes all of 127/8 to
	// loopback; a system that has only 127.0.0.1 cannot make this call.
	if l, err := net.Listen("tcp", "127.0.0.2:0"); err != nil {
		t.Skipf("no second loopback address to call from: %v", err)
	} else {
		l.Close()
	}
	other := s.dial(t, "127.0.0.2")
	for i := range 2 {
		if err := getPost.do(ctxWith(t), other, ""); err != nil {
			t.Fatalf("anonymous GetPost %d from 127.0.0.2 after 127.0.0.1's limit = %v; want OK", i+1, err)
		}
	}
	wantRetryInfo(t, "anonymous 3rd read from 127.0.0.2", listFollowers.do(ctxWith(t), other, "bob"))
}

func TestServiceIsNotLimited(t *testing.T) {
	k := newKeys(t)
	s := serve(t, guard.Config{Verifier: k.verifier(t), Limits: map[guard.Class]ratelimit.Limit{guard.Reads: {Rate: slow, Burst: 1}}})
	conn := s.dial(t, "")
	fanout := "Bearer " + token(t, auth.NewServiceSigner(k.service), "fanout")
	for i := range 10 {
		if err := calls[6].do(ctxWith(t, fanout), conn, "alice"); err != nil {
			t.Fatalf("service's ListFollowers %d past a burst of 1 = %v; want OK", i+1, err)
		}
	}
}

// failing is a Limiter whose backend is down.
type failing struct{}

func (failing) Allow(context.Context, string, ratelimit.Limit) (ratelimit.Result, error) {
	return ratelimit.Result{}, errors.New("redis: connection refused")
}

// TestLimiterErrorLetsCallsThrough: a limiter outage does not become a
// Herald outage, and is counted.
func TestLimiterErrorLetsCallsThrough(t *testing.T) {
	k := newKeys(t)
	s := serve(t, guard.Config{Verifier: k.verifier(t), Limits: guard.DefaultLimits}, func(g *guard.Guard) { g.UseLimiter(failing{}) })
	conn := s.dial(t, "")
	alice := "Bearer " + token(t, auth.NewSigner(k.user), "alice")
	for i := range 3 {
		if err := calls[0].do(ctxWith(t, alice), conn, "alice"); err != nil {
			t.Fatalf("CreatePost %d with the limiter failing = %v; want OK", i+1, err)
		}
	}
	if got := counter(t, s.reg, "herald_ratelimit_errors_total", ""); got != 3 {
		t.Errorf("herald_ratelimit_errors_total = %v; want 3", got)
	}
}

func TestRefusalsAreCounted(t *testing.T) {
	k := newKeys(t)
	s := serve(t, guard.Config{Verifier: k.verifier(t), Limits: map[guard.Class]ratelimit.Limit{guard.Follows: {Rate: slow, Burst: 1}}})
	conn := s.dial(t, "")
	users := auth.NewSigner(k.user)
	alice, bob := "Bearer "+token(t, users, "alice"), "Bearer "+token(t, users, "bob")
	follow, stream := calls[4], calls[9]

	follow.do(ctxWith(t), conn, "alice")                    // unauthenticated: no token
	follow.do(ctxWith(t, "Bearer nonsense"), conn, "alice") // unauthenticated: bad token
	stream.do(ctxWith(t), conn, "alice")                    // unauthenticated: no token, at Recv
	follow.do(ctxWith(t, bob), conn, "alice")               // permission_denied
	stream.do(ctxWith(t, bob), conn, "alice")               // permission_denied
	follow.do(ctxWith(t, alice), conn, "alice")             // allowed
	follow.do(ctxWith(t, alice), conn, "alice")             // rate_limited
	for reason, want := range map[string]float64{"unauthenticated": 3, "permission_denied": 2, "rate_limited": 1} {
		if got := counter(t, s.reg, "herald_guard_refused_total", reason); got != want {
			t.Errorf("herald_guard_refused_total{reason=%q} = %v; want %v", reason, got, want)
		}
	}
	if got := s.stub.take("Follow"); len(got) != 1 {
		t.Errorf("Follow handler ran %d times; want once, for the one allowed call", len(got))
	}
}

// counter returns the value of the counter name in reg, of the series
// whose reason label is reason ("" for a counter without labels).
func counter(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var r string
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					r = l.GetValue()
				}
			}
			if r == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
