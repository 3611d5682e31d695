// Package httpapi is Herald's HTTP/JSON API: the routes that the
// google.api.http annotations in proto/feed/v1 give the post, graph and
// timeline services, served by grpc-gateway in front of their gRPC API.
// Every call goes through the gRPC server, so the same bearer tokens
// (Authorization: Bearer ...), rules and rate limits apply, and errors
// keep their codes: INVALID_ARGUMENT is 400, UNAUTHENTICATED 401,
// PERMISSION_DENIED 403, NOT_FOUND 404, RESOURCE_EXHAUSTED 429 (with
// Retry-After, from the RetryInfo the rate limiter attaches), UNAVAILABLE
// 503, each with a JSON body {"code", "message", "details"} whose message
// names the field.
//
// JSON field names are the protos' (author_id, next_page_token). The
// stream, GET /v1/users/{user_id}/home:stream, is newline-delimited JSON,
// one {"result": {...}} per post, or server-sent events for a client that
// asks for text/event-stream.
package httpapi

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
)

// Services are the services with HTTP routes, each registered on its own
// connection.
var Services = []string{"post", "graph", "timeline"}

// Handler returns the API over the connection conn gives for each of
// Services (the process's own gRPC server, or the service's instances).
func Handler(ctx context.Context, conn func(service string) (grpc.ClientConnInterface, error)) (http.Handler, error) {
	json := &runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
		UnmarshalOptions: protojson.UnmarshalOptions{},
	}
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, json),
		runtime.WithMarshalerOption("text/event-stream", &eventStream{json}),
		runtime.WithErrorHandler(errorHandler),
		runtime.WithRoutingErrorHandler(routingErrorHandler(routes())),
		runtime.WithForwardResponseOption(streamOpened),
	)
	register := map[string]func(context.Context, *runtime.ServeMux, grpc.ClientConnInterface) error{
		"post": func(ctx context.Context, m *runtime.ServeMux, cc grpc.ClientConnInterface) error {
			return feedv1.RegisterPostServiceHandlerClient(ctx, m, feedv1.NewPostServiceClient(cc))
		},
		"graph": func(ctx context.Context, m *runtime.ServeMux, cc grpc.ClientConnInterface) error {
			return feedv1.RegisterGraphServiceHandlerClient(ctx, m, feedv1.NewGraphServiceClient(cc))
		},
		"timeline": func(ctx context.Context, m *runtime.ServeMux, cc grpc.ClientConnInterface) error {
			return feedv1.RegisterTimelineServiceHandlerClient(ctx, m, feedv1.NewTimelineServiceClient(cc))
		},
	}
	for _, s := range Services {
		cc, err := conn(s)
		if err != nil {
			return nil, fmt.Errorf("http api: connection to %s: %w", s, err)
		}
		if err := register[s](ctx, mux, cc); err != nil {
			return nil, fmt.Errorf("http api: %s routes: %w", s, err)
		}
	}
	// The stream's content type follows the request's Accept, which a
	// response option cannot see: the request's context carries it.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), acceptKey{}, r.Header.Get("Accept"))))
	}), nil
}

type acceptKey struct{}

// StreamOpenHeader is the gRPC header the timeline service sends when it
// has admitted a stream, before its first post.
const StreamOpenHeader = "herald-stream"

// errorHandler is the gateway's, with Retry-After on a call the rate
// limiter refused: the RetryInfo's delay, rounded up to whole seconds.
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if st, ok := status.FromError(err); ok {
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
				secs := int(math.Ceil(ri.GetRetryDelay().AsDuration().Seconds()))
				w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
			}
		}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// streamOpened sends a stream's headers as soon as the server has opened
