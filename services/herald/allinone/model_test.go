package allinone_test

import (
	"flag"
	"strconv"
	"testing"

	"github.com/herald-feed/herald/services/herald/modelcheck"
	"github.com/herald-feed/herald/services/herald/systemtest"
)

var modelSeed = flag.Uint64("modelcheck.seed", 0, "seed of TestModelCheck's generator; 0 runs the fixed seeds")

// modelSeeds are the seeds TestModelCheck runs by default: fixed, so a
// failure reproduces, and more than one, so one lucky graph does not hide
// a bug.
var modelSeeds = []uint64{1, 2, 3}

// TestModelCheck runs random posts, follows, unfollows, deletes and reads
// over a heavy-tailed follow graph on the embedded defaults, then checks
// every user's home timeline against the in-memory model. Each seed gets a
// fresh system.
func TestModelCheck(t *testing.T) {
	seeds := modelSeeds
	if *modelSeed != 0 {
		seeds = []uint64{*modelSeed}
	}
	for _, seed := range seeds {
		t.Run(fmtSeed(seed), func(t *testing.T) {
			conn, stop := startSystem(t, t.TempDir())
			defer stop()
			modelcheck.Run(t, systemtest.NewClient(conn, conn, conn), modelcheck.Config{
				Seed:  seed,
				Users: 60,
				Ops:   400,
			})
		})
	}
}

func fmtSeed(seed uint64) string { return "seed=" + strconv.FormatUint(seed, 10) }
