package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-feed/herald/loadtest/internal/graph"
	"github.com/herald-feed/herald/loadtest/internal/report"
	"github.com/herald-feed/herald/loadtest/internal/schedule"
	"github.com/herald-feed/herald/loadtest/internal/stats"
	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
)

// Lag modes.
const (
	LagPoll   = "poll"
	LagStream = "stream"
	LagOff    = "off"
)

// RunConfig is the workload of one run.
type RunConfig struct {
	// Warmup runs the workload for this long before measuring starts;
	// requests intended within it are made but not recorded.
	Warmup   time.Duration
	Duration time.Duration
	// PostRate and ReadRate are requests per second, on fixed schedules.
	PostRate, ReadRate float64
	PageSize           int
	// CelebrityPostShare is the fraction of posts written by celebrities;
	// the rest are by ordinary users chosen uniformly.
	CelebrityPostShare float64
	// MaxInFlight bounds requests in flight per schedule. A request that
	// waits for a slot keeps its intended start, so the wait counts.
	MaxInFlight int
	Timeout     time.Duration

	// LagMode is how post→visible lag is observed: poll, stream or off.
	LagMode string
	// LagFollowers is, in poll mode, how many followers of a sampled post's
	// author poll for it.
	LagFollowers int
	// LagSample is, in poll mode, the fraction of posts observed.
	LagSample float64
	// LagTimeout is how long a post may take to become visible before it
	// counts as not seen.
	LagTimeout time.Duration
	// Observers is, in stream mode, how many users keep a stream open.
	Observers int
	// MaxWatchers bounds, in poll mode, the followers polling at once. A
	// fan-out that falls behind would otherwise draw more and more polls
	// and the measurement would add to the overload it measures; posts
	// beyond the bound go unwatched and are counted.
	MaxWatchers int

	Seed uint64
	// RunID goes into post texts and idempotency keys.
	RunID string
	// Progress receives a progress line about every second; nil for none.
	Progress io.Writer
	// OnMeasure, if not nil, is called when measuring starts (after the
	// warmup) and again, with end true, when the last request intended in
	// the measured window has finished: a caller's cue to sample server
	// counters over the same window.
	OnMeasure func(end bool)
}

// Validate reports the first problem with c. The bounds keep a mistyped
// flag from turning into an unbounded flood.
func (c RunConfig) Validate() error {
	switch {
	case c.Duration <= 0 || c.Duration > 2*time.Hour:
		return errors.New("duration must be between 0 and 2h")
	case c.Warmup < 0 || c.Warmup > 10*time.Minute:
		return errors.New("warmup must be between 0 and 10m")
	case c.PostRate < 0 || c.PostRate > 20000 || c.ReadRate < 0 || c.ReadRate > 20000:
		return errors.New("rates must be between 0 and 20000 per second")
	case c.PostRate == 0 && c.ReadRate == 0:
		return errors.New("both rates are 0: nothing to do")
	case c.PageSize < 1 || c.PageSize > 100:
		return errors.New("page size must be between 1 and 100")
	case c.CelebrityPostShare < 0 || c.CelebrityPostShare > 1:
		return errors.New("celebrity post share must be between 0 and 1")
	case c.MaxInFlight < 1:
		return errors.New("max in flight must be at least 1")
	case c.Timeout <= 0:
		return errors.New("timeout must be positive")
	case c.LagMode != LagPoll && c.LagMode != LagStream && c.LagMode != LagOff:
		return fmt.Errorf("lag mode %q: want poll, stream or off", c.LagMode)
	case c.LagMode == LagPoll && (c.LagFollowers < 1 || c.LagSample <= 0 || c.LagSample > 1):
		return errors.New("poll lag mode needs lag followers >= 1 and a lag sample in (0, 1]")
	case c.LagMode == LagPoll && c.MaxWatchers < 1:
		return errors.New("poll lag mode needs max watchers >= 1")
	case c.LagMode == LagStream && c.Observers < 1:
		return errors.New("stream lag mode needs observers >= 1")
	case c.LagMode != LagOff && c.LagTimeout <= 0:
		return errors.New("lag timeout must be positive")
	}
	return nil
}

