package clustertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-feed/herald/services/herald/modelcheck"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// TestDrillEventLogPowerLoss cuts the power of the whole NATS cluster (the
// three nodes SIGKILLed at once, and every file rewound to what its last
// fsync made durable: powerloss_test.go) while the fan-out lags behind:
// the posts are acknowledged and their outbox markers cleared, but no
// fan-out instance has consumed their events yet. Herald's guarantee is
// that an acknowledged publish is on disk on a majority: the HA cluster's
// nodes run with sync_interval always (nats-cluster.sh), so after the cut
// every post still reaches every follower. The control runs the same with
// JetStream's default sync (every two minutes): the cut loses the events,
// and with them the posts, which no outbox marker recalls.
func TestDrillEventLogPowerLoss(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("strace, which the power cut needs: %v", err)
		}
		t.Skipf("strace, which the power cut needs: %v", err)
	}
	t.Run("sync=always", func(t *testing.T) {
		powerLossDrill(t, "always", "event log power loss (all three NATS nodes, sync always)")
	})
	t.Run("sync=default", func(t *testing.T) {
		powerLossDrill(t, "default", "event log power loss, JetStream's default sync (the control: posts lost)")
	})
}

func powerLossDrill(t *testing.T, sync, name string) {
	const posts = 24
	nc := startPrivateNATSCluster(t, sync)
	srv := serversFromEnv(t)
	srv.nats, srv.natsReplicas = nc.URLs, 3
	c := startClusterOn(t, srv)
	d := newDrill(t, c)
	d.report(name, "NATS ×3 (private), others single")
	authors := d.smallGraph("pc")
	c.waitIdle(t, 30*time.Second)

	// The fan-out falls behind: its instances stop, so the posts' events
	// wait in the stream.
	for _, in := range c.Instances["fanout"] {
		in.Stop()
	}
	tracker := startSyncTracker(t, nc.PIDs(t), nc.StoreDirs())
	for i := range posts {
		if _, err := d.post(authors[i%len(authors)], fmt.Sprintf("pc-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	cut := time.Now()
	report := tracker.PowerCut(t)
	t.Logf("power cut: %v", report)
	nc.Start(t)
	// The fan-out instances start once JetStream answers again, and, where
	// the stream survived, once it has a leader and current replicas.
	js, err := jetstream.New(nc.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	stream := strings.ToUpper(c.NS) + "_EVENTS"
	waitfor.Until(t, 2*waitfor.Deadline, "JetStream, and the event stream if it survived, after the restart", func() (bool, any) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := js.AccountInfo(ctx); err != nil {
			return false, err
		}
		if _, err := js.Stream(ctx, stream); errors.Is(err, jetstream.ErrStreamNotFound) {
			return true, nil
		}
		return streamReady(ctx, js, stream)
	})
	for _, in := range c.Instances["fanout"] {
		if err := in.Start(); err != nil {
			t.Fatal(err)
		}
	}
	d.note("%d posts acknowledged with the fan-out stopped, then all three NATS nodes power-cut: %d bytes unsynced thrown away (%d files truncated)",
		posts, report.LostBytes, len(report.Truncated))

	if sync == "always" {
		d.check(2 * waitfor.Deadline)
		d.recovered(time.Since(cut), "from the power cut to every timeline matching the model (restart of the nodes and the fan-out included)")
		c.CheckAlive(t)
		return
	}
	// The control: the same check, whose mismatches are the finding here,
	// not failures.
	rec := &recordingTB{TB: t}
	d.mu.Lock()
	users := append([]string(nil), d.users...)
	d.mu.Unlock()
	tally := modelcheck.CheckTally(rec, d.api, d.model, users, 20*time.Second)
	d.row.Checked = true
	d.row.Acked, d.row.Lost, d.row.Duplicated = len(d.keys), tally.Lost, tally.Extra+tally.Duplicated
	d.row.DuplicateIDs = len(d.duplicateIDs())
	d.note("the model check found %d of the %d posts lost (%d mismatches), as the control should", tally.Lost, posts, len(rec.errs))
	if tally.Lost == 0 {
		t.Errorf("with JetStream's default sync the power cut lost no post; the control should lose the unsynced events (cut: %v)", report)
	}
	c.CheckAlive(t)
}

// recordingTB is a testing.TB whose Error and Errorf are recorded instead
// of failing the test: for a check whose mismatches are what a control
// expects to find.
type recordingTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Error(args ...any) { r.record(fmt.Sprint(args...)) }

func (r *recordingTB) Errorf(format string, args ...any) { r.record(fmt.Sprintf(format, args...)) }

func (r *recordingTB) record(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, s)
	if len(r.errs) <= 3 {
		r.TB.Logf("(control, expected) %s", strings.SplitN(s, "\n", 2)[0])
	}
}
