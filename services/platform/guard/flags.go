package guard

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/herald-feed/herald/services/platform/auth"
	"github.com/herald-feed/herald/services/platform/flagenv"
	"github.com/herald-feed/herald/services/platform/ratelimit"
)

// DefaultLimits are the per-user buckets. A person never reaches them,
// nor does a test that posts a few dozen times in a few seconds; a flood
// does. For scale: Mastodon allows 300 requests per 5 minutes per account,
// Bluesky about 1,666 record creations an hour.
var DefaultLimits = map[Class]ratelimit.Limit{
	Posts:   {Rate: 10, Burst: 50},
	Deletes: {Rate: 10, Burst: 50},
	Follows: {Rate: 10, Burst: 100},
	Reads:   {Rate: 100, Burst: 500},
}

// Settings are the authentication and rate-limit settings of a process.
type Settings struct {
	// Auth is "on" or "off".
	Auth string
	// KeysFile holds the public keys trusted for users' tokens (PEM or
	// JWKS); ServiceKeyFile the Ed25519 private key of service tokens.
	KeysFile       string
	ServiceKeyFile string
	Issuer         string
	Audience       string
	Limits         map[Class]ratelimit.Limit

	// Keys and ServiceKey are set in code by the all-in-one, from the
	// keys in its data dir; the files above add to them.
	Keys       []auth.Key
	ServiceKey ed25519.PrivateKey
}

// BindFlags defines the settings' flags on fs, each with its HERALD_*
// variable.
func BindFlags(fs *flagenv.Set, s *Settings) {
	if s.Auth == "" {
		s.Auth = "on"
	}
	fs.String(&s.Auth, "auth", "HERALD_AUTH", s.Auth, "authentication: on, or off to accept every call as anyone (logged as a warning)")
	fs.String(&s.KeysFile, "auth-keys", "HERALD_AUTH_KEYS", s.KeysFile, "file of public keys trusted to sign users' tokens: PEM (Ed25519, RSA, ECDSA P-256) or a JWKS document")
	fs.String(&s.ServiceKeyFile, "auth-service-key", "HERALD_AUTH_SERVICE_KEY", s.ServiceKeyFile, "Ed25519 private key (PEM, mode 0600) that signs and verifies the tokens of calls between Herald's services")
	fs.String(&s.Issuer, "auth-issuer", "HERALD_AUTH_ISSUER", s.Issuer, "if set, the iss every user's token must have")
	fs.String(&s.Audience, "auth-audience", "HERALD_AUTH_AUDIENCE", s.Audience, "if set, an aud every user's token must have")
	s.Limits = make(map[Class]ratelimit.Limit)
	for _, c := range []Class{Posts, Deletes, Follows, Reads} {
		s.Limits[c] = DefaultLimits[c]
		fs.Var(limitFlag{s.Limits, c}, "rate-"+string(c), "HERALD_RATE_"+strings.ToUpper(string(c)), "per-user rate limit on "+classCalls[c]+": RATE:BURST (RATE a second), or off")
	}
}

var classCalls = map[Class]string{
	Posts:   "CreatePost",
	Deletes: "DeletePost",
	Follows: "Follow and Unfollow",
	Reads:   "reads and stream opens",
}

// limitFlag is the flag.Value of one class's limit; off deletes it.
type limitFlag struct {
	m map[Class]ratelimit.Limit
	c Class
}

func (f limitFlag) String() string {
	if f.m == nil {
		return ""
	}
	l, ok := f.m[f.c]
	if !ok {
		return "off"
	}
	return strconv.FormatFloat(l.Rate, 'g', -1, 64) + ":" + strconv.Itoa(l.Burst)
}

func (f limitFlag) Set(v string) error {
	l, on, err := ParseLimit(v)
	if err != nil {
		return err
	}
	if on {
		f.m[f.c] = l
	} else {
		delete(f.m, f.c)
	}
	return nil
}

// ParseLimit parses a rate limit "RATE:BURST" (RATE a second), or "off"
// (on is false).
func ParseLimit(v string) (l ratelimit.Limit, on bool, err error) {
	if v == "off" {
		return l, false, nil
	}
	rate, burst, ok := strings.Cut(v, ":")
	if ok {
		l.Rate, err = strconv.ParseFloat(rate, 64)
		if err == nil {
			l.Burst, err = strconv.Atoi(burst)
		}
	}
	if !ok || err != nil {
		return l, false, fmt.Errorf("%q: want RATE:BURST, such as 10:50 (10 a second, bursts of 50), or off", v)
	}
	if err := l.Validate(); err != nil {
		return l, false, fmt.Errorf("%q: %w", v, err)
	}
	return l, true, nil
}

// Open turns the settings into a Guard's Config, reading the key files,
// and returns the key that signs this process's calls to other services
// (nil if none is configured).
func (s *Settings) Open(log *slog.Logger) (Config, ed25519.PrivateKey, error) {
	cfg := Config{Limits: s.Limits, Log: log}
	if cfg.Limits == nil {
		cfg.Limits = DefaultLimits // settings made in code, not by BindFlags
	}
	switch s.Auth {
	case "off":
		log.Warn("authentication is off (-auth=off): any caller may act as any user")
		return cfg, nil, nil
	case "on", "":
	default:
		return cfg, nil, fmt.Errorf("-auth %q: want on or off", s.Auth)
	}
	keys := slices.Clone(s.Keys)
	if s.KeysFile != "" {
		k, err := auth.LoadKeys(s.KeysFile)
		if err != nil {
			return cfg, nil, fmt.Errorf("-auth-keys: %w", err)
		}
		keys = append(keys, k...)
	}
	svc := s.ServiceKey
	if s.ServiceKeyFile != "" {
		k, err := auth.LoadPrivateKey(s.ServiceKeyFile)
		if err != nil {
			return cfg, nil, fmt.Errorf("-auth-service-key: %w", err)
		}
		svc = k
	}
	if len(keys) == 0 {
		return cfg, nil, errors.New("authentication is on but no key is trusted: set -auth-keys to your issuer's public keys, or -auth=off")
	}
	vc := auth.VerifierConfig{Keys: keys, Issuer: s.Issuer, Audience: s.Audience}
	if svc != nil {
		vc.ServiceKeys = []auth.Key{auth.NewServiceSigner(svc).Key()}
	} else {
		log.Warn("no -auth-service-key: calls to other Herald services carry no service identity, and are rate-limited as anonymous reads")
	}
	v, err := auth.NewVerifier(vc)
	if err != nil {
		return cfg, nil, err
	}
	cfg.Verifier = v
	return cfg, svc, nil
}
