package loglab

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/herald-feed/herald/loadtest/internal/labkit"
)

// Report is one lab run: when and where, its settings, the machine's load
// around it, and every measurement.
type Report struct {
	labkit.RunInfo
	Servers    []string           `json:"servers"`
	Settings   Settings           `json:"settings"`
	Produce    []ProduceResult    `json:"produce,omitempty"`
	Ordering   []OrderingResult   `json:"ordering,omitempty"`
	Redelivery []RedeliveryResult `json:"redelivery,omitempty"`
	Rebalance  []RebalanceResult  `json:"rebalance,omitempty"`
	Pipeline   []PipelineResult   `json:"pipeline,omitempty"`
	Notes      []string           `json:"notes,omitempty"`
}

// Settings are the Config a report was measured with, as JSON shows them.
type Settings struct {
	Sections          []string `json:"sections"`
	Namespace         string   `json:"namespace"`
	InFlight          int      `json:"in_flight"`
	ProduceEvents     int      `json:"produce_events"`
	ProduceSeconds    float64  `json:"produce_seconds"`
	WarmupS           float64  `json:"warmup_s"`
	ColdWarmupS       float64  `json:"cold_warmup_s"`
	Authors           int      `json:"authors"`
	PerAuthor         int      `json:"per_author"`
	HandlerWorkMs     float64  `json:"handler_work_ms"`
	RedeliveryEvents  int      `json:"redelivery_events"`
	RedeliveryWorkMs  float64  `json:"redelivery_work_ms"`
	RedeliveryWorkers int      `json:"redelivery_workers"`
	AckWaitS          float64  `json:"ack_wait_s"`
	SessionTimeoutS   float64  `json:"session_timeout_s"`
	RebalanceRate     float64  `json:"rebalance_rate"`
	RebalancePhaseS   float64  `json:"rebalance_phase_s"`
	PipelineUsers     int      `json:"pipeline_users"`
	PipelinePostRate  float64  `json:"pipeline_post_rate"`
	PipelineReadRate  float64  `json:"pipeline_read_rate"`
	PipelineSeconds   float64  `json:"pipeline_seconds"`
}

func settingsOf(c Config) Settings {
	return Settings{
		Sections: c.Sections, Namespace: c.Namespace, InFlight: c.InFlight, ProduceEvents: c.ProduceEvents,
		ProduceSeconds: c.ProduceDuration.Seconds(), WarmupS: c.Warmup.Seconds(), ColdWarmupS: c.ColdWarmup.Seconds(), Authors: c.Authors, PerAuthor: c.PerAuthor,
		HandlerWorkMs: ms(c.HandlerWork), RedeliveryEvents: c.RedeliveryEvents, RedeliveryWorkMs: ms(c.RedeliveryWork),
		RedeliveryWorkers: c.RedeliveryWorkers, AckWaitS: c.AckWait.Seconds(), SessionTimeoutS: c.SessionTimeout.Seconds(),
		RebalanceRate: c.RebalanceRate, RebalancePhaseS: c.RebalancePhase.Seconds(), PipelineUsers: c.PipelineUsers,
		PipelinePostRate: c.PipelinePostRate, PipelineReadRate: c.PipelineReadRate, PipelineSeconds: c.PipelineDuration.Seconds(),
	}
}

// Row is one line of the report's table. Detail goes in the Markdown and
// JSON only; the terminal table would be too wide with it.
type Row struct {
	Measurement string `json:"measurement"`
	Bus         string `json:"bus"`
	Setting     string `json:"setting"`
	Result      string `json:"result"`
	Detail      string `json:"detail,omitempty"`
}

