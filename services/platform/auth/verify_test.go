package auth_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-feed/herald/services/platform/auth"
)

// now is the fixed time of every Verifier and Signer in these tests, so
// that exp and nbf are decided by the test and not by the machine's speed.
var now = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

func clockAt(t time.Time) func() time.Time { return func() time.Time { return t } }

func newEd25519(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rsaKey and ecKey are made once: a 2048-bit RSA key takes a while under
// the race detector, and no test needs a fresh one.
var (
	rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	})
	ecKey = sync.OnceValue(func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
)

func newVerifier(t testing.TB, cfg auth.VerifierConfig) *auth.Verifier {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = clockAt(now)
	}
	v, err := auth.NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

func mustToken(t testing.TB, s *auth.Signer, subject string, ttl time.Duration) string {
	t.Helper()
	tok, err := s.Token(subject, ttl)
	if err != nil {
		t.Fatalf("Token(%q): %v", subject, err)
	}
	return tok
}

// signJWT signs claims with method and key directly, with the header
// fields in header added, for tokens no Signer would make.
func signJWT(t testing.TB, method jwt.SigningMethod, key any, claims jwt.Claims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return s
}

// claimsFor are the claims of a valid token of sub at now.
func claimsFor(sub string) jwt.RegisteredClaims {
	return jwt.RegisteredClaims{
		Subject:   sub,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}
}

func TestVerifyAcceptsTrustedToken(t *testing.T) {
	k := newEd25519(t)
	s := auth.NewSigner(k, auth.WithClock(clockAt(now)))
	v := newVerifier(t, auth.VerifierConfig{Keys: []auth.Key{s.Key()}})
	id, err := v.Verify(mustToken(t, s, "alice", time.Hour))
	if err != nil {
		t.Fatalf("Verify(alice's token) = %v; want it accepted", err)
	}
	if want := (auth.Identity{User: "alice"}); id != want {
		t.Errorf("Verify(alice's token) = %+v; want %+v", id, want)
	}
}

// TestVerifyLeeway: exp and nbf are allowed DefaultLeeway of skew, and
// no more.
func TestVerifyLeeway(t *testing.T) {
	k := newEd25519(t)
	v := newVerifier(t, auth.VerifierConfig{Keys: []auth.Key{auth.NewSigner(k).Key()}})
	for _, tt := range []struct {
		name     string
		signedAt time.Time
		ttl      time.Duration
		ok       bool
	}{
		{"expired 10s ago", now.Add(-time.Hour - 10*time.Second), time.Hour, true},
		{"nbf 10s ahead", now.Add(10 * time.Second), time.Hour, true},
		{"expired 2m ago", now.Add(-time.Hour - 2*time.Minute), time.Hour, false},
		{"nbf 2m ahead", now.Add(2 * time.Minute), time.Hour, false},
	} {
		tok := mustToken(t, auth.NewSigner(k, auth.WithClock(clockAt(tt.signedAt))), "alice", tt.ttl)
		_, err := v.Verify(tok)
		if tt.ok && err != nil {
			t.Errorf("Verify(token %s) = %v; want it accepted within the leeway", tt.name, err)
		}
		if !tt.ok && !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("Verify(token %s) = %v; want ErrUnauthenticated", tt.name, err)
		}
	}
}

// tamper replaces the payload of tok with claims, keeping its header and
// signature.
func tamper(t testing.TB, tok string, claims jwt.Claims) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q has %d parts", tok, len(parts))
	}
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

