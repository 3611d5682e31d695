package waitfor

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestTrueHoldsOnceCondDoes(t *testing.T) {
	calls := 0
	if !True(time.Minute, time.Millisecond, func() bool { calls++; return calls == 3 }) {
		t.Fatal("True = false; want true once cond holds")
	}
	if calls != 3 {
		t.Errorf("cond called %d times; want 3: True stops polling once it holds", calls)
	}
}

func TestTrueGivesUpAfterDeadline(t *testing.T) {
	calls := 0
	if True(20*time.Millisecond, time.Millisecond, func() bool { calls++; return false }) {
		t.Fatal("True = true; want false for a condition that never holds")
	}
	if calls < 2 {
		t.Errorf("cond called %d times; want at least 2: once at the start and once past the deadline", calls)
	}
}

// recorder is a testing.TB whose Fatalf records its message instead of
// ending the test.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Fatalf(format string, args ...any) { r.msg = fmt.Sprintf(format, args...) }

func TestUntilReportsLastSeen(t *testing.T) {
	r := &recorder{TB: t}
	n := 0
	Until(r, 20*time.Millisecond, "the count to reach 1000", func() (bool, any) { n++; return false, fmt.Sprintf("count %d", n) })
	want := fmt.Sprintf("last saw count %d", n)
	if !strings.Contains(r.msg, "the count to reach 1000") || !strings.Contains(r.msg, want) {
		t.Errorf("Until failure = %q; want it to name the outcome and %q", r.msg, want)
	}

	r = &recorder{TB: t}
	Until(r, time.Minute, "done", func() (bool, any) { return true, nil })
	if r.msg != "" {
		t.Errorf("Until on a condition that holds failed with %q", r.msg)
	}
}