// runner holds one run's state.
type runner struct {
	t   *Target
	g   *graph.Graph
	cfg RunConfig
	rec *stats.Recorder
	// reqCtx outlives an interrupt, so requests in flight finish and are
	// counted; stop ends the lag observers.
	reqCtx context.Context
	stop   context.Context
	// from is when measuring starts: requests intended earlier are warmup.
	from time.Time
	// warm records the warmup's requests, kept apart from the measurement.
	warm *stats.Recorder

	watchers sync.WaitGroup
	watching atomic.Int64 // watchers polling now
	skipped  atomic.Int64 // watches not started: MaxWatchers were busy
	inFlight atomic.Int64

	mu      sync.Mutex
	created []createdPost // stream mode: every post made, for the misses
	seen    map[seenKey]bool
}

type createdPost struct {
	id     string
	author int32
}

type seenKey struct {
	observer int32
	post     string
}

// rng returns a generator for request i of a schedule, so that each
// request's choices depend on the seed alone, not on timing.
func (r *runner) rng(stream, i uint64) *rand.Rand {
	return rand.New(rand.NewPCG(r.cfg.Seed^stream<<56, i))
}

// Run runs the workload against t over graph g and returns the report's
// measured parts. It stops early, and still returns what it measured, if
// ctx ends.
func Run(ctx context.Context, t *Target, g *graph.Graph, cfg RunConfig) (*report.Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &runner{t: t, g: g, cfg: cfg, reqCtx: context.WithoutCancel(ctx), stop: ctx, seen: make(map[seenKey]bool)}
	rep := &report.Report{Tool: "feedload", Target: t.Desc, Workload: report.Workload{
		DurationS: cfg.Duration.Seconds(), PostRate: cfg.PostRate, ReadRate: cfg.ReadRate, PageSize: cfg.PageSize,
		CelebrityPostShare: cfg.CelebrityPostShare, MaxInFlight: cfg.MaxInFlight, TimeoutS: cfg.Timeout.Seconds(),
		LagMode: cfg.LagMode, LagTimeoutS: cfg.LagTimeout.Seconds(), Seed: cfg.Seed,
	}}
	switch cfg.LagMode {
	case LagPoll:
		rep.Workload.LagFollowers, rep.Workload.LagSample = cfg.LagFollowers, cfg.LagSample
		rep.Workload.MaxWatchers = cfg.MaxWatchers
	case LagStream:
		rep.Workload.Observers = cfg.Observers
	}

	// Streams open before the clock starts, so they miss no post.
	start := time.Now()
	var streams sync.WaitGroup
	streamCtx, stopStreams := context.WithCancel(ctx)
	defer stopStreams()
	if cfg.LagMode == LagStream {
		r.rec = stats.NewRecorder(start) // replaced below; streams may record early
		observers := r.pickObservers()
		ready := make(chan struct{}, len(observers))
		for _, o := range observers {
			streams.Add(1)
			go func() {
				defer streams.Done()
				r.observe(streamCtx, o, ready)
			}()
		}
		timeout := time.After(10 * time.Second)
		for range observers {
			select {
			case <-ready:
			case <-timeout:
				return nil, errors.New("lag observers' streams did not open within 10s")
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		// A stream subscribes right after its follow list is read; give
		// the last ones a moment.
		time.Sleep(200 * time.Millisecond)
	}
	first := time.Now().Add(50 * time.Millisecond) // the first request
	start = first.Add(cfg.Warmup)                  // the measured window
	r.from = start
	rec := stats.NewRecorder(start)
	r.warm = stats.NewRecorder(first)
	r.mu.Lock()
	r.rec = rec
	r.mu.Unlock()
	rep.Started = start
	rep.Workload.WarmupS = cfg.Warmup.Seconds()

	runCtx, cancel := context.WithTimeout(ctx, cfg.Warmup+cfg.Duration+time.Until(first))
	defer cancel()
	posts := schedule.Schedule{Start: first, Rate: cfg.PostRate}
	reads := schedule.Schedule{Start: first, Rate: cfg.ReadRate}
	nPosts, nReads := posts.Count(cfg.Warmup+cfg.Duration), reads.Count(cfg.Warmup+cfg.Duration)
	var measuring sync.WaitGroup
	defer measuring.Wait()
	if cfg.OnMeasure != nil {
		measuring.Add(1)
		go func() {
			defer measuring.Done()
			select {
			case <-runCtx.Done():
			case <-time.After(time.Until(start)):
				cfg.OnMeasure(false)
			}
		}()
	}
	var pres, rres schedule.Result
	var sched sync.WaitGroup
	sched.Go(func() {
		pres = posts.Run(runCtx, nPosts, cfg.MaxInFlight, func(i int, at time.Time, done func()) {
			defer done()
			r.post(i, at)
		})
	})
	sched.Go(func() {
		rres = reads.Run(runCtx, nReads, cfg.MaxInFlight, func(i int, at time.Time, done func()) {
			defer done()
			r.read(i, at)
		})
	})

	progressDone := make(chan struct{})
	stopProgress := make(chan struct{})
	go func() {
		defer close(progressDone)
		r.progress(start, stopProgress)
	}()

	// The schedules return once done issuing and their requests in flight
	// (each bounded by the timeout) have ended; then the lag observers
	// finish.
	sched.Wait()
	issuedEnd := time.Now()
	measuring.Wait()
	if cfg.OnMeasure != nil && issuedEnd.After(start) {
		cfg.OnMeasure(true)
	}
	r.watchers.Wait()
	if cfg.LagMode == LagStream {
		r.waitStreams(ctx)
		stopStreams()
		streams.Wait()
		r.streamMisses()
	}
	close(stopProgress)
	<-progressDone

	rep.Ended = time.Now()
	rep.Interrupted = ctx.Err() != nil
	elapsed := issuedEnd.Sub(start).Seconds()
	for _, m := range []string{report.CreatePost, report.GetHomeTimeline, report.ObserverRead} {
		s := rec.Summary(m, false)
		if s.Count+s.Errors > 0 || m != report.ObserverRead {
			rep.Methods = append(rep.Methods, s)
		}
	}
	if elapsed <= 0 {
		elapsed = 1
	}
	rep.Schedules = []report.Schedule{
		{Method: report.CreatePost, Scheduled: pres.Scheduled, Issued: pres.Issued, AchievedPerS: float64(rep.Method(report.CreatePost).Count) / elapsed},
		{Method: report.GetHomeTimeline, Scheduled: rres.Scheduled, Issued: rres.Issued, AchievedPerS: float64(rep.Method(report.GetHomeTimeline).Count) / elapsed},
	}
	if cfg.Warmup > 0 {
		for _, m := range []string{report.CreatePost, report.GetHomeTimeline} {
			w := r.warm.Summary(m, false)
			w.Name = m + " (warmup, not measured)"
			w.PerSecond, w.ErrorsPerSecond = nil, nil
			rep.Warmup = append(rep.Warmup, w)
		}
	}
	rep.Lag = rec.Summary(report.Lag, true)
	rep.Lag.Name = report.Lag
	if n := r.skipped.Load(); n > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d post watches were not started because %d watchers were already polling (a fan-out falling behind); the lag figures leave those posts out", n, cfg.MaxWatchers))
	}
	if rep.Lag.BelowZero > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d lag samples were below zero (seen before their create_time) and count as 0", rep.Lag.BelowZero))
	}
	return rep, nil
}

