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
const DefaultCelebrityThreshold = 10_000

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
