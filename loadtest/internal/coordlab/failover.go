package coordlab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"syscall"
	"time"
)

// FailoverResult is the failover time of one recipe at one session timeout
// or lease TTL: a holder process takes the lock or leadership, a contender
// in the lab queues behind it, the holder is SIGKILLed, and the time from
// the kill to the contender's Lock or Campaign returning is one trial.
// Nothing tells the servers the holder died (its connection just closes),
// so they wait out the session timeout or TTL: ZooKeeper expires a session
// between 2/3 of its timeout (the client pinged a third of the timeout
// before the kill at worst) and the timeout plus a tick after the kill;
// etcd's lease was last renewed at most a third of its TTL before the kill
// (the client renews at TTL/3), and the leader looks for expired leases
// every 500 ms. The kill falls at a random point of the holder's renewal
// cycle.
type FailoverResult struct {
	System     string    `json:"system"`
	Recipe     string    `json:"recipe"`
	TTLSeconds float64   `json:"ttl_s"`
	TrialsMs   []float64 `json:"trials_ms"`
	MinMs      float64   `json:"min_ms"`
	MedianMs   float64   `json:"median_ms"`
	MaxMs      float64   `json:"max_ms"`
	Error      string    `json:"error,omitempty"`
}

// contenderSession is a lab-side client of a holder's lock or election.
type contenderSession struct {
	acquire func(context.Context) (int64, error)
	release func(context.Context) error
	close   func()
}

// Sessions of lab-side contenders outlive any trial.
const contenderTTL = 10 * time.Second

// newContender opens a lab-side client of the lock or election on path.
func (lab *Lab) newContender(ctx context.Context, system, recipe, path, id string) (contenderSession, error) {
	switch system {
	case SystemZK:
		conn, err := DialZK(ctx, lab.servers.ZK, contenderTTL)
		if err != nil {
			return contenderSession{}, err
		}
		if recipe == RecipeLock {
			l := NewZKLock(conn, path, nil)
			return contenderSession{l.Lock, l.Unlock, conn.Close}, nil
		}
		e := NewZKElection(conn, path, id, nil)
		return contenderSession{e.Campaign, e.Resign, conn.Close}, nil
	default:
		cli, s, err := lab.etcdSession(ctx, contenderTTL)
		if err != nil {
			return contenderSession{}, err
		}
		closeAll := func() { _ = s.Close(); _ = cli.Close() }
		if recipe == RecipeLock {
			l := NewEtcdMutex(s, path)
			return contenderSession{l.Lock, l.Unlock, closeAll}, nil
		}
		e := NewEtcdElection(s, path, id)
		return contenderSession{e.Campaign, e.Resign, closeAll}, nil
	}
}

// waitQueued waits until n clients are queued on the lock or election at
// path (children of the znode, keys under the prefix).
func (lab *Lab) waitQueued(ctx context.Context, system, path string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		got, err := lab.queued(ctx, system, path)
		if err == nil && got >= n {
			return nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d clients queued on %s (saw %d, %v): %w", n, path, got, err, context.Cause(ctx))
		}
	}
}

func (lab *Lab) queued(ctx context.Context, system, path string) (int, error) {
	if system == SystemZK {
		children, _, err := lab.zk.Children(path)
		return len(children), err
	}
	resp, err := lab.etcd.Get(ctx, path+"/", prefixCount()...)
	if err != nil {
		return 0, err
	}
	return int(resp.Count), nil
}

// MeasureFailover runs trials failover trials of recipe on system with a
// session timeout or TTL of ttl.
func (lab *Lab) MeasureFailover(ctx context.Context, system, recipe string, ttl time.Duration, trials int) FailoverResult {
	res := FailoverResult{System: system, Recipe: recipe, TTLSeconds: ttl.Seconds()}
	var ds []time.Duration
	for i := range trials {
		path := lab.path(system, fmt.Sprintf("failover/%s-%gs-%d", recipe, ttl.Seconds(), i))
		d, err := lab.failoverTrial(ctx, system, recipe, path, ttl)
		if err != nil {
			res.Error = fmt.Sprintf("trial %d: %v", i+1, err)
			break
		}
		ds = append(ds, d)
		res.TrialsMs = append(res.TrialsMs, ms(d))
	}
	if len(ds) > 0 {
		slices.Sort(ds)
		res.MinMs, res.MedianMs, res.MaxMs = ms(ds[0]), ms(quantile(ds, 0.5)), ms(ds[len(ds)-1])
	}
	return res
}

func (lab *Lab) failoverTrial(ctx context.Context, system, recipe, path string, ttl time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*ttl+60*time.Second)
	defer cancel()
	h, err := startHolder(ctx, lab.holder, HolderConfig{Servers: lab.servers, System: system, Recipe: recipe, Path: path, TTL: ttl, ID: "holder"})
	if err != nil {
		return 0, err
	}
	defer h.stop()
	if _, err := h.heldToken(30 * time.Second); err != nil {
		return 0, err
	}
	c, err := lab.newContender(ctx, system, recipe, path, "contender")
	if err != nil {
		return 0, err
	}
	defer c.close()
	type acquired struct {
		at  time.Time
		err error
	}
	got := make(chan acquired, 1)
	go func() {
		_, err := c.acquire(ctx)
		got <- acquired{time.Now(), err}
	}()
	if err := lab.waitQueued(ctx, system, path, 2); err != nil {
		return 0, err
	}
	// Kill at a random point of the holder's renewal cycle: both clients
	// renew every third of the timeout (go-zookeeper pings, clientv3
	// keeps the lease alive), and where in that cycle the crash falls
	// decides how much of the timeout is left.
	select {
	case <-time.After(rand.N(ttl / 3)):
	case <-ctx.Done():
		return 0, context.Cause(ctx)
	}
	killed := time.Now()
	if err := h.signal(syscall.SIGKILL); err != nil {
		return 0, err
	}
	select {
	case a := <-got:
		if a.err != nil {
			return 0, a.err
		}
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer rcancel()
		_ = c.release(rctx)
		return a.at.Sub(killed), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("the contender did not take over within %v of the kill", time.Since(killed).Round(time.Millisecond))
	}
}

