package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/auth"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// The test binary runs as the herald binary itself when HERALD_TEST_MAIN
// is set: each test starts it as a child process, as an operator would.
func TestMain(m *testing.M) {
	if os.Getenv("HERALD_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// proc is a herald child process.
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr strings.Builder
	done   chan struct{}
	err    error
}

// start runs herald with args and extra environment variables.
func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(append(os.Environ(), "HERALD_TEST_MAIN=1"), env...)
	pr, pw := io.Pipe()
	cmd.Stderr, cmd.Stdout = pw, pw
	p := &proc{cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		<-read // all the output is in before done says the process ended
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// wait waits for the process to exit and returns its exit status.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(waitfor.Deadline):
		t.Fatalf("herald still running %v later; output:\n%s", waitfor.Deadline, p.output())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("wait: %v", p.err)
	}
	return 0
}

// waitLog waits until the output matches re, and returns the match's
// first group.
func (p *proc) waitLog(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	var m []string
	waitfor.Until(t, waitfor.Deadline, "herald to log "+re.String(), func() (bool, any) {
		select {
		case <-p.done:
			t.Fatalf("herald exited (%v) before logging %s; output:\n%s", p.err, re, p.output())
		default:
		}
		m = re.FindStringSubmatch(p.output())
		return m != nil, p.output()
	})
	if len(m) > 1 {
		return m[1]
	}
	return ""
}

var serving = regexp.MustCompile(`msg=serving .*\baddr=(\S+)`)

// base are the flags of every test's herald: loopback, no fixed ports.
func base(dir string) []string {
	return []string{"-data", dir, "-addr", "127.0.0.1:0", "-metrics", "", "-http-addr", ""}
}

func checkNoPanic(t *testing.T, out string) {
	t.Helper()
	if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
		t.Errorf("output has a panic:\n%s", out)
	}
}

// TestBadSettingsExit2: a variable or flag that does not parse stops
// herald at once, with status 2 and a message that names it and its value.
func TestBadSettingsExit2(t *testing.T) {
	for _, tc := range []struct {
		env  string
		args []string
		want []string
	}{
		{env: "HERALD_FANOUT_CHUNK_SIZE=ten", want: []string{"HERALD_FANOUT_CHUNK_SIZE", `"ten"`}},
		{env: "HERALD_ACTIVE_WINDOW=7", want: []string{"HERALD_ACTIVE_WINDOW", `"7"`}},
		{env: "HERALD_LOG_JSON=yes", want: []string{"HERALD_LOG_JSON", `"yes"`}},
		{args: []string{"-strategy", "sideways"}, want: []string{"-strategy", "sideways"}},
		{args: []string{"-no-such-flag"}, want: []string{"no-such-flag"}},
		{args: []string{"-store", "mongo"}, want: []string{"-store", "mongo"}},
	} {
		name := tc.env + strings.Join(tc.args, " ")
		t.Run(name, func(t *testing.T) {
			var env []string
			if tc.env != "" {
				env = []string{tc.env}
			}
			p := start(t, env, append(base(t.TempDir()), tc.args...)...)
			if code := p.wait(t); code != 2 {
				t.Errorf("exit status = %d; want 2; output:\n%s", code, p.output())
			}
			for _, w := range tc.want {
				if !strings.Contains(p.output(), w) {
					t.Errorf("output does not name %s:\n%s", w, p.output())
				}
			}
		})
	}
}

// TestLogJSON: HERALD_LOG_JSON=false means text and true means JSON, as a
// boolean should.
func TestLogJSON(t *testing.T) {
	for value, want := range map[string]*regexp.Regexp{
		"false": regexp.MustCompile(`(?m)^time=\S+ level=INFO msg=starting`),
		"true":  regexp.MustCompile(`(?m)^\{"time":"[^"]+","level":"INFO","msg":"starting"`),
	} {
		t.Run(value, func(t *testing.T) {
			p := start(t, []string{"HERALD_LOG_JSON=" + value}, base(t.TempDir())...)
			p.waitLog(t, want)
			p.cmd.Process.Signal(syscall.SIGTERM)
			p.wait(t)
		})
	}
}

// TestStartupFailures: each start-up failure exits 1 with its real error,
// naming the path or address, and no panic.
func TestStartupFailures(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"data dir under a file", []string{"-data", filepath.Join(file, "data"), "-addr", "127.0.0.1:0", "-metrics", "", "-http-addr", ""}, file},
		{"grpc port in use", []string{"-data", t.TempDir(), "-addr", addr, "-metrics", "", "-http-addr", ""}, "listen for gRPC on " + addr},
		{"metrics port in use", []string{"-data", t.TempDir(), "-addr", "127.0.0.1:0", "-metrics", addr, "-http-addr", ""}, "listen for metrics on " + addr},
		{"http port in use", []string{"-data", t.TempDir(), "-addr", "127.0.0.1:0", "-metrics", "", "-http-addr", addr}, "listen for HTTP on " + addr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, nil, tc.args...)
			if code := p.wait(t); code != 1 {
				t.Errorf("exit status = %d; want 1; output:\n%s", code, p.output())
			}
			if !strings.Contains(p.output(), tc.want) {
				t.Errorf("output does not name %q:\n%s", tc.want, p.output())
			}
			checkNoPanic(t, p.output())
		})
	}
}