// Rows returns the table's rows: the sections in order, JetStream before
// Kafka within each.
func (r *Report) Rows() []Row {
	var rows []Row
	for _, p := range r.Produce {
		x := Row{Measurement: "1 producer", Bus: p.Bus, Setting: p.Setting}
		switch {
		case p.Skipped != "":
			x.Result = "not run: " + p.Skipped
		case p.Error != "":
			x.Result, x.Detail = "failed", p.Error
		default:
			x.Result = fmt.Sprintf("%s events/s; p50 %s, p99 %s", thousands(p.PerSecond), fmtMs(p.P50Ms), fmtMs(p.P99Ms))
			x.Detail = fmt.Sprintf("%s events in %.1f s, %d in flight, %s; acked = %s", thousands(float64(p.Events)), p.Seconds, p.InFlight, p.Producer, p.Durability)
			if p.Errors > 0 {
				x.Detail += fmt.Sprintf("; %d errors, first: %s", p.Errors, p.FirstErr)
			}
		}
		rows = append(rows, x)
	}
	for _, o := range r.Ordering {
		x := Row{Measurement: "2 per-key order", Bus: o.Bus, Setting: fmt.Sprintf("%d instance%s × %d worker%s", o.Instances, plural(o.Instances), o.Workers, plural(o.Workers))}
		if o.Instances == 1 && o.Workers == 1 {
			x.Setting += " (control)"
		}
		switch {
		case o.Skipped != "":
			x.Result = "not run: " + o.Skipped
		case o.Error != "":
			x.Result, x.Detail = "failed", o.Error
		default:
			x.Result = fmt.Sprintf("%s inversions", thousands(float64(o.Inversions)))
			if o.Inversions > 0 {
				x.Result += fmt.Sprintf(" (%d of %d authors)", o.KeysInverted, o.Authors)
			}
			x.Detail = fmt.Sprintf("%s events (%d authors in order), %d handled again; consumed in %.1f s", thousands(float64(o.Events)), o.Authors, o.Duplicates, o.Seconds)
		}
		rows = append(rows, x)
	}
	for _, d := range r.Redelivery {
		x := Row{Measurement: "3 redelivery after SIGKILL", Bus: d.Bus, Setting: fmt.Sprintf("2 processes × %d workers, %s", d.Workers, d.Bound)}
		switch {
		case d.Skipped != "":
			x.Result = "not run: " + d.Skipped
		case d.Error != "" && d.DrainS == 0:
			x.Result, x.Detail = "failed", d.Error
		default:
			first := "the survivor took none of the dead one's events"
			if d.FirstRedeliveryS >= 0 {
				first = fmt.Sprintf("first of the dead one's events %.2f s after the kill", d.FirstRedeliveryS)
			}
			x.Result = fmt.Sprintf("%d lost; %d redelivered, %d handled twice; %s", d.Lost, d.Redelivered, d.HandledTwice, first)
			x.Detail = fmt.Sprintf("%s events; killed after %s handled, %d in its handlers; all handled %.2f s after the kill", thousands(float64(d.Events)), thousands(float64(d.DoneBeforeKill)), d.InFlightAtKill, d.DrainS)
			if d.Error != "" {
				x.Result = "failed: " + x.Result
				x.Detail += "; error: " + d.Error
			}
		}
		rows = append(rows, x)
	}
	for _, b := range r.Rebalance {
		x := Row{Measurement: "4 join/leave pause", Bus: b.Bus, Setting: fmt.Sprintf("%.0f events/s; a 2nd instance joins, later leaves", b.Rate)}
		switch {
		case b.Skipped != "":
			x.Result = "not run: " + b.Skipped
		case b.Error != "" && b.Events == 0:
			x.Result, x.Detail = "failed", b.Error
		default:
			x.Result = fmt.Sprintf("longest gap / longest wait: steady %s / %s, join %s / %s, leave %s / %s",
				fmtMs(b.SteadyGapMs), fmtMs(b.SteadyDelayMs), fmtMs(b.JoinGapMs), fmtMs(b.JoinDelayMs), fmtMs(b.LeaveGapMs), fmtMs(b.LeaveDelayMs))
			x.Detail = fmt.Sprintf("gap: between two handled events; wait: an event's publish to its handler; %s events, %d lost, %d handled again; %.0f s phases; the leaving instance stopped in %.2f s",
				thousands(float64(b.Events)), b.Lost, b.Duplicates, b.PhaseS, b.LeaveS)
			if b.Error != "" {
				x.Result = "failed: " + x.Result
				x.Detail += "; error: " + b.Error
			}
		}
		rows = append(rows, x)
	}
	for _, p := range r.Pipeline {
		where := "the all-in-one's embedded nats-server"
		if p.Bus == Kafka {
			where = "the 1-broker Kafka"
		}
		x := Row{Measurement: "5 post→visible", Bus: p.Bus, Setting: fmt.Sprintf("all-in-one on %s; %s users, %.0f posts/s for %.0f s", where, thousands(float64(p.Users)), p.PostRate, p.DurationS)}
		switch {
		case p.Skipped != "":
			x.Result = "not run: " + p.Skipped
		case p.Error != "" && p.Seen == 0:
			x.Result, x.Detail = "failed", p.Error
		default:
			x.Result = fmt.Sprintf("p50 %s, p99 %s", fmtMs(p.LagP50Ms), fmtMs(p.LagP99Ms))
			x.Detail = fmt.Sprintf("%s seen, %d not seen within 10 s, max %s; CreatePost p50 %s, p99 %s (%d posts); %s follows; %.0f reads/s besides",
				thousands(float64(p.Seen)), p.NotSeen, fmtMs(p.LagMaxMs), fmtMs(p.CreateP50Ms), fmtMs(p.CreateP99Ms), p.Posts, thousands(float64(p.Follows)), p.ReadRate)
			if p.Error != "" {
				x.Detail += "; error: " + p.Error
			}
			if len(p.Notes) > 0 {
				x.Detail += "; " + strings.Join(p.Notes, "; ")
			}
		}
		rows = append(rows, x)
	}
	return rows
}

