package cache

import (
	"context"
	"maps"
	"sync"
	"time"
)

// CelebritySet reads a Celebrities set through a short-lived local copy,
// so that a hot path asks the cache at most once per TTL. A new celebrity
// is seen by every instance within the TTL; until then an instance treats
// the author as pushed.
type CelebritySet struct {
	src Celebrities
	ttl time.Duration

	mu  sync.Mutex
	at  time.Time
	set map[string]bool
}

// NewCelebritySet returns a view of src refreshed at most every ttl.
func NewCelebritySet(src Celebrities, ttl time.Duration) *CelebritySet {
	return &CelebritySet{src: src, ttl: ttl}
}

// Has reports whether author is a celebrity. The lock is never held across
// the cache call: concurrent callers that find the copy stale may each
// refresh it, which costs a read each and blocks nobody behind a slow one.
func (c *CelebritySet) Has(ctx context.Context, author string) (bool, error) {
	c.mu.Lock()
	fresh := c.set != nil && time.Since(c.at) < c.ttl
	has := c.set[author]
	c.mu.Unlock()
	if fresh {
		return has, nil
	}
	set, err := c.src.Celebrities(ctx)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Keep an author Add made a celebrity meanwhile: the set only grows.
	merged := maps.Clone(set)
	if merged == nil {
		merged = map[string]bool{}
	}
	for a, celeb := range c.set {
		if celeb {
			merged[a] = true
		}
	}
	c.set, c.at = merged, time.Now()
	return merged[author], nil
}

// Add makes author a celebrity, here at once and everywhere within the TTL.
func (c *CelebritySet) Add(ctx context.Context, author string) error {
	if err := c.src.AddCelebrity(ctx, author); err != nil {
		return err
	}
	c.mu.Lock()
	if c.set == nil {
		c.set = map[string]bool{} // stale (c.at is zero): the next Has reads src
	}
	c.set[author] = true
	c.mu.Unlock()
	return nil
}
