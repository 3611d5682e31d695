package auth_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-feed/herald/services/platform/auth"
	"github.com/herald-feed/herald/services/platform/feed"
)

// fuzzKey is the fixed trusted key of FuzzVerify, made from a fixed seed
// so that the corpus the fuzzer saves stays meaningful from run to run.
var fuzzKey = func() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("herald FuzzVerify trusted key"))
	return ed25519.NewKeyFromSeed(seed[:])
}()

func FuzzVerify(f *testing.F) {
	user := auth.NewSigner(fuzzKey, auth.WithClock(clockAt(now)))
	svc := auth.NewServiceSigner(fuzzKey, auth.WithClock(clockAt(now)))
	v := newVerifier(f, auth.VerifierConfig{Keys: []auth.Key{user.Key()}})
	// signed are the seeds signed with the trusted key that Verify
	// accepts: no other input may be accepted, since a fuzzer cannot
	// sign.
	signed := []string{
		mustToken(f, user, "alice", time.Hour),
		mustToken(f, user, "bob_2", 10*time.Minute),
		signJWT(f, jwt.SigningMethodEdDSA, fuzzKey, claimsFor("carol"), map[string]any{"kid": "any"}),
	}
	for _, s := range signed {
		f.Add(s)
	}
	for _, s := range []string{
		"",
		"a.b.c",
		"..",
		mustToken(f, svc, "fanout", time.Hour), // no service keys: refused
		mustToken(f, user, "Bad User", time.Hour),
		mustToken(f, auth.NewSigner(newEd25519(f), auth.WithClock(clockAt(now))), "alice", time.Hour),
		signJWT(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claimsFor("alice"), nil),
		signJWT(f, jwt.SigningMethodHS256, []byte(fuzzKey.Public().(ed25519.PublicKey)), claimsFor("alice"), nil),
		"eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.",
		strings.Repeat("A", auth.MaxTokenLen+1),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		id, err := v.Verify(token)
		if err != nil {
			if id != (auth.Identity{}) {
				t.Errorf("Verify refused with identity %+v; want the zero Identity", id)
			}
			return
		}
		if id.Service != "" || feed.ValidateUserID("sub", id.User) != nil {
			t.Fatalf("Verify(%q) = %+v; want a valid user ID, and no service", token, id)
		}
		if !slices.Contains(signed, token) {
			t.Fatalf("Verify accepted %q, which is not a token the test signed; identity %+v", token, id)
		}
	})
}

func FuzzParseKeys(f *testing.F) {
	ed := newEd25519(f)
	f.Add([]byte(""))
	f.Add([]byte("garbage"))
	f.Add([]byte("{}"))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":""}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"","y":""}]}`))
	f.Add(pkixPEM(f, ed.Public()))
	f.Add(pkixPEM(f, &rsaKey().PublicKey))
	f.Add(pkixPEM(f, &ecKey().PublicKey))
	f.Add(pkcs8(f, ed))
	f.Add(selfSigned(f, ecKey()))
	f.Add(jwks(f,
		jose.JSONWebKey{Key: ed.Public(), KeyID: "ed", Algorithm: auth.AlgEdDSA},
		jose.JSONWebKey{Key: &rsaKey().PublicKey, KeyID: "rsa", Use: "sig"},
		jose.JSONWebKey{Key: &ecKey().PublicKey, KeyID: "ec"},
	))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := auth.ParseKeys(b)
		if err != nil {
			return
		}
		if len(keys) == 0 {
			t.Fatal("ParseKeys returned no keys and no error")
		}
		for i, k := range keys {
			if k.Alg != auth.AlgEdDSA && k.Alg != auth.AlgRS256 && k.Alg != auth.AlgES256 {
				t.Errorf("key %d: Alg %q; want EdDSA, RS256 or ES256", i, k.Alg)
			}
			if k.Public == nil {
				t.Errorf("key %d: Public is nil", i)
			}
		}
		// Every key returned is one a Verifier takes.
		if _, err := auth.NewVerifier(auth.VerifierConfig{Keys: keys}); err != nil {
			t.Errorf("NewVerifier(keys ParseKeys returned): %v", err)
		}
	})
}

func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer x", "bearer x", "Basic x", "Bearer", "Bearer  ", "Bearer a.b.c", "", " "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		token, ok := auth.BearerToken(header)
		if !ok {
			if token != "" {
				t.Errorf("BearerToken(%q) = %q, false; want no token when refused", header, token)
			}
			return
		}
		if token == "" || token != strings.TrimSpace(token) {
			t.Errorf("BearerToken(%q) = %q, true; want a non-empty token without surrounding space", header, token)
		}
		scheme, rest, _ := strings.Cut(header, " ")
		if !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(rest) != token {
			t.Errorf("BearerToken(%q) = %q; want the text after a bearer scheme", header, token)
		}
	})
}