// post makes request i of the post schedule.
func (r *runner) post(i int, at time.Time) {
	rng := r.rng(1, uint64(i))
	var author int32
	if r.g.Celebrities > 0 && rng.Float64() < r.cfg.CelebrityPostShare {
		author = int32(rng.IntN(r.g.Celebrities))
	} else {
		author = int32(r.g.Celebrities + rng.IntN(len(r.g.IDs)-r.g.Celebrities))
	}
	n := strconv.Itoa(i)
	req := &feedv1.CreatePostRequest{
		AuthorId:       r.g.IDs[author],
		Text:           "feedload " + r.cfg.RunID + " post " + n,
		IdempotencyKey: "feedload-" + r.cfg.RunID + "-" + n,
	}
	r.inFlight.Add(1)
	ctx, cancel := context.WithTimeout(r.reqCtx, r.cfg.Timeout)
	resp, err := r.t.Posts.CreatePost(ctx, req)
	cancel()
	r.inFlight.Add(-1)
	warm := at.Before(r.from)
	if warm {
		r.warm.Record(report.CreatePost, at, time.Now(), err)
	} else {
		r.rec.Record(report.CreatePost, at, time.Now(), err)
	}
	if err != nil || warm {
		return
	}
	p := resp.GetPost()
	switch r.cfg.LagMode {
	case LagStream:
		r.mu.Lock()
		r.created = append(r.created, createdPost{id: p.GetPostId(), author: author})
		r.mu.Unlock()
	case LagPoll:
		if rng.Float64() >= r.cfg.LagSample {
			return
		}
		followers := r.g.Followers[author]
		k := min(r.cfg.LagFollowers, len(followers))
		for _, j := range rng.Perm(len(followers))[:k] {
			if r.watching.Add(1) > int64(r.cfg.MaxWatchers) {
				r.watching.Add(-1)
				r.skipped.Add(1)
				continue
			}
			r.watchers.Add(1)
			go func() {
				defer r.watchers.Done()
				defer r.watching.Add(-1)
				r.watch(followers[j], p)
			}()
		}
	}
}

