package schedule

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestAtAndCount(t *testing.T) {
	start := time.Unix(1000, 0)
	s := Schedule{Start: start, Rate: 4}
	for i, want := range []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond, 750 * time.Millisecond, time.Second} {
		if got := s.At(i).Sub(start); got != want {
			t.Errorf("At(%d) = start+%v; want start+%v", i, got, want)
		}
	}
	for _, tc := range []struct {
		rate float64
		d    time.Duration
		want int
	}{
		{4, time.Second, 4}, {4, 1001 * time.Millisecond, 5}, {0.5, 10 * time.Second, 5}, {0, time.Second, 0}, {3, time.Second, 3},
	} {
		if got := (Schedule{Start: start, Rate: tc.rate}).Count(tc.d); got != tc.want {
			t.Errorf("Schedule{Rate: %v}.Count(%v) = %d; want %d", tc.rate, tc.d, got, tc.want)
		}
	}
}

// TestRunIsOpenLoop: requests much slower than the interval do not slow
// the schedule down; each starts on time, and many run at once.
func TestRunIsOpenLoop(t *testing.T) {
	s := Schedule{Start: time.Now(), Rate: 200}
	n := s.Count(300 * time.Millisecond)
	var mu sync.Mutex
	var lateness []time.Duration
	var inFlight, peak atomic.Int32
	var wg sync.WaitGroup
	wg.Add(n)
	res := s.Run(context.Background(), n, 0, func(i int, at time.Time, done func()) {
		defer wg.Done()
		defer done()
		if !at.Equal(s.At(i)) {
			t.Errorf("fire(%d) intended %v; want %v", i, at, s.At(i))
		}
		mu.Lock()
		lateness = append(lateness, time.Since(at))
		mu.Unlock()
		cur := inFlight.Add(1)
		for {
			p := peak.Load()
			if cur <= p || peak.CompareAndSwap(p, cur) {
				break
			}
		}
		time.Sleep(100 * time.Millisecond) // 20 intervals
		inFlight.Add(-1)
	})
	wg.Wait()
	if res.Issued != n || n != 60 {
		t.Errorf("Run issued %d of %d; want all 60", res.Issued, n)
	}
	if peak.Load() < 10 {
		t.Errorf("peak in flight = %d; want >= 10 (requests must not wait for each other)", peak.Load())
	}
	// How late each request started is a figure of the machine's load, not
	// of the schedule (which the intended times above pin down): log it.
	slices.Sort(lateness)
	t.Logf("start lateness of %d requests: median %v, worst %v", len(lateness), lateness[len(lateness)/2], lateness[len(lateness)-1])
}

// TestRunBoundedKeepsIntendedTimes: with one slot, requests queue, but
// their intended times stay on the schedule, so the queueing shows up as
// latency.
func TestRunBoundedKeepsIntendedTimes(t *testing.T) {
	s := Schedule{Start: time.Now(), Rate: 100}
	var lat []time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Add(5)
	s.Run(context.Background(), 5, 1, func(i int, at time.Time, done func()) {
		defer wg.Done()
		time.Sleep(40 * time.Millisecond)
		mu.Lock()
		lat = append(lat, time.Since(at))
		mu.Unlock()
		done()
	})
	wg.Wait()
	// The fifth request is intended at 40ms but can only start after four
	// 40ms requests: its latency is about 160+40-40 = 160ms, not 40ms.
	worst := time.Duration(0)
	for _, l := range lat {
		worst = max(worst, l)
	}
	if worst < 140*time.Millisecond {
		t.Errorf("worst latency with one slot = %v; want >= 140ms (queueing counted from the intended start)", worst)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	s := Schedule{Start: time.Now(), Rate: 100}
	res := s.Run(ctx, 1000, 0, func(int, time.Time, func()) {})
	if res.Issued < 5 || res.Issued > 20 {
		t.Errorf("Run issued %d before a 100ms cancel at 100/s; want about 10", res.Issued)
	}
}
