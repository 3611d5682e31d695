package coordlab

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-feed/herald/loadtest/internal/labkit"
)

func TestResourceFencing(t *testing.T) {
	tests := []struct {
		name   string
		fenced bool
		tokens []int64
		want   []bool
		value  string
	}{
		{"unfenced takes every write", false, []int64{5, 3, 7}, []bool{true, true, true}, "w2"},
		{"fenced refuses a lower token", true, []int64{5, 3, 7}, []bool{true, false, true}, "w2"},
		{"fenced takes the same token again", true, []int64{5, 5, 4}, []bool{true, true, false}, "w1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewResource(tt.fenced)
			var got []bool
			for i, tok := range tt.tokens {
				got = append(got, r.Write(tok, "w"+string(rune('0'+i))).Accepted)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("accepted = %v; want %v", got, tt.want)
			}
			if r.Value() != tt.value {
				t.Errorf("value = %q; want %q", r.Value(), tt.value)
			}
			if w := r.Writes(); len(w) != len(tt.tokens) || w[len(w)-1].Highest != slices.Max(tt.tokens) {
				t.Errorf("writes = %+v; want %d, the last with highest %d", w, len(tt.tokens), slices.Max(tt.tokens))
			}
		})
	}
}

func TestResourcesOverHTTP(t *testing.T) {
	rs := NewResources()
	srv := httptest.NewServer(rs.Handler())
	defer srv.Close()
	ctx := t.Context()
	if _, err := WriteResources(ctx, srv.Client(), srv.URL, 10, "new"); err != nil {
		t.Fatal(err)
	}
	w, err := WriteResources(ctx, srv.Client(), srv.URL, 9, "stale & odd=chars")
	if err != nil {
		t.Fatal(err)
	}
	if !w.Unfenced.Accepted || w.Fenced.Accepted || w.Fenced.Highest != 10 {
		t.Errorf("stale write = %+v; want unfenced accepted, fenced refused with highest 10", w)
	}
	if rs.Unfenced.Value() != "stale & odd=chars" || rs.Fenced.Value() != "new" {
		t.Errorf("values = %q, %q", rs.Unfenced.Value(), rs.Fenced.Value())
	}
}

func TestQuantile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := quantile(d, tt.q); got != tt.want {
			t.Errorf("quantile(1..100 ms, %v) = %v; want %v", tt.q, got, tt.want)
		}
	}
	if got := quantile(nil, 0.5); got != 0 {
		t.Errorf("quantile(nil) = %v; want 0", got)
	}
}

func TestMeasureThroughputBounds(t *testing.T) {
	calls := make(chan int, 1000)
	r := MeasureThroughput(t.Context(), "test", "op", 4, 100, time.Minute, func(_ context.Context, w, i int) error {
		calls <- i
		if i%10 == 0 {
			return errors.New("every tenth fails")
		}
		return nil
	})
	if r.Ops+r.Errors != 100 || r.Errors != 10 || r.FirstError == "" {
		t.Errorf("MeasureThroughput = %+v; want 90 ops and 10 errors", r)
	}
	if len(calls) != 100 {
		t.Errorf("op called %d times; want 100 (the op bound)", len(calls))
	}
	r = MeasureThroughput(t.Context(), "test", "op", 2, 1<<30, 50*time.Millisecond, func(ctx context.Context, _, _ int) error {
		<-ctx.Done()
		return ctx.Err()
	})
	if r.Ops != 0 || r.Errors != 0 {
		t.Errorf("cut off by the time bound: %+v; want no ops and no errors", r)
	}
}

