// Package guard is the gRPC interceptor that decides whether a call may
// run: it authenticates the caller's bearer token (package auth), checks
// that a call acting for a user is made by that user (the access table
// below), and takes a token from the caller's rate-limit bucket. A refused
// call reaches no handler, so nothing is written.
//
// The access rules:
//
//	CreatePost, DeletePost                     only as author_id
//	Follow, Unfollow                           only as follower_id
//	GetHomeTimeline, StreamHomeTimeline        only as user_id
//	GetPost, ListUserPosts, ListFollowers,
//	ListFollowing                              anyone, with or without a token
//	health, reflection                         anyone
//
// A call that needs a token and has none, or has a bad one, gets
// UNAUTHENTICATED; a valid token of another user gets PERMISSION_DENIED
// naming the field. A bad token is refused on every call, public or not:
// a client that sends one should learn so. Past a rate limit, a call gets
// RESOURCE_EXHAUSTED with a google.rpc.RetryInfo detail.
package guard

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-feed/herald/services/platform/auth"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/ratelimit"
)

// Class names a rate-limit bucket: each user has one bucket per class.
type Class string

// The rate-limit classes.
const (
	Posts   Class = "posts"   // CreatePost
	Deletes Class = "deletes" // DeletePost
	Follows Class = "follows" // Follow, Unfollow
	Reads   Class = "reads"   // every read, and each stream opened
)

// rule is one row of the access table.
type rule struct {
	// field names the request field holding the user the call acts as;
	// empty for a call anyone may make.
	field string
	class Class
}

// rules is the access table. A method of a feed.v1 service missing from
// it is refused: a new call must be given its rule.
var rules = map[string]rule{
	"/feed.v1.PostService/CreatePost":             {"author_id", Posts},
	"/feed.v1.PostService/DeletePost":             {"author_id", Deletes},
	"/feed.v1.PostService/GetPost":                {"", Reads},
	"/feed.v1.PostService/ListUserPosts":          {"", Reads},
	"/feed.v1.GraphService/Follow":                {"follower_id", Follows},
	"/feed.v1.GraphService/Unfollow":              {"follower_id", Follows},
	"/feed.v1.GraphService/ListFollowers":         {"", Reads},
	"/feed.v1.GraphService/ListFollowing":         {"", Reads},
	"/feed.v1.TimelineService/GetHomeTimeline":    {"user_id", Reads},
	"/feed.v1.TimelineService/StreamHomeTimeline": {"user_id", Reads},
}

// guardedPrefix is the API the table covers; other services (health,
// reflection) are open to anyone.
const guardedPrefix = "/feed.v1."

// Config configures a Guard.
type Config struct {
	// Verifier checks tokens; nil turns authentication and the access
	// table off (-auth=off): every call is anonymous and may act as
	// anyone.
	Verifier *auth.Verifier
	// Limits are the buckets per class; a class missing from it is not
	// limited.
	Limits map[Class]ratelimit.Limit
	Log    *slog.Logger
}

// Guard holds the interceptors.
type Guard struct {
	cfg     Config
	limiter ratelimit.Limiter
	refused *prometheus.CounterVec
	errs    prometheus.Counter
}

// New returns a Guard whose refusals are counted in reg. Its limiter is
// in process until UseLimiter gives it a shared one.
func New(cfg Config, reg prometheus.Registerer) *Guard {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	g := &Guard{
		cfg:     cfg,
		limiter: ratelimit.NewMemory(),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_guard_refused_total",
			Help: "Calls refused before their handler, by reason: unauthenticated, permission_denied or rate_limited.",
		}, []string{"reason"}),
		errs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_ratelimit_errors_total",
			Help: "Rate-limit checks that failed because the limiter's backend did; the call was let through.",
		}),
	}
	reg.MustRegister(g.refused, g.errs)
	// Every reason's series from the start: a rate of refusals reads 0, not
	// nothing, before the first one.
	for _, reason := range []string{"unauthenticated", "permission_denied", "rate_limited"} {
		g.refused.WithLabelValues(reason)
	}
	return g
}

// UseLimiter replaces the in-process limiter, as the cluster's services
// do with one shared through Redis. Call it before the server serves.
func (g *Guard) UseLimiter(l ratelimit.Limiter) { g.limiter = l }

// Unary is the unary server interceptor.
func (g *Guard) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, err := g.admit(ctx, info.FullMethod, req)
	if err != nil {
		return nil, err
	}
	return h(ctx, req)
}

// Stream is the stream server interceptor. A server-streaming call's
// request arrives with the stream's first message, so the access rule and
// the rate limit apply when the handler receives it.
func (g *Guard) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := g.admit(ss.Context(), info.FullMethod, nil)
	if err != nil {
		return err
	}
	return h(srv, &guardedStream{ServerStream: ss, ctx: ctx, g: g, method: info.FullMethod})
}

type guardedStream struct {
	grpc.ServerStream
	ctx    context.Context
	g      *Guard
	method string
	seen   bool
}

