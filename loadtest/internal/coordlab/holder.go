package coordlab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-zookeeper/zk"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Systems and recipes a holder process can run.
const (
	SystemZK   = "zookeeper"
	SystemEtcd = "etcd"

	RecipeLock     = "lock"
	RecipeElection = "election"
)

// HolderConfig says what a holder process holds: the lock (the queue
// recipe) or the leadership on Path, on System, with a session timeout or
// lease TTL of TTL. The lab runs holders as separate processes so that it
// can kill them (SIGKILL: a crash) and pause them (SIGSTOP: a process that
// hangs, as in a long GC pause), which a goroutine cannot be.
type HolderConfig struct {
	Servers Servers `json:"servers"`
	System  string  `json:"system"`
	Recipe  string  `json:"recipe"`
	// Path is the ZooKeeper directory or the etcd key prefix.
	Path string        `json:"path"`
	TTL  time.Duration `json:"ttl"`
	ID   string        `json:"id"`
	// Resource is the base URL of the fencing drill's Resources, if any.
	Resource string `json:"resource,omitempty"`
	// NoticeWait is how long, after a write, the holder watches for its
	// client to notice that its session or lease is gone (0: not at all).
	NoticeWait time.Duration `json:"notice_wait,omitempty"`
}

// Validate reports the first field that is unusable.
func (c HolderConfig) Validate() error {
	switch {
	case c.System != SystemZK && c.System != SystemEtcd:
		return fmt.Errorf("holder system %q: want %s or %s", c.System, SystemZK, SystemEtcd)
	case c.Recipe != RecipeLock && c.Recipe != RecipeElection:
		return fmt.Errorf("holder recipe %q: want %s or %s", c.Recipe, RecipeLock, RecipeElection)
	case c.System == SystemZK && len(c.Servers.ZK) == 0:
		return errors.New("holder: no ZooKeeper servers")
	case c.System == SystemEtcd && len(c.Servers.Etcd) == 0:
		return errors.New("holder: no etcd endpoints")
	case c.Path == "":
		return errors.New("holder: empty path")
	case c.TTL < time.Second:
		return fmt.Errorf("holder ttl %v: want at least 1s", c.TTL)
	case c.System == SystemEtcd && c.TTL%time.Second != 0:
		return fmt.Errorf("holder ttl %v: an etcd lease TTL is whole seconds", c.TTL)
	}
	return nil
}

// holderWrote is what a holder prints after a "write" command: the outcome
// at both resources, whether its client still believed the session or
// lease alive when it wrote, and how long after the command the client
// noticed that it was not (-1: not within HolderConfig.NoticeWait).
type holderWrote struct {
	Writes         BothWrites `json:"writes"`
	BelievedAlive  bool       `json:"believed_alive"`
	NoticedAfterMs float64    `json:"noticed_after_ms"`
}

