package clustertest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/herald-feed/herald/services/herald/modelcheck"
	"github.com/herald-feed/herald/services/herald/systemtest"
	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/testenv"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// The cluster with its event log on Kafka (-bus kafka; make cluster
// BUS=kafka): the behaviour suite, the model check, and a republished
// event, which Kafka delivers twice where JetStream's dedupe window drops
// the copy.

// TestClusterBehaviourKafka is TestClusterBehaviour on Kafka.
func TestClusterBehaviourKafka(t *testing.T) {
	c := startClusterOn(t, serversOnKafka(t))
	systemtest.Run(t, c.Client(t))
	t.Run("Auth", func(t *testing.T) { systemtest.RunAuth(t, c.Client(t)) })
	c.CheckAlive(t)
}

// TestClusterModelCheckKafka is TestClusterModelCheck on Kafka: chunks of
// 4 followers spread a post over both fan-out instances, which share the
// topics' partitions.
func TestClusterModelCheckKafka(t *testing.T) {
	t.Setenv("HERALD_FANOUT_CHUNK_SIZE", "4")
	c := startClusterOn(t, serversOnKafka(t))
	modelcheck.Run(t, c.Client(t), modelcheck.Config{Seed: 5, Users: 40, Ops: 300, Prefix: "mck_"})
	c.CheckAlive(t)
}

// TestClusterKafkaRepublished: Kafka keeps no dedupe window, so an event
// published twice (an outbox relay's retry; a redelivered post's chunks)
// is handled twice. The fan-out's inserts are idempotent: once the
// fan-out has caught up with both copies of a post's event and of one of
// its chunks, every follower's timeline holds the post once, and the
// model's timelines are unchanged.
func TestClusterKafkaRepublished(t *testing.T) {
	t.Setenv("HERALD_FANOUT_CHUNK_SIZE", "2")
	c := startClusterOn(t, serversOnKafka(t))
	api := c.Client(t)
	const author = "kdup_author"
	followers := names("kdup_f", 5)
	for _, f := range followers {
		api.Follow(t, f, author)
	}
	older := api.CreatePost(t, author, "older", "").GetPostId()
	id := api.CreatePost(t, author, "copied", "").GetPostId()
	want := []string{id, older}
	for _, f := range followers {
		api.WaitHome(t, f, waitfor.Deadline, "both posts", func(got []string) bool { return slices.Equal(got, want) })
	}
	fanout := c.waitKafkaLag(t, "the first delivery")

	post, err := feed.ParsePostID(id)
	if err != nil {
		t.Fatal(err)
	}
	b := c.kafkaBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Deadline)
	defer cancel()
	// The same post event again, as a relay retry publishes it, and one of
	// its chunks, as a redelivered post republishes them.
	created := event.PostCreated{Post: post, Author: author, Created: time.Now()}
	chunk := event.FanoutChunk{Post: post, Author: author, Created: created.Created, Index: 2, Followers: followers[2:4]}
	for _, ev := range []event.Event{created, chunk} {
		if err := b.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	after := c.waitKafkaLag(t, "the copies")
	if after.committed < fanout.committed+2 {
		t.Fatalf("the fan-out committed %d events before the copies and %d after; want both copies handled", fanout.committed, after.committed)
	}
	for _, f := range followers {
		if got := api.Home(t, f); !slices.Equal(got, want) {
			t.Errorf("%s's home after the copies = %v; want %v, each post once", f, got, want)
		}
	}
	c.CheckAlive(t)
}

// kafkaGroup is the fan-out consumer group's position: the events it has
// committed across the topics' partitions, and its lag.
type kafkaGroup struct{ committed, lag int64 }

// waitKafkaLag waits until the fan-out's consumer group has committed
// every event in its topics, and returns its position.
func (c *Cluster) waitKafkaLag(t *testing.T, what string) kafkaGroup {
	t.Helper()
	adm := c.kafkaAdmin(t)
	group := c.NS + ".fanout"
	var g kafkaGroup
	waitfor.Until(t, waitfor.Deadline, "the fan-out group to commit "+what, func() (bool, any) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		lags, err := adm.Lag(ctx, group)
		if err != nil {
			return false, err
		}
		l := lags[group]
		if l.Error() != nil {
			return false, l.Error()
		}
		g = kafkaGroup{lag: l.Lag.Total()}
		for _, ps := range l.Lag {
			for _, p := range ps {
				g.committed += max(p.Commit.At, 0)
			}
		}
		return g.committed > 0 && g.lag == 0, fmt.Sprintf("committed %d, lag %d", g.committed, g.lag)
	})
	return g
}

// kafkaAdmin returns an admin client of the test Kafka, closed at cleanup.
func (c *Cluster) kafkaAdmin(t testing.TB) *kadm.Client {
	t.Helper()
	user, password := testenv.KafkaAuth(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.srv.kafka...), kgo.SASL(plain.Auth{User: user, Pass: password}.AsMechanism()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// dropKafkaState deletes the deployment's topics and its fan-out's
// consumer group.
func (c *Cluster) dropKafkaState(ctx context.Context, t testing.TB) {
	if err := c.kafkaBus(t).Delete(ctx, "fanout"); err != nil {
		t.Errorf("drop the Kafka state of %s: %v", c.NS, err)
	}
}
