package clustertest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/herald/systemtest"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// TestTracePostPath follows one post through the split services in a real
// Jaeger (deploy/local/jaeger.sh, traces in memory). The services export
// over OTLP, turned on by the standard OTEL_* variables. The test sends
// CreatePost in a trace of its own (a W3C traceparent in the call's
// metadata), with five followers and fan-out chunks of two, so the post
// goes out as its first chunk and two chunk events. Then it asks Jaeger
// for that trace, and wants:
//
//   - post: the CreatePost call, the store write, the publish;
//   - fanout: the handling of post.created, the two chunk publishes and
//     their handling, and three timeline writes (one per chunk);
//   - timeline: each instance's live-stream tail of post.created, and the
//     post's first read, linked to the trace of the read that returned it,
//     whose "hydrate posts" span links back.
func TestTracePostPath(t *testing.T) {
	jaeger, otlp := startJaeger(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+otlp)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "200") // ms: export within the test's patience
	t.Setenv("HERALD_FANOUT_CHUNK_SIZE", "2")
	c := startCluster(t)
	api := c.Client(t)
	const author = "traced"
	followers := []string{"tr_f1", "tr_f2", "tr_f3", "tr_f4", "tr_f5"}
	for _, f := range followers {
		api.Follow(t, f, author)
	}

	traceID, parent := randomHex(t, 16), randomHex(t, 8)
	ctx, cancel := systemtest.RPCContext()
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", fmt.Sprintf("00-%s-%s-01", traceID, parent))
	resp, err := api.Post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: author, Text: "follow me through the trace"})
	if err != nil {
		t.Fatalf("CreatePost: %v", err)
	}
	id := resp.GetPost().GetPostId()
	for _, f := range followers {
		api.WaitHome(t, f, waitfor.Deadline, "the traced post", func(ids []string) bool { return slices.Contains(ids, id) })
	}
	// More reads, so that each timeline instance has returned the post
	// after its tail had seen it: its first read there.
	for range 2 {
		for _, f := range followers {
			api.Home(t, f)
		}
	}

	ns := c.NS
	want := map[string]map[string]int{ // service → operation → at least this many spans
		"post": {
			"feed.v1.PostService/CreatePost": 1,
			"store post":                     1,
			"send " + ns + ".post.created":   1,
		},
		"fanout": {
			"process " + ns + ".post.created": 1,
			"send " + ns + ".fanout.chunk":    2,
			"process " + ns + ".fanout.chunk": 2,
			"write timelines":                 3,
		},
		"timeline": {
			"process " + ns + ".post.created": 2, // each instance's tail
			"first read":                      1,
		},
	}
	var tr jaegerTrace
	missing := func() []string {
		var out []string
		have := tr.count()
		for svc, ops := range want {
			for op, n := range ops {
				if have[svc][op] < n {
					out = append(out, fmt.Sprintf("%s %q: %d of %d", svc, op, have[svc][op], n))
				}
			}
		}
		slices.Sort(out)
		return out
	}
	waitfor.Until(t, waitfor.Deadline, "trace "+traceID+" in Jaeger with every span of the post's path", func() (bool, any) {
		var err error
		if tr, err = getTrace(jaeger, traceID); err != nil {
			return false, err
		}
		m := missing()
		return len(m) == 0, m
	})
	t.Logf("trace %s: %d spans: %v", traceID, len(tr.Spans), tr.count())

	// Parentage: the fan-out's handling is the child of the post's publish,
	// every chunk's handling the child of a chunk publish, and each chunk
	// handling holds a timeline write.
	for _, s := range tr.spans("fanout", "process "+ns+".post.created") {
		if p := tr.parent(s); p == nil || p.OperationName != "send "+ns+".post.created" || tr.service(*p) != "post" {
			t.Errorf("fan-out span %q has parent %v; want the post service's publish", s.OperationName, p)
		}
	}
	for _, s := range tr.spans("fanout", "process "+ns+".fanout.chunk") {
		if p := tr.parent(s); p == nil || p.OperationName != "send "+ns+".fanout.chunk" {
			t.Errorf("chunk span %s has parent %v; want a chunk publish", s.SpanID, p)
		}
		if !slices.ContainsFunc(tr.Spans, func(w jaegerSpan) bool {
			p := tr.parent(w)
			return w.OperationName == "write timelines" && p != nil && p.SpanID == s.SpanID
		}) {
			t.Errorf("chunk span %s holds no timeline write", s.SpanID)
		}
	}

	// The first read links to the read's own trace, whose hydrate span
	// links back to this one.
	first := tr.spans("timeline", "first read")[0]
	var readTrace string
	for _, r := range first.References {
		if r.TraceID != traceID {
			readTrace = r.TraceID
		}
	}
	if readTrace == "" {
		t.Fatalf("first read span %s has references %+v; want a link to the read's trace", first.SpanID, first.References)
	}
	var read jaegerTrace
	waitfor.Until(t, waitfor.Deadline, "the read's trace "+readTrace, func() (bool, any) {
		var err error
		read, err = getTrace(jaeger, readTrace)
		return err == nil && len(read.spans("timeline", "hydrate posts")) > 0, err
	})
	linked := false
	for _, s := range read.spans("timeline", "hydrate posts") {
		for _, r := range s.References {
			linked = linked || r.TraceID == traceID
		}
	}
	if !linked {
		t.Errorf("read trace %s: no hydrate posts span links to the post's trace %s", readTrace, traceID)
	}
	if len(read.spans("timeline", "feed.v1.TimelineService/GetHomeTimeline")) == 0 {
		t.Errorf("read trace %s holds no GetHomeTimeline call: %v", readTrace, read.count())
	}
}

