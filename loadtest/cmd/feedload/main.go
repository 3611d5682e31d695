// Command feedload is Herald's load generator. It builds a seeded,
// heavy-tailed follow graph through the API, runs an open-loop mix of posts
// and home-timeline reads, measures how long posts take to become visible
// to followers, and writes a JSON report, a Markdown summary and a chart.
//
//	feedload run --addr 127.0.0.1:7070 --duration 30s
//	feedload run --etcd 127.0.0.1:2389 --namespace herald
//	feedload compare --herald bin/herald --redis 127.0.0.1:6390 --cassandra 127.0.0.1:9043
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc/status"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		// A second Ctrl-C ends the process at once.
		stop()
		fmt.Fprintln(os.Stderr, "\nfeedload: interrupted: finishing requests in flight and writing the report (Ctrl-C again to quit now)")
	}()
	err := newRoot(os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil {
		if st, ok := status.FromError(err); ok && !errors.Is(err, context.Canceled) {
			fmt.Fprintf(os.Stderr, "feedload: %s: %s\n", st.Code(), st.Message())
		} else {
			fmt.Fprintf(os.Stderr, "feedload: %v\n", err)
		}
		os.Exit(1)
	}
}
