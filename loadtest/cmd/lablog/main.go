// Command lablog is Herald's event-log lab: it runs the same post stream
// through NATS JetStream and Kafka, through Herald's own adapters, and
// measures producer throughput and latency under each durability setting,
// per-key order at the handlers, redelivery after a consumer process is
// killed, the pause when a consumer instance joins or leaves, and
// post→visible lag through the whole all-in-one on each bus. `make
// lab-log` (deploy/local/lab-log.sh) starts the lab's extra servers, runs
// it and stops them; docs/lab/log.md explains the results.
//
//	lablog run --nats nats://127.0.0.1:4233 --kafka 127.0.0.1:9092 --herald bin/herald
//
// The consumer subcommand is the lab's own: the redelivery section
// re-executes the binary as two consumer processes and kills one.
package main

import (
	"os"

	"github.com/herald-feed/herald/loadtest/internal/labkit"
)

func main() { labkit.Main("lablog", newRoot(os.Stdout, os.Stderr)) }
