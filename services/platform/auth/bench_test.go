package auth_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/herald-feed/herald/services/platform/auth"
)

// BenchmarkVerify is the cost authentication adds to a call whose token
// the server has seen before (a client sends the same token with every
// call): a lookup in the verified-token cache.
func BenchmarkVerify(b *testing.B) { benchVerify(b, false) }

// BenchmarkVerifyFirst is the cost of a token's first call: one EdDSA
// signature check and the claims'.
func BenchmarkVerifyFirst(b *testing.B) { benchVerify(b, true) }

func benchVerify(b *testing.B, first bool) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	s := auth.NewSigner(key)
	v, err := auth.NewVerifier(auth.VerifierConfig{Keys: []auth.Key{s.Key()}})
	if err != nil {
		b.Fatal(err)
	}
	tok, err := s.Token("alice", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if first {
			b.StopTimer()
			v, err = auth.NewVerifier(auth.VerifierConfig{Keys: []auth.Key{s.Key()}})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSign is what a client that signs its own tokens (feedload,
// feedctl) pays per token; ActAsNamedUser reuses each for half an hour.
func BenchmarkSign(b *testing.B) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	s := auth.NewSigner(key)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Token("alice", time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}
