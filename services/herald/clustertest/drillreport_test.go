package clustertest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// The drill suite's table. Each drill test (TestDrill*) names the failure
// it causes with d.report, and at its end adds one row: what broke, how the
// clients fared, what the model check found, and how long recovery took.
// After the tests, TestMain writes the rows as JSON and Markdown under
// HERALD_DRILLS_DIR (make drills sets it to loadtest/out/drills); with no
// drill run, it writes nothing.

// drillResult is one row of the table. The JSON keys are the suite's
// interface: scripts and docs read them.
type drillResult struct {
	// Drill says what broke, in the operator's words.
	Drill string `json:"drill"`
	// Test is the Go test that ran it.
	Test string `json:"test"`
	// Cluster is "HA" (replicated servers) or "single".
	Cluster string `json:"cluster"`
	// Passed is false if the test failed: then the row's figures say how.
	Passed bool `json:"passed"`
	// ClientErrors counts the clients' failed attempts (posts, follows
	// and reads), each retried; ErrorWindowMS is from the first failed
	// attempt's start to the last one's end.
	ClientErrors  int     `json:"client_errors"`
	ErrorWindowMS float64 `json:"error_window_ms"`
	// Acked is how many posts were acknowledged; Lost how many of them a
	// timeline that should hold them lacked at the end; Duplicated how
	// many posts a timeline held that no acknowledged write made there (a
	// write done twice) or returned twice; DuplicateIDs how many post IDs
	// were given to more than one post.
	Acked        int `json:"acked"`
	Lost         int `json:"lost"`
	Duplicated   int `json:"duplicated"`
	DuplicateIDs int `json:"duplicate_ids"`
	// Checked is true once the model check ran; a row without it has no
	// lost or duplicated figures.
	Checked bool `json:"model_checked"`
	// RecoveryMS is the drill's recovery time, which its notes define
	// (an election, a failover, the first success after the fault).
	RecoveryMS float64 `json:"recovery_ms"`
	Notes      string  `json:"notes"`
	// Seconds is how long the test ran.
	Seconds float64 `json:"seconds"`
}

var drillTable struct {
	mu   sync.Mutex
	rows []drillResult
}

// report makes the drill a row of the suite's table, named drill. The row
// is added when the test ends, with its outcome; set its figures with
// recovered and note, and the model check fills in the rest.
func (d *drill) report(name, cluster string) {
	started := time.Now()
	d.row = &drillResult{Drill: name, Test: d.t.Name(), Cluster: cluster}
	// Registered first, so it runs last: after the cluster's cleanup,
	// which may still fail the test.
	d.t.Cleanup(func() {
		row := *d.row
		row.Passed = !d.t.Failed()
		row.Seconds = time.Since(started).Seconds()
		row.ClientErrors, row.ErrorWindowMS = d.clientErrors()
		drillTable.mu.Lock()
		drillTable.rows = append(drillTable.rows, row)
		drillTable.mu.Unlock()
	})
}

// recovered sets the row's recovery time, and says in its notes what it
// measures.
func (d *drill) recovered(took time.Duration, what string) {
	d.t.Logf("recovery: %v (%s)", took.Round(time.Millisecond), what)
	if d.row == nil {
		return
	}
	d.row.RecoveryMS = float64(took.Microseconds()) / 1000
	d.note("recovery: %s", what)
}

// note adds a sentence to the row's notes, and logs it.
func (d *drill) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	d.t.Log(s)
	if d.row == nil {
		return
	}
	if d.row.Notes != "" {
		d.row.Notes += "; "
	}
	d.row.Notes += s
}

// clientErrors counts the failed attempts of the drill's calls, and the
// window from the first one's start to the last one's end.
func (d *drill) clientErrors() (int, float64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	var first, last time.Time
	for _, w := range d.writes {
		for _, s := range w.spans {
			n++
			if first.IsZero() || s.from.Before(first) {
				first = s.from
			}
			if s.to.After(last) {
				last = s.to
			}
		}
	}
	if n == 0 {
		return 0, 0
	}
	return n, float64(last.Sub(first).Microseconds()) / 1000
}

// writeDrillTable writes the table, if any drill ran, to dir as
// drills.json and drills.md (scripts/drills.sh prints it).
func writeDrillTable(dir string) error {
	drillTable.mu.Lock()
	rows := slices.Clone(drillTable.rows)
	drillTable.mu.Unlock()
	if len(rows) == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	meta := runMeta()
	doc := struct {
		Meta map[string]string `json:"meta"`
		Rows []drillResult     `json:"drills"`
	}{meta, rows}
	js, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "drills.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	md := drillMarkdown(meta, rows)
	return os.WriteFile(filepath.Join(dir, "drills.md"), []byte(md), 0o644)
}

// drillMarkdown renders the table.
func drillMarkdown(meta map[string]string, rows []drillResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Drills run %s at %s; load average before %s, after %s.\n\n", meta["date"], meta["commit"], meta["load_before"], loadAverage())
	b.WriteString("| drill | cluster | result | client errors | error window | acked | lost | duplicated | duplicate IDs | recovery | notes |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rows {
		result := "passed"
		if !r.Passed {
			result = "**FAILED**"
		}
		lost, dup := fmt.Sprint(r.Lost), fmt.Sprint(r.Duplicated)
		if !r.Checked {
			lost, dup = "not checked", "not checked"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %s | %d | %s | %s | %d | %s | %s |\n",
			r.Drill, r.Cluster, result, r.ClientErrors, msCell(r.ErrorWindowMS), r.Acked, lost, dup, r.DuplicateIDs, msCell(r.RecoveryMS),
			strings.ReplaceAll(r.Notes, "|", "\\|"))
	}
	return b.String()
}

func msCell(ms float64) string {
	switch {
	case ms == 0:
		return "0"
	case ms < 1000:
		return fmt.Sprintf("%.0f ms", ms)
	default:
		return fmt.Sprintf("%.2f s", ms/1000)
	}
}

// loadBefore is the load average when the package started.
var loadBefore = loadAverage()

// runMeta describes the run: date, commit and load.
func runMeta() map[string]string {
	commit := "unknown"
	if out, err := exec.Command("git", "-C", repoRoot, "rev-parse", "--short", "HEAD").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
	}
	return map[string]string{
		"date":        time.Now().UTC().Format(time.RFC3339),
		"commit":      commit,
		"load_before": loadBefore,
		"load_after":  loadAverage(),
	}
}

// loadAverage is /proc/loadavg's three figures, or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// drillsDir is where the table goes: HERALD_DRILLS_DIR, or
// loadtest/out/drills under the workspace root.
func drillsDir() string {
	if d := os.Getenv("HERALD_DRILLS_DIR"); d != "" {
		return d
	}
	return filepath.Join(repoRoot, "loadtest", "out", "drills")
}