// Table returns the rows as a plain-text table for a terminal, without
// the details.
func (r *Report) Table() string {
	return TextTable([]string{"measurement", "bus", "setting", "result"}, func(yield func([]string) bool) {
		for _, x := range r.Rows() {
			if !yield([]string{x.Measurement, x.Bus, x.Setting, x.Result}) {
				return
			}
		}
	})
}

// TextTable lays out rows under header in columns as wide as their widest
// cell (in runes), two spaces apart, with a rule under the header.
func TextTable(header []string, rows func(yield func([]string) bool)) string {
	all := [][]string{header}
	for row := range rows {
		all = append(all, row)
	}
	widths := make([]int, len(header))
	for _, row := range all {
		for i, c := range row {
			if i < len(widths) {
				widths[i] = max(widths[i], utf8.RuneCountInString(c))
			}
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		var s strings.Builder
		for i, w := range widths {
			c := ""
			if i < len(cells) {
				c = cells[i]
			}
			s.WriteString(c)
			if i < len(widths)-1 {
				s.WriteString(strings.Repeat(" ", w-utf8.RuneCountInString(c)+2))
			}
		}
		b.WriteString(strings.TrimRight(s.String(), " ") + "\n")
	}
	line(all[0])
	rule := make([]string, len(widths))
	for i, w := range widths {
		rule[i] = strings.Repeat("-", w)
	}
	line(rule)
	for _, row := range all[1:] {
		line(row)
	}
	return b.String()
}

// MarkdownTable returns the rows, details included, as a Markdown table.
func (r *Report) MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| measurement | bus | setting | result | detail |\n|---|---|---|---|---|\n")
	esc := func(s string) string { return strings.ReplaceAll(s, "|", "\\|") }
	for _, x := range r.Rows() {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", esc(x.Measurement), esc(x.Bus), esc(x.Setting), esc(x.Result), esc(x.Detail))
	}
	return b.String()
}

// Markdown returns the report as a Markdown page: when and where, the
// servers, the table and the notes.
func (r *Report) Markdown() string {
	var b strings.Builder
	b.WriteString("# Event-log lab: JetStream and Kafka, measured\n\n")
	fmt.Fprintf(&b, "Run %s to %s (%.0f s) on %s, %d CPUs. Load average (1, 5, 15 min) before: %.2f, %.2f, %.2f; after: %.2f, %.2f, %.2f.\n\n",
		r.Started.UTC().Format(time.RFC3339), r.Finished.UTC().Format("15:04:05Z"), r.Finished.Sub(r.Started).Seconds(), r.Host, r.CPUs,
		r.LoadBefore[0], r.LoadBefore[1], r.LoadBefore[2], r.LoadAfter[0], r.LoadAfter[1], r.LoadAfter[2])
	if r.Command != "" {
		fmt.Fprintf(&b, "Command: `%s`\n\n", r.Command)
	}
	if len(r.Servers) > 0 {
		b.WriteString("Servers:\n\n")
		for _, s := range r.Servers {
			fmt.Fprintf(&b, "- %s\n", s)
		}
		b.WriteString("\n")
	}
	b.WriteString(r.MarkdownTable() + "\n")
	if len(r.Notes) > 0 {
		b.WriteString("Notes:\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Save writes lab-log.json (the report and its table's rows) and
// lab-log.md into dir and returns the JSON's path.
func (r *Report) Save(dir string) (string, error) {
	return labkit.WriteFiles(dir, "lab-log", struct {
		*Report
		Table []Row `json:"table"`
	}{r, r.Rows()}, r.Markdown())
}

// Record implements labkit.Report.
func (r *Report) Record() *labkit.RunInfo { return &r.RunInfo }

// Note implements labkit.Report.
func (r *Report) Note(s string) { r.Notes = append(r.Notes, s) }

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
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

// thousands formats v rounded to a whole number, with commas.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
