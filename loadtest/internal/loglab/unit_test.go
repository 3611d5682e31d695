package loglab

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-feed/herald/loadtest/internal/labkit"
)

func TestOrderCounter(t *testing.T) {
	type obs struct {
		key string
		seq uint64
	}
	for _, tc := range []struct {
		name string
		in   []obs
		want OrderCounts
	}{
		{"empty", nil, OrderCounts{}},
		{"in order", []obs{{"a", 1}, {"a", 2}, {"b", 1}, {"a", 3}, {"b", 5}}, OrderCounts{Events: 5, Distinct: 5}},
		{"one swap", []obs{{"a", 2}, {"a", 1}, {"a", 3}}, OrderCounts{Events: 3, Distinct: 3, Inversions: 1, KeysInverted: 1}},
		// 3 arrives first: 1 and 2 each come after a later event.
		{"late pair", []obs{{"a", 3}, {"a", 1}, {"a", 2}}, OrderCounts{Events: 3, Distinct: 3, Inversions: 2, KeysInverted: 1}},
		{"keys apart", []obs{{"a", 5}, {"b", 1}, {"a", 4}, {"b", 0}}, OrderCounts{Events: 4, Distinct: 4, Inversions: 2, KeysInverted: 2}},
		// A redelivered event is a duplicate, not an inversion.
		{"duplicate", []obs{{"a", 1}, {"a", 2}, {"a", 1}, {"a", 2}}, OrderCounts{Events: 4, Distinct: 2, Duplicates: 2}},
		{"same seq other key", []obs{{"a", 1}, {"b", 1}}, OrderCounts{Events: 2, Distinct: 2}},
	} {
		c := NewOrderCounter()
		for _, o := range tc.in {
			c.Observe(o.key, o.seq)
		}
		if got := c.Counts(); got != tc.want {
			t.Errorf("%s: Observe(%v) counts %+v; want %+v", tc.name, tc.in, got, tc.want)
		}
	}
}

func TestOrderCounterConcurrent(t *testing.T) {
	c := NewOrderCounter()
	done := make(chan struct{})
	for k := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			key := string(rune('a' + k))
			for s := range uint64(1000) {
				c.Observe(key, s)
			}
		}()
	}
	for range 8 {
		<-done
	}
	// Each key's goroutine observes its own sequence in order.
	if got, want := c.Counts(), (OrderCounts{Events: 8000, Distinct: 8000}); got != want {
		t.Errorf("counts %+v; want %+v", got, want)
	}
}

func TestLongestGap(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms ...int) []time.Time {
		out := make([]time.Time, len(ms))
		for i, m := range ms {
			out[i] = t0.Add(time.Duration(m) * time.Millisecond)
		}
		return out
	}
	ms := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Millisecond) }
	for _, tc := range []struct {
		name     string
		times    []time.Time
		from, to int
		gap      time.Duration
		start    int
	}{
		{"steady", at(0, 10, 20, 30, 40), 0, 40, 10 * time.Millisecond, 0},
		{"pause inside", at(0, 10, 20, 520, 530), 0, 530, 500 * time.Millisecond, 20},
		// The pause began before the window and ended in it: it counts whole.
		{"straddles from", at(0, 10, 300, 310), 100, 310, 290 * time.Millisecond, 10},
		// The pause began in the window and ended after it.
		{"straddles to", at(0, 10, 400), 0, 100, 390 * time.Millisecond, 10},
		// Nothing after the last event: the time to the window's end.
		{"silent tail", at(0, 10, 20), 0, 200, 180 * time.Millisecond, 20},
		{"nothing at all", nil, 0, 200, 200 * time.Millisecond, 0},
		// The silence began before the window and lasted through it.
		{"nothing in window, earlier events", at(0, 10), 100, 300, 290 * time.Millisecond, 10},
		// A gap that ends where the window begins is the phase before it.
		{"touches from", at(0, 500, 510, 520), 500, 520, 10 * time.Millisecond, 500},
		// Gaps wholly outside the window are not counted.
		{"outside", at(0, 1000, 1010, 1020, 3000), 1000, 1020, 10 * time.Millisecond, 1000},
		{"event at from", at(100, 110), 100, 110, 10 * time.Millisecond, 100},
	} {
		gap, start := LongestGap(tc.times, ms(tc.from), ms(tc.to))
		if gap != tc.gap || !start.Equal(ms(tc.start)) {
			t.Errorf("%s: LongestGap(%v ms, %d, %d) = %v at %v; want %v at %d ms",
				tc.name, tc.times, tc.from, tc.to, gap, start.Sub(t0), tc.gap, tc.start)
		}
	}
}

