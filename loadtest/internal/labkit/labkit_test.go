package labkit

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type fakeReport struct {
	RunInfo
	Notes []string `json:"notes"`
}

func (r *fakeReport) Record() *RunInfo { return &r.RunInfo }
func (r *fakeReport) Note(s string)    { r.Notes = append(r.Notes, s) }
func (r *fakeReport) Table() string    { return "| a | b |" }
func (r *fakeReport) Save(dir string) (string, error) {
	return WriteFiles(dir, "lab-fake", r, "# fake\n")
}

// TestClose: a run that stopped early is saved with the command line and a
// note saying why, its table printed, the last line names the JSON, and
// the run's error is returned.
func TestClose(t *testing.T) {
	dir := t.TempDir()
	r := &fakeReport{RunInfo: Start()}
	r.Finish()
	var out bytes.Buffer
	stopped := errors.New("context canceled")
	if err := Close(&out, "lab-fake", dir, r, stopped); !errors.Is(err, stopped) {
		t.Errorf("Close = %v; want the run's error", err)
	}
	path := filepath.Join(dir, "lab-fake.json")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if last := lines[len(lines)-1]; last != "lab-fake: json="+path {
		t.Errorf("last line %q; want %q", last, "lab-fake: json="+path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"started", "finished", "host", "cpus", "load_before", "load_after", "command", "notes"} {
		if _, ok := got[k]; !ok {
			t.Errorf("the report's JSON has no %q: %s", k, b)
		}
	}
	if notes := got["notes"].([]any); len(notes) != 1 || !strings.Contains(notes[0].(string), "stopped early: context canceled") {
		t.Errorf("notes = %v; want one saying the run stopped early, and why", notes)
	}
	if _, err := os.Stat(filepath.Join(dir, "lab-fake.md")); err != nil {
		t.Error(err)
	}
}