// FencingResult is the fencing drill on one system, trial by trial.
type FencingResult struct {
	System     string         `json:"system"`
	TTLSeconds float64        `json:"ttl_s"`
	Trials     []FencingTrial `json:"trials"`
	Error      string         `json:"error,omitempty"`
}

// FencingTrial is one run of the fencing drill: holder A (a process)
// takes the lock with a short TTL, checks that its client believes the
// session or lease alive (as Herald's worker-ID guard does before it mints
// an ID), and is paused (SIGSTOP) right after the check, past the TTL: a
// GC pause between the check and the act. B takes the lock, with a higher
// token, and writes. A is continued and does what it had checked it may:
// it writes with its token, now stale, to a resource that does not check
// tokens and to one that does.
type FencingTrial struct {
	// CheckedAlive is the outcome of A's check before the pause.
	CheckedAlive bool  `json:"checked_alive"`
	StaleToken   int64 `json:"stale_token"`
	NewToken     int64 `json:"new_token"`
	// TakeoverMs is the time from pausing A to B holding the lock.
	TakeoverMs float64    `json:"takeover_ms"`
	NewWrite   BothWrites `json:"new_write"`
	StaleWrite BothWrites `json:"stale_write"`
	// StaleBelievedAlive says whether A's client still thought its session
	// or lease alive when A wrote (just after SIGCONT); if so,
	// StaleNoticedMs is how long after the write it noticed the loss (-1:
	// not within 10 s).
	StaleBelievedAlive bool    `json:"stale_believed_alive"`
	StaleNoticedMs     float64 `json:"stale_noticed_ms"`
	// The values the resources hold at the end.
	UnfencedValue string `json:"unfenced_value"`
	FencedValue   string `json:"fenced_value"`
}

const (
	staleValue = "written by A (stale token)"
	newValue   = "written by B"
)

// FencingDrill runs trials fencing drills on system with a lease TTL or
// session timeout of ttl, one after another.
func (lab *Lab) FencingDrill(ctx context.Context, system string, ttl time.Duration, trials int) FencingResult {
	res := FencingResult{System: system, TTLSeconds: ttl.Seconds()}
	for i := range trials {
		var tr FencingTrial
		if err := lab.fencingDrill(ctx, system, ttl, fmt.Sprintf("fencing/%gs-%d", ttl.Seconds(), i), &tr); err != nil {
			res.Error = fmt.Sprintf("trial %d: %v", i+1, err)
			break
		}
		res.Trials = append(res.Trials, tr)
	}
	return res
}

func (lab *Lab) fencingDrill(ctx context.Context, system string, ttl time.Duration, rel string, res *FencingTrial) error {
	ctx, cancel := context.WithTimeout(ctx, 3*ttl+60*time.Second)
	defer cancel()
	rs := NewResources()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: rs.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	path := lab.path(system, rel)
	h, err := startHolder(ctx, lab.holder, HolderConfig{
		Servers: lab.servers, System: system, Recipe: RecipeLock, Path: path, TTL: ttl, ID: "A",
		Resource: "http://" + ln.Addr().String(), NoticeWait: 10 * time.Second,
	})
	if err != nil {
		return err
	}
	defer h.stop()
	if res.StaleToken, err = h.heldToken(30 * time.Second); err != nil {
		return err
	}
	b, err := lab.newContender(ctx, system, RecipeLock, path, "B")
	if err != nil {
		return err
	}
	defer b.close()

	// A checks, then stops as a process stops in a long GC pause: it holds
	// the lock, has just seen its lease or session alive, and will not
	// notice it ending until it runs again.
	if _, err := fmt.Fprintln(h.stdin, "check"); err != nil {
		return err
	}
	checked, err := h.expect("checked", 30*time.Second)
	if err != nil {
		return err
	}
	res.CheckedAlive = checked == "true"
	if err := h.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	paused := time.Now()
	if res.NewToken, err = b.acquire(ctx); err != nil {
		return fmt.Errorf("holder B: %w", err)
	}
	res.TakeoverMs = ms(time.Since(paused))
	res.NewWrite = rs.Write(res.NewToken, newValue)

	if err := h.signal(syscall.SIGCONT); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(h.stdin, "write %s\n", staleValue); err != nil {
		return err
	}
	line, err := h.expect("wrote", 30*time.Second)
	if err != nil {
		return err
	}
	var w holderWrote
	if err := json.Unmarshal([]byte(line), &w); err != nil {
		return fmt.Errorf("holder's write report %q: %w", line, err)
	}
	res.StaleWrite, res.StaleBelievedAlive, res.StaleNoticedMs = w.Writes, w.BelievedAlive, w.NoticedAfterMs
	res.UnfencedValue, res.FencedValue = rs.Unfenced.Value(), rs.Fenced.Value()

	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer rcancel()
	if err := b.release(rctx); err != nil && !errors.Is(err, ErrNotHeld) {
		return fmt.Errorf("holder B: %w", err)
	}
	return nil
}
