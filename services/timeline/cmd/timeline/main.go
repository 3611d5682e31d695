// Command timeline runs Herald's timeline service: feed.v1.TimelineService.
package main

import (
	"context"
	"os"

	"github.com/herald-feed/herald/services/platform/node"
	"github.com/herald-feed/herald/services/timeline/app"
)

func main() {
	node.Main(node.Config{Name: "timeline", ListenAddr: "localhost:7074"}, os.Args[1:], os.Getenv, nil,
		func(_ context.Context, n *node.Node) error { return app.Register(n, app.Config{}) })
}
