package auth

import (
	"context"
	"crypto/ed25519"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/credentials"
)

// Signer signs tokens with an Ed25519 key: the all-in-one's development
// key for users (feedctl token, tests, load generators), or a deployment's
// service key for calls between services. A production deployment signs
// users' tokens with its own identity provider instead.
type Signer struct {
	key      ed25519.PrivateKey
	kid      string
	issuer   string
	audience string
	now      func() time.Time
}

// SignerOption configures a Signer.
type SignerOption func(*Signer)

// WithIssuer sets the iss of the tokens signed.
func WithIssuer(iss string) SignerOption { return func(s *Signer) { s.issuer = iss } }

// WithAudience sets the aud of the tokens signed.
func WithAudience(aud string) SignerOption { return func(s *Signer) { s.audience = aud } }

// WithClock sets the clock that stamps iat, nbf and exp.
func WithClock(now func() time.Time) SignerOption { return func(s *Signer) { s.now = now } }

// NewSigner returns a Signer of users' tokens.
func NewSigner(key ed25519.PrivateKey, opts ...SignerOption) *Signer {
	s := &Signer{key: key, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// NewServiceSigner returns a Signer of service tokens.
func NewServiceSigner(key ed25519.PrivateKey, opts ...SignerOption) *Signer {
	s := NewSigner(key, opts...)
	s.kid = ServiceKeyID
	return s
}

// Key returns the trusted key that verifies the Signer's tokens.
func (s *Signer) Key() Key {
	return Key{Alg: AlgEdDSA, Public: s.key.Public()}
}

// Token returns a token whose sub is subject, valid for ttl from now.
func (s *Signer) Token(subject string, ttl time.Duration) (string, error) {
	now := s.now()
	c := jwt.RegisteredClaims{
		Subject:   subject,
		Issuer:    s.issuer,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	if s.audience != "" {
		c.Audience = jwt.ClaimStrings{s.audience}
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	if s.kid != "" {
		t.Header["kid"] = s.kid
	}
	return t.SignedString(s.key)
}

// Bearer returns per-call credentials that send token.
func Bearer(token string) credentials.PerRPCCredentials { return bearer(token) }

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{MetadataKey: "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false: Herald's listeners may run without
// TLS on loopback or a private network; docs/security.md says when not to.
func (bearer) RequireTransportSecurity() bool { return false }

// serviceTokenTTL is how long a service token lives; it is renewed when
// less than a tenth of that is left.
const serviceTokenTTL = 10 * time.Minute

// ServiceCredentials returns per-call credentials that send a token of
// service, signed by s and renewed before it expires.
func ServiceCredentials(s *Signer, service string) credentials.PerRPCCredentials {
	return &serviceCreds{s: s, service: service}
}

type serviceCreds struct {
	s       *Signer
	service string

	mu      sync.Mutex
	token   string
	expires time.Time
}

func (c *serviceCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.s.now()
	if now.After(c.expires.Add(-serviceTokenTTL / 10)) {
		t, err := c.s.Token(c.service, serviceTokenTTL)
		if err != nil {
			return nil, err
		}
		c.token, c.expires = t, now.Add(serviceTokenTTL)
	}
	return map[string]string{MetadataKey: "Bearer " + c.token}, nil
}

func (*serviceCreds) RequireTransportSecurity() bool { return false }
