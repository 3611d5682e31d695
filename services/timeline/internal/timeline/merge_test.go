package timeline

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/herald-feed/herald/services/platform/feed"
)

func ids(v ...feed.PostID) []feed.PostID { return v }

func TestMerge(t *testing.T) {
	tests := []struct {
		name  string
		limit int
		lists [][]feed.PostID
		want  []feed.PostID
	}{
		{"none", 10, nil, ids()},
		{"one", 10, [][]feed.PostID{ids(9, 5, 1)}, ids(9, 5, 1)},
		{"interleaved", 10, [][]feed.PostID{ids(9, 5, 1), ids(8, 6, 2)}, ids(9, 8, 6, 5, 2, 1)},
		{"duplicates across lists", 10, [][]feed.PostID{ids(9, 5), ids(9, 7, 5), ids(5)}, ids(9, 7, 5)},
		{"limit", 3, [][]feed.PostID{ids(9, 5, 1), ids(8, 6, 2)}, ids(9, 8, 6)},
		{"empty lists", 10, [][]feed.PostID{ids(), ids(4), ids()}, ids(4)},
		{"zero limit", 0, [][]feed.PostID{ids(4)}, ids()},
		{"high bits", 10, [][]feed.PostID{ids(1<<64-1, 1<<63+1), ids(1<<64-2, 1<<63)}, ids(1<<64-1, 1<<64-2, 1<<63+1, 1<<63)},
	}
	for _, tt := range tests {
		got := Merge(tt.limit, tt.lists...)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: Merge(%d, %v) = %v; want %v", tt.name, tt.limit, tt.lists, got, tt.want)
		}
	}
}

// TestMergeMatchesSort checks Merge against the obvious model: concatenate,
// sort descending, dedupe, cut.
func TestMergeMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		k := r.IntN(8)
		lists := make([][]feed.PostID, k)
		var all []feed.PostID
		for i := range lists {
			n := r.IntN(30)
			l := make([]feed.PostID, n)
			for j := range l {
				l[j] = feed.PostID(r.IntN(100) + 1)
			}
			slices.Sort(l)
			slices.Reverse(l)
			l = slices.Compact(l)
			lists[i] = l
			all = append(all, l...)
		}
		slices.Sort(all)
		slices.Reverse(all)
		want := slices.Compact(all)
		limit := r.IntN(60)
		if len(want) > limit {
			want = want[:limit]
		}
		if got := Merge(limit, lists...); !slices.Equal(got, want) {
			t.Fatalf("Merge(%d, %v) = %v; want %v", limit, lists, got, want)
		}
	}
}

func BenchmarkMerge(b *testing.B) {
	// 200 followees with 800 recent posts each, merged to one 800-entry
	// timeline: the shape of a rebuild.
	r := rand.New(rand.NewPCG(3, 4))
	lists := make([][]feed.PostID, 200)
	for i := range lists {
		l := make([]feed.PostID, 800)
		for j := range l {
			l[j] = feed.PostID(r.Uint64())
		}
		slices.Sort(l)
		slices.Reverse(l)
		lists[i] = l
	}
	for b.Loop() {
		Merge(800, lists...)
	}
}