func TestParseConsumerLine(t *testing.T) {
	got, err := parseConsumerLine("done 42 1700000000000000123")
	want := consumerLine{done: true, post: 42, at: time.Unix(0, 1700000000000000123)}
	if err != nil || got != want {
		t.Errorf("parseConsumerLine(done) = %+v, %v; want %+v", got, err, want)
	}
	if got, err := parseConsumerLine("start 7 5"); err != nil || got.done || got.post != 7 {
		t.Errorf("parseConsumerLine(start) = %+v, %v; want a start of 7", got, err)
	}
	for _, bad := range []string{"", "done", "done 1", "finish 1 2", "done x 2", "done 1 y", "done 1 2 3"} {
		if _, err := parseConsumerLine(bad); err == nil {
			t.Errorf("parseConsumerLine(%q) succeeded; want an error", bad)
		}
	}
}

func TestHandledRead(t *testing.T) {
	h := newHandled()
	// The last line was cut by the kill.
	in := "start 1 10\nstart 2 11\ndone 1 12\nstart 3 13\ndone 2 14\nstart 1 15\ndone 1 16\nstart 4 1"
	h.read(strings.NewReader(in))
	if h.bad != nil {
		t.Fatalf("read: %v", h.bad)
	}
	done, inFlight := h.counts()
	if done != 2 || inFlight != 1 {
		t.Errorf("counts() = %d done, %d in flight; want 2, 1 (post 3)", done, inFlight)
	}
	if h.dones != 3 || h.done[1] != 2 {
		t.Errorf("%d done lines, post 1 done %d times; want 3 and 2", h.dones, h.done[1])
	}
	if got := h.started[1]; !got.Equal(time.Unix(0, 10)) {
		t.Errorf("post 1 first started at %v; want its first start", got)
	}
	if _, ok := h.started[4]; ok {
		t.Error("the cut line counts as a start")
	}
	h2 := newHandled()
	h2.read(strings.NewReader("start 1 10\nnonsense\n"))
	if h2.bad == nil {
		t.Error("a bad line is not reported")
	}
}

func TestUnionDone(t *testing.T) {
	a, b := newHandled(), newHandled()
	a.read(strings.NewReader("done 1 1\ndone 2 1\n"))
	b.read(strings.NewReader("done 2 1\ndone 3 1\ndone 3 2\n"))
	if got := unionDone(a, b); got != 3 {
		t.Errorf("unionDone = %d; want 3", got)
	}
}

func TestThousands(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 12345.6: "12,346", 1234567: "1,234,567", -4321: "-4,321"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%v) = %q; want %q", in, got, want)
		}
	}
}

func TestTextTable(t *testing.T) {
	got := TextTable([]string{"a", "bus", "result"}, slices.Values([][]string{
		{"1 producer", "Kafka", "9 events/s"},
		{"5 post→visible", "JetStream", "p50 1 ms"},
	}))
	want := "" +
		"a               bus        result\n" +
		"--------------  ---------  ----------\n" +
		"1 producer      Kafka      9 events/s\n" +
		"5 post→visible  JetStream  p50 1 ms\n"
	if got != want {
		t.Errorf("TextTable =\n%s\nwant\n%s", got, want)
	}
}

func sampleReport() *Report {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	return &Report{
		RunInfo: labkit.RunInfo{
			Started: t0, Finished: t0.Add(5 * time.Minute), Host: "h", CPUs: 2,
			LoadBefore: [3]float64{1, 2, 3}, LoadAfter: [3]float64{4, 5, 6},
		},
		Produce: []ProduceResult{
			{Bus: JetStream, Setting: "R1, default sync", Durability: "page cache", Producer: "adapter Publish", InFlight: 64, Events: 20000, Seconds: 1.6, PerSecond: 12500, P50Ms: 4.12, P99Ms: 12.34},
			{Bus: JetStream, Setting: "R3, sync always", Skipped: "no server given"},
			{Bus: Kafka, Setting: "3 brokers, acks=all", Error: "boom | bang"},
		},
		Ordering: []OrderingResult{
			{Bus: JetStream, Instances: 1, Workers: 1, Authors: 50, Events: 5000},
			{Bus: Kafka, Instances: 2, Workers: 4, Authors: 50, Events: 5000, OrderCounts: OrderCounts{Inversions: 12, KeysInverted: 7}},
		},
		Redelivery: []RedeliveryResult{
			{Bus: JetStream, Bound: "AckWait 5s", Workers: 4, Events: 4000, Redelivered: 3, HandledTwice: 1, FirstRedeliveryS: 4.98, DrainS: 5.5},
			{Bus: Kafka, Bound: "session timeout 10s", Workers: 4, Events: 4000, FirstRedeliveryS: -1, DrainS: 12},
			{Bus: Kafka, Bound: "session timeout 10s", Workers: 4, Events: 4000, FirstRedeliveryS: -1, Error: "published 3 of 4000 events"},
		},
		Rebalance: []RebalanceResult{{Bus: Kafka, Rate: 200, SteadyGapMs: 20, SteadyDelayMs: 30, JoinGapMs: 500, JoinDelayMs: 550, LeaveGapMs: 90, LeaveDelayMs: 3025}},
		Pipeline:  []PipelineResult{{Bus: Kafka, Users: 1000, PostRate: 20, DurationS: 15, LagP50Ms: 5.66, LagP99Ms: 17.04, Seen: 490}},
	}
}

