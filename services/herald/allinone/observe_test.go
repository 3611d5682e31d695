package allinone_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/herald/systemtest"
)

// repoRoot is the repository's root, three levels above this package.
var repoRoot = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}()

// threshold is an alert expression's last comparison with a number: the
// test makes it a bool comparison, which returns a series (0 or 1) for
// every series the left side has, so that "no series" means the left side
// has none, not that the alert does not fire.
var threshold = regexp.MustCompile(`(>|<|==|!=|>=|<=)\s*([0-9.e+-]+)\s*$`)

// TestDashboardAndAlertsQueryRealSeries runs a real Prometheus
// (deploy/local/prometheus.sh, with Herald's alert rules) against the
// all-in-one under a little load, and evaluates every expression of the
// Grafana dashboard (deploy/grafana/dashboards/herald.json) and of the
// alert rules through Prometheus's query API: each must succeed and return
// at least one series. A metric renamed, a label misspelt or a series
// that only appears after its first event fails here rather than on an
// operator's empty panel. Every rule must also have been evaluated without
// error by Prometheus itself.
func TestDashboardAndAlertsQueryRealSeries(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Node.MetricsAddr = "127.0.0.1:0"
	conn, sys, _ := startSystemWith(t, cfg)
	c := systemtest.NewClient(conn, conn, conn)

	promURL := startPrometheus(t, sys.Node.MetricsAddr())

	// A little load of each kind the panels show: follows, posts fanned
	// out to a follower, home-timeline reads, and a request refused for bad
	// input (the error panels).
	c.Follow(t, "obs_bob", "obs_alice")
	for i := range 5 {
		c.CreatePost(t, "obs_alice", fmt.Sprintf("observed %d", i), "")
	}
	c.WaitHome(t, "obs_bob", 30*time.Second, "the 5 posts", func(ids []string) bool { return len(ids) == 5 })
	for range 10 {
		c.Home(t, "obs_bob")
	}
	ctx, cancel := systemtest.RPCContext()
	_, err := c.Post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: "obs_alice", Text: ""})
	cancel()
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("CreatePost with no text: %v; want InvalidArgument", err)
	}

	exprs := dashboardExprs(t)
	rules := ruleQueries(t, promURL)
	if len(rules) < 7 {
		t.Fatalf("Prometheus loaded %d alert rules from deploy/prometheus/alerts.yml; want at least 7: %v", len(rules), rules)
	}
	for _, r := range rules {
		if !threshold.MatchString(r.Query) {
			t.Errorf("alert %s: expression %q does not end in a comparison with a number, which this test turns into a bool comparison", r.Name, r.Query)
			continue
		}
		exprs = append(exprs, namedExpr{"alert " + r.Name, threshold.ReplaceAllString(r.Query, "$1 bool $2")})
	}

	// Rates need two scrapes in their window, and the backlog alert's
	// subquery two of its 30 s steps: keep asking until every expression
	// has a series, for up to 2 minutes, and fail on those still empty.
	deadline := time.Now().Add(2 * time.Minute)
	pending := exprs
	for {
		var still []namedExpr
		for _, e := range pending {
			n, err := promQuery(promURL, e.expr)
			if err != nil {
				t.Errorf("%s: %q: %v", e.name, e.expr, err)
				continue
			}
			if n == 0 {
				still = append(still, e)
			}
		}
		pending = still
		if len(pending) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	for _, e := range pending {
		t.Errorf("%s: %q returned no series within 2 minutes of load", e.name, e.expr)
	}
	t.Logf("%d dashboard and alert expressions evaluated, %d with no series", len(exprs), len(pending))

	// Prometheus evaluated every rule itself, without error.
	for _, r := range ruleQueries(t, promURL) {
		if r.Health != "ok" {
			t.Errorf("alert %s: Prometheus's evaluation health %q (%s); want ok", r.Name, r.Health, r.LastError)
		}
	}
}

type namedExpr struct{ name, expr string }

// dashboardExprs returns every target expression of the Grafana dashboard.
func dashboardExprs(t *testing.T) []namedExpr {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "grafana", "dashboards", "herald.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("deploy/grafana/dashboards/herald.json: %v", err)
	}
	var out []namedExpr
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out = append(out, namedExpr{"panel " + p.Title, tg.Expr})
		}
	}
	return out
}

// startPrometheus starts a Prometheus of its own (state under a temporary
// directory, a free port) scraping target every second, and stops it when
// the test ends. It returns its URL.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	script := filepath.Join(repoRoot, "deploy", "local", "prometheus.sh")
	env := append(os.Environ(),
		"HERALD_LOCAL_DIR="+t.TempDir(),
		fmt.Sprintf("HERALD_PROMETHEUS_PORT=%d", port),
		"HERALD_PROMETHEUS_TARGETS="+target,
		"HERALD_PROMETHEUS_SCRAPE_INTERVAL=1s",
	)
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(script, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("deploy/local/prometheus.sh %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("start")
	t.Cleanup(func() { run("stop") })
	return fmt.Sprintf("http://127.0.0.1:%d", port)
}

// promQuery runs an instant query and returns how many series it
// returned, or the error Prometheus gave.
func promQuery(base, expr string) (int, error) {
	var resp struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := getJSON(base+"/api/v1/query?"+url.Values{"query": {expr}}.Encode(), &resp); err != nil {
		return 0, err
	}
	if resp.Status != "success" {
		return 0, fmt.Errorf("prometheus: %s", resp.Error)
	}
	return len(resp.Data.Result), nil
}

type promRule struct {
	Name      string `json:"name"`
	Query     string `json:"query"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
	Type      string `json:"type"`
}

// ruleQueries returns the alert rules Prometheus loaded.
func ruleQueries(t *testing.T, base string) []promRule {
	t.Helper()
	var resp struct {
		Data struct {
			Groups []struct {
				Rules []promRule `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := getJSON(base+"/api/v1/rules", &resp); err != nil {
		t.Fatal(err)
	}
	var out []promRule
	for _, g := range resp.Data.Groups {
		out = append(out, g.Rules...)
	}
	return slices.DeleteFunc(out, func(r promRule) bool { return r.Type != "alerting" })
}

func getJSON(u string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %s: %w", u, resp.Status, err)
	}
	return nil
}
