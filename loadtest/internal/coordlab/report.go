package coordlab

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/herald-feed/herald/loadtest/internal/labkit"
)

// Report is one lab run: its settings, the machine's load around it, and
// every measurement.
type Report struct {
	labkit.RunInfo
	Settings   Settings           `json:"settings"`
	Servers    []string           `json:"servers"`
	Handoffs   []HandoffResult    `json:"handoffs,omitempty"`
	Throughput []ThroughputResult `json:"throughput,omitempty"`
	Failovers  []FailoverResult   `json:"failovers,omitempty"`
	Fencing    []FencingResult    `json:"fencing,omitempty"`
	Notes      []string           `json:"notes,omitempty"`
}

// Settings are the Config a report was measured with, as JSON shows them.
type Settings struct {
	ZK              []string  `json:"zk"`
	Etcd            []string  `json:"etcd"`
	Sections        []string  `json:"sections"`
	Contenders      []int     `json:"contenders"`
	MaxHandoffs     int       `json:"max_handoffs"`
	HandoffSeconds  float64   `json:"handoff_seconds"`
	HoldMs          float64   `json:"hold_ms"`
	TTLSeconds      []float64 `json:"ttl_seconds"`
	FailoverTrials  int       `json:"failover_trials"`
	FencingSeconds  float64   `json:"fencing_ttl_seconds"`
	FencingTrials   int       `json:"fencing_trials"`
	InFlight        int       `json:"in_flight"`
	MaxOps          int       `json:"max_ops"`
	CellSeconds     float64   `json:"cell_seconds"`
	ValueBytes      int       `json:"value_bytes"`
	ThroughputConns int       `json:"throughput_connections"`
}

func settingsOf(c Config) Settings {
	s := Settings{
		ZK: c.Servers.ZK, Etcd: c.Servers.Etcd, Sections: c.Sections, Contenders: c.Contenders,
		MaxHandoffs: c.MaxHandoffs, HandoffSeconds: c.HandoffDuration.Seconds(), HoldMs: ms(c.Hold),
		FailoverTrials: c.FailoverTrials, FencingSeconds: c.FencingTTL.Seconds(), FencingTrials: c.FencingTrials,
		InFlight: c.InFlight, MaxOps: c.MaxOps, CellSeconds: c.CellDuration.Seconds(),
		ValueBytes: throughputValueSize, ThroughputConns: throughputConns,
	}
	for _, d := range c.TTLs {
		s.TTLSeconds = append(s.TTLSeconds, d.Seconds())
	}
	return s
}

// row is one line of the report's table.
type row struct{ measurement, subject, setting, result, detail string }

// Table returns the report's one table, as Markdown (which also reads as
// plain text in a terminal).
func (r *Report) Table() string {
	var rows []row
	for _, h := range r.Handoffs {
		res := fmt.Sprintf("p50 %s, p99 %s", fmtMs(h.P50Ms), fmtMs(h.P99Ms))
		detail := fmt.Sprintf("%.2f watch events/hand-off; %d hand-offs in %.1f s; max %s", h.EventsPerHandoff, h.Handoffs, h.Seconds, fmtMs(h.MaxMs))
		if h.Overlaps > 0 || h.TokenRegressions > 0 {
			detail += fmt.Sprintf("; MUTUAL EXCLUSION BROKEN: %d overlaps, %d token regressions", h.Overlaps, h.TokenRegressions)
		}
		if h.Error != "" {
			detail += "; error: " + h.Error
		}
		setting := fmt.Sprintf("%d contenders", h.Contenders)
		if h.Contenders == 1 {
			setting = "1 contender (unlock + relock)"
		}
		rows = append(rows, row{"lock hand-off", h.Recipe, setting, res, detail})
	}
	for _, t := range r.Throughput {
		subject := "ZooKeeper, 3 nodes"
		if t.System == SystemEtcd {
			subject = "etcd, 3 members"
		}
		detail := fmt.Sprintf("p50 %s, p99 %s; %d ops in %.1f s", fmtMs(t.P50Ms), fmtMs(t.P99Ms), t.Ops, t.Seconds)
		if t.Errors > 0 {
			detail += fmt.Sprintf("; %d errors, first: %s", t.Errors, t.FirstError)
		}
		rows = append(rows, row{"throughput", subject, fmt.Sprintf("%s, %d in flight", t.Op, t.InFlight), fmt.Sprintf("%.0f ops/s", t.OpsPerSec), detail})
	}
	for _, f := range r.Failovers {
		what := "lock holder"
		if f.Recipe == RecipeElection {
			what = "leader"
		}
		subject, setting := "ZooKeeper "+f.Recipe+" (ephemeral-sequential)", fmt.Sprintf("session timeout %g s", f.TTLSeconds)
		if f.System == SystemEtcd {
			subject, setting = "etcd "+map[string]string{RecipeLock: "Mutex", RecipeElection: "Election"}[f.Recipe], fmt.Sprintf("lease TTL %g s", f.TTLSeconds)
		}
		res := fmt.Sprintf("median %.2f s (min %.2f, max %.2f)", f.MedianMs/1000, f.MinMs/1000, f.MaxMs/1000)
		var trials []string
		for _, t := range f.TrialsMs {
			trials = append(trials, fmt.Sprintf("%.2f", t/1000))
		}
		detail := fmt.Sprintf("trials: %s s; %.2f of the timeout", strings.Join(trials, ", "), f.MedianMs/1000/f.TTLSeconds)
		if f.Error != "" {
			detail += "; error: " + f.Error
		}
		rows = append(rows, row{"failover, " + what + " SIGKILLed", subject, setting, res, detail})
	}
	for _, f := range r.Fencing {
		subject, setting := "ZooKeeper sequential lock, token = czxid", fmt.Sprintf("session timeout %g s", f.TTLSeconds)
		what := "session"
		if f.System == SystemEtcd {
			subject, setting, what = "etcd Mutex, token = create revision", fmt.Sprintf("lease TTL %g s", f.TTLSeconds), "lease"
		}
		n := len(f.Trials)
		var accepted, rejected, believed, checked int
		var tokens, takeovers, noticed []string
		for _, t := range f.Trials {
			if t.StaleWrite.Unfenced.Accepted && t.UnfencedValue == staleValue {
				accepted++
			}
			if !t.StaleWrite.Fenced.Accepted && t.FencedValue == newValue {
				rejected++
			}
			if t.CheckedAlive {
				checked++
			}
			if t.StaleBelievedAlive {
				believed++
				if t.StaleNoticedMs >= 0 {
					noticed = append(noticed, fmtMs(t.StaleNoticedMs))
				} else {
					noticed = append(noticed, "not within 10 s")
				}
			}
			tokens = append(tokens, fmt.Sprintf("%d→%d", t.StaleToken, t.NewToken))
			takeovers = append(takeovers, fmt.Sprintf("%.2f", t.TakeoverMs/1000))
		}
		res := fmt.Sprintf("A's stale write: without the token check ACCEPTED in %d/%d (B's write lost); with it REJECTED in %d/%d", accepted, n, rejected, n)
		detail := fmt.Sprintf("A checked its %s alive just before the pause in %d/%d; tokens A→B %s; B held the lock %s s after A was paused; when A wrote, its client still believed the %s alive in %d/%d",
			what, checked, n, strings.Join(tokens, ", "), strings.Join(takeovers, ", "), what, believed, n)
		if len(noticed) > 0 {
			detail += " (noticing the loss " + strings.Join(noticed, ", ") + " after the write)"
		}
		if f.Error != "" {
			detail += "; error: " + f.Error
		}
		rows = append(rows, row{"fencing, holder SIGSTOPped past its TTL", subject, setting, res, detail})
	}
	var b strings.Builder
	b.WriteString("| measurement | system / recipe | setting | result | detail |\n|---|---|---|---|---|\n")
	for _, x := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", x.measurement, x.subject, x.setting, x.result, strings.ReplaceAll(x.detail, "|", "\\|"))
	}
	return b.String()
}

