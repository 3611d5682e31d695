// Package labkit holds what Herald's labs (the coordination lab, labcoord;
// the event-log lab, lablog) share: the run's record (when, where, the
// machine's load around it, the command), the report files, and the
// commands' main and closing lines. Each lab keeps its measurements and
// its tables.
package labkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// Main runs root until it returns or the process gets SIGINT or SIGTERM,
// and exits 1 with "name: error" (or "name: interrupted") on failure.
func Main(name string, root *cobra.Command) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := root.ExecuteContext(ctx)
	stop()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintf(os.Stderr, "%s: interrupted\n", name)
		} else {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		}
		os.Exit(1)
	}
}

// RunInfo is the record every lab report starts with; a report embeds it,
// so its fields are the report's own in JSON.
type RunInfo struct {
	Started    time.Time  `json:"started"`
	Finished   time.Time  `json:"finished"`
	Host       string     `json:"host"`
	CPUs       int        `json:"cpus"`
	LoadBefore [3]float64 `json:"load_before"`
	LoadAfter  [3]float64 `json:"load_after"`
	Command    string     `json:"command,omitempty"`
}

// Start returns the record of a run starting now.
func Start() RunInfo {
	host, _ := os.Hostname()
	return RunInfo{Started: time.Now(), Host: host, CPUs: runtime.NumCPU(), LoadBefore: LoadAverage()}
}

// Finish records the run's end and the load then.
func (r *RunInfo) Finish() { r.Finished, r.LoadAfter = time.Now(), LoadAverage() }

// LoadAverage returns the 1, 5 and 15 minute load averages
// (/proc/loadavg); zeros where the file does not read.
func LoadAverage() [3]float64 {
	var la [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return la
	}
	for i, f := range strings.Fields(string(b)) {
		if i == len(la) {
			break
		}
		la[i], _ = strconv.ParseFloat(f, 64)
	}
	return la
}

// WriteFiles writes report as <dir>/<name>.json (indented) and markdown
// as <dir>/<name>.md, and returns the JSON file's path.
func WriteFiles(dir, name string, report any, markdown string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name+".json")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".md"), []byte(markdown), 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// Report is what a lab's run command closes with.
type Report interface {
	// Record is the run's record, to stamp with the command line and
	// notes.
	Record() *RunInfo
	// Note adds a line to the report's notes.
	Note(string)
	// Save writes the report's files into dir and returns the JSON's path.
	Save(dir string) (string, error)
	// Table is the report as one text table.
	Table() string
}

// Close stamps r with this process's command line and, if the run stopped
// early with runErr, a note saying so; saves it into out; prints its table
// and then the lab's last line, "<name>: json=<path>"; and returns runErr
// (or the save's error).
func Close(stdout io.Writer, name, out string, r Report, runErr error) error {
	r.Record().Command = strings.Join(append([]string{filepath.Base(os.Args[0])}, os.Args[1:]...), " ")
	if runErr != nil {
		r.Note("the run stopped early: " + runErr.Error())
	}
	path, err := r.Save(out)
	if err != nil {
		return fmt.Errorf("writing the report to %s: %w", out, err)
	}
	fmt.Fprintf(stdout, "\n%s\n", r.Table())
	fmt.Fprintf(stdout, "%s: json=%s\n", name, path)
	return runErr
}

// Root returns a lab's root command: it prints to stdout and stderr,
// prints no usage on errors (Main prints the error), and names --help in a
// flag error.
func Root(use, short string, stdout, stderr io.Writer, cmds ...*cobra.Command) *cobra.Command {
	root := &cobra.Command{Use: use, Short: short, SilenceUsage: true, SilenceErrors: true}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w (see %s --help)", err, cmd.CommandPath())
	})
	root.AddCommand(cmds...)
	return root
}
