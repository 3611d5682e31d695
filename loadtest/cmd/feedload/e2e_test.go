package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-feed/herald/loadtest/internal/load"
	"github.com/herald-feed/herald/loadtest/internal/report"
	"github.com/herald-feed/herald/services/herald/allinone"
	"github.com/herald-feed/herald/services/platform/auth"
	"github.com/herald-feed/herald/services/platform/guard"
	"github.com/herald-feed/herald/services/platform/node"
	"github.com/herald-feed/herald/services/platform/ratelimit"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// startHerald runs the all-in-one in this process on a loopback port, over
// embedded etcd, NATS and Pebble, as services/herald/allinone's tests do,
// with authentication on and the per-user rate limits given (nil: the
// defaults). It returns the address and the data dir, which holds the
// development key feedload signs its tokens with.
func startHerald(t *testing.T, limits map[guard.Class]ratelimit.Limit) (addr, dataDir string) {
	t.Helper()
	dataDir = t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	sys, err := allinone.Open(ctx, allinone.Config{
		Node: node.Config{
			Name: "e2e", ListenAddr: "127.0.0.1:0", LeaseTTL: 5 * time.Second,
			Log:   slog.New(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelError})),
			Guard: guard.Settings{Limits: limits},
		},
		DataDir: dataDir,
	})
	if err != nil {
		cancel()
		t.Fatalf("allinone.Open: %v", err)
	}
	n := sys.Node
	done := make(chan error, 1)
	go func() { done <- sys.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("herald did not stop within 30s")
		}
		sys.Close()
	})
	// The health check is public: no token needed to see it serve.
	waitfor.Until(t, 60*time.Second, "herald at "+n.Addr()+" serving", func() (bool, any) {
		dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
		defer dcancel()
		tg, err := load.Dial(dctx, load.DialConfig{Addr: n.Addr()})
		if err != nil {
			return false, err
		}
		tg.Close()
		return true, nil
	})
	return n.Addr(), dataDir
}

// feedload runs the command with args and returns its stdout and stderr.
func feedload(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	root := newRoot(&o, &e)
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return o.String(), e.String(), err
}

// TestRunEndToEnd runs feedload for a couple of seconds against an
// in-process all-in-one and checks the report it writes.
func TestRunEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole Herald")
	}
	addr, data := startHerald(t, nil)
	out := t.TempDir()
	graphFlags := []string{"--users", "60", "--mean-follows", "5", "--celebrities", "1", "--celebrity-reach", "0.5"}
	stdout, stderr, err := feedload(append([]string{"run", "--addr", addr, "--data", data, "--out", out, "--name", "e2e",
		"--duration", "2s", "--post-rate", "10", "--read-rate", "30", "--settle", "500ms", "--lag-timeout", "5s"}, graphFlags...)...)
	if err != nil {
		t.Fatalf("feedload run: %v\nstderr:\n%s", err, stderr)
	}
	r, err := report.Read(filepath.Join(out, "e2e.json"))
	if err != nil {
		t.Fatal(err)
	}
	if post := r.Method(report.CreatePost); post.Count < 15 || post.Errors != 0 {
		t.Errorf("CreatePost ok %d, errors %d; want about 20 and none", post.Count, post.Errors)
	}
	if read := r.Method(report.GetHomeTimeline); read.Count < 45 || read.Errors != 0 {
		t.Errorf("GetHomeTimeline ok %d, errors %d; want about 60 and none", read.Count, read.Errors)
	}
	if r.Setup.Done != r.Graph.Follows || r.Setup.Done == 0 {
		t.Errorf("setup made %d of %d follows; want all", r.Setup.Done, r.Graph.Follows)
	}
	if r.Lag.Count == 0 || r.Lag.P99Ms <= 0 || r.Lag.Errors != 0 {
		t.Errorf("lag: %d observed, p99 %vms, %d not seen; want observations, a positive p99 and none missed", r.Lag.Count, r.Lag.P99Ms, r.Lag.Errors)
	}
	if len(r.Lag.CDF) == 0 {
		t.Errorf("lag CDF is empty")
	}
	if r.Interrupted {
		t.Errorf("report says interrupted")
	}
	for _, f := range []string{"e2e.md", "e2e.png"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("report file %s: %v, want a non-empty file", f, err)
		}
	}
	if n := r.RateLimited(); n != 0 {
		t.Errorf("%d calls rate limited; want none at this load under the default limits", n)
	}
	if !strings.Contains(stderr, "run 1s/2s") {
		t.Errorf("stderr has no progress line; got:\n%s", stderr)
	}
	if strings.Contains(stderr, "warning") {
		t.Errorf("stderr has a warning; want none:\n%s", stderr)
	}
	if !strings.Contains(stdout, "post→visible") {
		t.Errorf("stdout has no summary with the lag; got:\n%s", stdout)
	}

	// --signing-key signs with the key given, in place of --data's: here
	// the same development key, with --data naming a dir without one.
	_, stderr, err = feedload(append([]string{"run", "--addr", addr, "--data", t.TempDir(), "--out", t.TempDir(), "--setup-only",
		"--signing-key", filepath.Join(data, auth.DevKeyFile)}, graphFlags...)...)
	if err != nil {
		t.Errorf("feedload run --signing-key --setup-only: %v\nstderr:\n%s", err, stderr)
	}

	// Without tokens, the server refuses the calls that act as a user.
	_, stderr, err = feedload(append([]string{"run", "--addr", addr, "--auth=off", "--out", t.TempDir(), "--setup-only"}, graphFlags...)...)
	if err == nil || !strings.Contains(err.Error(), "Unauthenticated") {
		t.Errorf("feedload run --auth=off against a server with authentication on = %v; want Unauthenticated\nstderr:\n%s", err, stderr)
	}
}

