package feed

import "fmt"

// Strategy decides, per author, whether a new post is pushed into
// followers' timelines at write time or pulled into them at read time.
type Strategy string

const (
	// Push writes every post into every follower's timeline.
	Push Strategy = "push"
	// Pull writes no timelines; every read merges the recent posts of
	// every account the reader follows.
	Pull Strategy = "pull"
	// Hybrid pushes authors below the threshold and pulls the rest, the
	// celebrities, whose fan-out would be too large to write.
	Hybrid Strategy = "hybrid"
)

// DefaultStrategy is the fan-out strategy of a deployment that names none.
const DefaultStrategy = Hybrid

// DefaultCelebrityThreshold is the follower count from which Hybrid pulls.
//
// make bench-scaling (docs/scaling) set it. On CPU alone push is the
// cheaper at every size from 1,000 to 1,000,000 followers once a follower
// reads about twice per post of the author: a delivery costs 6–15 µs of
// Redis and Herald CPU, and each pulled author adds about 7 µs to every
// read (and 15 µs to its median latency). What bounds push is time: a post
// reaches its followers at about 85,000 deliveries/s into full timelines
// on the measured machine, so the 1 s post→visible target holds up to
// about 85,000 followers; 50,000 leaves room for other posts fanning out
// at the same time.
const DefaultCelebrityThreshold = 50_000

// ParseStrategy parses "push", "pull" or "hybrid".
func ParseStrategy(s string) (Strategy, error) {
	switch st := Strategy(s); st {
	case Push, Pull, Hybrid:
		return st, nil
	}
	return "", fmt.Errorf("unknown fan-out strategy %q (want push, pull or hybrid)", s)
}

// Pulled reports whether an author with this many followers is pulled at
// read time rather than pushed at write time.
func (s Strategy) Pulled(followers, threshold int64) bool {
	switch s {
	case Push:
		return false
	case Pull:
		return true
	}
	return followers >= threshold
}