// TestDataDirHeld: a second herald on a data dir that a running one holds
// exits at once with a clear error, instead of waiting on etcd's lock.
func TestDataDirHeld(t *testing.T) {
	dir := t.TempDir()
	first := start(t, nil, base(dir)...)
	first.waitLog(t, serving)
	second := start(t, nil, base(dir)...)
	if code := second.wait(t); code != 1 {
		t.Errorf("second herald's exit status = %d; want 1; output:\n%s", code, second.output())
	}
	if want := fmt.Sprintf("data dir %s is in use by another herald process (pid %d)", dir, first.cmd.Process.Pid); !strings.Contains(second.output(), want) {
		t.Errorf("second herald's output does not say %q:\n%s", want, second.output())
	}
	first.cmd.Process.Signal(syscall.SIGTERM)
	if code := first.wait(t); code != 0 {
		t.Errorf("first herald's exit status after SIGTERM = %d; want 0; output:\n%s", code, first.output())
	}
}

// TestSignalDuringStartup: a signal while herald starts ends it cleanly:
// status 0, and no false error.
func TestSignalDuringStartup(t *testing.T) {
	p := start(t, nil, base(t.TempDir())...)
	p.waitLog(t, regexp.MustCompile(`msg=starting`))
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit status after SIGINT during start-up = %d; want 0; output:\n%s", code, p.output())
	}
	if out := p.output(); strings.Contains(out, "failed") || strings.Contains(out, "herald: ") {
		t.Errorf("output after SIGINT during start-up reports an error:\n%s", out)
	}
	checkNoPanic(t, p.output())
}

// TestShutdownEndsStreams: at SIGTERM an open StreamHomeTimeline ends with
// UNAVAILABLE "server shutting down", so it does not hold the drain: herald
// exits well within -shutdown-timeout (set long here, so that a stream
// that held the drain would show).
func TestShutdownEndsStreams(t *testing.T) {
	const shutdownTimeout = 2 * waitfor.Deadline
	dir := t.TempDir()
	p := start(t, nil, append(base(dir), "-shutdown-timeout", shutdownTimeout.String())...)
	addr := p.waitLog(t, serving)
	signer, err := auth.DevSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, auth.ActAsNamedUser(signer)...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	st, err := feedv1.NewTimelineServiceClient(conn).StreamHomeTimeline(ctx, &feedv1.StreamHomeTimelineRequest{UserId: "watcher"})
	if err != nil {
		t.Fatal(err)
	}
	type recv struct {
		p   *feedv1.StreamHomeTimelineResponse
		err error
	}
	recvs := make(chan recv, 16)
	go func() {
		for {
			p, err := st.Recv()
			recvs <- recv{p, err}
			if err != nil {
				return
			}
		}
	}()
	// A post by the watcher comes back on its own stream: it is live.
	pc := feedv1.NewPostServiceClient(conn)
	waitfor.Until(t, waitfor.Deadline, "the stream to deliver the watcher's own post", func() (bool, any) {
		if _, err := pc.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: "watcher", Text: "ping"}); err != nil {
			return false, err
		}
		select {
		case r := <-recvs:
			return r.err == nil, r.err
		case <-time.After(200 * time.Millisecond): // then post again
			return false, "no post on the stream yet"
		}
	})

	signalled := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	var end error
	for end == nil {
		select {
		case r := <-recvs:
			end = r.err
		case <-time.After(shutdownTimeout):
			t.Fatalf("stream still open %v after SIGTERM", shutdownTimeout)
		}
	}
	if status.Code(end) != codes.Unavailable || !strings.Contains(status.Convert(end).Message(), "server shutting down") {
		t.Errorf("stream at SIGTERM ended with %v; want UNAVAILABLE \"server shutting down\"", end)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("exit status after SIGTERM = %d; want 0; output:\n%s", code, p.output())
	}
	if took := time.Since(signalled); took >= shutdownTimeout {
		t.Errorf("herald took %v to exit after SIGTERM; want less than -shutdown-timeout %v: the open stream held the drain", took, shutdownTimeout)
	}
	if strings.Contains(p.output(), "drain timed out") {
		t.Errorf("the drain timed out:\n%s", p.output())
	}
}

// TestAuthOffWarns: -auth=off starts, and says at start that any caller
// may act as any user.
func TestAuthOffWarns(t *testing.T) {
	p := start(t, nil, append(base(t.TempDir()), "-auth", "off")...)
	p.waitLog(t, regexp.MustCompile(`level=WARN msg="authentication is off`))
	p.waitLog(t, serving)
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit status after SIGTERM = %d; want 0; output:\n%s", code, p.output())
	}
}

// TestAuthKeysMissing: a key file that is not there is a start-up error
// naming the flag, not a panic.
func TestAuthKeysMissing(t *testing.T) {
	p := start(t, nil, append(base(t.TempDir()), "-auth-keys", "/nonexistent/keys.pem")...)
	if code := p.wait(t); code != 1 {
		t.Errorf("exit status = %d; want 1; output:\n%s", code, p.output())
	}
	if out := p.output(); !strings.Contains(out, "-auth-keys") || !strings.Contains(out, "/nonexistent/keys.pem") {
		t.Errorf("output does not name -auth-keys and the path:\n%s", out)
	}
	checkNoPanic(t, p.output())
}
