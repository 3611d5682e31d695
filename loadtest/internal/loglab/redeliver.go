package loglab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// RedeliveryResult is the redelivery section on one bus: two consumer
// processes share a backlog under one durable name, the first is killed
// with SIGKILL mid-stream, and the survivor finishes.
type RedeliveryResult struct {
	Bus string `json:"bus"`
	// Bound is what holds the dead process's events back: JetStream's
	// AckWait, Kafka's session timeout.
	Bound   string `json:"bound"`
	Events  int    `json:"events"`
	Workers int    `json:"workers"`
	// DoneBeforeKill counts the events the killed process had handled;
	// InFlightAtKill those it had started and not finished.
	DoneBeforeKill int `json:"done_before_kill"`
	InFlightAtKill int `json:"in_flight_at_kill"`
	// Redelivered counts the events the dead process had started (finished
	// or not) that the survivor handled again. Events the dead process had
	// taken from the log but not yet handed to a handler are redelivered
	// too, unseen: no handler reported them.
	Redelivered int `json:"redelivered"`
	// HandledTwice counts handler completions beyond the first of each
	// event, across both processes: the duplicates idempotence absorbs.
	HandledTwice int `json:"handled_twice"`
	// FirstRedeliveryS is the time from the kill until the survivor
	// started the first event the dead process had started; -1 if it
	// started none of them.
	FirstRedeliveryS float64 `json:"first_redelivery_s"`
	// DrainS is the time from the kill until every event was handled.
	DrainS float64 `json:"drain_s"`
	// Lost counts events neither process handled: it must be 0.
	Lost    int    `json:"lost"`
	Skipped string `json:"skipped,omitempty"`
	Error   string `json:"error,omitempty"`
}

func (l *lab) redelivery(ctx context.Context) []RedeliveryResult {
	var out []RedeliveryResult
	for _, t := range l.consumerTargets() {
		r := RedeliveryResult{Bus: t.bus, Events: l.cfg.RedeliveryEvents, Workers: l.cfg.RedeliveryWorkers, FirstRedeliveryS: -1}
		if t.bus == JetStream {
			r.Bound = "AckWait " + l.cfg.AckWait.String()
		} else {
			r.Bound = "session timeout " + l.cfg.SessionTimeout.String()
		}
		switch {
		case len(t.urls) == 0:
			r.Skipped = "no server given"
		case ctx.Err() != nil:
			r.Skipped = "interrupted"
		default:
			l.cfg.logf("redelivery: %s, 2 consumer processes × %d workers, %d events, %s", t.bus, r.Workers, r.Events, r.Bound)
			if err := l.redeliverRun(ctx, t, l.cfg.Namespace+"r"+short(t.bus), &r); err != nil {
				r.Error = err.Error()
				l.cfg.logf("redelivery: %s: %v", t.bus, err)
			} else {
				l.cfg.logf("  killed after %d done (%d in flight); %d redelivered, %d handled twice; first redelivery %.2f s after the kill; drained in %.2f s; %d lost",
					r.DoneBeforeKill, r.InFlightAtKill, r.Redelivered, r.HandledTwice, r.FirstRedeliveryS, r.DrainS, r.Lost)
			}
		}
		out = append(out, r)
	}
	return out
}

// proc is a consumer process the lab started.
type proc struct {
	name   string
	cmd    *exec.Cmd
	h      *handled
	exited chan struct{}
	err    error // set before exited closes
}

func (l *lab) startConsumer(p ConsumerProcess, name string) (*proc, error) {
	js, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	args := append(append([]string(nil), l.cfg.Consumer[1:]...), "--config", string(js))
	cmd := exec.Command(l.cfg.Consumer[0], args...)
	logPath := filepath.Join(l.cfg.WorkDir, "consumer-"+name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	detach(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting consumer %s (%s): %w", name, l.cfg.Consumer[0], err)
	}
	pr := &proc{name: name, cmd: cmd, h: newHandled(), exited: make(chan struct{})}
	go func() {
		// Wait closes the pipe, so it comes after the last line is read.
		pr.h.read(stdout)
		pr.err = cmd.Wait()
		logf.Close()
		close(pr.exited)
	}()
	return pr, nil
}

// kill sends SIGKILL to the process, if it still runs, and waits for it.
func (p *proc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// stop sends SIGTERM, which drains the consumer, and kills it if it has
// not exited within 30 s.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.kill()
	}
}

