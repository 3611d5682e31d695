// Package loglab is Herald's event-log lab: the same post stream run
// through NATS JetStream (package bus) and Kafka (package kafkabus) on one
// machine, measured for the system-design questions about the two logs
// (docs/lab/log.md):
//
//   - producer throughput and publish latency under each durability
//     setting: JetStream R1 and R3, each with the default sync and with an
//     fsync on every write; Kafka acks=1 and acks=all on one broker and on
//     three;
//   - per-key order as the handlers of a durable consumer see it, with
//     several workers and instances, and with one worker as the control;
//   - redelivery after a consumer process is killed with SIGKILL: how many
//     events are handled twice, how long the survivor waits for the dead
//     one's events (JetStream's AckWait, Kafka's session timeout), and that
//     none is lost;
//   - the pause in handling when a second consumer instance joins the
//     group and leaves it (Kafka's rebalance; JetStream has none);
//   - post→visible lag through the whole all-in-one on each bus.
//
// Every event goes through the adapters' own Publish and Consume, so the
// figures are Herald's, encoding included; the one exception is the
// acks=1 producer, which the Kafka adapter does not offer (it is
// idempotent, acks=all), and which the lab builds from kgo with the
// adapter's record layout. Run runs the sections; a Report holds the
// results and renders them as one table, in text, Markdown and JSON.
//
// The consumer that the redelivery section kills is the lab binary itself,
// re-executed with the subcommand that runs RunConsumer.
package loglab
