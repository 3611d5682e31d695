package app

import (
	"io"
	"strings"
	"testing"

	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/flagenv"
)

func TestMaxFollowingFlag(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want int64
	}{
		{"default", nil, nil, feed.DefaultMaxFollowing},
		{"variable", map[string]string{"HERALD_MAX_FOLLOWING": "3"}, nil, 3},
		{"flag wins", map[string]string{"HERALD_MAX_FOLLOWING": "3"}, []string{"-max-following", "7"}, 7},
	}
	for _, tt := range tests {
		fs := flagenv.New("graph", func(k string) string { return tt.env[k] }, io.Discard)
		var c Config
		BindFlags(fs, &c)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatalf("%s: Parse(%q) = %v", tt.name, tt.args, err)
		}
		if err := c.Check(); err != nil || c.MaxFollowing != tt.want {
			t.Errorf("%s: MaxFollowing = %d, Check() = %v; want %d, nil", tt.name, c.MaxFollowing, err, tt.want)
		}
	}

	zero := Config{}
	if err := zero.Check(); err != nil || zero.MaxFollowing != feed.DefaultMaxFollowing {
		t.Errorf("Config{}.Check() = %v, MaxFollowing %d; want nil, %d", err, zero.MaxFollowing, feed.DefaultMaxFollowing)
	}
	neg := Config{MaxFollowing: -1}
	if err := neg.Check(); err == nil || !strings.Contains(err.Error(), "-max-following") {
		t.Errorf("Config{MaxFollowing: -1}.Check() = %v; want an error naming -max-following", err)
	}
}
