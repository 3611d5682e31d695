package idgen

import (
	"sync"
	"testing"
	"time"

	"github.com/herald-feed/herald/services/platform/feed"
)

func TestNextIsStrictlyIncreasing(t *testing.T) {
	g, err := New(7, nil)
	if err != nil {
		t.Fatal(err)
	}
	prev := g.Next()
	for i := 0; i < 100_000; i++ {
		id := g.Next()
		if id <= prev {
			t.Fatalf("Next() = %d after %d; want a larger ID", id, prev)
		}
		if w := Worker(id); w != 7 {
			t.Fatalf("Worker(%d) = %d; want 7", id, w)
		}
		prev = id
	}
}

func TestNextSurvivesClockStepBack(t *testing.T) {
	now := Epoch.Add(time.Hour)
	g, _ := New(1, func() time.Time { return now })
	a := g.Next()
	now = now.Add(-time.Minute) // NTP steps the clock back
	b := g.Next()
	if b <= a {
		t.Fatalf("after a clock step back Next() = %d; want > %d", b, a)
	}
}

func TestNextWaitsWhenSequenceRunsOut(t *testing.T) {
	// A frozen clock that moves only when Next polls it past the sequence
	// limit: the generator must not reuse or overflow the sequence.
	base := Epoch.Add(time.Hour)
	calls := 0
	g, _ := New(2, func() time.Time {
		calls++
		if calls > maxSequence+10 {
			return base.Add(time.Millisecond)
		}
		return base
	})
	seen := make(map[feed.PostID]bool)
	for i := 0; i < maxSequence+5; i++ {
		id := g.Next()
		if seen[id] {
			t.Fatalf("Next() repeated %d at call %d", id, i)
		}
		seen[id] = true
	}
}

func TestUniqueAcrossWorkers(t *testing.T) {
	// Two workers sharing one frozen clock mint disjoint IDs.
	frozen := func() time.Time { return Epoch.Add(42 * time.Millisecond) }
	var mu sync.Mutex
	seen := make(map[feed.PostID]int)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		g, _ := New(w, frozen)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				id := g.Next()
				mu.Lock()
				if prev, ok := seen[id]; ok {
					t.Errorf("workers %d and %d both minted %d", prev, w, id)
				}
				seen[id] = w
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 4000 {
		t.Errorf("minted %d distinct IDs; want 4000", len(seen))
	}
}

func TestNewRejectsBadWorker(t *testing.T) {
	for _, w := range []int{-1, MaxWorker + 1} {
		if _, err := New(w, nil); err == nil {
			t.Errorf("New(%d) succeeded; want an error", w)
		}
	}
}

func TestTimeRoundTrip(t *testing.T) {
	at := Epoch.Add(123456789 * time.Millisecond)
	g, _ := New(3, func() time.Time { return at })
	id := g.Next()
	if got := Time(id); !got.Equal(at) {
		t.Errorf("Time(Next()) = %v; want %v", got, at)
	}
	if MinID(at) > id || MinID(at.Add(time.Millisecond)) <= id {
		t.Errorf("MinID does not bound %d at %v", id, at)
	}
}

func BenchmarkNext(b *testing.B) {
	g, _ := New(1, nil)
	for b.Loop() {
		g.Next()
	}
}
