package loglab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/herald-feed/herald/loadtest/internal/graph"
	"github.com/herald-feed/herald/loadtest/internal/load"
	"github.com/herald-feed/herald/loadtest/internal/report"
	"github.com/herald-feed/herald/loadtest/internal/stats"
	"github.com/herald-feed/herald/services/platform/auth"
)

// PipelineResult is post→visible lag through a whole all-in-one on one
// bus, measured with feedload's workload and poll observers.
type PipelineResult struct {
	Bus         string  `json:"bus"`
	Users       int     `json:"users"`
	Follows     int     `json:"follows"`
	PostRate    float64 `json:"post_rate"`
	ReadRate    float64 `json:"read_rate"`
	DurationS   float64 `json:"duration_s"`
	Posts       int64   `json:"posts"`
	CreateP50Ms float64 `json:"create_p50_ms"`
	CreateP99Ms float64 `json:"create_p99_ms"`
	LagP50Ms    float64 `json:"lag_p50_ms"`
	LagP99Ms    float64 `json:"lag_p99_ms"`
	LagMaxMs    float64 `json:"lag_max_ms"`
	// Seen counts (post, follower) observations; NotSeen those that timed
	// out.
	Seen    int64    `json:"seen"`
	NotSeen int64    `json:"not_seen"`
	Notes   []string `json:"notes,omitempty"`
	Skipped string   `json:"skipped,omitempty"`
	Error   string   `json:"error,omitempty"`
}

func (l *lab) pipeline(ctx context.Context) []PipelineResult {
	var out []PipelineResult
	for _, t := range l.consumerTargets() {
		r := PipelineResult{Bus: t.bus, Users: l.cfg.PipelineUsers, PostRate: l.cfg.PipelinePostRate, ReadRate: l.cfg.PipelineReadRate, DurationS: l.cfg.PipelineDuration.Seconds()}
		switch {
		case t.bus == Kafka && len(t.urls) == 0:
			r.Skipped = "no Kafka given"
		case ctx.Err() != nil:
			r.Skipped = "interrupted"
		default:
			// The JetStream all-in-one embeds its NATS; the Kafka one runs
			// on the running broker.
			l.cfg.logf("pipeline: the all-in-one on %s, %d users, %.0f posts/s for %s", t.bus, r.Users, r.PostRate, l.cfg.PipelineDuration)
			if err := l.pipelineRun(ctx, t, l.cfg.Namespace+"h"+short(t.bus), &r); err != nil {
				r.Error = err.Error()
				l.cfg.logf("pipeline: %s: %v", t.bus, err)
			} else {
				l.cfg.logf("  post→visible p50 %.1f ms, p99 %.1f ms (%d seen, %d not seen); CreatePost p99 %.1f ms", r.LagP50Ms, r.LagP99Ms, r.Seen, r.NotSeen, r.CreateP99Ms)
			}
		}
		out = append(out, r)
	}
	return out
}