func TestRows(t *testing.T) {
	rows := sampleReport().Rows()
	got := make([]string, len(rows))
	for i, r := range rows {
		got[i] = strings.Join([]string{r.Measurement, r.Bus, r.Setting, r.Result}, " | ")
	}
	want := []string{
		"1 producer | JetStream | R1, default sync | 12,500 events/s; p50 4.12 ms, p99 12.3 ms",
		"1 producer | JetStream | R3, sync always | not run: no server given",
		"1 producer | Kafka | 3 brokers, acks=all | failed",
		"2 per-key order | JetStream | 1 instance × 1 worker (control) | 0 inversions",
		"2 per-key order | Kafka | 2 instances × 4 workers | 12 inversions (7 of 50 authors)",
		"3 redelivery after SIGKILL | JetStream | 2 processes × 4 workers, AckWait 5s | 0 lost; 3 redelivered, 1 handled twice; first of the dead one's events 4.98 s after the kill",
		"3 redelivery after SIGKILL | Kafka | 2 processes × 4 workers, session timeout 10s | 0 lost; 0 redelivered, 0 handled twice; the survivor took none of the dead one's events",
		// Failed before the kill: no figures, the error in the detail.
		"3 redelivery after SIGKILL | Kafka | 2 processes × 4 workers, session timeout 10s | failed",
		"4 join/leave pause | Kafka | 200 events/s; a 2nd instance joins, later leaves | longest gap / longest wait: steady 20.0 ms / 30.0 ms, join 500.0 ms / 550.0 ms, leave 90.0 ms / 3.02 s",
		"5 post→visible | Kafka | all-in-one on the 1-broker Kafka; 1,000 users, 20 posts/s for 15 s | p50 5.66 ms, p99 17.0 ms",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Rows() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if rows[2].Detail != "boom | bang" {
		t.Errorf("a failed cell's detail = %q; want its error", rows[2].Detail)
	}
}

func TestMarkdown(t *testing.T) {
	md := sampleReport().Markdown()
	for _, want := range []string{
		"Run 2026-12-01T12:00:00Z to 12:05:00Z (300 s) on h, 2 CPUs. Load average (1, 5, 15 min) before: 1.00, 2.00, 3.00; after: 4.00, 5.00, 6.00.",
		"| measurement | bus | setting | result | detail |\n|---|---|---|---|---|\n",
		// A pipe inside a cell is escaped.
		"| 1 producer | Kafka | 3 brokers, acks=all | failed | boom \\| bang |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown() lacks %q:\n%s", want, md)
		}
	}
	table := sampleReport().Table()
	if lines := strings.Count(table, "\n"); lines != 2+10 {
		t.Errorf("Table() has %d lines; want a header, a rule and 10 rows:\n%s", lines, table)
	}
}

func TestValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Namespace, ok.WorkDir, ok.Consumer, ok.Herald = "lab1", "/tmp", []string{"lablog", "consumer"}, "herald"
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(defaults) = %v", err)
	}
	for name, mutate := range map[string]func(*Config){
		"bad section":      func(c *Config) { c.Sections = []string{"produce", "nonsense"} },
		"no sections":      func(c *Config) { c.Sections = nil },
		"upper namespace":  func(c *Config) { c.Namespace = "Lab" },
		"dotted namespace": func(c *Config) { c.Namespace = "lab.x" },
		"no in flight":     func(c *Config) { c.InFlight = 0 },
		"long cell":        func(c *Config) { c.ProduceDuration = time.Hour },
		"short session":    func(c *Config) { c.SessionTimeout = time.Second },
		"no consumer":      func(c *Config) { c.Consumer = nil },
		"no herald":        func(c *Config) { c.Herald = "" },
	} {
		c := ok
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil; want an error", name)
		}
	}
	c := ok
	c.Sections, c.Consumer, c.Herald = []string{SectionProduce}, nil, ""
	if err := c.Validate(); err != nil {
		t.Errorf("produce alone needs no consumer or herald binary: Validate() = %v", err)
	}
}
