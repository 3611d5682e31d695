package systemtest

import (
	"bufio"
	"bytes"
	"context"
	stdjson "encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	_ "google.golang.org/genproto/googleapis/rpc/errdetails" // so that an error body's details decode
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/herald-feed/herald/services/platform/auth"
	"github.com/herald-feed/herald/services/platform/httpapi"
)

// HTTPConn is a grpc.ClientConnInterface that makes each call over
// Herald's HTTP/JSON API instead: the route is the method's google.api.http
// annotation in proto/feed/v1, path fields are filled in from the request,
// the other fields go in the JSON body (body "*") or the query string, and
// an error's JSON body ({"code", "message", "details"}) becomes the gRPC
// status it came from. So the generated clients, and with them the
// behaviour suite, run over HTTP unchanged. A call's token is the outgoing
// metadata's authorization, or, with a signer, one for the user the
// request names (as auth.ActAsNamedUser does for gRPC).
type HTTPConn struct {
	base   string // http://host:port
	client *http.Client
	actAs  func(ctx context.Context, req any) (context.Context, error)
}

// NewHTTPConn returns a connection to the HTTP API at base. signer may be
// nil.
func NewHTTPConn(base string, signer *auth.Signer) *HTTPConn {
	c := &HTTPConn{base: strings.TrimSuffix(base, "/"), client: &http.Client{}}
	if signer != nil {
		c.actAs = auth.ActAsNamedUserContext(signer)
	}
	return c
}

// route returns the HTTP route of a full method name
// (/feed.v1.PostService/CreatePost): its annotation's method, path
// template and body.
func route(method string) (verb, tmpl, body string, err error) {
	name := strings.ReplaceAll(strings.TrimPrefix(method, "/"), "/", ".")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return "", "", "", status.Errorf(codes.Unimplemented, "%s: %v", method, err)
	}
	md, ok := d.(protoreflect.MethodDescriptor)
	if !ok {
		return "", "", "", status.Errorf(codes.Unimplemented, "%s is not a method", method)
	}
	if verb, tmpl, body, ok = httpapi.Route(md); !ok {
		return "", "", "", status.Errorf(codes.Unimplemented, "%s has no HTTP route", method)
	}
	return verb, tmpl, body, nil
}

// request builds the HTTP request of one call.
func (c *HTTPConn) request(ctx context.Context, method string, req proto.Message) (*http.Request, error) {
	verb, tmpl, bodyField, err := route(method)
	if err != nil {
		return nil, err
	}
	if c.actAs != nil {
		if ctx, err = c.actAs(ctx, req); err != nil {
			return nil, err
		}
	}
	m := req.ProtoReflect()
	fields := m.Descriptor().Fields()
	inPath := map[string]bool{}
	var path strings.Builder
	for rest := tmpl; rest != ""; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			path.WriteString(rest)
			break
		}
		j := strings.IndexByte(rest, '}')
		path.WriteString(rest[:i])
		name := rest[i+1 : j]
		f := fields.ByName(protoreflect.Name(name))
		if f == nil {
			return nil, fmt.Errorf("%s: route %s names no field %s", method, tmpl, name)
		}
		// An empty path segment would route elsewhere; gRPC would have
		// the server refuse the empty field, so send what it would see.
		path.WriteString(url.PathEscape(m.Get(f).String()))
		inPath[name] = true
		rest = rest[j+1:]
	}
	var body io.Reader
	query := url.Values{}
	if bodyField == "*" {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(req)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		body = bytes.NewReader(b)
	} else {
		for i := range fields.Len() {
			f := fields.Get(i)
			if !inPath[string(f.Name())] && m.Has(f) {
				query.Set(string(f.Name()), m.Get(f).String())
			}
		}
	}
	u := c.base + path.String()
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	hr, err := http.NewRequestWithContext(ctx, verb, u, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	authorize(ctx, hr)
	return hr, nil
}

// authorize sends the call's token: the outgoing metadata's
// authorization, as a gRPC client would.
func authorize(ctx context.Context, hr *http.Request) {
	if md, ok := metadata.FromOutgoingContext(ctx); ok {
		for _, v := range md.Get(auth.MetadataKey) {
			hr.Header.Add("Authorization", v)
		}
	}
}

