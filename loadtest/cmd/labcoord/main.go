// Command labcoord is Herald's coordination lab: it runs the ZooKeeper and
// etcd lock and election recipes against a three-node ZooKeeper ensemble
// and a three-member etcd cluster, and measures lock hand-off latency,
// watch events per hand-off (the herd effect), failover after a holder is
// killed, write and read throughput, and a fencing drill with a paused
// holder. `make lab-coordination` (deploy/local/lab-coordination.sh)
// starts the servers, runs it and stops them; docs/lab/coordination.md
// explains the results.
//
//	labcoord run --zk 127.0.0.1:2282,127.0.0.1:2382,127.0.0.1:2482 --etcd 127.0.0.1:2479,127.0.0.1:2579,127.0.0.1:2679
//
// The holder subcommand is the lab's own: it re-executes itself as a lock
// holder or leader in a separate process, which it can then kill or pause.
package main

import (
	"os"

	"github.com/herald-feed/herald/loadtest/internal/labkit"
)

func main() { labkit.Main("labcoord", newRoot(os.Stdout, os.Stderr)) }
