// Package auth verifies who is calling Herald. Clients send
// "authorization: Bearer <JWT>" in gRPC metadata; a Verifier checks the
// token's signature against trusted public keys, its exp and nbf, and its
// issuer and audience when configured, and returns the caller's Identity:
// the token's sub is the user ID.
//
// Herald verifies tokens; it is not an identity provider. A deployment
// signs tokens with its own issuer and gives Herald the public keys
// (-auth-keys: PEM public keys or a JWKS file). The all-in-one creates an
// Ed25519 development key in its data dir at first start and trusts it,
// so that `feedctl token USER` can sign tokens for local use (see DevKey).
//
// Calls between Herald's own services carry a service identity: a token
// signed with the deployment's service key (ServiceKeyID in its header),
// whose sub names the calling service. A service token is never taken for
// a user's, nor a user's for a service's.
package auth

import (
	"context"
	"strings"
)

// Identity is the verified caller of one call: a user, or one of
// Herald's own services. The zero Identity is an anonymous caller.
type Identity struct {
	// User is the token's sub, a valid user ID, for a user's token.
	User string
	// Service names the calling Herald service, for a service token.
	Service string
}

// Anonymous reports whether the call carried no token.
func (id Identity) Anonymous() bool { return id.User == "" && id.Service == "" }

func (id Identity) String() string {
	switch {
	case id.Service != "":
		return "service " + id.Service
	case id.User != "":
		return "user " + id.User
	}
	return "anonymous"
}

type identityKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the caller's identity that the server's interceptor
// verified, and false if the call did not pass through the interceptor.
// With authentication off every caller is anonymous: the zero Identity.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// MetadataKey is the gRPC metadata key of the bearer token.
const MetadataKey = "authorization"

// BearerToken returns the token of an authorization header value
// "Bearer <token>" (the scheme is case-insensitive), and false if the value
// is not a bearer credential.
func BearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
