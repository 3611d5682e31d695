package node

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Main is the whole main function of a Herald server binary: it parses
// args (with HERALD_* defaults from getenv), builds the Node, lets register
// add the services, runs until SIGINT or SIGTERM, and exits non-zero with a
// one-line error on failure. bind, if not nil, defines extra flags.
func Main(cfg Config, args []string, getenv func(string) string, bind func(*flag.FlagSet), register func(context.Context, *Node) error) {
	if err := runMain(cfg, args, getenv, bind, register); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", cfg.Name, err)
		os.Exit(1)
	}
}

func runMain(cfg Config, args []string, getenv func(string) string, bind func(*flag.FlagSet), register func(context.Context, *Node) error) error {
	fs := flag.NewFlagSet(cfg.Name, flag.ExitOnError)
	f := BindFlags(fs, &cfg, getenv)
	if bind != nil {
		bind(fs)
	}
	fs.Parse(args)
	if err := f.Finish(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	defer n.Close()
	if err := register(ctx, n); err != nil {
		return err
	}
	return n.Run(ctx)
}