// it (its gRPC headers have come, which the timeline service sends once
// the stream is admitted): the gateway alone would send them with the
// first post, and a client would not know until then that it is live. A
// response option gets a nil message only at the start of a stream.
func streamOpened(ctx context.Context, w http.ResponseWriter, m proto.Message) error {
	if m != nil {
		return nil
	}
	// Only a stream the server opened: a refused one (a trailers-only
	// answer) has no such header, and the gateway then answers with its
	// status (401, 429, ...).
	if md, ok := runtime.ServerMetadataFromContext(ctx); !ok || len(md.HeaderMD.Get(StreamOpenHeader)) == 0 {
		return nil
	}
	ct := "application/json"
	if accept, _ := ctx.Value(acceptKey{}).(string); strings.Contains(accept, "text/event-stream") {
		ct = "text/event-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	return http.NewResponseController(w).Flush()
}

// route is one annotated method's HTTP route, as a pattern that also
// matches its path with a field left empty.
type route struct {
	verb   string
	path   *regexp.Regexp
	fields []string // the path's fields, in order
}

// Route returns the HTTP method, path template and body field ("*": the
// whole request) of a method's google.api.http annotation; ok is false if
// it has none.
func Route(md protoreflect.MethodDescriptor) (verb, template, body string, ok bool) {
	rule, _ := proto.GetExtension(md.Options(), annotations.E_Http).(*annotations.HttpRule)
	switch p := rule.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		verb, template = http.MethodGet, p.Get
	case *annotations.HttpRule_Post:
		verb, template = http.MethodPost, p.Post
	case *annotations.HttpRule_Delete:
		verb, template = http.MethodDelete, p.Delete
	case *annotations.HttpRule_Put:
		verb, template = http.MethodPut, p.Put
	case *annotations.HttpRule_Patch:
		verb, template = http.MethodPatch, p.Patch
	default:
		return "", "", "", false
	}
	return verb, template, rule.GetBody(), true
}

// routes reads the HTTP routes of Services' methods from their
// google.api.http annotations.
func routes() []route {
	var out []route
	for _, sd := range []protoreflect.ServiceDescriptor{
		feedv1.File_feed_v1_post_proto.Services().Get(0),
		feedv1.File_feed_v1_graph_proto.Services().Get(0),
		feedv1.File_feed_v1_timeline_proto.Services().Get(0),
	} {
		for i := range sd.Methods().Len() {
			verb, tmpl, _, ok := Route(sd.Methods().Get(i))
			if !ok {
				continue
			}
			r := route{verb: verb}
			expr := "^" + pathField.ReplaceAllStringFunc(regexp.QuoteMeta(tmpl), func(m string) string {
				r.fields = append(r.fields, strings.Trim(m, `\{}`))
				return "([^/]*)"
			}) + "$"
			r.path = regexp.MustCompile(expr)
			out = append(out, r)
		}
	}
	return out
}

// pathField matches a {field} of a quoted route template.
var pathField = regexp.MustCompile(`\\\{[a-z_]+\\\}`)

// routingErrorHandler answers a path that matches no route as the gateway
// does (404, or 405 for a known path with another method), except a path
// that would match a route but for an empty field ("/v1/users//home"):
// that is the field's bad input, 400 naming it, as gRPC answers an empty
// field.
func routingErrorHandler(rs []route) runtime.RoutingErrorHandlerFunc {
	return func(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, code int) {
		for _, rt := range rs {
			if rt.verb != r.Method {
				continue
			}
			match := rt.path.FindStringSubmatch(r.URL.Path)
			for i, v := range match[min(1, len(match)):] {
				if v == "" {
					errorHandler(ctx, mux, m, w, r, status.Errorf(codes.InvalidArgument, "%s: must not be empty (the path %s has no %s)", rt.fields[i], r.URL.Path, rt.fields[i]))
					return
				}
			}
		}
		runtime.DefaultRoutingErrorHandler(ctx, mux, m, w, r, code)
	}
}

// eventStream writes a server stream as server-sent events: each message
// one "data:" line of JSON, then a blank line.
type eventStream struct{ *runtime.JSONPb }

func (e *eventStream) ContentType(any) string { return "text/event-stream" }

func (e *eventStream) Marshal(v any) ([]byte, error) {
	b, err := e.JSONPb.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append([]byte("data: "), b...), nil
}

func (e *eventStream) Delimiter() []byte { return []byte("\n\n") }

// NewEncoder is Marshal for the gateway's encoder path.
func (e *eventStream) NewEncoder(w io.Writer) runtime.Encoder {
	return runtime.EncoderFunc(func(v any) error {
		b, err := e.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, e.Delimiter()...))
		return err
	})
}