// startJaeger starts a Jaeger of its own (state under a temporary
// directory, free ports), and stops it when the test ends. It returns the
// query API's base URL and the OTLP gRPC address.
func startJaeger(t *testing.T) (api, otlp string) {
	t.Helper()
	ports := freePorts(t, 5)
	bin := os.Getenv("HERALD_BIN_DIR")
	if bin == "" {
		state := os.Getenv("HERALD_LOCAL_DIR")
		if state == "" {
			state = filepath.Join(repoRoot, ".local")
		}
		bin = filepath.Join(state, "bin") // where make's need-jaeger built it
	}
	env := []string{
		"HERALD_LOCAL_DIR=" + t.TempDir(),
		"HERALD_BIN_DIR=" + bin,
		fmt.Sprintf("HERALD_JAEGER_PORT=%d", ports[0]),
		fmt.Sprintf("HERALD_JAEGER_QUERY_GRPC_PORT=%d", ports[1]),
		fmt.Sprintf("HERALD_JAEGER_OTLP_GRPC_PORT=%d", ports[2]),
		fmt.Sprintf("HERALD_JAEGER_OTLP_HTTP_PORT=%d", ports[3]),
		fmt.Sprintf("HERALD_JAEGER_HEALTH_PORT=%d", ports[4]),
	}
	runScriptEnv(t, env, "jaeger.sh", "start")
	t.Cleanup(func() { runScriptEnv(t, env, "jaeger.sh", "stop") })
	return fmt.Sprintf("http://127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[2])
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// jaegerTrace is one trace as Jaeger's query API (/api/traces/ID) gives it.
type jaegerTrace struct {
	TraceID   string       `json:"traceID"`
	Spans     []jaegerSpan `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

type jaegerSpan struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	ProcessID string `json:"processID"`
}

func (tr jaegerTrace) service(s jaegerSpan) string { return tr.Processes[s.ProcessID].ServiceName }

// count returns the trace's spans by service and operation.
func (tr jaegerTrace) count() map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, s := range tr.Spans {
		svc := tr.service(s)
		if out[svc] == nil {
			out[svc] = map[string]int{}
		}
		out[svc][s.OperationName]++
	}
	return out
}

func (tr jaegerTrace) spans(service, op string) []jaegerSpan {
	var out []jaegerSpan
	for _, s := range tr.Spans {
		if tr.service(s) == service && s.OperationName == op {
			out = append(out, s)
		}
	}
	return out
}

// parent returns s's parent span in the trace, or nil.
func (tr jaegerTrace) parent(s jaegerSpan) *jaegerSpan {
	for _, r := range s.References {
		if r.RefType != "CHILD_OF" || r.TraceID != s.TraceID {
			continue
		}
		for i := range tr.Spans {
			if tr.Spans[i].SpanID == r.SpanID {
				return &tr.Spans[i]
			}
		}
	}
	return nil
}

func (s *jaegerSpan) String() string { return fmt.Sprintf("%s (%s)", s.OperationName, s.SpanID) }

// getTrace fetches one trace from Jaeger's query API.
func getTrace(base, id string) (jaegerTrace, error) {
	cl := &http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(base + "/api/traces/" + id)
	if err != nil {
		return jaegerTrace{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return jaegerTrace{}, fmt.Errorf("GET /api/traces/%s: %s", id, resp.Status)
	}
	var body struct {
		Data []jaegerTrace `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return jaegerTrace{}, fmt.Errorf("GET /api/traces/%s: %w", id, err)
	}
	for _, tr := range body.Data {
		if strings.EqualFold(tr.TraceID, id) {
			return tr, nil
		}
	}
	return jaegerTrace{}, fmt.Errorf("GET /api/traces/%s: %d traces, not that one", id, len(body.Data))
}
