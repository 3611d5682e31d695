package cache

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/herald-feed/herald/services/platform/waitfor"
)

// blockingCelebs is a Celebrities source whose reads wait for release.
type blockingCelebs struct {
	mu      sync.Mutex
	set     map[string]bool
	reading chan struct{}
	release chan struct{}
}

func (b *blockingCelebs) Celebrities(context.Context) (map[string]bool, error) {
	b.reading <- struct{}{}
	<-b.release
	b.mu.Lock()
	defer b.mu.Unlock()
	return map[string]bool{"star": b.set["star"]}, nil
}

func (b *blockingCelebs) AddCelebrity(_ context.Context, a string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.set[a] = true
	return nil
}

// TestCelebritySetHoldsNoLockAcrossReads: while one caller waits on a slow
// read of the source, Add and the other callers are not held behind it.
func TestCelebritySetHoldsNoLockAcrossReads(t *testing.T) {
	src := &blockingCelebs{set: map[string]bool{"star": true}, reading: make(chan struct{}), release: make(chan struct{})}
	c := NewCelebritySet(src, time.Hour)
	ctx := context.Background()
	got := make(chan bool, 1)
	go func() {
		has, _ := c.Has(ctx, "star")
		got <- has
	}()
	<-src.reading // the first Has is inside the source now

	added := make(chan error, 1)
	go func() { added <- c.Add(ctx, "newcomer") }()
	select {
	case err := <-added:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitfor.Deadline):
		t.Fatal("Add waited for another caller's read of the source: the lock is held across it")
	}
	close(src.release)
	if has := <-got; !has {
		t.Error("Has(star) = false; want true")
	}
	// The refresh that began before the Add keeps what Add made.
	if has, err := c.Has(ctx, "newcomer"); err != nil || !has {
		t.Errorf("Has(newcomer) after Add = %v, %v; want true", has, err)
	}
}
