package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/herald-feed/herald/loadtest/internal/labkit"

	"github.com/spf13/cobra"

	"github.com/herald-feed/herald/loadtest/internal/loglab"
)

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	return labkit.Root("lablog", "Herald's event-log lab: JetStream and Kafka, measured through Herald's adapters", stdout, stderr, runCmd(stdout, stderr), consumerCmd(stdout, stderr))
}

func runCmd(stdout, stderr io.Writer) *cobra.Command {
	cfg := loglab.DefaultConfig()
	var (
		natsURL, natsSync, natsR3, natsR3Sync string
		kafka, kafka3                         string
		out                                   string
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the lab against the servers given, on loopback, and write the report",
		Long: `run measures, on the servers given, one section after another:

  produce     producer throughput and publish latency p50/p99 (--in-flight publishes at
              once, each cell bounded by --events and --duration): JetStream R1 (--nats,
              default sync; --nats-sync, sync_interval: always) and R3 (--nats-r3,
              --nats-r3-sync), Kafka acks=1 and acks=all on one broker (--kafka) and three
              (--kafka3)
  ordering    per-author order inversions at the handlers of a durable consumer, 1 instance
              × 1 worker (the control) and 2 instances × 4 workers, on --nats and --kafka
  redelivery  two consumer processes under one durable name, one killed with SIGKILL
              mid-stream: events handled twice, the survivor's wait, events lost
  rebalance   the longest gap in handling while a second instance joins and leaves
  pipeline    post→visible lag through the all-in-one (--herald) on each bus

A cell whose server is not given is left out. Every stream, topic and consumer
group the run creates is deleted at its end. The report goes to --out as
lab-log.json and lab-log.md; the last line printed is "lab-log: json=<path>".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s := &cfg.Servers
			s.JetStream, s.JetStreamSync, s.JetStreamR3, s.JetStreamR3Sync = splitList(natsURL), splitList(natsSync), splitList(natsR3), splitList(natsR3Sync)
			s.Kafka, s.Kafka3 = splitList(kafka), splitList(kafka3)
			for _, group := range [][]string{s.JetStream, s.JetStreamSync, s.JetStreamR3, s.JetStreamR3Sync, s.Kafka, s.Kafka3} {
				for _, a := range group {
					if !isLoopback(a) {
						return fmt.Errorf("server %s is not on loopback: the lab loads and kills what it runs against, so it only runs on this machine's own servers", a)
					}
				}
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("finding the lab's own binary for its consumer processes: %w", err)
			}
			cfg.Consumer = []string{exe, "consumer"}
			if cfg.Namespace == "" {
				cfg.Namespace = "lablog" + strconv.FormatInt(time.Now().Unix(), 36)
			}
			cfg.WorkDir = filepath.Join(out, "logs")
			if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
				return err
			}
			logf, err := os.Create(filepath.Join(cfg.WorkDir, "lablog.log"))
			if err != nil {
				return err
			}
			defer logf.Close()
			cfg.Log = slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelInfo}))
			cfg.Progress = stderr
			r, runErr := loglab.Run(cmd.Context(), cfg)
			if r == nil {
				return runErr
			}
			return labkit.Close(stdout, "lab-log", out, r, runErr)
		},
	}
	d := loglab.DefaultConfig()
	fs := cmd.Flags()
	fs.StringVar(&natsURL, "nats", os.Getenv("HERALD_NATS_URL"), "the running nats-server (R1, default sync), with --nats-user's login (HERALD_NATS_URL)")
	fs.StringVar(&cfg.Servers.NATSLogin.User, "nats-user", os.Getenv("HERALD_NATS_USER"), "user to log in to --nats as (HERALD_NATS_USER)")
	fs.StringVar(&cfg.Servers.NATSLogin.PasswordFile, "nats-password-file", os.Getenv("HERALD_NATS_PASSWORD_FILE"), "file holding --nats-user's password (HERALD_NATS_PASSWORD_FILE)")
	fs.StringVar(&natsSync, "nats-sync", "", "a nats-server with sync_interval: always, no login")
	fs.StringVar(&natsR3, "nats-r3", "", "the three nodes of a NATS cluster with the default sync, comma-separated, no login")
	fs.StringVar(&natsR3Sync, "nats-r3-sync", "", "the three nodes of a NATS cluster with sync_interval: always, comma-separated, no login")
	fs.StringVar(&kafka, "kafka", os.Getenv("HERALD_KAFKA_BROKERS"), "the running Kafka broker, with --kafka-user's login (HERALD_KAFKA_BROKERS)")
	fs.StringVar(&cfg.Servers.KafkaLogin.User, "kafka-user", os.Getenv("HERALD_KAFKA_USER"), "user to log in to --kafka as, SASL/PLAIN (HERALD_KAFKA_USER)")
	fs.StringVar(&cfg.Servers.KafkaLogin.PasswordFile, "kafka-password-file", os.Getenv("HERALD_KAFKA_PASSWORD_FILE"), "file holding --kafka-user's password (HERALD_KAFKA_PASSWORD_FILE)")
	fs.StringVar(&kafka3, "kafka3", "", "the three brokers of a Kafka cluster, comma-separated, no login")
	fs.StringVar(&cfg.Herald, "herald", "bin/herald", "the all-in-one binary the pipeline section starts")
	fs.StringVar(&out, "out", "loadtest/out/lab-log", "directory for lab-log.{json,md}, and logs/ with the processes' logs")
	fs.StringVar(&cfg.Namespace, "namespace", "", "prefix of the run's streams, topics and groups, [a-z0-9] (default lablog<time>)")
	fs.StringSliceVar(&cfg.Sections, "sections", d.Sections, "what to measure: "+strings.Join(loglab.AllSections, ","))
	fs.IntVar(&cfg.InFlight, "in-flight", d.InFlight, "produce: publishes in flight, one goroutine each")
	fs.IntVar(&cfg.ProduceEvents, "events", d.ProduceEvents, "produce: at most this many events per cell")
	fs.DurationVar(&cfg.ProduceDuration, "duration", d.ProduceDuration, "produce: at most this long per cell")
	fs.DurationVar(&cfg.Warmup, "warmup", d.Warmup, "produce: how long each cell publishes, unmeasured, before its measurement")
	fs.DurationVar(&cfg.ColdWarmup, "cold-warmup", d.ColdWarmup, "produce: the warm-up of the first cell on --kafka3, whose JVMs start cold")
	fs.IntVar(&cfg.Authors, "authors", d.Authors, "ordering: authors")
	fs.IntVar(&cfg.PerAuthor, "per-author", d.PerAuthor, "ordering: events per author, in order")
	fs.DurationVar(&cfg.HandlerWork, "handler-work", d.HandlerWork, "ordering and rebalance: each handler's sleep")
	fs.IntVar(&cfg.RedeliveryEvents, "redelivery-events", d.RedeliveryEvents, "redelivery: the backlog the two consumer processes share")
	fs.DurationVar(&cfg.RedeliveryWork, "redelivery-work", d.RedeliveryWork, "redelivery: each handler's sleep")
	fs.IntVar(&cfg.RedeliveryWorkers, "redelivery-workers", d.RedeliveryWorkers, "redelivery: workers per consumer process")
	fs.DurationVar(&cfg.AckWait, "ack-wait", d.AckWait, "redelivery: the JetStream consumer's AckWait")
	fs.DurationVar(&cfg.SessionTimeout, "session-timeout", d.SessionTimeout, "consumer sections: the Kafka consumers' session timeout (kafkabus.Config.SessionTimeout)")
	fs.Float64Var(&cfg.RebalanceRate, "rebalance-rate", d.RebalanceRate, "rebalance: steady publishes per second")
	fs.DurationVar(&cfg.RebalancePhase, "rebalance-phase", d.RebalancePhase, "rebalance: length of each phase (one instance, two, one)")
	fs.IntVar(&cfg.PipelineUsers, "pipeline-users", d.PipelineUsers, "pipeline: users in feedload's graph")
	fs.Float64Var(&cfg.PipelinePostRate, "pipeline-post-rate", d.PipelinePostRate, "pipeline: CreatePost calls per second")
	fs.Float64Var(&cfg.PipelineReadRate, "pipeline-read-rate", d.PipelineReadRate, "pipeline: GetHomeTimeline calls per second besides the lag observers'")
	fs.DurationVar(&cfg.PipelineDuration, "pipeline-duration", d.PipelineDuration, "pipeline: how long to post")
	return cmd
}

// consumerCmd is the lab's consumer process (loglab.RunConsumer); the
// redelivery section starts it itself.
func consumerCmd(stdout, stderr io.Writer) *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:    "consumer --config JSON",
		Short:  "Consume a durable consumer for the lab, reporting each handler's start and end (started by lablog run)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var p loglab.ConsumerProcess
			if err := json.Unmarshal([]byte(config), &p); err != nil {
				return fmt.Errorf("--config: %w", err)
			}
			log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			return loglab.RunConsumer(cmd.Context(), p, stdout, log)
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "the process's loglab.ConsumerProcess as JSON")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// isLoopback reports whether a server address (host:port, or a nats://
// URL) names this machine by a loopback address or "localhost".
func isLoopback(addr string) bool {
	host := addr
	if strings.Contains(addr, "://") {
		u, err := url.Parse(addr)
		if err != nil {
			return false
		}
		host = u.Hostname()
	} else if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