// read makes request i of the read schedule: a uniformly chosen user's
// first page.
func (r *runner) read(i int, at time.Time) {
	rng := r.rng(2, uint64(i))
	user := r.g.IDs[rng.IntN(len(r.g.IDs))]
	r.inFlight.Add(1)
	ctx, cancel := context.WithTimeout(r.reqCtx, r.cfg.Timeout)
	_, err := r.t.Timelines.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: user, PageSize: int32(r.cfg.PageSize)})
	cancel()
	r.inFlight.Add(-1)
	if at.Before(r.from) {
		r.warm.Record(report.GetHomeTimeline, at, time.Now(), err)
	} else {
		r.rec.Record(report.GetHomeTimeline, at, time.Now(), err)
	}
}

// watchPage is how many entries a lag observer reads: enough that newer
// posts do not push the watched one off the page at these rates.
const watchPage = 50

// watch polls follower's home timeline until p appears, and records the
// lag. The poll interval starts short and grows, so a fast fan-out is
// measured finely without polling hard for a slow one.
func (r *runner) watch(follower int32, p *feedv1.Post) {
	created := p.GetCreateTime().AsTime()
	deadline := created.Add(r.cfg.LagTimeout)
	interval := 5 * time.Millisecond
	user := r.g.IDs[follower]
	for {
		began := time.Now()
		ctx, cancel := context.WithTimeout(r.reqCtx, r.cfg.Timeout)
		resp, err := r.t.Timelines.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: user, PageSize: watchPage})
		cancel()
		now := time.Now()
		r.rec.Record(report.ObserverRead, began, now, err)
		if err == nil {
			for _, q := range resp.GetPosts() {
				if q.GetPostId() == p.GetPostId() {
					r.rec.Value(report.Lag, now, now.Sub(created))
					return
				}
			}
		}
		if now.After(deadline) {
			r.rec.Miss(report.Lag, "not seen")
			return
		}
		select {
		case <-r.stop.Done():
			return // interrupted: neither seen nor missed
		case <-time.After(interval):
		}
		// Poll at least every 100ms, and as the lag grows, at a fifth of
		// it: a resolution of 20% that keeps a slow fan-out from drawing
		// ten polls a second per watched post.
		interval = min(interval*3/2, max(100*time.Millisecond, now.Sub(created)/5))
	}
}

// pickObservers chooses the stream observers: seeded, among users who
// follow someone.
func (r *runner) pickObservers() []int32 {
	rng := r.rng(3, 0)
	var out []int32
	for _, u := range rng.Perm(len(r.g.IDs)) {
		if len(out) == r.cfg.Observers {
			break
		}
		if len(r.g.Following[u]) > 0 {
			out = append(out, int32(u))
		}
	}
	return out
}