func fmtMs(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.2f s", v/1000)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return fmt.Sprintf("%.2f ms", v)
	}
}

// Charts are the PNG files Save writes beside the JSON, by base name.
var Charts = []string{"coordination-handoff.png", "coordination-throughput.png", "coordination-failover.png"}

// Markdown returns the report as a Markdown page: when and where, the
// table, the charts (charts names their directory relative to the page)
// and the notes.
func (r *Report) Markdown(charts string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Coordination lab: ZooKeeper and etcd, measured\n\n")
	fmt.Fprintf(&b, "Run %s to %s (%.0f s) on %s, %d CPUs. Load average (1, 5, 15 min) before: %.2f, %.2f, %.2f; after: %.2f, %.2f, %.2f.\n\n",
		r.Started.UTC().Format(time.RFC3339), r.Finished.UTC().Format("15:04:05Z"), r.Finished.Sub(r.Started).Seconds(), r.Host, r.CPUs,
		r.LoadBefore[0], r.LoadBefore[1], r.LoadBefore[2], r.LoadAfter[0], r.LoadAfter[1], r.LoadAfter[2])
	if r.Command != "" {
		fmt.Fprintf(&b, "Command: `%s`\n\n", r.Command)
	}
	b.WriteString("Servers:\n\n")
	for _, s := range r.Servers {
		fmt.Fprintf(&b, "- %s\n", s)
	}
	b.WriteString("\n" + r.Table() + "\n")
	for _, c := range Charts {
		fmt.Fprintf(&b, "![%s](%s)\n\n", strings.TrimSuffix(c, ".png"), filepath.ToSlash(filepath.Join(charts, c)))
	}
	if len(r.Notes) > 0 {
		b.WriteString("Notes:\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		b.WriteString("\n")
	}
	s := r.Settings
	fmt.Fprintf(&b, "Settings: contenders %v, each holder holding the lock %g ms, at most %d hand-offs or %g s per cell; failover TTLs %v s, %d trials each; fencing TTL %g s, %d trials; throughput cells of at most %d ops or %g s, %d in flight over %d connections, %d-byte values.\n",
		s.Contenders, s.HoldMs, s.MaxHandoffs, s.HandoffSeconds, s.TTLSeconds, s.FailoverTrials, s.FencingSeconds, s.FencingTrials, s.MaxOps, s.CellSeconds, s.InFlight, s.ThroughputConns, s.ValueBytes)
	return b.String()
}

// Save writes lab-coordination.json, lab-coordination.md and the charts
// into dir, and returns the JSON file's path.
func (r *Report) Save(dir string) (string, error) {
	path, err := labkit.WriteFiles(dir, "lab-coordination", r, r.Markdown("."))
	if err != nil {
		return "", err
	}
	if err := r.Chart(dir); err != nil {
		return path, fmt.Errorf("charts: %w", err)
	}
	return path, nil
}

// Record implements labkit.Report.
func (r *Report) Record() *labkit.RunInfo { return &r.RunInfo }

// Note implements labkit.Report.
func (r *Report) Note(s string) { r.Notes = append(r.Notes, s) }