// RunHolder is the holder process: it takes the lock or leadership cfg
// names, prints "held <token>" to out, and then obeys commands on in, one
// a line, until in ends (then it releases and returns):
//
//	check           check, as careful code does before it acts, that its client
//	                believes the session or lease alive; print "checked true|false"
//	write <value>   write value with its token to cfg.Resource; print "wrote <json>"
func RunHolder(ctx context.Context, cfg HolderConfig, in io.Reader, out io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	var (
		acquire func(context.Context) (int64, error)
		release func(context.Context) error
		alive   func() bool
	)
	switch cfg.System {
	case SystemZK:
		conn, err := DialZK(ctx, cfg.Servers.ZK, cfg.TTL)
		if err != nil {
			return err
		}
		defer conn.Close()
		session := conn.SessionID()
		alive = func() bool { return conn.State() == zk.StateHasSession && conn.SessionID() == session }
		if cfg.Recipe == RecipeLock {
			l := NewZKLock(conn, cfg.Path, nil)
			acquire, release = l.Lock, l.Unlock
		} else {
			e := NewZKElection(conn, cfg.Path, cfg.ID, nil)
			acquire, release = e.Campaign, e.Resign
		}
	case SystemEtcd:
		cli, err := cfg.Servers.DialEtcd(ctx)
		if err != nil {
			return err
		}
		defer cli.Close()
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(int(cfg.TTL/time.Second)), concurrency.WithContext(ctx))
		if err != nil {
			return fmt.Errorf("etcd session: %w", err)
		}
		defer s.Close()
		alive = func() bool {
			select {
			case <-s.Done():
				return false
			default:
				return true
			}
		}
		if cfg.Recipe == RecipeLock {
			l := NewEtcdMutex(s, cfg.Path)
			acquire, release = l.Lock, l.Unlock
		} else {
			e := NewEtcdElection(s, cfg.Path, cfg.ID)
			acquire, release = e.Campaign, e.Resign
		}
	}
	token, err := acquire(ctx)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(out, "held %d\n", token); err != nil {
		return err
	}
	httpc := &http.Client{Timeout: 10 * time.Second}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "check":
			if _, err := fmt.Fprintf(out, "checked %t\n", alive()); err != nil {
				return err
			}
		case "write":
			// What a holder does in its critical section, unaware that it
			// was paused: it writes with the token it got.
			start := time.Now()
			believed := alive()
			w, err := WriteResources(ctx, httpc, cfg.Resource, token, arg)
			if err != nil {
				return err
			}
			// How long the window was in which this process would still
			// act as the holder: until its client noticed.
			noticed := -1.0
			for time.Since(start) < cfg.NoticeWait {
				if !alive() {
					noticed = ms(time.Since(start))
					break
				}
				time.Sleep(time.Millisecond)
			}
			b, _ := json.Marshal(holderWrote{Writes: w, BelievedAlive: believed, NoticedAfterMs: noticed})
			if _, err := fmt.Fprintf(out, "wrote %s\n", b); err != nil {
				return err
			}
		default:
			return fmt.Errorf("holder: unknown command %q", sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := release(rctx); err != nil && !errors.Is(err, ErrLockLost) {
		return err
	}
	return nil
}

// holderProc is a running holder process, seen from the lab.
type holderProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	// stderr keeps the process's error output, for the lab's error message.
	stderr *tailBuffer
	waited chan struct{}
	err    error
}

// startHolder starts argv (the lab's own binary, with its holder
// subcommand) with --config cfg.
func startHolder(ctx context.Context, argv []string, cfg HolderConfig) (*holderProc, error) {
	if len(argv) == 0 {
		return nil, errors.New("no holder command: the lab needs its own binary to start holder processes")
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], append(argv[1:], "--config", string(b))...)
	detach(cmd)
	h := &holderProc{cmd: cmd, lines: make(chan string, 16), stderr: &tailBuffer{max: 4096}, waited: make(chan struct{})}
	cmd.Stderr = h.stderr
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start holder %s: %w", argv[0], err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
		h.err = cmd.Wait()
		close(h.waited)
	}()
	context.AfterFunc(ctx, h.stop)
	return h, nil
}

// expect waits up to timeout for the holder's next output line, which must
// start with word, and returns the rest of it.
func (h *holderProc) expect(word string, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case line, ok := <-h.lines:
		if !ok {
			<-h.waited
			return "", fmt.Errorf("holder exited (%v) before printing %q: %s", h.err, word, h.stderr)
		}
		rest, found := strings.CutPrefix(line, word+" ")
		if !found {
			return "", fmt.Errorf("holder printed %q; want %q", line, word)
		}
		return rest, nil
	case <-t.C:
		return "", fmt.Errorf("holder printed no %q within %v: %s", word, timeout, h.stderr)
	}
}

// heldToken waits for the holder's "held <token>" line.
func (h *holderProc) heldToken(timeout time.Duration) (int64, error) {
	s, err := h.expect("held", timeout)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(s, 10, 64)
}

func (h *holderProc) signal(sig syscall.Signal) error {
	return h.cmd.Process.Signal(sig)
}

// stop kills the holder if it still runs and waits for it to exit.
func (h *holderProc) stop() {
	_ = h.cmd.Process.Signal(syscall.SIGCONT) // a paused process cannot die
	_ = h.cmd.Process.Kill()
	<-h.waited
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.b))
	if s == "" {
		return "(no error output)"
	}
	return s
}