func (p *proc) doneCount() int { d, _ := p.h.counts(); return d }

func (l *lab) redeliverRun(ctx context.Context, t target, ns string, r *RedeliveryResult) error {
	const durable = "redeliver"
	pub, closeLog, err := l.openFresh(ctx, t, ns, "redelivery", durable)
	if err != nil {
		return err
	}
	defer closeLog()
	// The backlog: posts 1 to Events.
	if m := measure(ctx, pub.Publish, l.cfg.InFlight, r.Events, time.Minute, 0); m.Events != int64(r.Events) {
		return fmt.Errorf("published %d of %d events (%d errors; first: %s)", m.Events, r.Events, m.Errors, m.FirstErr)
	}
	pc := ConsumerProcess{
		Bus: t.bus, URLs: t.urls, User: t.login.User, PasswordFile: t.login.PasswordFile,
		Namespace: ns, Durable: durable, Workers: r.Workers, AckWait: l.cfg.AckWait, Work: l.cfg.RedeliveryWork,
		SessionTimeout: t.sessionTimeout,
	}
	a, err := l.startConsumer(pc, short(t.bus)+"-killed")
	if err != nil {
		return err
	}
	defer a.kill()
	if !waitFor(ctx, time.Minute, func() bool { return a.doneCount() >= 50 }) {
		return fmt.Errorf("the first consumer handled %d events in a minute (log: %s)", a.doneCount(), filepath.Join(l.cfg.WorkDir, "consumer-"+a.name+".log"))
	}
	b, err := l.startConsumer(pc, short(t.bus)+"-survivor")
	if err != nil {
		return err
	}
	defer b.kill()
	if !waitFor(ctx, time.Minute, func() bool { return b.doneCount() >= 100 }) {
		return fmt.Errorf("the second consumer handled %d events in a minute (log: %s)", b.doneCount(), filepath.Join(l.cfg.WorkDir, "consumer-"+b.name+".log"))
	}
	// Both share the stream now (on Kafka, once the group has given the
	// second its partitions); kill the first while it is busy, inside a
	// handler: on Kafka, between two batches everything it took is
	// committed, and the kill would leave nothing to redeliver.
	mark := a.doneCount()
	waitFor(ctx, 20*time.Second, func() bool {
		done, inFlight := a.h.counts()
		return done >= mark+100 && inFlight > 0
	})
	killed := time.Now()
	a.kill()
	r.DoneBeforeKill, r.InFlightAtKill = a.h.counts()

	bound := l.cfg.AckWait + l.cfg.SessionTimeout + 45*time.Second
	drained := waitFor(ctx, bound, func() bool { return unionDone(a.h, b.h) >= r.Events })
	r.DrainS = time.Since(killed).Seconds()
	b.stop()

	a.h.mu.Lock()
	b.h.mu.Lock()
	defer a.h.mu.Unlock()
	defer b.h.mu.Unlock()
	for _, s := range b.h.starts {
		if _, ok := a.h.started[s.post]; ok && s.at.After(killed) {
			r.FirstRedeliveryS = s.at.Sub(killed).Seconds()
			break
		}
	}
	for p := range a.h.started {
		if b.h.done[p] > 0 {
			r.Redelivered++
		}
	}
	distinct := map[uint64]bool{}
	for _, h := range []*handled{a.h, b.h} {
		for p := range h.done {
			distinct[p] = true
		}
	}
	r.HandledTwice = a.h.dones + b.h.dones - len(distinct)
	for p := uint64(1); p <= uint64(r.Events); p++ {
		if !distinct[p] {
			r.Lost++
		}
	}
	if err := errorsOf(a.h, b.h); err != nil {
		return err
	}
	if !drained {
		return fmt.Errorf("%d of %d events handled %s after the kill", len(distinct), r.Events, bound)
	}
	return nil
}

// unionDone counts the posts either process has handled.
func unionDone(a, b *handled) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(a.done)
	for p := range b.done {
		if a.done[p] == 0 {
			n++
		}
	}
	return n
}

func errorsOf(hs ...*handled) error {
	for _, h := range hs {
		if h.bad != nil {
			return fmt.Errorf("reading a consumer's lines: %w", h.bad)
		}
	}
	return nil
}
