package graph

import (
	"slices"
	"testing"
)

func params() Params {
	return Params{Users: 5000, MeanFollows: 20, Celebrities: 3, CelebrityReach: 0.3, Zipf: 1.1, Seed: 7, Prefix: "t_"}
}

func TestGenerateIsSeeded(t *testing.T) {
	a, err := Generate(params())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Generate(params())
	for u := range a.Following {
		if !slices.Equal(a.Following[u], b.Following[u]) {
			t.Fatalf("Following[%d] = %v and %v for the same seed; want equal", u, a.Following[u], b.Following[u])
		}
	}
	if ea, eb := a.Edges(1), b.Edges(1); !slices.Equal(ea, eb) {
		t.Errorf("Edges(1) differs between two graphs of the same seed")
	}
	p := params()
	p.Seed = 8
	c, _ := Generate(p)
	same := 0
	for u := range a.Following {
		if slices.Equal(a.Following[u], c.Following[u]) {
			same++
		}
	}
	if same > len(a.Following)/2 {
		t.Errorf("seeds 7 and 8 gave %d of %d identical follow lists; want different graphs", same, len(a.Following))
	}
}

func TestGenerateIsHeavyTailed(t *testing.T) {
	g, err := Generate(params())
	if err != nil {
		t.Fatal(err)
	}
	s := g.Stats()
	if got, want := s.MeanFollowers, 20.0; got < want*0.8 || got > want*1.6 {
		t.Errorf("mean followers = %.1f; want about %.0f plus the celebrity follows", got, want)
	}
	if s.MaxFollowers < 20*int(s.MeanFollowers) {
		t.Errorf("max followers of an ordinary user = %d, mean %.1f; want a heavy tail (max >= 20 x mean)", s.MaxFollowers, s.MeanFollowers)
	}
	if s.MedianFollowers >= int(s.MeanFollowers) {
		t.Errorf("median followers = %d >= mean %.1f; want a skewed distribution", s.MedianFollowers, s.MeanFollowers)
	}
	if s.Top1PercentShare < 0.10 {
		t.Errorf("top 1%% of users hold %.3f of follows; want >= 0.10 (uniform would be 0.01)", s.Top1PercentShare)
	}
	for i, c := range s.CelebrityFollowers {
		if c < 1300 || c > 1700 {
			t.Errorf("celebrity %d has %d followers; want about 30%% of 5000", i, c)
		}
	}
}

func TestGenerateIsWellFormed(t *testing.T) {
	g, err := Generate(params())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for u, f := range g.Following {
		for i, v := range f {
			if int(v) == u {
				t.Fatalf("user %d follows itself", u)
			}
			if i > 0 && f[i-1] >= v {
				t.Fatalf("Following[%d] = %v; want strictly ascending", u, f)
			}
			if !slices.Contains(g.Followers[v], int32(u)) {
				t.Fatalf("Followers[%d] lacks %d", v, u)
			}
		}
		n += len(f)
	}
	if e := g.Edges(3); len(e) != n {
		t.Errorf("len(Edges) = %d; want %d", len(e), n)
	}
	if g.IDs[0] != "t_celeb_0" || g.IDs[3] != "t_u3" {
		t.Errorf("IDs[0], IDs[3] = %q, %q; want t_celeb_0, t_u3", g.IDs[0], g.IDs[3])
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Params)
	}{
		{"one user", func(p *Params) { p.Users = 1 }},
		{"all celebrities", func(p *Params) { p.Celebrities = p.Users }},
		{"reach above 1", func(p *Params) { p.CelebrityReach = 1.5 }},
		{"bad prefix", func(p *Params) { p.Prefix = "Load-" }},
		{"too many follows", func(p *Params) { p.MeanFollows = float64(p.Users) }},
	} {
		p := params()
		tc.edit(&p)
		if _, err := Generate(p); err == nil {
			t.Errorf("Generate with %s: got no error; want one", tc.name)
		}
	}
}
