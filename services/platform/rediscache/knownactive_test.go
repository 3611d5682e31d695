package rediscache

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// testKnown returns a memo on a clock the test moves.
func testKnown(max int, fresh time.Duration) (*knownActive, *time.Time) {
	now := time.Unix(1_000_000, 0)
	k := newKnownActive(max, fresh)
	k.now = func() time.Time { return now }
	return k, &now
}

func TestKnownActive(t *testing.T) {
	const fresh = 4 * time.Second
	k, now := testKnown(10, fresh)
	users := []string{"alice", "bob", "carol"}
	ask, sent := k.unknown(users)
	if want := []int{0, 1, 2}; !slices.Equal(ask, want) {
		t.Fatalf("unknown before any confirm = %v; want %v", ask, want)
	}
	k.confirm([]string{"alice", "carol"}, sent)
	if ask, _ := k.unknown(users); !slices.Equal(ask, []int{1}) {
		t.Errorf("unknown after confirming alice and carol = %v; want [1] (bob)", ask)
	}
	// Across a rotation (fresh/2) both are still known; at fresh from the
	// read that confirmed them, neither is.
	*now = now.Add(fresh/2 + time.Millisecond)
	if ask, _ := k.unknown(users); !slices.Equal(ask, []int{1}) {
		t.Errorf("unknown after fresh/2 = %v; want [1]", ask)
	}
	*now = sent.Add(fresh)
	if ask, _ := k.unknown(users); !slices.Equal(ask, []int{0, 1, 2}) {
		t.Errorf("unknown at fresh after the read = %v; want all", ask)
	}

	// A read sent before the generation began lands in the older one,
	// and expires with it; one older than both is not kept.
	_, before := k.unknown(nil)
	*now = now.Add(fresh / 8) // the generation is past fresh/2 old: it rotates at the next call
	_, _ = k.unknown(nil)
	k.confirm([]string{"alice"}, before)
	k.confirm([]string{"bob"}, before.Add(-time.Hour))
	if ask, _ := k.unknown(users); !slices.Equal(ask, []int{1, 2}) {
		t.Errorf("unknown after confirming alice from before the rotation = %v; want [1 2]", ask)
	}
	*now = before.Add(fresh)
	if ask, _ := k.unknown(users); !slices.Equal(ask, []int{0, 1, 2}) {
		t.Errorf("unknown at fresh after alice's read = %v; want all", ask)
	}

	// forget drops everyone; max bounds a generation.
	_, sent = k.unknown(nil)
	k.confirm(users, sent)
	k.forget()
	if ask, _ := k.unknown(users); len(ask) != 3 {
		t.Errorf("unknown after forget = %v; want all", ask)
	}
	many := make([]string, 25)
	for i := range many {
		many[i] = fmt.Sprint("u", i)
	}
	_, sent = k.unknown(nil)
	k.confirm(many, sent)
	if ask, _ := k.unknown(many); len(ask) != 15 {
		t.Errorf("unknown of 25 after confirming them with max 10 = %d users; want 15", len(ask))
	}

	// Without a memo every user is asked for.
	var none *knownActive
	if ask, _ := none.unknown(users); len(ask) != 3 {
		t.Errorf("nil memo: unknown = %v; want all", ask)
	}
	none.confirm(users, sent)
	none.forget()
}

// TestKnownActiveNeverStale drives the memo with random reads, delays and
// clock steps, and checks the one property its safety rests on: a user
// it calls known was confirmed by a read sent less than fresh ago.
func TestKnownActiveNeverStale(t *testing.T) {
	const fresh = time.Second
	k, now := testKnown(1000, fresh)
	r := rand.New(rand.NewPCG(1, 2))
	users := make([]string, 50)
	for i := range users {
		users[i] = fmt.Sprint("u", i)
	}
	latest := map[string]time.Time{} // the newest sent time each user was confirmed with
	type pending struct {
		users []string
		sent  time.Time
	}
	var inflight []pending
	for step := range 20_000 {
		*now = now.Add(time.Duration(r.IntN(int(fresh / 8))))
		switch r.IntN(3) {
		case 0: // a read begins
			some := make([]string, 0, 5)
			for range 5 {
				some = append(some, users[r.IntN(len(users))])
			}
			_, sent := k.unknown(nil)
			inflight = append(inflight, pending{some, sent})
		case 1: // a read, maybe a slow one, returns
			if len(inflight) == 0 {
				continue
			}
			i := r.IntN(len(inflight))
			p := inflight[i]
			inflight = slices.Delete(inflight, i, i+1)
			k.confirm(p.users, p.sent)
			for _, u := range p.users {
				if p.sent.After(latest[u]) {
					latest[u] = p.sent
				}
			}
		case 2:
			if r.IntN(200) == 0 {
				k.forget()
			}
		}
		ask, _ := k.unknown(users)
		for i, u := range users {
			if slices.Contains(ask, i) {
				continue
			}
			if age := now.Sub(latest[u]); age >= fresh {
				t.Fatalf("step %d: %s known active, but its newest confirming read was sent %v ago (fresh %v)", step, u, age, fresh)
			}
		}
	}
}
