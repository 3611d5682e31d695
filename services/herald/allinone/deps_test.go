package allinone_test

import (
	"os/exec"
	"strings"
	"testing"
)

// embeddedOnly are the packages that only the all-in-one may link: the
// embedded servers and the in-process adapters.
var embeddedOnly = []string{
	"go.etcd.io/etcd/server/v3",
	"github.com/nats-io/nats-server/v2",
	"github.com/cockroachdb/pebble",
	"github.com/herald-feed/herald/services/platform/embedded",
	"github.com/herald-feed/herald/services/platform/memcache",
	"github.com/herald-feed/herald/services/platform/pebblestore",
}

// TestSplitBinariesLinkNoEmbeddedServer: a split service binary links no
// embedded etcd server, nats-server, Pebble or in-process cache, so it
// cannot run on private state by mistake; the all-in-one links them.
func TestSplitBinariesLinkNoEmbeddedServer(t *testing.T) {
	deps := func(pkg string) []string {
		t.Helper()
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	linked := func(all []string, prefix string) bool {
		for _, p := range all {
			if p == prefix || strings.HasPrefix(p, prefix+"/") {
				return true
			}
		}
		return false
	}
	for _, svc := range []string{"post", "graph", "fanout", "timeline"} {
		pkg := "github.com/herald-feed/herald/services/" + svc + "/cmd/" + svc
		all := deps(pkg)
		for _, e := range embeddedOnly {
			if linked(all, e) {
				t.Errorf("%s links %s; want only the all-in-one to", pkg, e)
			}
		}
	}
	all := deps("github.com/herald-feed/herald/services/herald/cmd/herald")
	for _, e := range embeddedOnly {
		if !linked(all, e) {
			t.Errorf("the all-in-one does not link %s: is embeddedOnly out of date?", e)
		}
	}
}
