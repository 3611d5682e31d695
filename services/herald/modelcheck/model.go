// Package modelcheck checks Herald's fan-out against a simple in-memory
// model. A seeded generator builds a follow graph with a heavy-tailed
// follower count and runs random posts, follows, unfollows, deletes and
// reads against a running system, some of them in concurrent bursts. Once
// the system has quiesced, every user's home timeline must equal what the
// model computes: the same IDs in the same order, capped, with no
// duplicates and nothing missing.
//
// The model only depends on the final follow set and the set of live
// posts, so operations that commute there (everything but two operations
// on one follow edge, or two deletes of one post) may run concurrently and
// the model stays exact.
package modelcheck

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"

	"github.com/herald-feed/herald/services/platform/cache"
)

// DefaultCap is the home timeline cap the model applies: the cache cap of
// a default deployment.
const DefaultCap = cache.DefaultCap

// Post is one post the model knows: its author, ID and whether it was
// deleted.
type Post struct {
	ID      uint64
	Author  string
	Deleted bool
}

// Model is the expected state: the follow edges and every post created.
type Model struct {
	cap       int
	following map[string]map[string]bool // follower -> followees
	posts     map[uint64]*Post
	byAuthor  map[string][]*Post
}

// NewModel returns an empty model whose timelines keep the newest cap
// entries.
func NewModel(cap int) *Model {
	return &Model{
		cap:       cap,
		following: map[string]map[string]bool{},
		posts:     map[uint64]*Post{},
		byAuthor:  map[string][]*Post{},
	}
}

// Follow records that follower follows followee.
func (m *Model) Follow(follower, followee string) {
	if m.following[follower] == nil {
		m.following[follower] = map[string]bool{}
	}
	m.following[follower][followee] = true
}

// Unfollow records that follower no longer follows followee.
func (m *Model) Unfollow(follower, followee string) {
	delete(m.following[follower], followee)
}

// Follows reports whether follower follows followee.
func (m *Model) Follows(follower, followee string) bool { return m.following[follower][followee] }

// Followees returns the accounts user follows, sorted.
func (m *Model) Followees(user string) []string {
	out := make([]string, 0, len(m.following[user]))
	for f := range m.following[user] {
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

// FollowerCount returns how many users follow user.
func (m *Model) FollowerCount(user string) int {
	n := 0
	for _, fs := range m.following {
		if fs[user] {
			n++
		}
	}
	return n
}

// AddPost records a post the system created.
func (m *Model) AddPost(id uint64, author string) {
	p := &Post{ID: id, Author: author}
	m.posts[id] = p
	m.byAuthor[author] = append(m.byAuthor[author], p)
}

// DeletePost records that post id was deleted.
func (m *Model) DeletePost(id uint64) {
	if p := m.posts[id]; p != nil {
		p.Deleted = true
	}
}

// Live returns the live posts, oldest first by ID.
func (m *Model) Live() []*Post {
	var out []*Post
	for _, p := range m.posts {
		if !p.Deleted {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b *Post) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Home returns user's expected home timeline: every live post by user or
// by an account user follows, newest first by ID, at most cap of them.
func (m *Model) Home(user string) []uint64 {
	var ids []uint64
	add := func(author string) {
		for _, p := range m.byAuthor[author] {
			if !p.Deleted {
				ids = append(ids, p.ID)
			}
		}
	}
	add(user)
	for f := range m.following[user] {
		if f != user {
			add(f)
		}
	}
	slices.SortFunc(ids, func(a, b uint64) int { return cmp.Compare(b, a) })
	ids = slices.Compact(ids)
	if len(ids) > m.cap {
		ids = ids[:m.cap]
	}
	return ids
}

// Diff describes how a timeline read differs from the model.
type Diff struct {
	Missing    []uint64 // wanted, not returned
	Extra      []uint64 // returned, not wanted
	Duplicates []uint64 // returned more than once
	// Order is true when the returned IDs are the wanted set but in
	// another order.
	Order bool
}

// Compare returns the difference between got and want, and whether they
// are equal.
func Compare(got, want []uint64) (Diff, bool) {
	if slices.Equal(got, want) {
		return Diff{}, true
	}
	var d Diff
	seen := map[uint64]int{}
	for _, id := range got {
		seen[id]++
		if seen[id] == 2 {
			d.Duplicates = append(d.Duplicates, id)
		}
	}
	wanted := map[uint64]bool{}
	for _, id := range want {
		wanted[id] = true
		if seen[id] == 0 {
			d.Missing = append(d.Missing, id)
		}
	}
	for _, id := range got {
		if !wanted[id] && !slices.Contains(d.Extra, id) {
			d.Extra = append(d.Extra, id)
		}
	}
	d.Order = len(d.Missing) == 0 && len(d.Extra) == 0 && len(d.Duplicates) == 0
	return d, false
}

// describe describes d, naming each stray post's author and state from m.
func (d Diff) describe(m *Model) string {
	s := ""
	name := func(ids []uint64) string {
		out := "["
		for i, id := range ids {
			if i > 0 {
				out += " "
			}
			out += strconv.FormatUint(id, 10)
			if p := m.posts[id]; p != nil {
				out += "(" + p.Author
				if p.Deleted {
					out += ",deleted"
				}
				out += ")"
			} else {
				out += "(unknown)"
			}
		}
		return out + "]"
	}
	if len(d.Missing) > 0 {
		s += fmt.Sprintf(" missing %s;", name(d.Missing))
	}
	if len(d.Extra) > 0 {
		s += fmt.Sprintf(" extra %s;", name(d.Extra))
	}
	if len(d.Duplicates) > 0 {
		s += fmt.Sprintf(" duplicated %s;", name(d.Duplicates))
	}
	if d.Order {
		s += " same posts in the wrong order;"
	}
	return s
}
