package node

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/herald-feed/herald/services/platform/flagenv"
)

// Program is one Herald binary, as Main runs it.
type Program struct {
	// Name names the binary in messages and logs.
	Name string
	// Defaults are the runtime defaults for the binary, such as its
	// listen address.
	Defaults Config
	// Embedded: the binary embeds its own etcd and NATS (the all-in-one),
	// so -etcd and -nats are not flags of it.
	Embedded bool
	// Bind defines the binary's own flags and returns Start, which Main
	// calls once the flags are parsed.
	Bind func(fs *flagenv.Set) Start
}

// Start checks the binary's parsed flags (an error is a usage error, exit
// status 2), then returns its Hooks. It may adjust the runtime's config, as the
// all-in-one does with its embedded servers' addresses.
type Start func(cfg *Config) (Hooks, error)

// Hooks are what a binary adds to the runtime's life. Before is called
// ahead of New, so it can start servers the runtime connects to (it
// returns their cleanup); Attach adds the services to the node and returns
// their cleanup. Either may be nil.
type Hooks struct {
	Before func(ctx context.Context, cfg *Config) (func(), error)
	Attach func(ctx context.Context, n *Node) (func(), error)
}

// Main runs p with args and the environment from getenv, until SIGINT or
// SIGTERM, and returns the process's exit status: 0 after a clean
// shutdown (or a signal during start-up), 2 for a bad flag or variable,
// 1 for any other failure, with a one-line error on stderr.
func Main(p Program, args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flagenv.New(p.Name, getenv, stderr)
	rt := BindFlags(fs, p.Defaults, p.Embedded)
	start := p.Bind(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "%s: %v\n", p.Name, err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q\n", p.Name, fs.Args())
		return 2
	}
	cfg, err := rt.Config(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", p.Name, err)
		return 2
	}
	cfg.Name = p.Name
	hooks, err := start(&cfg)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", p.Name, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg.Log.Info("starting", "name", p.Name, "pid", os.Getpid())
	if err := hooks.run(ctx, cfg); err != nil {
		if ctx.Err() != nil {
			// Interrupted during start-up: whatever failed, failed
			// because of the signal.
			cfg.Log.Info("stopped during start-up", "err", err)
			return 0
		}
		fmt.Fprintf(stderr, "%s: %v\n", p.Name, err)
		return 1
	}
	return 0
}

func (r Hooks) run(ctx context.Context, cfg Config) error {
	if r.Before != nil {
		cleanup, err := r.Before(ctx, &cfg)
		if err != nil {
			return err
		}
		if cleanup != nil {
			defer cleanup()
		}
	}
	n, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	defer n.Close()
	if r.Attach != nil {
		cleanup, err := r.Attach(ctx, n)
		if err != nil {
			return err
		}
		if cleanup != nil {
			// The services' adapters close once the node has drained
			// (Run returned), before the node's own connections, whose
			// Close was deferred first and so runs last.
			defer cleanup()
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return n.Run(ctx)
}

// ServiceProgram is the Program of a split service binary: name, its
// default listen address, and bind, which defines the service's flags and
// returns check (a usage error, exit status 2) and attach (which adds the
// service to the node and returns what closes it).
func ServiceProgram(name, addr string, bind func(fs *flagenv.Set) (check func() error, attach func(ctx context.Context, n *Node) (func(), error))) Program {
	return Program{
		Name:     name,
		Defaults: Config{ListenAddr: addr},
		Bind: func(fs *flagenv.Set) Start {
			check, attach := bind(fs)
			return func(*Config) (Hooks, error) {
				if err := check(); err != nil {
					return Hooks{}, err
				}
				return Hooks{Attach: attach}, nil
			}
		},
	}
}

// Attach adapts an app constructor to ServiceProgram's attach: the app is
// added to the node, and its Close is what the node's lifecycle calls.
func Attach[A interface{ Close() }](newApp func(ctx context.Context, n *Node) (A, error)) func(context.Context, *Node) (func(), error) {
	return func(ctx context.Context, n *Node) (func(), error) {
		a, err := newApp(ctx, n)
		if err != nil {
			return nil, err
		}
		return a.Close, nil
	}
}
