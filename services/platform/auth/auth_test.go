package auth_test

import (
	"context"
	"testing"

	"github.com/herald-feed/herald/services/platform/auth"
)

func TestBearerToken(t *testing.T) {
	for _, tt := range []struct {
		header string
		token  string
		ok     bool
	}{
		{"Bearer x", "x", true},
		{"bearer x", "x", true},
		{"BEARER x", "x", true},
		{"Bearer  x ", "x", true},
		{"Bearer a.b.c", "a.b.c", true},
		{"Basic x", "", false},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearer  ", "", false},
		{"Bearerx", "", false},
		{"", "", false},
		{" Bearer x", "", false},
	} {
		token, ok := auth.BearerToken(tt.header)
		if token != tt.token || ok != tt.ok {
			t.Errorf("BearerToken(%q) = %q, %v; want %q, %v", tt.header, token, ok, tt.token, tt.ok)
		}
	}
}

func TestIdentity(t *testing.T) {
	for _, tt := range []struct {
		id        auth.Identity
		anonymous bool
		str       string
	}{
		{auth.Identity{}, true, "anonymous"},
		{auth.Identity{User: "alice"}, false, "user alice"},
		{auth.Identity{Service: "fanout"}, false, "service fanout"},
	} {
		if got := tt.id.Anonymous(); got != tt.anonymous {
			t.Errorf("%+v.Anonymous() = %v; want %v", tt.id, got, tt.anonymous)
		}
		if got := tt.id.String(); got != tt.str {
			t.Errorf("%+v.String() = %q; want %q", tt.id, got, tt.str)
		}
	}
	ctx := context.Background()
	if id, ok := auth.FromContext(ctx); ok || id != (auth.Identity{}) {
		t.Errorf("FromContext(empty context) = %+v, %v; want the zero Identity, false", id, ok)
	}
	alice := auth.Identity{User: "alice"}
	if id, ok := auth.FromContext(auth.WithIdentity(ctx, alice)); !ok || id != alice {
		t.Errorf("FromContext(WithIdentity(alice)) = %+v, %v; want alice, true", id, ok)
	}
}
