package allinone_test

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-feed/herald/services/herald/allinone"
	"github.com/herald-feed/herald/services/herald/systemtest"
	"github.com/herald-feed/herald/services/platform/auth"
	"github.com/herald-feed/herald/services/platform/guard"
	"github.com/herald-feed/herald/services/platform/ratelimit"
)

// startHTTP starts the all-in-one with its HTTP API on a loopback port and
// returns the system and the API's base URL.
func startHTTP(t *testing.T, cfg allinone.Config) (*allinone.System, string) {
	t.Helper()
	cfg.Node.HTTPAddr = "127.0.0.1:0"
	_, sys, _ := startSystemWith(t, cfg)
	return sys, "http://" + sys.Node.HTTPAddr()
}

// TestSystemOverHTTP runs the behaviour suite over the HTTP/JSON API:
// every call the suite makes has a route (the protos' google.api.http
// annotations), and systemtest.HTTPConn makes it over HTTP.
func TestSystemOverHTTP(t *testing.T) {
	dir := t.TempDir()
	_, base := startHTTP(t, testConfig(t, dir))
	key, err := auth.LoadPrivateKey(filepath.Join(dir, auth.DevKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	systemtest.Run(t, systemtest.NewHTTPClient(base, key))
}

type httpAnswer struct {
	status int
	header http.Header
	body   map[string]any
}

func call(t *testing.T, method, url, token, body string) httpAnswer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := httpAnswer{status: resp.StatusCode, header: resp.Header}
	if err := json.Unmarshal(b, &a.body); err != nil {
		t.Fatalf("%s %s: %d with a body that is not JSON: %q", method, url, resp.StatusCode, b)
	}
	return a
}

// TestHTTPStatuses: the HTTP API maps gRPC codes to statuses as the
// gateway does, with a JSON body naming the field, and a refused rate
// with Retry-After; the console's token endpoint mints a token the API
// takes.
func TestHTTPStatuses(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Node.Guard.Limits = map[guard.Class]ratelimit.Limit{guard.Posts: {Rate: 1, Burst: 2}}
	_, base := startHTTP(t, cfg)

	tok := call(t, "POST", base+"/console/token", "", `{"user_id":"http_alice"}`)
	if tok.status != 200 {
		t.Fatalf("POST /console/token = %d %v; want 200", tok.status, tok.body)
	}
	alice := tok.body["token"].(string)
	bob := call(t, "POST", base+"/console/token", "", `{"user_id":"http_bob"}`).body["token"].(string)
	if a := call(t, "POST", base+"/console/token", "", `{"user_id":"Not A User"}`); a.status != 400 || !strings.Contains(a.body["message"].(string), "user_id") {
		t.Errorf("POST /console/token for a bad user ID = %d %v; want 400 naming user_id", a.status, a.body)
	}

	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		field                           string
	}{
		{"bad text", "POST", "/v1/posts", alice, `{"author_id":"http_alice","text":""}`, 400, "text"},
		{"bad page size", "GET", "/v1/users/http_alice/home?page_size=-1", alice, "", 400, "page_size"},
		{"no token", "GET", "/v1/users/http_alice/home", "", "", 401, ""},
		{"another user's post", "POST", "/v1/posts", bob, `{"author_id":"http_alice","text":"not mine"}`, 403, ""},
		{"unknown post", "GET", "/v1/posts/123", alice, "", 404, ""},
		{"unknown route", "GET", "/v1/nothing", alice, "", 404, ""},
		{"not JSON", "POST", "/v1/posts", alice, `{"author_id":`, 400, ""},
	} {
		a := call(t, tc.method, base+tc.path, tc.token, tc.body)
		msg, _ := a.body["message"].(string)
		if a.status != tc.status || !strings.Contains(msg, tc.field) {
			t.Errorf("%s: %s %s = %d %v; want %d with a message naming %q", tc.name, tc.method, tc.path, a.status, a.body, tc.status, tc.field)
		}
	}

	// Posts at 1/s with a burst of 2: the third in a row is refused.
	var refused httpAnswer
	for i := range 5 {
		refused = call(t, "POST", base+"/v1/posts", alice, `{"author_id":"http_alice","text":"post `+strconv.Itoa(i)+`"}`)
		if refused.status != 200 {
			break
		}
	}
	if refused.status != 429 {
		t.Fatalf("five posts in a row at 1/s, burst 2: last answer %d %v; want 429", refused.status, refused.body)
	}
	secs, err := strconv.Atoi(refused.header.Get("Retry-After"))
	if err != nil || secs < 1 || time.Duration(secs)*time.Second > 2*time.Second {
		t.Errorf("429's Retry-After = %q; want a whole number of seconds, 1 or 2", refused.header.Get("Retry-After"))
	}
}