func TestVerifyRefuses(t *testing.T) {
	trusted, untrusted, svcKey := newEd25519(t), newEd25519(t), newEd25519(t)
	user := auth.NewSigner(trusted, auth.WithClock(clockAt(now)))
	svc := auth.NewServiceSigner(svcKey, auth.WithClock(clockAt(now)))
	pubDER, err := x509.MarshalPKIXPublicKey(trusted.Public())
	if err != nil {
		t.Fatal(err)
	}
	noExp := claimsFor("alice")
	noExp.ExpiresAt = nil
	long := claimsFor("alice")
	long.ID = strings.Repeat("x", auth.MaxTokenLen)

	users := newVerifier(t, auth.VerifierConfig{Keys: []auth.Key{user.Key()}})
	both := newVerifier(t, auth.VerifierConfig{Keys: []auth.Key{user.Key()}, ServiceKeys: []auth.Key{svc.Key()}})
	services := newVerifier(t, auth.VerifierConfig{ServiceKeys: []auth.Key{svc.Key()}})
	withIss := newVerifier(t, auth.VerifierConfig{Keys: []auth.Key{user.Key()}, Issuer: "https://id.example"})
	withAud := newVerifier(t, auth.VerifierConfig{Keys: []auth.Key{user.Key()}, Audience: "herald"})

	for _, tt := range []struct {
		name  string
		v     *auth.Verifier
		token string
		// reason is a word the error must contain, so that a client
		// learns why.
		reason string
	}{
		{"expired", users, mustToken(t, auth.NewSigner(trusted, auth.WithClock(clockAt(now.Add(-2*time.Hour)))), "alice", time.Hour), "expired"},
		{"not yet valid", users, mustToken(t, auth.NewSigner(trusted, auth.WithClock(clockAt(now.Add(time.Hour)))), "alice", time.Hour), "not valid yet"},
		{"untrusted key", users, mustToken(t, auth.NewSigner(untrusted, auth.WithClock(clockAt(now))), "alice", time.Hour), "signature"},
		{"alg none", users, signJWT(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claimsFor("alice"), nil), "none"},
		{"HS256 keyed with the public key", users, signJWT(t, jwt.SigningMethodHS256, pubDER, claimsFor("alice"), nil), "HS256"},
		{"missing exp", users, signJWT(t, jwt.SigningMethodEdDSA, trusted, noExp, nil), "exp"},
		{"sub not a user ID", users, mustToken(t, user, "Bad User", time.Hour), "sub"},
		{"empty sub", users, mustToken(t, user, "", time.Hour), "sub"},
		{"tampered payload", users, tamper(t, mustToken(t, user, "alice", time.Hour), claimsFor("mallory")), "signature"},
		{"too long", users, signJWT(t, jwt.SigningMethodEdDSA, trusted, long, nil), "longer than"},
		{"empty", users, "", "malformed"},
		{"not a JWT", users, "not-a-jwt", "malformed"},
		{"wrong issuer", withIss, mustToken(t, auth.NewSigner(trusted, auth.WithClock(clockAt(now)), auth.WithIssuer("https://evil.example")), "alice", time.Hour), "issuer"},
		{"no issuer", withIss, mustToken(t, user, "alice", time.Hour), "iss"},
		{"wrong audience", withAud, mustToken(t, auth.NewSigner(trusted, auth.WithClock(clockAt(now)), auth.WithAudience("other")), "alice", time.Hour), "audience"},
		{"no audience", withAud, mustToken(t, user, "alice", time.Hour), "aud"},
		{"user token, service keys only", services, mustToken(t, user, "alice", time.Hour), "no trusted key"},
		{"service token, user keys only", users, mustToken(t, svc, "fanout", time.Hour), "no trusted key"},
		// Each kind of token is checked against its own keys only, so
		// neither key can sign the other kind.
		{"service key signs a user token", both, mustToken(t, auth.NewSigner(svcKey, auth.WithClock(clockAt(now))), "alice", time.Hour), "signature"},
		{"user key signs a service token", both, mustToken(t, auth.NewServiceSigner(trusted, auth.WithClock(clockAt(now))), "fanout", time.Hour), "signature"},
		{"service token without sub", services, mustToken(t, svc, "", time.Hour), "sub"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id, err := tt.v.Verify(tt.token)
			if !errors.Is(err, auth.ErrUnauthenticated) {
				t.Fatalf("Verify = %+v, %v; want ErrUnauthenticated", id, err)
			}
			if id != (auth.Identity{}) {
				t.Errorf("Verify refused with identity %+v; want the zero Identity", id)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("Verify error %q does not say %q", err, tt.reason)
			}
			if len(tt.token) > 20 && strings.Contains(err.Error(), tt.token) {
				t.Errorf("Verify error %q contains the token", err)
			}
		})
	}
}

