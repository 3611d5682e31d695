// Package graph generates the social graph a load test builds: a seeded,
// heavy-tailed follower distribution with a few celebrities, so runs with
// the same parameters build the same graph.
package graph

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
)

// Params describes a graph. The zero value is not valid; see Validate.
type Params struct {
	// Users is the number of accounts, celebrities included.
	Users int
	// MeanFollows is the mean number of ordinary (non-celebrity) accounts
	// each user follows.
	MeanFollows float64
	// Celebrities is the number of celebrity accounts.
	Celebrities int
	// CelebrityReach is the fraction of users that follow each celebrity,
	// on top of MeanFollows.
	CelebrityReach float64
	// Zipf is the exponent of the popularity law among ordinary accounts:
	// the k-th most popular is chosen with weight 1/k^Zipf. Around 1 gives
	// the long tail of real follower counts; 0 is uniform.
	Zipf float64
	// Seed makes the graph repeatable.
	Seed uint64
	// Prefix goes before every user ID, so that several graphs can share
	// one deployment. It must keep IDs within [a-z0-9_].
	Prefix string
}

// Validate reports the first problem with p.
func (p Params) Validate() error {
	switch {
	case p.Users < 2:
		return errors.New("users must be at least 2")
	case p.Celebrities < 0 || p.Celebrities >= p.Users:
		return fmt.Errorf("celebrities must be between 0 and users-1 (%d)", p.Users-1)
	case p.MeanFollows < 0 || p.MeanFollows > float64(p.Users-p.Celebrities-1):
		return fmt.Errorf("mean follows must be between 0 and %d (the ordinary users but one)", p.Users-p.Celebrities-1)
	case p.CelebrityReach < 0 || p.CelebrityReach > 1:
		return errors.New("celebrity reach must be between 0 and 1")
	case p.Zipf < 0 || p.Zipf > 4:
		return errors.New("zipf exponent must be between 0 and 4")
	}
	for _, r := range p.Prefix {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return fmt.Errorf("user prefix %q: only a-z, 0-9 and _ are allowed in user IDs", p.Prefix)
		}
	}
	if len(p.Prefix)+len("celeb_")+len(strconv.Itoa(p.Users)) > 64 {
		return fmt.Errorf("user prefix %q: user IDs would pass 64 characters", p.Prefix)
	}
	return nil
}

// Graph is a generated follow graph. Users are indexed 0..len(IDs)-1; the
// first Celebrities indices are the celebrities.
type Graph struct {
	IDs         []string
	Celebrities int
	// Following[u] lists the users u follows, ascending.
	Following [][]int32
	// Followers[u] lists the users following u, ascending.
	Followers [][]int32
	edges     int
}

// Edge is one follow: Follower follows Followee.
type Edge struct{ Follower, Followee int32 }

// Generate builds the graph p describes. The same p always gives the same
// graph.
func Generate(p Params) (*Graph, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(p.Seed, 0x6865_7261_6c64)) // "herald"
	n, c := p.Users, p.Celebrities
	g := &Graph{IDs: make([]string, n), Celebrities: c, Following: make([][]int32, n), Followers: make([][]int32, n)}
	for i := range n {
		if i < c {
			g.IDs[i] = p.Prefix + "celeb_" + strconv.Itoa(i)
		} else {
			g.IDs[i] = p.Prefix + "u" + strconv.Itoa(i)
		}
	}

	// Popularity ranks among ordinary users are a random permutation, so
	// that the popular accounts are not simply the low indices.
	ordinary := n - c
	rank := rng.Perm(ordinary)
	cum := make([]float64, ordinary) // cumulative weight by rank
	total := 0.0
	for k := range ordinary {
		total += 1 / math.Pow(float64(k+1), p.Zipf)
		cum[k] = total
	}
	byRank := make([]int32, ordinary)
	for i, r := range rank {
		byRank[r] = int32(c + i)
	}
	pick := func() int32 {
		x := rng.Float64() * total
		return byRank[sort.SearchFloat64s(cum, x)]
	}

	for u := range n {
		seen := make(map[int32]bool)
		for ci := range c {
			if ci != u && rng.Float64() < p.CelebrityReach {
				seen[int32(ci)] = true
			}
		}
		want := geometric(rng, p.MeanFollows)
		if limit := ordinary - 1; want > limit {
			want = limit
		}
		// Rejection of repeats can stall on a steep law with few users, so
		// attempts are bounded; the shortfall is tiny in practice.
		got := 0
		for attempts := 0; got < want && attempts < 50*want+100; attempts++ {
			v := pick()
			if int(v) == u || seen[v] {
				continue
			}
			seen[v] = true
			got++
		}
		f := make([]int32, 0, len(seen))
		for v := range seen {
			f = append(f, v)
		}
		slices.Sort(f)
		g.Following[u] = f
		for _, v := range f {
			g.Followers[v] = append(g.Followers[v], int32(u))
		}
		g.edges += len(f)
	}
	return g, nil
}

// geometric draws a count >= 0 with the given mean from a geometric law,
// so that a few users follow many accounts.
func geometric(rng *rand.Rand, mean float64) int {
	if mean <= 0 {
		return 0
	}
	p := 1 / (mean + 1)
	return int(math.Floor(math.Log(1-rng.Float64()) / math.Log(1-p)))
}

// Edges returns every follow in a seeded random order, so that building
// the graph spreads the follows of one hot account over time instead of
// queueing them on one key.
func (g *Graph) Edges(seed uint64) []Edge {
	out := make([]Edge, 0, g.edges)
	for u, f := range g.Following {
		for _, v := range f {
			out = append(out, Edge{int32(u), v})
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0x65646765)) // "edge"
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// Stats summarises a graph's follower distribution.
type Stats struct {
	Users         int     `json:"users"`
	Celebrities   int     `json:"celebrities"`
	Follows       int     `json:"follows"`
	MeanFollowers float64 `json:"mean_followers"`
	// MedianFollowers and MaxFollowers are over ordinary users.
	MedianFollowers int `json:"median_followers"`
	MaxFollowers    int `json:"max_followers"`
	// Top1PercentShare is the share of follows to ordinary users that go
	// to the most-followed 1% of them: 0.01 for a uniform graph.
	Top1PercentShare float64 `json:"top_1_percent_share"`
	// CelebrityFollowers is each celebrity's follower count.
	CelebrityFollowers []int `json:"celebrity_followers"`
}

// Stats computes g's Stats.
func (g *Graph) Stats() Stats {
	s := Stats{Users: len(g.IDs), Celebrities: g.Celebrities, Follows: g.edges}
	s.MeanFollowers = float64(g.edges) / float64(len(g.IDs))
	for i := range g.Celebrities {
		s.CelebrityFollowers = append(s.CelebrityFollowers, len(g.Followers[i]))
	}
	var counts []int
	sum := 0
	for i := g.Celebrities; i < len(g.IDs); i++ {
		counts = append(counts, len(g.Followers[i]))
		sum += len(g.Followers[i])
	}
	if len(counts) == 0 {
		return s
	}
	slices.Sort(counts)
	s.MedianFollowers = counts[len(counts)/2]
	s.MaxFollowers = counts[len(counts)-1]
	top := max(1, len(counts)/100)
	topSum := 0
	for _, c := range counts[len(counts)-top:] {
		topSum += c
	}
	if sum > 0 {
		s.Top1PercentShare = float64(topSum) / float64(sum)
	}
	return s
}
