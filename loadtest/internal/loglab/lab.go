package loglab

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/herald-feed/herald/loadtest/internal/labkit"
)

// lab is one run's state.
type lab struct {
	cfg Config
	log *slog.Logger
}

// Run runs cfg's sections one after another and returns the report. It
// deletes the streams, topics and consumer groups it created on the way.
// An interrupted run (ctx ended) still returns the report so far, with
// ctx's error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, err
	}
	l := &lab{cfg: cfg, log: cfg.Log}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	r := &Report{RunInfo: labkit.Start(), Settings: settingsOf(cfg), Servers: serversOf(cfg.Servers)}
	if cfg.has(SectionProduce) {
		r.Produce = l.produce(ctx)
	}
	if cfg.has(SectionOrdering) {
		r.Ordering = l.ordering(ctx)
	}
	if cfg.has(SectionRedelivery) {
		r.Redelivery = l.redelivery(ctx)
	}
	if cfg.has(SectionRebalance) {
		r.Rebalance = l.rebalance(ctx)
	}
	if cfg.has(SectionPipeline) {
		r.Pipeline = l.pipeline(ctx)
	}
	r.Finish()
	r.Notes = notes(cfg, r)
	return r, ctx.Err()
}

func serversOf(s Servers) []string {
	var out []string
	add := func(what string, addrs []string, login string) {
		if len(addrs) > 0 {
			out = append(out, fmt.Sprintf("%s: %s%s", what, strings.Join(addrs, ", "), login))
		}
	}
	login := func(user string) string {
		if user == "" {
			return ""
		}
		return " (login " + user + ")"
	}
	add("JetStream R1, default sync (the running nats-server)", s.JetStream, login(s.NATSLogin.User))
	add("JetStream R1, sync_interval: always", s.JetStreamSync, "")
	add("JetStream R3 cluster, default sync", s.JetStreamR3, "")
	add("JetStream R3 cluster, sync_interval: always", s.JetStreamR3Sync, "")
	add("Kafka, one broker (the running one)", s.Kafka, login(s.KafkaLogin.User))
	add("Kafka, three-broker KRaft cluster", s.Kafka3, "")
	return out
}

// notes are the caveats a reader of the table needs.
func notes(cfg Config, r *Report) []string {
	n := []string{
		"Producer cells publish event.PostCreated through the adapters' own Publish (protobuf from eventcodec, JetStream's Nats-Msg-Id dedupe header, Kafka's author key), " +
			"each of the in-flight goroutines waiting for its ack before the next; the acks=1 cells use a raw franz-go producer with the adapter's record layout, " +
			"since the adapter is idempotent and so acks=all only.",
		"On one Kafka broker acks=all waits for the same one replica as acks=1: the two rows differ in the producer (idempotence), not in durability.",
		"No Kafka cell fsyncs before its ack (log.flush.interval.messages is unset): Kafka's durability is replication; JetStream's sync always fsyncs every write.",
		fmt.Sprintf("Consumer sections run on the running single nats-server and Kafka broker, each handler sleeping %s (the redelivery section: %s) to stand in for the fan-out's write.", cfg.HandlerWork, cfg.RedeliveryWork),
		"The machine runs everything on its cores, shared with other work: read the figures side by side, not as absolutes.",
	}
	for _, p := range r.Produce {
		if p.Bus == Kafka && strings.HasPrefix(p.Setting, "3 brokers") && p.Skipped != "" {
			n = append(n, "The three-broker Kafka cells did not run: "+p.Skipped+".")
			break
		}
	}
	for _, d := range r.Redelivery {
		if d.Skipped == "" && d.Error == "" && d.Lost != 0 {
			n = append(n, fmt.Sprintf("LOST EVENTS on %s: %d of %d were handled by neither consumer.", d.Bus, d.Lost, d.Events))
		}
	}
	return n
}
