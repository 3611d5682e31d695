package auth

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"
	"time"
)

// TestEvictKeepsMost: a full verified-token cache drops its expired
// tokens first and then only enough others to free an eighth of it, so
// most callers keep their entries.
func TestEvictKeepsMost(t *testing.T) {
	now := time.Now()
	fill := func(v *Verifier, expired int) {
		for i := range maxVerified {
			var k [sha256.Size]byte
			binary.BigEndian.PutUint64(k[:], uint64(i))
			exp := now.Add(time.Hour)
			if i < expired {
				exp = now.Add(-time.Second)
			}
			v.verified[k] = verifiedToken{id: Identity{User: "u"}, exp: exp}
		}
	}

	v := &Verifier{verified: make(map[[sha256.Size]byte]verifiedToken)}
	fill(v, 0)
	v.evict(now)
	if got, want := len(v.verified), maxVerified-maxVerified/8; got != want {
		t.Errorf("after evicting a cache of live tokens: %d entries; want %d", got, want)
	}

	v = &Verifier{verified: make(map[[sha256.Size]byte]verifiedToken)}
	fill(v, maxVerified/2)
	v.evict(now)
	if got, want := len(v.verified), maxVerified/2; got != want {
		t.Errorf("after evicting a cache half expired: %d entries; want %d (only the expired ones go)", got, want)
	}
	for _, tok := range v.verified {
		if !now.Before(tok.exp) {
			t.Fatal("an expired token survived eviction")
		}
	}
}
