// Command post runs Herald's post service: feed.v1.PostService plus the
// outbox relay.
package main

import (
	"context"
	"flag"
	"os"

	"github.com/herald-feed/herald/services/platform/node"
	"github.com/herald-feed/herald/services/post/app"
)

func main() {
	var cfg app.Config
	node.Main(node.Config{Name: "post", ListenAddr: "localhost:7071"}, os.Args[1:], os.Getenv,
		func(fs *flag.FlagSet) {
			fs.DurationVar(&cfg.RelayTimeout, "relay-timeout", 5e9, "republish posts left unpublished this long")
		},
		func(ctx context.Context, n *node.Node) error { return app.Register(ctx, n, cfg) })
}
