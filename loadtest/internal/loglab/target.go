package loglab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"golang.org/x/sync/errgroup"

	"github.com/herald-feed/herald/services/platform/bus"
	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/kafkabus"
	"github.com/herald-feed/herald/services/platform/node"
)

// The two buses, as the table names them.
const (
	JetStream = "JetStream"
	Kafka     = "Kafka"
)

// target is one set of log servers and how the lab opens Herald's adapter
// on it.
type target struct {
	bus      string // JetStream or Kafka
	urls     []string
	login    node.Login
	replicas int
	// sessionTimeout is the Kafka consumers' (kafkabus.Config); 0 for the
	// adapter's default.
	sessionTimeout time.Duration
}

// startupWait bounds how long open retries while a cluster the lab's
// script has just started elects its leaders and registers its brokers.
const startupWait = 60 * time.Second

// open returns the adapter on t under namespace ns, on a connection (or
// client) of its own, and the func that closes it. The adapter creates the
// namespace's stream or topics if they are missing.
func (t target) open(ctx context.Context, ns string, log *slog.Logger) (event.Log, func(), error) {
	switch t.bus {
	case JetStream:
		b, nc, err := t.openJetStream(ctx, ns, log)
		if err != nil {
			return nil, nil, err
		}
		return b, nc.Close, nil
	case Kafka:
		b, err := t.openKafka(ctx, ns, log)
		if err != nil {
			return nil, nil, err
		}
		return b, b.Close, nil
	}
	return nil, nil, fmt.Errorf("unknown bus %q", t.bus)
}

func (t target) openJetStream(ctx context.Context, ns string, log *slog.Logger) (*bus.Bus, *nats.Conn, error) {
	opts := []nats.Option{nats.Name("herald-lablog"), nats.MaxReconnects(-1)}
	user, password, err := t.login.Read("nats")
	if err != nil {
		return nil, nil, err
	}
	if user != "" {
		opts = append(opts, nats.UserInfo(user, password))
	}
	addr := strings.Join(t.urls, ",")
	nc, err := nats.Connect(addr, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("nats %s: %w", addr, err)
	}
	var b *bus.Bus
	err = retry(ctx, startupWait, func() error {
		b, err = bus.New(ctx, nc, bus.Config{Namespace: ns, Replicas: t.replicas}, log)
		return err
	})
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("nats %s: %w", addr, err)
	}
	return b, nc, nil
}

func (t target) kafkaConfig(ns string) (kafkabus.Config, error) {
	user, password, err := t.login.Read("kafka")
	if err != nil {
		return kafkabus.Config{}, err
	}
	return kafkabus.Config{
		Brokers: t.urls, User: user, Password: password, Namespace: ns,
		Replicas: int16(t.replicas), SessionTimeout: t.sessionTimeout, ClientID: "herald-lablog",
	}, nil
}

func (t target) openKafka(ctx context.Context, ns string, log *slog.Logger) (*kafkabus.Bus, error) {
	cfg, err := t.kafkaConfig(ns)
	if err != nil {
		return nil, err
	}
	if t.replicas > 1 {
		if err := waitBrokers(ctx, cfg, t.replicas); err != nil {
			return nil, err
		}
	}
	var b *kafkabus.Bus
	err = retry(ctx, startupWait, func() error {
		b, err = kafkabus.New(ctx, cfg, log)
		return err
	})
	return b, err
}

// drop deletes what namespace ns holds on t: the stream and its dead
// letters (with their consumers), or the topics and the consumer groups
// of durables.
func (t target) drop(ctx context.Context, ns string, log *slog.Logger, durables ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch t.bus {
	case JetStream:
		b, nc, err := t.openJetStream(ctx, ns, log)
		if err != nil {
			return err
		}
		defer nc.Close()
		var errs []error
		for _, s := range []string{b.Stream(), b.Stream() + "_DEAD"} {
			if err := b.JetStream().DeleteStream(ctx, s); err != nil {
				errs = append(errs, fmt.Errorf("delete stream %s: %w", s, err))
			}
		}
		return errors.Join(errs...)
	case Kafka:
		b, err := t.openKafka(ctx, ns, log)
		if err != nil {
			return err
		}
		defer b.Close()
		return b.Delete(ctx, durables...)
	}
	return fmt.Errorf("unknown bus %q", t.bus)
}

// awaitWrites waits until lg takes a publish for every author the lab's
// events use (authorOf), retrying each for up to startupWait: on Kafka a
// topic just created may have partitions without a leader yet, and a
// publish to one times out. The probes are post.deleted events, which the
// lab's consumers, of post.created only, never see.
func awaitWrites(ctx context.Context, lg event.Publisher) error {
	g, gctx := errgroup.WithContext(ctx)
	for i := range uint64(50) {
		g.Go(func() error {
			return retry(gctx, startupWait, func() error {
				return lg.Publish(gctx, event.PostDeleted{Post: feed.PostID(1<<62 + i), Author: authorOf(i)})
			})
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("the log takes no publish: %w", err)
	}
	return nil
}

// kafkaClient returns a kgo client for cfg's brokers and login, with opts.
func kafkaClient(cfg kafkabus.Config, opts ...kgo.Opt) (*kgo.Client, error) {
	base := []kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.ClientID(cfg.ClientID), kgo.DialTimeout(5 * time.Second)}
	if cfg.User != "" {
		base = append(base, kgo.SASL(plain.Auth{User: cfg.User, Pass: cfg.Password}.AsMechanism()))
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka %v: %w", cfg.Brokers, err)
	}
	return cl, nil
}

// waitBrokers waits until the cluster at cfg's brokers reports n brokers
// and a controller: a topic with n replicas cannot be created before.
func waitBrokers(ctx context.Context, cfg kafkabus.Config, n int) error {
	cl, err := kafkaClient(cfg)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	return retry(ctx, startupWait, func() error {
		m, err := adm.BrokerMetadata(ctx)
		switch {
		case err != nil:
			return err
		case len(m.Brokers) < n || m.Controller < 0:
			return fmt.Errorf("%d of %d brokers registered (controller %d)", len(m.Brokers), n, m.Controller)
		}
		return nil
	})
}

// retry calls fn until it succeeds, ctx ends or d has passed, half a
// second apart, and returns its last error.
func retry(ctx context.Context, d time.Duration, fn func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// openFresh opens t's log in namespace ns for a section, and waits until
// it takes writes. done closes it and drops what the section left there:
// its streams or topics, and durable's consumer.
func (l *lab) openFresh(ctx context.Context, t target, ns, section, durable string) (lg event.Log, done func(), err error) {
	pub, closePub, err := t.open(ctx, ns, l.log)
	if err != nil {
		return nil, nil, err
	}
	done = func() {
		closePub()
		if err := t.drop(context.WithoutCancel(ctx), ns, l.log, durable); err != nil {
			l.cfg.logf("%s: cleaning up %s: %v", section, ns, err)
		}
	}
	if err := awaitWrites(ctx, pub); err != nil {
		done()
		return nil, nil, err
	}
	return pub, done, nil
}
