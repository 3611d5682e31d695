package backend_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-feed/herald/services/platform/backend"
	"github.com/herald-feed/herald/services/platform/node"
	"github.com/herald-feed/herald/services/platform/testenv"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// OpenCache logs in to Redis with the login's user and password file, and
// a login that Redis refuses, or none where it wants one, fails the start.
func TestOpenCacheLogin(t *testing.T) {
	addr := testenv.Redis(t)
	user, file := testenv.RedisLogin(t)
	ctx := context.Background()
	open := func(l node.Login) error {
		c, err := backend.OpenCache(ctx, &backend.CacheConfig{Kind: "redis", Addrs: []string{addr}, Login: l}, "backendtest", quiet)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := open(node.Login{User: user, PasswordFile: file}); err != nil {
		t.Fatalf("OpenCache as %s: %v", user, err)
	}
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("not-the-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		l    node.Login
		want string
	}{
		"no login":         {node.Login{}, "-redis-user"},
		"a wrong password": {node.Login{User: user, PasswordFile: wrong}, "WRONGPASS"},
		"no password file": {node.Login{User: user, PasswordFile: wrong + ".absent"}, "-redis-password-file"},
	} {
		if err := open(tc.l); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OpenCache with %s = %v; want an error containing %q", name, err, tc.want)
		}
	}
}

// A Cassandra password file that does not read fails before any dial.
func TestOpenStoreUnreadablePasswordFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "absent")
	_, err := backend.OpenStore(context.Background(), &backend.StoreConfig{
		Kind: "cassandra", Hosts: []string{"127.0.0.1:1"}, Login: node.Login{User: "herald", PasswordFile: file},
	}, quiet)
	if err == nil || !strings.Contains(err.Error(), "-cassandra-password-file (HERALD_CASSANDRA_PASSWORD_FILE)") || !strings.Contains(err.Error(), file) {
		t.Errorf("OpenStore with an unreadable password file = %v; want an error naming -cassandra-password-file and %s", err, file)
	}
}