// allinone is an all-in-one process the lab started.
type allinone struct {
	cmd    *exec.Cmd
	addr   string
	data   string
	exited chan error
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startHerald starts the all-in-one on bus t with namespace ns, on free
// loopback ports, a fresh data dir and the per-user rate limits off (the
// lab measures the log, not the limiter); authentication stays on.
func (l *lab) startHerald(t target, ns string) (*allinone, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	maddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	data, err := os.MkdirTemp(l.cfg.WorkDir, "herald-"+short(t.bus)+"-")
	if err != nil {
		return nil, err
	}
	args := []string{"-namespace", ns, "-addr", addr, "-metrics", maddr, "-http-addr", "", "-data", data, "-log-level", "warn"}
	for _, class := range []string{"posts", "deletes", "follows", "reads"} {
		args = append(args, "-rate-"+class, "off")
	}
	if t.bus == Kafka {
		args = append(args, "-bus", "kafka", "-kafka-brokers", strings.Join(t.urls, ","))
		if t.login.User != "" {
			args = append(args, "-kafka-user", t.login.User, "-kafka-password-file", t.login.PasswordFile)
		}
	} else {
		args = append(args, "-bus", "jetstream")
	}
	logPath := filepath.Join(l.cfg.WorkDir, "herald-"+short(t.bus)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(l.cfg.Herald, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The server must not read HERALD_* settings meant for something else.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	detach(cmd)
	l.cfg.logf("  starting %s %s", l.cfg.Herald, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", l.cfg.Herald, err)
	}
	h := &allinone{cmd: cmd, addr: addr, data: data, exited: make(chan error, 1)}
	go func() { h.exited <- cmd.Wait(); logf.Close() }()
	return h, nil
}

// stop sends SIGTERM and waits; SIGKILL after 30 s. The data dir goes.
func (h *allinone) stop() error {
	defer os.RemoveAll(h.data)
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-h.exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGTERM {
			return nil
		}
		return err
	case <-time.After(30 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.exited
		return fmt.Errorf("herald (pid %d) did not stop within 30 s of SIGTERM; killed", h.cmd.Process.Pid)
	}
}

// dial waits until the all-in-one has written its development key and
// answers health checks, and returns feedload's target on it.
func (h *allinone) dial(ctx context.Context) (*load.Target, error) {
	var t *load.Target
	err := retry(ctx, time.Minute, func() error {
		select {
		case err := <-h.exited:
			h.exited <- err
			return fmt.Errorf("herald exited: %v", err)
		default:
		}
		signer, err := auth.DevSigner(h.data)
		if err != nil {
			return err
		}
		t, err = load.Dial(ctx, load.DialConfig{Addr: h.addr, Signer: signer})
		return err
	})
	return t, err
}

func (l *lab) pipelineRun(ctx context.Context, t target, ns string, r *PipelineResult) (err error) {
	h, err := l.startHerald(t, ns)
	if err != nil {
		return err
	}
	defer func() {
		if serr := h.stop(); serr != nil && err == nil {
			err = fmt.Errorf("stopping herald: %w", serr)
		}
		if t.bus == Kafka {
			// The all-in-one's topics and its fan-out's group.
			if derr := t.drop(context.WithoutCancel(ctx), ns, l.log, "fanout"); derr != nil {
				l.cfg.logf("pipeline: cleaning up %s: %v", ns, derr)
			}
		}
	}()
	tg, err := h.dial(ctx)
	if err != nil {
		return fmt.Errorf("herald at %s: %w (log: %s)", h.addr, err, filepath.Join(l.cfg.WorkDir, "herald-"+short(t.bus)+".log"))
	}
	defer tg.Close()
	g, err := graph.Generate(graph.Params{Users: r.Users, MeanFollows: 10, Celebrities: 3, CelebrityReach: 0.3, Zipf: 1.1, Seed: 1, Prefix: "ll_"})
	if err != nil {
		return err
	}
	setup, err := load.Build(ctx, tg, g, load.SetupConfig{Concurrency: 16, Timeout: 5 * time.Second, Retries: 5, Seed: 1}, stats.NewRecorder(time.Now()))
	if err != nil {
		return fmt.Errorf("building the graph: %w", err)
	}
	r.Follows = setup.Done
	l.cfg.logf("  graph built: %d follows in %.1f s", setup.Done, setup.Seconds)
	// As feedload's --settle: the follows' backfills drain first.
	sleep(ctx, 3*time.Second)
	rep, err := load.Run(ctx, tg, g, load.RunConfig{
		Duration: l.cfg.PipelineDuration, PostRate: r.PostRate, ReadRate: r.ReadRate, PageSize: 20,
		CelebrityPostShare: 0.05, MaxInFlight: 512, Timeout: 5 * time.Second,
		LagMode: load.LagPoll, LagFollowers: 2, LagSample: 1, LagTimeout: 10 * time.Second, MaxWatchers: 64,
		Seed: 1, RunID: strconv.FormatInt(time.Now().Unix(), 36),
	})
	if rep == nil {
		return err
	}
	cp := rep.Method(report.CreatePost)
	r.Posts, r.CreateP50Ms, r.CreateP99Ms = cp.Count, cp.P50Ms, cp.P99Ms
	r.LagP50Ms, r.LagP99Ms, r.LagMaxMs, r.Seen, r.NotSeen = rep.Lag.P50Ms, rep.Lag.P99Ms, rep.Lag.MaxMs, rep.Lag.Count, rep.Lag.Errors
	r.Notes = rep.Notes
	if cp.Errors > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d CreatePost calls failed", cp.Errors))
	}
	return err
}
