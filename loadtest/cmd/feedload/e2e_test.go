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
	"github.com/herald-feed/herald/services/platform/node"
)

// startHerald runs the all-in-one in this process on a loopback port, over
// embedded etcd, NATS and Pebble, as services/herald/allinone's tests do.
func startHerald(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sys, err := allinone.Open(ctx, allinone.Config{
		Node: node.Config{
			Name: "e2e", ListenAddr: "127.0.0.1:0", LeaseTTL: 5 * time.Second,
			Log: slog.New(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelError})),
		},
		DataDir: t.TempDir(),
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
	deadline := time.Now().Add(60 * time.Second)
	for {
		dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
		tg, err := load.Dial(dctx, load.DialConfig{Addr: n.Addr()})
		dcancel()
		if err == nil {
			tg.Close()
			return n.Addr()
		}
		if time.Now().After(deadline) {
			t.Fatalf("herald at %s not serving within 60s: %v", n.Addr(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRunEndToEnd runs feedload for a couple of seconds against an
// in-process all-in-one and checks the report it writes.
func TestRunEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole Herald")
	}
	addr := startHerald(t)
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	root := newRoot(&stdout, &stderr)
	root.SetArgs([]string{"run", "--addr", addr, "--out", out, "--name", "e2e",
		"--users", "60", "--mean-follows", "5", "--celebrities", "1", "--celebrity-reach", "0.5",
		"--duration", "2s", "--post-rate", "10", "--read-rate", "30", "--settle", "500ms", "--lag-timeout", "5s"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("feedload run: %v\nstderr:\n%s", err, stderr.String())
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
	if !strings.Contains(stderr.String(), "run 1s/2s") {
		t.Errorf("stderr has no progress line; got:\n%s", stderr.String())
	}
	if !strings.Contains(stdout.String(), "post→visible") {
		t.Errorf("stdout has no summary with the lag; got:\n%s", stdout.String())
	}
}

func TestBadFlagsAndUnreachableTarget(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"run", "--duration", "0s"}, "duration must be"},
		{[]string{"run", "--lag", "telepathy"}, "lag mode"},
		{[]string{"run", "--addr", "192.0.2.1:7070"}, "not a loopback address"},
		{[]string{"run", "--addr", "127.0.0.1:1", "--duration", "1s"}, "cannot reach Herald"},
		{[]string{"compare", "--strategies", "push,fast"}, `unknown strategy "fast"`},
	} {
		var stdout, stderr bytes.Buffer
		root := newRoot(&stdout, &stderr)
		root.SetArgs(tc.args)
		err := root.ExecuteContext(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("feedload %v = %v; want an error containing %q", tc.args, err, tc.want)
		}
	}
}