// TestRunRateLimited checks that calls refused by the server's per-user
// rate limits are counted as rate limited, not as errors, and that
// feedload warns of them.
func TestRunRateLimited(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole Herald")
	}
	// One post a second for the one author: the rest of the run's posts
	// are refused.
	addr, data := startHerald(t, map[guard.Class]ratelimit.Limit{guard.Posts: {Rate: 1, Burst: 1}})
	out := t.TempDir()
	_, stderr, err := feedload("run", "--addr", addr, "--data", data, "--out", out, "--name", "limited",
		"--users", "10", "--mean-follows", "2", "--celebrities", "1", "--celebrity-reach", "1", "--celebrity-post-share", "1",
		"--duration", "2s", "--post-rate", "20", "--read-rate", "10", "--settle", "0s", "--lag", "off")
	if err != nil {
		t.Fatalf("feedload run: %v\nstderr:\n%s", err, stderr)
	}
	r, err := report.Read(filepath.Join(out, "limited.json"))
	if err != nil {
		t.Fatal(err)
	}
	post := r.Method(report.CreatePost)
	if post.RateLimited == 0 || post.Errors != 0 || post.Count == 0 || post.Count+post.RateLimited < 30 {
		t.Errorf("CreatePost ok %d, errors %d, rate limited %d; want about 40 calls, a few ok, the rest rate limited, no errors", post.Count, post.Errors, post.RateLimited)
	}
	if !strings.Contains(stderr, "warning") || !strings.Contains(stderr, "-rate-posts") {
		t.Errorf("stderr has no warning of the rate limits naming -rate-posts; got:\n%s", stderr)
	}
	if len(r.Notes) == 0 || !strings.Contains(strings.Join(r.Notes, "\n"), "rate limit") {
		t.Errorf("report notes %q; want one about the rate limits", r.Notes)
	}
}

func TestBadFlagsAndUnreachableTarget(t *testing.T) {
	empty := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"run", "--duration", "0s"}, "duration must be"},
		{[]string{"run", "--lag", "telepathy"}, "lag mode"},
		{[]string{"run", "--addr", "192.0.2.1:7070", "--auth=off"}, "not a loopback address"},
		{[]string{"run", "--addr", "127.0.0.1:1", "--duration", "1s", "--auth=off"}, "cannot reach Herald"},
		{[]string{"run", "--data", empty}, "no signing key at " + filepath.Join(empty, auth.DevKeyFile) + ": give --data"},
		{[]string{"run", "--data", empty}, "--signing-key FILE"},
		{[]string{"run", "--data", empty}, "--auth=off"},
		{[]string{"run", "--signing-key", filepath.Join(empty, "missing.pem")}, "--signing-key: stat " + filepath.Join(empty, "missing.pem")},
		{[]string{"run", "--auth", "maybe"}, `--auth "maybe": want on or off`},
		{[]string{"compare", "--strategies", "push,fast"}, `unknown strategy "fast"`},
	} {
		_, _, err := feedload(tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("feedload %v = %v; want an error containing %q", tc.args, err, tc.want)
		}
	}
}