func fixtureReport() *Report {
	return &Report{
		RunInfo: labkit.RunInfo{
			Started: time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC), Finished: time.Date(2026, 12, 1, 18, 4, 0, 0, time.UTC),
			Host: "box", CPUs: 2, LoadBefore: [3]float64{1, 2, 3}, LoadAfter: [3]float64{4, 5, 6},
		},
		Settings: settingsOf(DefaultConfig()),
		Handoffs: []HandoffResult{
			{Recipe: RecipeZKSequential, System: SystemZK, Contenders: 1, Handoffs: 300, P50Ms: 1.5, P99Ms: 4, EventsPerHandoff: 0},
			{Recipe: RecipeZKSequential, System: SystemZK, Contenders: 10, Handoffs: 300, P50Ms: 2, P99Ms: 5, EventsPerHandoff: 1},
			{Recipe: RecipeZKNaive, System: SystemZK, Contenders: 10, Handoffs: 300, P50Ms: 3, P99Ms: 9, EventsPerHandoff: 9},
		},
		Throughput: []ThroughputResult{
			{System: SystemZK, Op: OpWrite, InFlight: 1, Ops: 100, OpsPerSec: 500},
			{System: SystemEtcd, Op: OpReadSerializable, InFlight: 64, Ops: 20000, OpsPerSec: 30000},
		},
		Failovers: []FailoverResult{{System: SystemEtcd, Recipe: RecipeLock, TTLSeconds: 2, TrialsMs: []float64{1500, 1900}, MinMs: 1500, MedianMs: 1500, MaxMs: 1900}},
		Fencing: []FencingResult{{System: SystemEtcd, TTLSeconds: 2, Trials: []FencingTrial{
			{CheckedAlive: true, StaleToken: 10, NewToken: 12, TakeoverMs: 1800, StaleWrite: BothWrites{Unfenced: ResourceWrite{Accepted: true}, Fenced: ResourceWrite{Accepted: false}},
				UnfencedValue: staleValue, FencedValue: newValue, StaleBelievedAlive: true, StaleNoticedMs: 3},
			{CheckedAlive: true, StaleToken: 20, NewToken: 21, TakeoverMs: 2000, StaleWrite: BothWrites{Unfenced: ResourceWrite{Accepted: true}, Fenced: ResourceWrite{Accepted: false}},
				UnfencedValue: staleValue, FencedValue: newValue},
		}}},
	}
}

func TestReportTable(t *testing.T) {
	table := fixtureReport().Table()
	for _, want := range []string{
		"| lock hand-off | ZooKeeper sequential lock | 1 contender (unlock + relock) | p50 1.50 ms, p99 4.00 ms |",
		"| lock hand-off | ZooKeeper naive lock | 10 contenders | p50 3.00 ms, p99 9.00 ms | 9.00 watch events/hand-off",
		"| throughput | etcd, 3 members | read, serializable, 64 in flight | 30000 ops/s |",
		"| failover, lock holder SIGKILLed | etcd Mutex | lease TTL 2 s | median 1.50 s (min 1.50, max 1.90) |",
		"without the token check ACCEPTED in 2/2 (B's write lost); with it REJECTED in 2/2",
		"A checked its lease alive just before the pause in 2/2; tokens A→B 10→12, 20→21; B held the lock 1.80, 2.00 s after A was paused; when A wrote, its client still believed the lease alive in 1/2 (noticing the loss 3.00 ms after the write)",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if n := strings.Count(table, "\n"); n != 2+3+2+1+1 {
		t.Errorf("table has %d lines; want a header, its rule and 7 rows:\n%s", n, table)
	}
}

func TestReportSave(t *testing.T) {
	dir := t.TempDir()
	path, err := fixtureReport().Save(dir)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, "lab-coordination.json") {
		t.Errorf("Save = %s", path)
	}
	for _, f := range append([]string{"lab-coordination.json", "lab-coordination.md"}, Charts...) {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v (or empty)", f, err)
		}
	}
	// An empty report still draws its charts.
	if _, err := (&Report{}).Save(t.TempDir()); err != nil {
		t.Errorf("Save of an empty report: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Servers = Servers{ZK: []string{"127.0.0.1:2282"}, Etcd: []string{"127.0.0.1:2479"}}
	ok.Root = "herald-lab/x"
	if err := ok.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for name, mut := range map[string]func(*Config){
		"no zk":          func(c *Config) { c.Servers.ZK = nil },
		"absolute root":  func(c *Config) { c.Root = "/x" },
		"bad section":    func(c *Config) { c.Sections = []string{"nope"} },
		"fractional ttl": func(c *Config) { c.TTLs = []time.Duration{1500 * time.Millisecond} },
		"no contenders":  func(c *Config) { c.Contenders = []int{0} },
		"zero in flight": func(c *Config) { c.InFlight = 0 },
	} {
		c := ok
		mut(&c)
		if c.Validate() == nil {
			t.Errorf("%s: Validate accepted it", name)
		}
	}
}
