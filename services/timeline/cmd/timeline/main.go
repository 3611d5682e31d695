// Command timeline runs Herald's timeline service:
// feed.v1.TimelineService, on Cassandra, Redis, etcd and NATS.
package main

import (
	"os"

	"github.com/herald-feed/herald/services/platform/node"
	"github.com/herald-feed/herald/services/timeline/app"
)

func main() { os.Exit(node.Main(app.Program(), os.Args[1:], os.Getenv, os.Stderr)) }
