// Command post runs Herald's post service: feed.v1.PostService plus the
// outbox relay, on Cassandra, Redis, etcd and NATS.
package main

import (
	"os"

	"github.com/herald-feed/herald/services/platform/node"
	"github.com/herald-feed/herald/services/post/app"
)

func main() { os.Exit(node.Main(app.Program(), os.Args[1:], os.Getenv, os.Stderr)) }