// do sends hr and turns an error answer into its gRPC status.
func (c *HTTPConn) do(hr *http.Request) (*http.Response, error) {
	resp, err := c.client.Do(hr)
	if err != nil {
		if hr.Context().Err() != nil {
			return nil, status.FromContextError(hr.Context().Err()).Err()
		}
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return nil, statusFromBody(resp.StatusCode, b)
}

// statusFromBody decodes the gateway's error body, a google.rpc.Status in
// JSON, as the status the server returned.
func statusFromBody(code int, b []byte) error {
	var st spb.Status
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &st); err != nil || st.GetCode() == 0 {
		return status.Errorf(codes.Unknown, "HTTP %d with a body that is not a status: %q", code, b)
	}
	return status.FromProto(&st).Err()
}

// Invoke implements grpc.ClientConnInterface for unary calls.
func (c *HTTPConn) Invoke(ctx context.Context, method string, args, reply any, _ ...grpc.CallOption) error {
	req, ok := args.(proto.Message)
	if !ok {
		return status.Errorf(codes.Unimplemented, "%s: a %T request has no JSON form", method, args)
	}
	hr, err := c.request(ctx, method, req)
	if err != nil {
		return err
	}
	resp, err := c.do(hr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	if err := protojson.Unmarshal(b, reply.(proto.Message)); err != nil {
		return status.Errorf(codes.Internal, "%s: response %q: %v", method, b, err)
	}
	return nil
}

// NewStream implements grpc.ClientConnInterface for server streams: the
// stream's request goes out with its first SendMsg, and each line of the
// newline-delimited JSON answer is one message ({"result": ...}) or the
// stream's error ({"error": ...}).
func (c *HTTPConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
	if desc.ClientStreams {
		return nil, status.Errorf(codes.Unimplemented, "%s: client streams have no HTTP route", method)
	}
	return &httpStream{c: c, ctx: ctx, method: method}, nil
}

type httpStream struct {
	c      *HTTPConn
	ctx    context.Context
	method string
	// opened delivers the answer's first line reader, or the error: the
	// gateway sends the answer's headers with the stream's first message,
	// so the request goes out in the background, as a gRPC stream opens
	// without waiting for one.
	opened chan opened
	lines  *bufio.Scanner
	err    error
}

type opened struct {
	lines *bufio.Scanner
	err   error
}

func (s *httpStream) SendMsg(m any) error {
	hr, err := s.c.request(s.ctx, s.method, m.(proto.Message))
	if err != nil {
		return err
	}
	s.opened = make(chan opened, 1)
	go func() {
		resp, err := s.c.do(hr)
		if err != nil {
			s.opened <- opened{err: err}
			return
		}
		lines := bufio.NewScanner(resp.Body)
		lines.Buffer(make([]byte, 64<<10), 1<<20)
		s.opened <- opened{lines: lines}
	}()
	return nil
}

func (s *httpStream) RecvMsg(m any) error {
	if s.opened == nil {
		return status.Error(codes.Internal, "RecvMsg before SendMsg")
	}
	if s.lines == nil && s.err == nil {
		o := <-s.opened
		s.lines, s.err = o.lines, o.err
	}
	if s.err != nil {
		return s.err
	}
	for s.lines.Scan() {
		line := bytes.TrimSpace(s.lines.Bytes())
		if len(line) == 0 {
			continue
		}
		var frame struct {
			Result stdjson.RawMessage `json:"result"`
			Error  stdjson.RawMessage `json:"error"`
		}
		if err := stdjson.Unmarshal(line, &frame); err != nil {
			return status.Errorf(codes.Internal, "%s: stream line %q: %v", s.method, line, err)
		}
		if frame.Error != nil {
			return statusFromBody(http.StatusOK, frame.Error)
		}
		return protojson.Unmarshal(frame.Result, m.(proto.Message))
	}
	if err := s.lines.Err(); err != nil {
		if s.ctx.Err() != nil {
			return status.FromContextError(s.ctx.Err()).Err()
		}
		return status.Error(codes.Unavailable, err.Error())
	}
	if s.ctx.Err() != nil {
		return status.FromContextError(s.ctx.Err()).Err()
	}
	return io.EOF
}

func (s *httpStream) CloseSend() error { return nil }

func (s *httpStream) Header() (metadata.MD, error) { return nil, nil }

func (s *httpStream) Trailer() metadata.MD { return nil }

func (s *httpStream) Context() context.Context { return s.ctx }

// rawCreatePost posts a JSON body whose strings hold author's and text's
// bytes as they are, invalid UTF-8 and all, as an outside client could.
func (c *HTTPConn) rawCreatePost(ctx context.Context, author, text string) error {
	quote := func(s string) string {
		r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
		return `"` + r.Replace(s) + `"`
	}
	body := `{"author_id":` + quote(author) + `,"text":` + quote(text) + `}`
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/posts", strings.NewReader(body))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/json")
	authorize(ctx, hr)
	resp, err := c.do(hr)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