// observe keeps observer's stream open until ctx ends, recording the lag of
// every post by an account it follows. It reconnects after a stream error.
func (r *runner) observe(ctx context.Context, observer int32, ready chan<- struct{}) {
	user := r.g.IDs[observer]
	signalled := false
	for ctx.Err() == nil {
		st, err := r.t.Timelines.StreamHomeTimeline(ctx, &feedv1.StreamHomeTimelineRequest{UserId: user})
		if err == nil {
			if !signalled {
				ready <- struct{}{}
				signalled = true
			}
			for {
				msg, err := st.Recv()
				if err != nil {
					if ctx.Err() == nil && status.Code(err) != codes.Canceled {
						r.mu.Lock()
						rec := r.rec
						r.mu.Unlock()
						rec.Miss("stream reconnects", status.Code(err).String())
					}
					break
				}
				now := time.Now()
				p := msg.GetPost()
				if p.GetAuthorId() == user {
					continue
				}
				r.mu.Lock()
				rec := r.rec
				first := !r.seen[seenKey{observer, p.GetPostId()}]
				r.seen[seenKey{observer, p.GetPostId()}] = true
				r.mu.Unlock()
				if first && !p.GetCreateTime().AsTime().Before(rec.Start()) {
					rec.Value(report.Lag, now, now.Sub(p.GetCreateTime().AsTime()))
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// expected returns, in stream mode, the (observer, post) pairs the streams
// should deliver.
func (r *runner) expected() []seenKey {
	obs := r.pickObservers()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []seenKey
	for _, o := range obs {
		follows := make(map[int32]bool, len(r.g.Following[o]))
		for _, f := range r.g.Following[o] {
			follows[f] = true
		}
		for _, p := range r.created {
			if follows[p.author] {
				out = append(out, seenKey{o, p.id})
			}
		}
	}
	return out
}

// waitStreams waits, up to the lag timeout, until the streams have
// delivered every post they should.
func (r *runner) waitStreams(ctx context.Context) {
	deadline := time.Now().Add(r.cfg.LagTimeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		missing := 0
		exp := r.expected()
		r.mu.Lock()
		for _, k := range exp {
			if !r.seen[k] {
				missing++
			}
		}
		r.mu.Unlock()
		if missing == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *runner) streamMisses() {
	exp := r.expected()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range exp {
		if !r.seen[k] {
			r.rec.Miss(report.Lag, "not seen")
		}
	}
}

// progress prints a line a second until stop closes.
func (r *runner) progress(start time.Time, stop <-chan struct{}) {
	if r.cfg.Progress == nil {
		return
	}
	line := newLiner(r.cfg.Progress)
	defer line.end()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastPosts, lastReads int64
	last := start
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			pc, pe, pp := r.rec.Quick(report.CreatePost)
			rc, re, rp := r.rec.Quick(report.GetHomeTimeline)
			lc, lm, lp := r.rec.Quick(report.Lag)
			el := now.Sub(start)
			if el < 0 {
				_, we, _ := r.warm.Quick(report.CreatePost)
				_, we2, _ := r.warm.Quick(report.GetHomeTimeline)
				line.printf("run: warmup, %s left, in flight %d, errors %d", (-el).Round(time.Second), r.inFlight.Load(), we+we2)
				last = now
				continue
			}
			dt := now.Sub(last).Seconds()
			phase := fmt.Sprintf("%s/%s", el.Round(time.Second), r.cfg.Duration)
			if el > r.cfg.Duration {
				phase = fmt.Sprintf("draining %s", (el - r.cfg.Duration).Round(time.Second))
			}
			limited := ""
			if n := r.rec.RateLimited(report.CreatePost) + r.rec.RateLimited(report.GetHomeTimeline) + r.rec.RateLimited(report.ObserverRead); n > 0 {
				limited = fmt.Sprintf(", rate limited %d", n)
			}
			line.printf("run %s: posts %.0f/s (%d ok), reads %.0f/s (%d ok), errors %d%s, in flight %d | p99 post %.1fms read %.1fms | lag n=%d p99 %.0fms, not seen %d",
				phase, float64(pc-lastPosts)/dt, pc, float64(rc-lastReads)/dt, rc, pe+re, limited, r.inFlight.Load(), pp, rp, lc, lp, lm)
			lastPosts, lastReads, last = pc, rc, now
		}
	}
}
