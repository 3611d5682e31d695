package loglab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/node"
)

// ConsumerProcess configures the lab's consumer process (RunConsumer),
// which the redelivery section starts twice and kills once. It travels as
// JSON on the process's command line, so it names the password file, never
// the password.
type ConsumerProcess struct {
	Bus          string        `json:"bus"`
	URLs         []string      `json:"urls"`
	User         string        `json:"user,omitempty"`
	PasswordFile string        `json:"password_file,omitempty"`
	Namespace    string        `json:"namespace"`
	Durable      string        `json:"durable"`
	Workers      int           `json:"workers"`
	AckWait      time.Duration `json:"ack_wait"`
	Work         time.Duration `json:"work"`
	// SessionTimeout is Kafka's; 0 for the adapter's default.
	SessionTimeout time.Duration `json:"session_timeout,omitempty"`
}

func (p ConsumerProcess) target() target {
	return target{bus: p.Bus, urls: p.URLs, login: node.Login{User: p.User, PasswordFile: p.PasswordFile}, replicas: 1, sessionTimeout: p.SessionTimeout}
}

// The lines a consumer process writes, one per handler step: "start <post
// ID> <unix ns>" when a handler begins, "done <post ID> <unix ns>" when it
// returns nil (the adapter then acknowledges or commits the event).
const (
	lineStart = "start"
	lineDone  = "done"
)

// RunConsumer consumes p's durable consumer until ctx ends, writing a line
// to out as each handler starts and as it finishes: the parent process
// learns from them what this process had taken when it was killed. Each
// handler sleeps p.Work, standing in for the fan-out's write.
func RunConsumer(ctx context.Context, p ConsumerProcess, out io.Writer, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := p.target()
	lg, closeLog, err := t.open(ctx, p.Namespace, log)
	if err != nil {
		return err
	}
	defer closeLog()
	var mu sync.Mutex
	emit := func(what string, post uint64) error {
		mu.Lock()
		defer mu.Unlock()
		// One write per line, so that a line the process wrote before it
		// was killed is whole in the pipe.
		_, err := fmt.Fprintf(out, "%s %d %d\n", what, post, time.Now().UnixNano())
		return err
	}
	cc := event.ConsumerConfig{Durable: p.Durable, Kinds: []event.Kind{event.KindPostCreated}, AckWait: p.AckWait, MaxDeliver: 10, Workers: p.Workers}
	return lg.Consume(ctx, cc, func(ctx context.Context, ev event.Event) error {
		pc, ok := ev.(event.PostCreated)
		if !ok {
			return fmt.Errorf("%T: %w", ev, event.ErrPermanent)
		}
		if err := emit(lineStart, uint64(pc.Post)); err != nil {
			return err
		}
		sleep(ctx, p.Work)
		return emit(lineDone, uint64(pc.Post))
	})
}

// consumerLine is one parsed line of a consumer process.
type consumerLine struct {
	done bool // a "done" line; else "start"
	post uint64
	at   time.Time
}

// parseConsumerLine parses one line RunConsumer wrote.
func parseConsumerLine(s string) (consumerLine, error) {
	f := strings.Fields(s)
	if len(f) != 3 || (f[0] != lineStart && f[0] != lineDone) {
		return consumerLine{}, fmt.Errorf("consumer line %q: want \"start|done <post> <unix ns>\"", s)
	}
	post, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return consumerLine{}, fmt.Errorf("consumer line %q: post: %w", s, err)
	}
	ns, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return consumerLine{}, fmt.Errorf("consumer line %q: time: %w", s, err)
	}
	return consumerLine{done: f[0] == lineDone, post: post, at: time.Unix(0, ns)}, nil
}

// handled is what one consumer process reported.
type handled struct {
	mu      sync.Mutex
	started map[uint64]time.Time // first start of each post
	starts  []consumerLine       // every start, in order
	done    map[uint64]int       // done lines per post
	dones   int
	bad     error
}

func newHandled() *handled {
	return &handled{started: map[uint64]time.Time{}, done: map[uint64]int{}}
}

// read takes r's lines until it closes. A last line without its newline
// was cut by the kill: the step it began never finished, so it is left
// out.
func (h *handled) read(r io.Reader) {
	br := bufio.NewReader(r)
	for {
		s, err := br.ReadString('\n')
		if err != nil {
			if !errors.Is(err, io.EOF) {
				h.mu.Lock()
				h.bad = errors.Join(h.bad, err)
				h.mu.Unlock()
			}
			return
		}
		h.add(strings.TrimSuffix(s, "\n"))
	}
}

func (h *handled) add(s string) {
	l, err := parseConsumerLine(s)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.bad = errors.Join(h.bad, err)
		return
	}
	if l.done {
		h.done[l.post]++
		h.dones++
		return
	}
	if _, ok := h.started[l.post]; !ok {
		h.started[l.post] = l.at
	}
	h.starts = append(h.starts, l)
}

// counts returns the posts done and those started but not done.
func (h *handled) counts() (done, inFlight int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for p := range h.started {
		if h.done[p] == 0 {
			inFlight++
		}
	}
	return len(h.done), inFlight
}
