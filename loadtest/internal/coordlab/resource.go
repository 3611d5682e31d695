package coordlab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// Resource is the storage a lock protects in the fencing drill: one value,
// written by whoever holds the lock. A fenced Resource remembers the
// highest fencing token it has seen and refuses a write with a lower one,
// so a holder whose lock has passed on (a paused process whose lease
// expired) cannot overwrite its successor's work. An unfenced Resource
// takes every write, which is what storage that knows nothing of the lock
// does.
type Resource struct {
	fenced bool

	mu      sync.Mutex
	highest int64
	value   string
	writes  []ResourceWrite
}

// ResourceWrite is one write a Resource was asked to do, and its outcome.
type ResourceWrite struct {
	Token    int64  `json:"token"`
	Value    string `json:"value"`
	Accepted bool   `json:"accepted"`
	// Highest is the highest token the resource had seen when it answered.
	Highest int64 `json:"highest"`
}

// NewResource returns an empty resource that checks tokens if fenced.
func NewResource(fenced bool) *Resource { return &Resource{fenced: fenced} }

// Write stores value unless the resource is fenced and token is lower than
// one it has seen. A token equal to the highest is accepted: the same
// holder writes more than once.
func (r *Resource) Write(token int64, value string) ResourceWrite {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := ResourceWrite{Token: token, Value: value}
	if !r.fenced || token >= r.highest {
		r.value = value
		w.Accepted = true
	}
	r.highest = max(r.highest, token)
	w.Highest = r.highest
	r.writes = append(r.writes, w)
	return w
}

// Value returns the stored value.
func (r *Resource) Value() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.value
}

// Writes returns every write so far, in order.
func (r *Resource) Writes() []ResourceWrite {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ResourceWrite(nil), r.writes...)
}

// Resources are the two resources of the fencing drill, side by side: the
// same writes go to both.
type Resources struct {
	Unfenced *Resource
	Fenced   *Resource
}

// NewResources returns an empty unfenced and an empty fenced resource.
func NewResources() Resources {
	return Resources{Unfenced: NewResource(false), Fenced: NewResource(true)}
}

// BothWrites are the outcomes of one write to each of Resources.
type BothWrites struct {
	Unfenced ResourceWrite `json:"unfenced"`
	Fenced   ResourceWrite `json:"fenced"`
}

// Write sends the same write to both resources.
func (rs Resources) Write(token int64, value string) BothWrites {
	return BothWrites{Unfenced: rs.Unfenced.Write(token, value), Fenced: rs.Fenced.Write(token, value)}
}

// Handler serves POST /write?token=N&value=V, which writes to both
// resources and answers with the BothWrites as JSON, so that a holder in
// another process writes to them as a client of real storage would.
func (rs Resources) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) {
		token, err := strconv.ParseInt(r.URL.Query().Get("token"), 10, 64)
		if err != nil {
			http.Error(w, "token: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rs.Write(token, r.URL.Query().Get("value")))
	})
	return mux
}

// WriteResources writes value with token to the Resources served at base
// (an http:// URL of Handler).
func WriteResources(ctx context.Context, client *http.Client, base string, token int64, value string) (BothWrites, error) {
	u := strings.TrimSuffix(base, "/") + "/write?" + url.Values{"token": {strconv.FormatInt(token, 10)}, "value": {value}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return BothWrites{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return BothWrites{}, fmt.Errorf("resource %s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return BothWrites{}, fmt.Errorf("resource %s: %s", base, resp.Status)
	}
	var out BothWrites
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return BothWrites{}, fmt.Errorf("resource %s: %w", base, err)
	}
	return out, nil
}
