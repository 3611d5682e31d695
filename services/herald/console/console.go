// Package console is the all-in-one's web console, at / on its HTTP
// address: a small client of the HTTP/JSON API (sign in, post, follow,
// the home timeline live through the stream) that shows what Herald is
// for: a post reaching its followers. After a post it draws the followers'
// timelines filling in over time, says whether the post was pushed or
// pulled under the deployment's strategy and threshold, and shows the
// fan-out lag quantiles from the service's own metrics.
//
// The page is plain HTML, CSS and JavaScript, embedded in the binary; no
// build step. Its own endpoints, under /console/, answer only callers on
// loopback: POST /console/token mints a token with the all-in-one's
// development key (so that the page can sign in as anyone, as feedctl
// does), GET /console/config gives the policy, and GET
// /console/fanout?post_id= counts the timelines that hold a post.
package console

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/herald-feed/herald/services/platform/auth"
	"github.com/herald-feed/herald/services/platform/backend"
	"github.com/herald-feed/herald/services/platform/feed"
)

//go:embed static
var static embed.FS

// MaxFollowers bounds the followers /console/fanout looks at: the console
// is for watching a demo's posts, not for auditing a celebrity's.
const MaxFollowers = 5000

// TokenTTL is how long a token the console mints lasts.
const TokenTTL = 12 * time.Hour

// Deps are what the console reads.
type Deps struct {
	// Backends are the all-in-one's adapters: the graph store for a
	// post's followers, the timelines and the celebrity set.
	Backends *backend.Set
	// Policy is the deployment's push/pull policy.
	Policy *backend.Policy
	// Metrics is the registry holding herald_fanout_lag_seconds.
	Metrics prometheus.Gatherer
	// Signer, if set, mints sign-in tokens (the development key); nil
	// leaves the page to take a pasted token.
	Signer *auth.Signer
}

// Register adds the page at / and its endpoints under /console/ to mux.
func Register(mux *http.ServeMux, d Deps) {
	files, _ := fs.Sub(static, "static") // the directory is embedded above
	mux.Handle("/", http.FileServerFS(files))
	mux.Handle("POST /console/token", loopbackOnly(http.HandlerFunc(d.token)))
	mux.Handle("GET /console/config", loopbackOnly(http.HandlerFunc(d.config)))
	mux.Handle("GET /console/fanout", loopbackOnly(http.HandlerFunc(d.fanout)))
}

// loopbackOnly refuses a caller that is not on this machine: the console's
// endpoints mint tokens and read the deployment's internals.
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			writeError(w, http.StatusForbidden, "the console's endpoints answer only on loopback")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers {"code": the HTTP status, "message"}: the page shows
// the message, as it does the API's errors (whose code is the gRPC one).
func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": status, "message": msg})
}

func (d Deps) token(w http.ResponseWriter, r *http.Request) {
	if d.Signer == nil {
		writeError(w, http.StatusNotFound, "this deployment has no development key: paste a token instead")
		return
	}
	var req struct {
		UserID string `json:"user_id"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body: want {\"user_id\": \"...\"}")
		return
	}
	if err := feed.ValidateUserID("user_id", req.UserID); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	tok, err := d.Signer.Token(req.UserID, TokenTTL)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, map[string]any{"user_id": req.UserID, "token": tok, "expires_in_s": int(TokenTTL.Seconds())})
}

// lag is the fan-out lag's p50 and p99 in milliseconds, from the
// histogram's buckets as Prometheus's histogram_quantile reads them; nil
// before the first write.
func (d Deps) lag() map[string]any {
	mfs, err := d.Metrics.Gather()
	if err != nil {
		return nil
	}
	for _, mf := range mfs {
		if mf.GetName() != "herald_fanout_lag_seconds" || len(mf.GetMetric()) == 0 {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		if h.GetSampleCount() == 0 {
			return nil
		}
		return map[string]any{"p50_ms": quantile(0.5, h) * 1000, "p99_ms": quantile(0.99, h) * 1000, "count": h.GetSampleCount()}
	}
	return nil
}

// quantile interpolates linearly within the bucket that holds q, as
// histogram_quantile does; past the last bucket it returns that bucket's
// upper bound.
func quantile(q float64, h *dto.Histogram) float64 {
	rank := q * float64(h.GetSampleCount())
	var lower, prev float64
	for _, b := range h.GetBucket() {
		c := float64(b.GetCumulativeCount())
		if c >= rank {
			if c == prev {
				return b.GetUpperBound()
			}
			return lower + (b.GetUpperBound()-lower)*(rank-prev)/(c-prev)
		}
		lower, prev = b.GetUpperBound(), c
	}
	return lower
}

func (d Deps) config(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, map[string]any{
		"strategy":            d.Policy.Strategy,
		"celebrity_threshold": d.Policy.Threshold,
		"dev_sign_in":         d.Signer != nil,
		"fanout_lag":          d.lag(),
	})
}

// fanout says how far a post has reached: of its author's followers (at
// most MaxFollowers), how many have a cached home timeline (the active
// readers, whose timelines the fan-out writes) and how many of those hold
// the post; and whether the policy pushes or pulls the author.
func (d Deps) fanout(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.URL.Query().Get("post_id"), 10, 64)
	if err != nil || id == 0 {
		writeError(w, http.StatusBadRequest, "post_id: want a post ID, a decimal number")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	b := d.Backends
	ps, err := b.Posts.GetPosts(ctx, []feed.PostID{feed.PostID(id)})
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	if len(ps) == 0 {
		writeError(w, http.StatusNotFound, "post_id: no such post")
		return
	}
	p := ps[0]
	count, err := b.Graph.FollowerCount(ctx, p.Author)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	celebs, err := b.Celebrities.Celebrities(ctx)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	pol := d.Policy
	pulled := pol.Strategy.Pulled(count, pol.Threshold) || pol.Strategy == feed.Hybrid && celebs[p.Author]
	active, delivered, looked := 0, 0, 0
	var state []byte
	for looked < MaxFollowers {
		ids, next, err := b.Graph.Followers(ctx, p.Author, state, min(500, MaxFollowers-looked))
		if err != nil {
			writeError(w, statusOf(err), err.Error())
			return
		}
		for _, f := range ids {
			got, ok, err := b.Timelines.Range(ctx, f, p.ID+1, 1)
			if err != nil {
				writeError(w, statusOf(err), err.Error())
				return
			}
			if ok {
				active++
				if len(got) == 1 && got[0] == p.ID {
					delivered++
				}
			}
		}
		looked += len(ids)
		if len(next) == 0 || len(ids) == 0 {
			break
		}
		state = next
	}
	writeJSON(w, map[string]any{
		"post_id":           strconv.FormatUint(id, 10),
		"author_id":         p.Author,
		"create_time":       p.Created.UTC().Format(time.RFC3339Nano),
		"age_ms":            time.Since(p.Created).Milliseconds(),
		"followers":         count,
		"followers_checked": looked,
		"active_timelines":  active,
		"delivered":         delivered,
		"pulled":            pulled,
		"strategy":          pol.Strategy,
		"threshold":         pol.Threshold,
		"fanout_lag":        d.lag(),
	})
}

// statusOf is 503 for a dependency that is away, else 500.
func statusOf(err error) int {
	if errors.Is(err, feed.ErrUnavailable) {
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
