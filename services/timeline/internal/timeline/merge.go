package timeline

import (
	"container/heap"

	"github.com/herald-feed/herald/services/platform/feed"
)

// Merge merges lists, each sorted newest first (descending ID), into one
// list sorted newest first with no duplicates, at most limit long. It is a
// k-way merge over a heap of list heads: O(limit · log k).
func Merge(limit int, lists ...[]feed.PostID) []feed.PostID {
	h := make(heads, 0, len(lists))
	for _, l := range lists {
		if len(l) > 0 {
			h = append(h, l)
		}
	}
	heap.Init(&h)
	out := make([]feed.PostID, 0, min(limit, 64))
	for len(h) > 0 && len(out) < limit {
		id := h[0][0]
		if len(out) == 0 || out[len(out)-1] != id {
			out = append(out, id)
		}
		if h[0] = h[0][1:]; len(h[0]) == 0 {
			heap.Pop(&h)
		} else {
			heap.Fix(&h, 0)
		}
	}
	return out
}

// heads is a max-heap of non-empty lists keyed by their first ID.
type heads [][]feed.PostID

func (h heads) Len() int           { return len(h) }
func (h heads) Less(i, j int) bool { return h[i][0] > h[j][0] }
func (h heads) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *heads) Push(x any)        { *h = append(*h, x.([]feed.PostID)) }
func (h *heads) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
