package clustertest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// privateNATS is a nats-server of one test's own, on loopback ports of its
// own with a state directory of its own, started and stopped through
// deploy/local/nats.sh and stop.sh. A drill stops and restarts it without
// touching the shared server that other tests on the machine use.
type privateNATS struct {
	// URL is the server's client URL.
	URL string

	dir string   // its HERALD_LOCAL_DIR
	env []string // what points the scripts at it
}

// startPrivateNATS starts a private nats-server with an empty data
// directory and stops it at cleanup. It reuses the nats-server binary the
// shared server's scripts built.
func startPrivateNATS(t *testing.T) *privateNATS {
	t.Helper()
	base := os.Getenv("HERALD_LOCAL_DIR")
	if base == "" {
		base = filepath.Join(repoRoot, ".local")
	}
	ports := freePorts(t, 2)
	port, monitor := ports[0], ports[1]
	n := &privateNATS{
		URL: fmt.Sprintf("nats://127.0.0.1:%d", port),
		dir: filepath.Join(base, "clustertest-nats"),
	}
	n.env = []string{
		"HERALD_LOCAL_DIR=" + n.dir,
		"HERALD_BIN_DIR=" + filepath.Join(base, "bin"),
		// The shared server's secrets, so that it takes the login the
		// instances have (HERALD_NATS_PASSWORD_FILE, in that directory).
		"HERALD_SECRETS_DIR=" + filepath.Dir(os.Getenv("HERALD_NATS_PASSWORD_FILE")),
		"HERALD_NATS_PORT=" + strconv.Itoa(port),
		"HERALD_NATS_MONITOR_PORT=" + strconv.Itoa(monitor),
		"HERALD_STOP_TIMEOUT=15",
	}
	// An interrupted run may have left its server behind; stop.sh signals
	// only the pid in the pidfile, and only if that process is still the
	// server in this state directory.
	n.Stop(t)
	if err := os.RemoveAll(n.dataDir()); err != nil {
		t.Fatal(err)
	}
	n.Start(t)
	t.Logf("private nats-server pid %d at %s (state in %s)", n.PID(), n.URL, n.dir)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s", n.logTail(30))
		}
		n.Stop(t)
		os.RemoveAll(n.dataDir())
	})
	return n
}

// Start starts the server through nats.sh, or finds it already running,
// and returns once it serves JetStream.
func (n *privateNATS) Start(t testing.TB) {
	t.Helper()
	runScriptEnv(t, n.env, "nats.sh")
}

// Stop stops the server through stop.sh: SIGTERM to its pid, then SIGKILL
// if it outlives HERALD_STOP_TIMEOUT.
func (n *privateNATS) Stop(t testing.TB) {
	t.Helper()
	runScriptEnv(t, n.env, "stop.sh", "nats")
}

// PID returns the pid in the server's pidfile, or 0.
func (n *privateNATS) PID() int {
	b, err := os.ReadFile(filepath.Join(n.dir, "run", "nats.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func (n *privateNATS) dataDir() string { return filepath.Join(n.dir, "data", "nats") }

func (n *privateNATS) logTail(lines int) string {
	path := filepath.Join(n.dir, "logs", "nats.log")
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no private nats-server log: %v)", err)
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	all = all[max(0, len(all)-lines):]
	return fmt.Sprintf("----- last %d lines of %s -----\n%s\n-----", len(all), path, strings.Join(all, "\n"))
}

// freePorts returns n distinct loopback TCP ports that were free a moment
// ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// startClusterOnPrivateNATS starts a private nats-server and a cluster
// whose instances use it for their events. The server is up again before
// the cluster's cleanup, which deletes the event stream.
func startClusterOnPrivateNATS(t *testing.T) (*Cluster, *privateNATS) {
	t.Helper()
	srv := serversFromEnv(t)
	n := startPrivateNATS(t)
	srv.nats = n.URL
	c := startClusterOn(t, srv)
	t.Cleanup(func() { n.Start(t) })
	return c, n
}
