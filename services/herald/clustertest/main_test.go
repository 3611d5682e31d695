// Package clustertest runs Herald as a multi-process cluster on the real
// servers (etcd, NATS JetStream, Redis, Cassandra; see deploy/local) and
// checks what the cluster promises: the API behaviour suite, surviving the
// death of an instance, a Redis restart and a Cassandra outage, and the
// crash drills (drills_test.go), each followed by a model check: a fan-out
// instance killed mid-fan-out, NATS restarted and stopped while clients
// post, and the outbox relay's leader killed.
//
// The tests restart the shared Redis and Cassandra, so they run one after
// another, the disruptive ones last, and nothing else should use those
// servers meanwhile. The NATS drills stop and start a nats-server of their
// own instead of the shared one.
package clustertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// services are Herald's four service binaries, in start order: the others
// dial graph, and fan-out needs the timeline cache but no peer.
var services = []string{"graph", "post", "fanout", "timeline"}

// binDir holds the service binaries TestMain builds, and repoRoot is the
// workspace root (where go.work and deploy/ are).
var binDir, repoRoot string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var err error
	if repoRoot, err = findRepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "clustertest:", err)
		return 1
	}
	if binDir, err = os.MkdirTemp("", "herald-clustertest-bin-"); err != nil {
		fmt.Fprintln(os.Stderr, "clustertest:", err)
		return 1
	}
	defer os.RemoveAll(binDir)

	// Build once, from the workspace root so that go.work resolves the
	// local modules; every test starts these same binaries.
	args := []string{"build", "-o", binDir + string(filepath.Separator)}
	for _, s := range services {
		args = append(args, "./services/"+s+"/cmd/"+s)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "clustertest: go %v: %v\n%s", args, err, out)
		return 1
	}
	code := m.Run()
	if err := writeDrillTable(drillsDir()); err != nil {
		fmt.Fprintln(os.Stderr, "clustertest: writing the drills table:", err)
		return 1
	}
	return code
}

// findRepoRoot walks up from the working directory to the directory that
// holds go.work.
func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.work above the working directory")
		}
		dir = parent
	}
}
