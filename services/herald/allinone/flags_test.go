package allinone

import (
	"io"
	"testing"
	"time"

	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/flagenv"
)

// TestBindTakesEffect: every setting the all-in-one binds reaches its
// Config, from a flag or from its variable.
func TestBindTakesEffect(t *testing.T) {
	env := map[string]string{"HERALD_FANOUT_WORKERS": "3", "HERALD_RELAY_TIMEOUT": "7s", "HERALD_TIMELINE_CAP": "50", "HERALD_MAX_FOLLOWING": "3"}
	fs := flagenv.New("herald", func(k string) string { return env[k] }, io.Discard)
	c := Bind(fs)
	err := fs.Parse([]string{
		"-data", "/tmp/d", "-store", "cassandra", "-cassandra", "h1:9042,h2:9042", "-cache", "redis", "-redis", "r:6379",
		"-strategy", "pull", "-celebrity-threshold", "42", "-fanout-chunk-size", "9", "-active-window", "1h",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"data", c.DataDir, "/tmp/d"},
		{"store", c.Store.Kind, "cassandra"},
		{"cassandra hosts", len(c.Store.Hosts), 2},
		{"cache", c.Cache.Kind, "redis"},
		{"redis", c.Cache.Addrs[0], "r:6379"},
		{"strategy", c.Policy.Strategy, feed.Pull},
		{"threshold", c.Policy.Threshold, int64(42)},
		{"chunk size", c.Fanout.ChunkSize, 9},
		{"workers (variable)", c.Fanout.Workers, 3},
		{"relay timeout (variable)", c.Post.RelayTimeout, 7 * time.Second},
		{"timeline cap (variable)", c.Cache.Cap, 50},
		{"max following (variable)", c.Graph.MaxFollowing, int64(3)},
		{"active window", c.Cache.ActiveWindow, time.Hour},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v; want %v", tc.name, tc.got, tc.want)
		}
	}
}
