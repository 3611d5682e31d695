package guard_test

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-feed/herald/services/platform/auth"
	"github.com/herald-feed/herald/services/platform/flagenv"
	"github.com/herald-feed/herald/services/platform/guard"
	"github.com/herald-feed/herald/services/platform/ratelimit"
)

func TestParseLimit(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want ratelimit.Limit
		on   bool
	}{
		{"10:50", ratelimit.Limit{Rate: 10, Burst: 50}, true},
		{"0.5:1", ratelimit.Limit{Rate: 0.5, Burst: 1}, true},
		{"off", ratelimit.Limit{}, false},
	} {
		l, on, err := guard.ParseLimit(tt.in)
		if err != nil || on != tt.on || (on && l != tt.want) {
			t.Errorf("ParseLimit(%q) = %+v, %v, %v; want %+v, %v, nil", tt.in, l, on, err, tt.want, tt.on)
		}
	}
	for _, in := range []string{"10", "x:1", "10:0", "-1:5", "10:50:1", "", "0:5", "10:x", "Off", "inf:5", "NaN:5"} {
		if l, on, err := guard.ParseLimit(in); err == nil || on {
			t.Errorf("ParseLimit(%q) = %+v, %v, %v; want an error", in, l, on, err)
		} else if !strings.Contains(err.Error(), in) {
			t.Errorf("ParseLimit(%q) error %q does not quote the value", in, err)
		}
	}
}

func TestBindFlags(t *testing.T) {
	env := map[string]string{"HERALD_RATE_READS": "5:10"}
	fs := flagenv.New("test", func(k string) string { return env[k] }, io.Discard)
	var s guard.Settings
	guard.BindFlags(fs, &s)
	if err := fs.Parse([]string{"-rate-posts", "off", "-rate-follows", "1:2"}); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if s.Auth != "on" {
		t.Errorf("Auth = %q; want on by default", s.Auth)
	}
	want := map[guard.Class]ratelimit.Limit{
		guard.Deletes: guard.DefaultLimits[guard.Deletes],
		guard.Follows: {Rate: 1, Burst: 2},
		guard.Reads:   {Rate: 5, Burst: 10},
	}
	if len(s.Limits) != len(want) {
		t.Errorf("Limits = %v; want %v", s.Limits, want)
	}
	for c, l := range want {
		if s.Limits[c] != l {
			t.Errorf("Limits[%s] = %+v; want %+v", c, s.Limits[c], l)
		}
	}
	if l := guard.DefaultLimits[guard.Posts]; l != (ratelimit.Limit{Rate: 10, Burst: 50}) {
		t.Errorf("DefaultLimits[posts] = %+v after -rate-posts off; flags must not change the defaults", l)
	}
	if err := fs.Parse([]string{"-rate-posts", "10"}); err == nil {
		t.Error("Parse(-rate-posts 10) succeeded; want an error")
	}
}

func TestSettingsOpen(t *testing.T) {
	dir := t.TempDir()
	userKey, err := auth.LoadOrCreateKey(filepath.Join(dir, "user.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := auth.PublicKeyPEM(userKey)
	if err != nil {
		t.Fatal(err)
	}
	keysFile := filepath.Join(dir, "keys.pem")
	if err := os.WriteFile(keysFile, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	svcFile := filepath.Join(dir, "service.pem")
	svcKey, err := auth.LoadOrCreateKey(svcFile)
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a key"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("off", func(t *testing.T) {
		s := guard.Settings{Auth: "off", KeysFile: missing}
		cfg, key, err := s.Open(discard)
		if err != nil || cfg.Verifier != nil || key != nil {
			t.Errorf("Open(auth off) = verifier %v, key %v, %v; want no verifier, no key, no error", cfg.Verifier, key, err)
		}
		if len(cfg.Limits) != len(guard.DefaultLimits) {
			t.Errorf("Open(settings made in code).Limits = %v; want DefaultLimits", cfg.Limits)
		}
	})
	for _, tt := range []struct {
		name string
		s    guard.Settings
		says []string
	}{
		{"on without keys", guard.Settings{Auth: "on"}, []string{"-auth-keys"}},
		{"default without keys", guard.Settings{}, []string{"-auth-keys"}},
		{"maybe", guard.Settings{Auth: "maybe", KeysFile: keysFile}, []string{"-auth", `"maybe"`}},
		{"keys file unreadable", guard.Settings{KeysFile: missing}, []string{"-auth-keys", missing}},
		{"keys file of garbage", guard.Settings{KeysFile: garbage}, []string{"-auth-keys", garbage, "no keys"}},
		{"service key unreadable", guard.Settings{KeysFile: keysFile, ServiceKeyFile: missing}, []string{"-auth-service-key", missing}},
		{"service key is a public key", guard.Settings{KeysFile: keysFile, ServiceKeyFile: keysFile}, []string{"-auth-service-key"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := tt.s.Open(discard)
			if err == nil {
				t.Fatal("Open succeeded; want an error")
			}
			for _, w := range tt.says {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Open error %q does not say %q", err, w)
				}
			}
		})
	}
	t.Run("unreadable file is ErrNotExist", func(t *testing.T) {
		s := guard.Settings{KeysFile: missing}
		if _, _, err := s.Open(discard); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open(missing -auth-keys) = %v; want it to wrap fs.ErrNotExist", err)
		}
	})

	t.Run("on", func(t *testing.T) {
		for _, s := range []guard.Settings{
			{Auth: "on", KeysFile: keysFile, ServiceKeyFile: svcFile},
			{Keys: []auth.Key{auth.NewSigner(userKey).Key()}, ServiceKey: svcKey},
			// iss and aud are the users' identity provider's; service
			// tokens are signed by Herald (node.go: NewServiceSigner with
			// no options) and must still verify.
			{KeysFile: keysFile, ServiceKeyFile: svcFile, Issuer: "https://id.example", Audience: "herald"},
		} {
			cfg, key, err := s.Open(discard)
			if err != nil {
				t.Fatalf("Open(%+v): %v", s, err)
			}
			if cfg.Verifier == nil || !svcKey.Equal(key) {
				t.Fatalf("Open(%+v) = verifier %v, service key %v; want a verifier and the service key", s, cfg.Verifier, key)
			}
			opts := []auth.SignerOption{auth.WithIssuer(s.Issuer)}
			if s.Audience != "" {
				opts = append(opts, auth.WithAudience(s.Audience))
			}
			userTok, err := auth.NewSigner(userKey, opts...).Token("alice", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if id, err := cfg.Verifier.Verify(userTok); err != nil || id.User != "alice" {
				t.Errorf("Verify(alice's token) = %+v, %v; want alice", id, err)
			}
			svcTok, err := auth.NewServiceSigner(key).Token("fanout", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if id, err := cfg.Verifier.Verify(svcTok); err != nil || id.Service != "fanout" {
				t.Errorf("Verify(service token) = %+v, %v; want service fanout", id, err)
			}
		}
	})
	t.Run("on without a service key", func(t *testing.T) {
		s := guard.Settings{KeysFile: keysFile}
		cfg, key, err := s.Open(discard)
		if err != nil || cfg.Verifier == nil || key != nil {
			t.Errorf("Open(no service key) = verifier %v, key %v, %v; want a verifier and no key", cfg.Verifier, key, err)
		}
	})
}
