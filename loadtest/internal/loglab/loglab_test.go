package loglab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/herald-feed/herald/services/platform/node"
	"github.com/herald-feed/herald/services/platform/testenv"
)

// consumerArg makes the test binary the lab's consumer process: the
// redelivery test starts it as `<test binary> loglab-consumer --config
// JSON`, as lablog starts `lablog consumer --config JSON`.
const consumerArg = "loglab-consumer"

func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[1] == consumerArg && os.Args[2] == "--config" {
		var p ConsumerProcess
		if err := json.Unmarshal([]byte(os.Args[3]), &p); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if err := RunConsumer(context.Background(), p, os.Stdout, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// realServers is the lab's config on the test NATS and Kafka, sized small.
func realServers(t *testing.T, sections ...string) Config {
	t.Helper()
	nu, nf := testenv.NATSLogin(t)
	ku, kf := testenv.KafkaLogin(t)
	cfg := DefaultConfig()
	cfg.Servers = Servers{
		JetStream: []string{testenv.NATS(t)}, NATSLogin: node.Login{User: nu, PasswordFile: nf},
		Kafka: testenv.Kafka(t), KafkaLogin: node.Login{User: ku, PasswordFile: kf},
	}
	cfg.Sections = sections
	cfg.Namespace = fmt.Sprintf("lablogtest%d", time.Now().UnixNano()%1_000_000_000)
	cfg.WorkDir = t.TempDir()
	cfg.InFlight, cfg.ProduceEvents, cfg.ProduceDuration, cfg.Warmup = 4, 100, 5*time.Second, 0
	cfg.Authors, cfg.PerAuthor, cfg.HandlerWork = 3, 10, 0
	return cfg
}

// TestProduceAndOrderOnRealServers runs the producer and ordering sections
// on the test servers: the cells with a server publish every event, the
// others say why they did not run, the one-worker control sees every
// author in order, and the run leaves no topic behind.
func TestProduceAndOrderOnRealServers(t *testing.T) {
	cfg := realServers(t, SectionProduce, SectionOrdering)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	r, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	ran := 0
	for _, p := range r.Produce {
		switch {
		case strings.HasPrefix(p.Setting, "R1, default") || strings.HasPrefix(p.Setting, "1 broker"):
			ran++
			if p.Error != "" || p.Events != 100 || p.Errors != 0 || p.PerSecond <= 0 || p.P99Ms < p.P50Ms {
				t.Errorf("%s %s: %+v; want 100 events published without errors", p.Bus, p.Setting, p)
			}
		case p.Skipped == "":
			t.Errorf("%s %s ran without a server: %+v", p.Bus, p.Setting, p)
		}
	}
	if ran != 3 {
		t.Errorf("%d producer cells ran; want 3 (JetStream R1, Kafka acks=1 and acks=all on one broker)", ran)
	}
	if len(r.Ordering) != 2*len(orderShapes) {
		t.Fatalf("%d ordering runs; want %d", len(r.Ordering), 2*len(orderShapes))
	}
	for _, o := range r.Ordering {
		if o.Error != "" || o.Distinct != 30 {
			t.Errorf("ordering %s %d×%d: %+v; want all 30 events handled", o.Bus, o.Instances, o.Workers, o)
		}
		if o.Instances == 1 && o.Workers == 1 && o.Inversions != 0 {
			t.Errorf("ordering %s control: %d inversions; one worker must see each author in order", o.Bus, o.Inversions)
		}
	}

	kcfg, err := target{bus: Kafka, urls: cfg.Servers.Kafka, login: cfg.Servers.KafkaLogin}.kafkaConfig(cfg.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kafkaClient(kcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topics, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range topics.Names() {
		if strings.HasPrefix(name, cfg.Namespace) {
			t.Errorf("topic %s is left behind", name)
		}
	}
}

// TestRedeliveryOnRealServers kills a consumer process mid-stream on each
// bus and checks that the survivor handles every event.
func TestRedeliveryOnRealServers(t *testing.T) {
	if testing.Short() {
		t.Skip("kills consumer processes and waits out a Kafka session timeout")
	}
	cfg := realServers(t, SectionRedelivery)
	cfg.Consumer = []string{os.Args[0], consumerArg}
	cfg.InFlight = 16
	cfg.RedeliveryEvents, cfg.RedeliveryWork, cfg.RedeliveryWorkers = 1000, 20*time.Millisecond, 2
	cfg.AckWait, cfg.SessionTimeout = time.Second, 6*time.Second
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	r, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(r.Redelivery) != 2 {
		t.Fatalf("%d redelivery runs; want 2", len(r.Redelivery))
	}
	for _, d := range r.Redelivery {
		if d.Error != "" || d.Lost != 0 || d.DoneBeforeKill == 0 {
			t.Errorf("redelivery on %s: %+v; want no error, nothing lost, a kill after some events", d.Bus, d)
		}
	}
}
