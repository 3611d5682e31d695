package cache

import (
	"context"
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

// Has reports whether author is a celebrity.
func (c *CelebritySet) Has(ctx context.Context, author string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.set == nil || time.Since(c.at) >= c.ttl {
		set, err := c.src.Celebrities(ctx)
		if err != nil {
			return false, err
		}
		c.set, c.at = set, time.Now()
	}
	return c.set[author], nil
}

// Add makes author a celebrity, here at once and everywhere within the TTL.
func (c *CelebritySet) Add(ctx context.Context, author string) error {
	if err := c.src.AddCelebrity(ctx, author); err != nil {
		return err
	}
	c.mu.Lock()
	if c.set != nil {
		c.set[author] = true
	}
	c.mu.Unlock()
	return nil
}