func TestVerifyIssuerAndAudience(t *testing.T) {
	k := newEd25519(t)
	s := auth.NewSigner(k, auth.WithClock(clockAt(now)), auth.WithIssuer("https://id.example"), auth.WithAudience("herald"))
	v := newVerifier(t, auth.VerifierConfig{Keys: []auth.Key{s.Key()}, Issuer: "https://id.example", Audience: "herald"})
	id, err := v.Verify(mustToken(t, s, "alice", time.Hour))
	if err != nil || id != (auth.Identity{User: "alice"}) {
		t.Errorf("Verify(token with the configured iss and aud) = %+v, %v; want alice", id, err)
	}
}

// TestVerifyServiceTokenIgnoresIssuer: iss and aud name the deployment's
// identity provider, which signs users' tokens; Herald's services sign
// their own tokens without them (node.go uses NewServiceSigner with no
// options), so a service token must not need them.
func TestVerifyServiceTokenIgnoresIssuer(t *testing.T) {
	svc := auth.NewServiceSigner(newEd25519(t), auth.WithClock(clockAt(now)))
	v := newVerifier(t, auth.VerifierConfig{
		Keys:        []auth.Key{auth.NewSigner(newEd25519(t)).Key()},
		ServiceKeys: []auth.Key{svc.Key()},
		Issuer:      "https://id.example",
		Audience:    "herald",
	})
	id, err := v.Verify(mustToken(t, svc, "fanout", time.Hour))
	if err != nil || id != (auth.Identity{Service: "fanout"}) {
		t.Errorf("Verify(service token) with Issuer and Audience set = %+v, %v; want service fanout", id, err)
	}
}

func TestVerifyServiceToken(t *testing.T) {
	svc := auth.NewServiceSigner(newEd25519(t), auth.WithClock(clockAt(now)))
	for _, cfg := range []auth.VerifierConfig{
		{ServiceKeys: []auth.Key{svc.Key()}},
		{Keys: []auth.Key{auth.NewSigner(newEd25519(t)).Key()}, ServiceKeys: []auth.Key{svc.Key()}},
	} {
		v := newVerifier(t, cfg)
		id, err := v.Verify(mustToken(t, svc, "fanout", time.Hour))
		if want := (auth.Identity{Service: "fanout"}); err != nil || id != want {
			t.Errorf("Verify(service token) = %+v, %v; want %+v", id, err, want)
		}
		if id.Anonymous() || id.User != "" {
			t.Errorf("service identity %+v: Anonymous() = %v, User %q; want a service, no user", id, id.Anonymous(), id.User)
		}
	}
}

func TestNewVerifierNeedsKeys(t *testing.T) {
	if _, err := auth.NewVerifier(auth.VerifierConfig{}); err == nil {
		t.Error("NewVerifier with no keys succeeded; want an error")
	}
}

// TestVerifyOtherAlgorithms: RS256 and ES256 tokens are accepted when
// their keys are trusted, and each alg only with its own kind of key.
func TestVerifyOtherAlgorithms(t *testing.T) {
	rk, ek, edk := rsaKey(), ecKey(), newEd25519(t)
	rsaTrusted := auth.Key{Alg: auth.AlgRS256, Public: &rk.PublicKey}
	ecTrusted := auth.Key{Alg: auth.AlgES256, Public: &ek.PublicKey}
	v := newVerifier(t, auth.VerifierConfig{Keys: []auth.Key{rsaTrusted, ecTrusted}})
	for _, tt := range []struct {
		name  string
		token string
		ok    bool
	}{
		{"RS256", signJWT(t, jwt.SigningMethodRS256, rk, claimsFor("alice"), nil), true},
		{"ES256", signJWT(t, jwt.SigningMethodES256, ek, claimsFor("alice"), nil), true},
		{"PS256 with the RSA key", signJWT(t, jwt.SigningMethodPS256, rk, claimsFor("alice"), nil), false},
		{"RS512 with the RSA key", signJWT(t, jwt.SigningMethodRS512, rk, claimsFor("alice"), nil), false},
		{"EdDSA, no Ed25519 key trusted", signJWT(t, jwt.SigningMethodEdDSA, edk, claimsFor("alice"), nil), false},
		{"HS256 keyed with the RSA modulus", signJWT(t, jwt.SigningMethodHS256, rk.N.Bytes(), claimsFor("alice"), nil), false},
	} {
		id, err := v.Verify(tt.token)
		switch {
		case tt.ok && (err != nil || id != auth.Identity{User: "alice"}):
			t.Errorf("Verify(%s token) = %+v, %v; want alice", tt.name, id, err)
		case !tt.ok && !errors.Is(err, auth.ErrUnauthenticated):
			t.Errorf("Verify(%s token) = %+v, %v; want ErrUnauthenticated", tt.name, id, err)
		}
	}
}

