package clustertest

import (
	"flag"
	"fmt"
	"testing"

	"github.com/herald-feed/herald/services/herald/modelcheck"
)

var modelSeed = flag.Uint64("modelcheck.seed", 0, "seed of TestClusterModelCheck's generator; 0 runs the fixed seeds")

// clusterModelSeeds are the seeds TestClusterModelCheck runs by default,
// each under its own user prefix on one cluster.
var clusterModelSeeds = []uint64{1, 2}

// TestClusterModelCheck runs the fan-out model check on the real servers:
// two instances of each service, so events of one post, follow or
// unfollow are handled by either fan-out instance in parallel, over Redis
// and Cassandra.
func TestClusterModelCheck(t *testing.T) {
	// Chunks of 4 followers: a popular author's post is spread over both
	// fan-out instances as chunk messages.
	t.Setenv("HERALD_FANOUT_CHUNK_SIZE", "4")
	c := startCluster(t)
	api := c.Client(t)
	seeds := clusterModelSeeds
	if *modelSeed != 0 {
		seeds = []uint64{*modelSeed}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			modelcheck.Run(t, api, modelcheck.Config{
				Seed:   seed,
				Users:  40,
				Ops:    300,
				Prefix: fmt.Sprintf("mc%d_", seed),
			})
		})
	}
	c.CheckAlive(t)
}

// TestClusterModelCheckHybrid is TestClusterModelCheck with a celebrity
// threshold of 8 followers, so the graph's most-followed authors are pulled
// at read time while the rest are pushed, across two instances of each
// service.
func TestClusterModelCheckHybrid(t *testing.T) {
	t.Setenv("HERALD_STRATEGY", "hybrid")
	t.Setenv("HERALD_CELEBRITY_THRESHOLD", "8")
	// A short active window: timelines expire and are rebuilt, under a
	// cross-instance claim, while the fan-out writes.
	t.Setenv("HERALD_ACTIVE_WINDOW", "2s")
	t.Setenv("HERALD_FANOUT_CHUNK_SIZE", "3")
	c := startCluster(t)
	modelcheck.Run(t, c.Client(t), modelcheck.Config{
		Seed:   3,
		Users:  40,
		Ops:    300,
		Prefix: "mch_",
	})
	c.CheckAlive(t)
}
