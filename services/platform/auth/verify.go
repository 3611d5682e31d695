package auth

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-feed/herald/services/platform/feed"
)

// ErrUnauthenticated is the error of every token Verify refuses; the
// interceptor maps it to UNAUTHENTICATED.
var ErrUnauthenticated = errors.New("unauthenticated")

// MaxTokenLen bounds a token Verify parses. Real tokens are a few hundred
// bytes; the bound keeps a hostile header from costing more.
const MaxTokenLen = 8 << 10

// DefaultLeeway is the clock skew allowed on exp and nbf.
const DefaultLeeway = 30 * time.Second

// ServiceKeyID is the kid of service tokens: a token with it is checked
// against the service keys only, and any other token against the user
// keys only.
const ServiceKeyID = "herald-service"

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Keys verify users' tokens.
	Keys []Key
	// ServiceKeys verify the tokens of Herald's own services.
	ServiceKeys []Key
	// Issuer and Audience, when set, must match the iss and aud of users'
	// tokens. They name the deployment's identity provider: service
	// tokens, which Herald signs itself, need neither.
	Issuer   string
	Audience string
	// Leeway is the clock skew allowed; zero means DefaultLeeway.
	Leeway time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verifier checks bearer tokens.
type Verifier struct {
	cfg    VerifierConfig
	parser *jwt.Parser
	// users checks the iss and aud of users' tokens, which the parser,
	// shared with service tokens, does not.
	users *jwt.Validator

	// verified remembers the tokens that passed, until each one's exp: a
	// client sends the same token with every call, and checking its
	// signature again costs more than a warm read (docs/benchmarks.md).
	// The same bytes verify the same way until they expire, so the cache
	// changes no answer. It is keyed by the token's SHA-256, which keeps
	// an entry small whatever the token's length; see evict for its bound.
	mu       sync.Mutex
	verified map[[sha256.Size]byte]verifiedToken
}

type verifiedToken struct {
	id  Identity
	exp time.Time
}

// maxVerified bounds the verified-token cache, about 100 bytes an entry:
// some 10 MiB at most. It is sized for the users one instance serves at
// once: below that, a user who comes back within minutes finds their
// token gone, and each of their reads pays for a signature check, which
// costs more than the read (docs/benchmarks.md).
const maxVerified = 100_000

// NewVerifier returns a Verifier that trusts cfg's keys.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if len(cfg.Keys) == 0 && len(cfg.ServiceKeys) == 0 {
		return nil, errors.New("auth: no trusted keys")
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	var algs []string
	for _, k := range append(slices.Clone(cfg.Keys), cfg.ServiceKeys...) {
		if !slices.Contains(algs, k.Alg) {
			algs = append(algs, k.Alg)
		}
	}
	opts := []jwt.ParserOption{
		// Only the algorithms of configured keys: never "none", and
		// never an HMAC alg that would take a public key as its secret.
		jwt.WithValidMethods(algs),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.Leeway),
	}
	if cfg.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(cfg.Now))
	}
	userOpts := slices.Clone(opts)
	if cfg.Issuer != "" {
		userOpts = append(userOpts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		userOpts = append(userOpts, jwt.WithAudience(cfg.Audience))
	}
	return &Verifier{verified: make(map[[sha256.Size]byte]verifiedToken), cfg: cfg, parser: jwt.NewParser(opts...), users: jwt.NewValidator(userOpts...)}, nil
}

// Verify checks token and returns its caller. Every refusal wraps
// ErrUnauthenticated, with a reason fit to show the client; the token
// itself is never part of it.
func (v *Verifier) Verify(token string) (Identity, error) {
	if len(token) > MaxTokenLen {
		return Identity{}, fmt.Errorf("%w: token longer than %d bytes", ErrUnauthenticated, MaxTokenLen)
	}
	now := v.now()
	key := sha256.Sum256([]byte(token))
	v.mu.Lock()
	c, ok := v.verified[key]
	v.mu.Unlock()
	if ok && now.Before(c.exp) {
		return c.id, nil
	}
	id, exp, err := v.verify(token)
	if err != nil {
		return id, err
	}
	v.mu.Lock()
	if len(v.verified) >= maxVerified {
		v.evict(now)
	}
	v.verified[key] = verifiedToken{id, exp}
	v.mu.Unlock()
	return id, nil
}

// evict makes room in the full cache: it drops the expired tokens and,
// if that is not an eighth of the cache, arbitrary others (Go's map
// iteration order is unspecified and varies), so that most callers keep
// their entries. Clearing the whole cache instead made every caller pay a
// signature check at once whenever it filled. The caller holds v.mu.
func (v *Verifier) evict(now time.Time) {
	maps.DeleteFunc(v.verified, func(_ [sha256.Size]byte, t verifiedToken) bool { return !now.Before(t.exp) })
	for k := range v.verified {
		if len(v.verified) <= maxVerified-maxVerified/8 {
			break
		}
		delete(v.verified, k)
	}
}

func (v *Verifier) now() time.Time {
	if v.cfg.Now != nil {
		return v.cfg.Now()
	}
	return time.Now()
}

// verify checks token's signature and claims, and returns its exp too.
func (v *Verifier) verify(token string) (Identity, time.Time, error) {
	var claims jwt.RegisteredClaims
	var service bool
	_, err := v.parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		service = kid == ServiceKeyID
		keys := v.cfg.Keys
		if service {
			keys = v.cfg.ServiceKeys
		}
		var set jwt.VerificationKeySet
		for _, k := range keys {
			if k.Alg == t.Method.Alg() && (service || kid == "" || k.ID == "" || k.ID == kid) {
				set.Keys = append(set.Keys, k.Public)
			}
		}
		if len(set.Keys) == 0 {
			return nil, fmt.Errorf("no trusted key for alg %q and kid %q", t.Method.Alg(), kid)
		}
		return set, nil
	})
	if err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	// exp is required, so the parser has checked it is there.
	exp := claims.ExpiresAt.Add(v.cfg.Leeway)
	if service {
		if claims.Subject == "" {
			return Identity{}, exp, fmt.Errorf("%w: service token without sub", ErrUnauthenticated)
		}
		return Identity{Service: claims.Subject}, exp, nil
	}
	if err := v.users.Validate(claims); err != nil {
		return Identity{}, exp, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	if err := feed.ValidateUserID("sub", claims.Subject); err != nil {
		return Identity{}, exp, fmt.Errorf("%w: token sub is not a user ID: %w", ErrUnauthenticated, err)
	}
	return Identity{User: claims.Subject}, exp, nil
}
