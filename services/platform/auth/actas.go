package auth

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/herald-feed/herald/services/platform/feed"
)

// actingFields are the request fields that name the user a call acts as,
// in the order ActAsNamedUser looks for them.
var actingFields = []protoreflect.Name{"author_id", "follower_id", "user_id"}

// ActAsNamedUser returns dial options for a client that holds a signing
// key Herald trusts (the all-in-one's development key): each call carries
// a token of the user its request names in author_id, follower_id or
// user_id, and a call that names none goes without a token. Tests, feedctl
// and the load generators use it to act as many users over one
// connection. A real client sends its own user's token instead (Bearer).
func ActAsNamedUser(s *Signer) []grpc.DialOption {
	a := &actAs{s: s, tokens: make(map[string]cachedToken)}
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(a.unary), grpc.WithChainStreamInterceptor(a.stream)}
}

// ActAsNamedUserContext is ActAsNamedUser for a client that is not a gRPC
// connection (the HTTP API's, in tests): it returns ctx with the token of
// the user req names in its outgoing metadata, as the dial options would
// send it.
func ActAsNamedUserContext(s *Signer) func(ctx context.Context, req any) (context.Context, error) {
	a := &actAs{s: s, tokens: make(map[string]cachedToken)}
	return a.context
}

type noTokenKey struct{}

// WithoutToken returns ctx for a call that ActAsNamedUser's client sends
// with no token, as an anonymous caller would. A call whose context
// already carries an authorization header keeps that one.
func WithoutToken(ctx context.Context) context.Context {
	return context.WithValue(ctx, noTokenKey{}, true)
}

// actAsTTL is the life of the tokens ActAsNamedUser signs; each is reused
// until less than half of it is left.
const actAsTTL = time.Hour

type cachedToken struct {
	token   string
	expires time.Time
}

type actAs struct {
	s  *Signer
	mu sync.Mutex
	// tokens is bounded by clearing it whenever it grows past maxCached:
	// a load test acting as a million users re-signs now and then.
	tokens map[string]cachedToken
}

const maxCached = 100_000

func (a *actAs) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	ctx, err := a.context(ctx, req)
	if err != nil {
		return err
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// stream opens the stream when its first message is sent, since the
// token depends on the request, and a stream's headers go out when it
// opens. Herald's streams are server-streaming: one request, sent at once
// by the generated client.
func (a *actAs) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if desc.ClientStreams {
		return streamer(ctx, desc, cc, method, opts...)
	}
	return &lazyStream{ctx: ctx, open: func(m any) (grpc.ClientStream, error) {
		ctx, err := a.context(ctx, m)
		if err != nil {
			return nil, err
		}
		return streamer(ctx, desc, cc, method, opts...)
	}}, nil
}

func (a *actAs) context(ctx context.Context, req any) (context.Context, error) {
	if _, no := ctx.Value(noTokenKey{}).(bool); no {
		return ctx, nil
	}
	if md, _ := metadata.FromOutgoingContext(ctx); len(md.Get(MetadataKey)) > 0 {
		return ctx, nil // the caller chose its own token
	}
	user := actingUser(req)
	if user == "" {
		return ctx, nil
	}
	t, err := a.token(user)
	if err != nil {
		return nil, err
	}
	return metadata.AppendToOutgoingContext(ctx, MetadataKey, "Bearer "+t), nil
}

func (a *actAs) token(user string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.s.now()
	if c, ok := a.tokens[user]; ok && now.Before(c.expires.Add(-actAsTTL/2)) {
		return c.token, nil
	}
	t, err := a.s.Token(user, actAsTTL)
	if err != nil {
		return "", err
	}
	if len(a.tokens) >= maxCached {
		clear(a.tokens)
	}
	a.tokens[user] = cachedToken{t, now.Add(actAsTTL)}
	return t, nil
}

// actingUser returns the valid user ID in the first acting field req has.
func actingUser(req any) string {
	m, ok := req.(proto.Message)
	if !ok {
		return ""
	}
	r := m.ProtoReflect()
	for _, name := range actingFields {
		fd := r.Descriptor().Fields().ByName(name)
		if fd == nil || fd.Kind() != protoreflect.StringKind {
			continue
		}
		if u := r.Get(fd).String(); feed.ValidateUserID(string(name), u) == nil {
			return u
		}
		return ""
	}
	return ""
}

// lazyStream is a client stream opened at its first SendMsg.
type lazyStream struct {
	ctx  context.Context
	open func(m any) (grpc.ClientStream, error)
	cs   grpc.ClientStream
}

func (s *lazyStream) SendMsg(m any) error {
	if s.cs == nil {
		cs, err := s.open(m)
		if err != nil {
			return err
		}
		s.cs = cs
	}
	return s.cs.SendMsg(m)
}

func (s *lazyStream) RecvMsg(m any) error {
	if s.cs == nil {
		return errNotOpen
	}
	return s.cs.RecvMsg(m)
}

func (s *lazyStream) Header() (metadata.MD, error) {
	if s.cs == nil {
		return nil, errNotOpen
	}
	return s.cs.Header()
}

func (s *lazyStream) Trailer() metadata.MD {
	if s.cs == nil {
		return nil
	}
	return s.cs.Trailer()
}

func (s *lazyStream) CloseSend() error {
	if s.cs == nil {
		return errNotOpen
	}
	return s.cs.CloseSend()
}

func (s *lazyStream) Context() context.Context {
	if s.cs == nil {
		return s.ctx
	}
	return s.cs.Context()
}

var errNotOpen = errors.New("auth: stream used before its request was sent")