func (s *guardedStream) Context() context.Context { return s.ctx }

func (s *guardedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if !s.seen {
		s.seen = true
		if _, err := s.g.admit(s.ctx, s.method, m); err != nil {
			return err
		}
	}
	return nil
}

// admit authenticates the call and, once req is known, checks its access
// rule and rate limit. For a stream it runs twice: first with req nil, to
// authenticate, then with the first message.
func (g *Guard) admit(ctx context.Context, method string, req any) (context.Context, error) {
	if !strings.HasPrefix(method, guardedPrefix) {
		return ctx, nil
	}
	r, ok := rules[method]
	if !ok {
		return ctx, status.Errorf(codes.PermissionDenied, "%s has no access rule", method)
	}
	id, authed := auth.FromContext(ctx)
	if !authed {
		var err error
		if id, err = g.authenticate(ctx); err != nil {
			g.refused.WithLabelValues("unauthenticated").Inc()
			return ctx, err
		}
		ctx = auth.WithIdentity(ctx, id)
	}
	if req == nil {
		return ctx, nil
	}
	if g.cfg.Verifier != nil && r.field != "" {
		if err := checkActsAs(id, r.field, req); err != nil {
			if status.Code(err) == codes.PermissionDenied {
				g.refused.WithLabelValues("permission_denied").Inc()
			} else {
				g.refused.WithLabelValues("unauthenticated").Inc()
			}
			return ctx, err
		}
	}
	if err := g.limit(ctx, id, r.class); err != nil {
		g.refused.WithLabelValues("rate_limited").Inc()
		return ctx, err
	}
	return ctx, nil
}

// authenticate returns the caller of the call in ctx: anonymous without
// a token, or the token's identity.
func (g *Guard) authenticate(ctx context.Context) (auth.Identity, error) {
	if g.cfg.Verifier == nil {
		return auth.Identity{}, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(auth.MetadataKey)
	switch len(vals) {
	case 0:
		return auth.Identity{}, nil
	case 1:
	default:
		return auth.Identity{}, status.Error(codes.Unauthenticated, "more than one authorization header")
	}
	token, ok := auth.BearerToken(vals[0])
	if !ok {
		return auth.Identity{}, status.Error(codes.Unauthenticated, `authorization header: want "Bearer <token>"`)
	}
	id, err := g.cfg.Verifier.Verify(token)
	if err != nil {
		return auth.Identity{}, status.Error(codes.Unauthenticated, err.Error())
	}
	return id, nil
}

// checkActsAs checks that id may act as the user in req's field. A field
// that holds no valid user ID is left to the handler, with or without a
// token, which refuses it as INVALID_ARGUMENT naming the field: no user
// owns it, so no one can be acted for, and nothing is written.
func checkActsAs(id auth.Identity, field string, req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "request of type %T", req)
	}
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName(protoreflect.Name(field))
	if fd == nil || fd.Kind() != protoreflect.StringKind {
		return status.Errorf(codes.Internal, "access rule names field %s, which the request lacks", field)
	}
	want := r.Get(fd).String()
	if feed.ValidateUserID(field, want) != nil {
		return nil
	}
	if id.Anonymous() {
		return status.Errorf(codes.Unauthenticated, "this call acts as %s and needs that user's token: send authorization: Bearer <JWT>", field)
	}
	if id.Service != "" {
		return status.Errorf(codes.PermissionDenied, "%s %q: a service token may not act as a user", field, want)
	}
	if id.User != want {
		return status.Errorf(codes.PermissionDenied, "%s %q: the token is for another user", field, want)
	}
	return nil
}

// limit takes a token from the caller's bucket of class. Herald's own
// services are not limited; an anonymous caller's bucket is its address.
// If the limiter's backend fails the call goes ahead, counted: a limiter
// outage should not become a Herald outage.
func (g *Guard) limit(ctx context.Context, id auth.Identity, class Class) error {
	l, ok := g.cfg.Limits[class]
	if !ok || id.Service != "" {
		return nil
	}
	who := "user:" + id.User
	if id.User == "" {
		who = "addr:" + peerHost(ctx)
	}
	res, err := g.limiter.Allow(ctx, string(class)+":"+who, l)
	if err != nil {
		g.errs.Inc()
		g.cfg.Log.WarnContext(ctx, "rate limit check failed; letting the call through", "class", class, "err", err)
		return nil
	}
	if res.Allowed {
		return nil
	}
	st := status.Newf(codes.ResourceExhausted, "rate limit on %s: at most %g a second, bursts of %d; retry in %v", class, l.Rate, l.Burst, res.RetryAfter.Round(time.Millisecond))
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(res.RetryAfter)}); err == nil {
		st = d
	}
	return st.Err()
}

func peerHost(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
		return host
	}
	return p.Addr.String()
}

// Methods returns the methods of the access table, for tests that check
// every method of the API has its rule.
func Methods() []string {
	out := make([]string, 0, len(rules))
	for m := range rules {
		out = append(out, m)
	}
	return out
}