// jwks returns a JWKS document of keys.
func jwks(t testing.TB, keys ...jose.JSONWebKey) []byte {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatalf("marshal JWKS: %v", err)
	}
	return b
}

// TestVerifyJWKSKeyID: a token's kid picks the JWKS key that checks it.
func TestVerifyJWKSKeyID(t *testing.T) {
	a, b := newEd25519(t), newEd25519(t)
	keys, err := auth.ParseKeys(jwks(t,
		jose.JSONWebKey{Key: a.Public(), KeyID: "a", Algorithm: auth.AlgEdDSA, Use: "sig"},
		jose.JSONWebKey{Key: &rsaKey().PublicKey, KeyID: "r"},
		jose.JSONWebKey{Key: b.Public(), KeyID: "b"},
	))
	if err != nil {
		t.Fatalf("ParseKeys(JWKS): %v", err)
	}
	v := newVerifier(t, auth.VerifierConfig{Keys: keys})
	for _, tt := range []struct {
		name  string
		token string
		ok    bool
	}{
		{"kid b, signed by b", signJWT(t, jwt.SigningMethodEdDSA, b, claimsFor("alice"), map[string]any{"kid": "b"}), true},
		{"kid r, RS256", signJWT(t, jwt.SigningMethodRS256, rsaKey(), claimsFor("alice"), map[string]any{"kid": "r"}), true},
		{"no kid, signed by b", signJWT(t, jwt.SigningMethodEdDSA, b, claimsFor("alice"), nil), true},
		{"kid a, signed by b", signJWT(t, jwt.SigningMethodEdDSA, b, claimsFor("alice"), map[string]any{"kid": "a"}), false},
		{"kid r, EdDSA", signJWT(t, jwt.SigningMethodEdDSA, b, claimsFor("alice"), map[string]any{"kid": "r"}), false},
		{"unknown kid", signJWT(t, jwt.SigningMethodEdDSA, b, claimsFor("alice"), map[string]any{"kid": "c"}), false},
	} {
		id, err := v.Verify(tt.token)
		switch {
		case tt.ok && (err != nil || id != auth.Identity{User: "alice"}):
			t.Errorf("Verify(token %s) = %+v, %v; want alice", tt.name, id, err)
		case !tt.ok && !errors.Is(err, auth.ErrUnauthenticated):
			t.Errorf("Verify(token %s) = %+v, %v; want ErrUnauthenticated", tt.name, id, err)
		}
	}
}

// TestSignerKey: the Key a Signer reports verifies its tokens, and is the
// public half of its private key.
func TestSignerKey(t *testing.T) {
	k := newEd25519(t)
	got := auth.NewSigner(k).Key()
	if got.Alg != auth.AlgEdDSA || !k.Public().(ed25519.PublicKey).Equal(got.Public) {
		t.Errorf("NewSigner(k).Key() = %+v; want EdDSA and k's public key", got)
	}
}

// TestVerifiedTokenStillExpires: the cache of verified tokens answers as
// a fresh check would, so a token it holds is refused once it expires.
func TestVerifiedTokenStillExpires(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	clock := func() time.Time { return now }
	s := auth.NewSigner(key, auth.WithClock(clock))
	v, err := auth.NewVerifier(auth.VerifierConfig{Keys: []auth.Key{s.Key()}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token("alice", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second answer comes from the cache
		if id, err := v.Verify(tok); err != nil || id.User != "alice" {
			t.Fatalf("Verify(fresh token) = %v, %v; want alice", id, err)
		}
	}
	now = now.Add(time.Minute + auth.DefaultLeeway + time.Second)
	if _, err := v.Verify(tok); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("Verify(expired token, verified before) = %v; want ErrUnauthenticated", err)
	}
}
