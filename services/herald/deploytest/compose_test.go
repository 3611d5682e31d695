// Package deploytest checks the deployment files under deploy/ and the
// root compose file against the binaries they run: what no Docker engine
// on this project's machines can start, a test can still read.
package deploytest

import (
	"context"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	fanout "github.com/herald-feed/herald/services/fanout/app"
	graph "github.com/herald-feed/herald/services/graph/app"
	"github.com/herald-feed/herald/services/herald/allinone"
	"github.com/herald-feed/herald/services/platform/flagenv"
	"github.com/herald-feed/herald/services/platform/node"
	post "github.com/herald-feed/herald/services/post/app"
	timeline "github.com/herald-feed/herald/services/timeline/app"
)

// repoRoot is the repository's root, three levels above this package.
var repoRoot = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}()

// composeFiles are the compose files Herald ships.
var composeFiles = []string{"docker-compose.yml", "deploy/docker/compose.allinone.yml"}

// acceptedVars returns, for each binary of the Herald image, the HERALD_*
// variables it reads: the servers' from their flag sets (every flag has
// its variable, package flagenv), feedctl's from its source, where it
// reads them with os.Getenv.
func acceptedVars(t *testing.T) map[string][]string {
	t.Helper()
	vars := map[string][]string{}
	for name, p := range map[string]node.Program{
		"herald": allinone.Program(nil), "post": post.Program(), "graph": graph.Program(),
		"fanout": fanout.Program(), "timeline": timeline.Program(),
	} {
		fs := flagenv.New(name, func(string) string { return "" }, io.Discard)
		node.BindFlags(fs, p.Defaults, p.Embedded) // as node.Main does
		p.Bind(fs)
		vars[name] = fs.Vars()
	}
	src, err := os.ReadFile(filepath.Join(repoRoot, "services", "herald", "cmd", "feedctl", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`os\.Getenv\("(HERALD_[A-Z0-9_]+)"\)`).FindAllStringSubmatch(string(src), -1) {
		vars["feedctl"] = append(vars["feedctl"], m[1])
	}
	if len(vars["feedctl"]) == 0 {
		t.Fatal("found no os.Getenv(\"HERALD_...\") in feedctl's main.go")
	}
	return vars
}

// load reads a compose file as `docker compose --profile '*'` would.
func load(t *testing.T, file string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(repoRoot, file)},
		cli.WithProfiles([]string{"*"}),
		cli.WithEnv([]string{"BUS=jetstream"}),
		cli.WithName("herald-check"),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return p
}

// TestComposeFiles loads every compose file with compose-go, as Docker
// Compose does, every profile on, and checks what an `up` would otherwise
// find out: that every HERALD_* variable a Herald container is given is
// one its binary (or feedctl, which runs in the same image for `docker
// compose exec`) reads, that every long-running container has a health
// check and is waited for by its health, and that every file a container
// mounts from the repository exists.
func TestComposeFiles(t *testing.T) {
	vars := acceptedVars(t)
	for _, file := range composeFiles {
		t.Run(file, func(t *testing.T) {
			p := load(t, file)
			oneShot := map[string]bool{}
			for _, s := range p.Services {
				for dep, d := range s.DependsOn {
					if d.Condition == types.ServiceConditionCompletedSuccessfully {
						oneShot[dep] = true
					}
				}
			}
			heraldContainers := 0
			// The fan-out and timeline containers must agree on the policy
			// (backend.Policy): each (variable, value) they set, by container.
			policy := map[string]map[string]string{}
			for name, s := range p.Services {
				if s.Image == "herald:local" || s.Build != nil && s.Build.Dockerfile == "deploy/docker/Dockerfile" {
					heraldContainers++
					bin := "herald"
					if len(s.Entrypoint) > 0 {
						bin = filepath.Base(s.Entrypoint[0])
					}
					accepted, ok := vars[bin]
					if !ok {
						t.Errorf("service %s runs %s, which is not a Herald binary this test knows", name, bin)
						continue
					}
					if bin == "fanout" || bin == "timeline" {
						for _, v := range []string{"HERALD_STRATEGY", "HERALD_CELEBRITY_THRESHOLD"} {
							if policy[v] == nil {
								policy[v] = map[string]string{}
							}
							policy[v][name] = deref(s.Environment[v])
						}
					}
					for v := range s.Environment {
						if strings.HasPrefix(v, "HERALD_") && !slices.Contains(accepted, v) && !slices.Contains(vars["feedctl"], v) {
							t.Errorf("service %s sets %s, which neither %s nor feedctl reads", name, v, bin)
						}
					}
				}
				onDemand := slices.ContainsFunc(s.Profiles, func(p string) bool { return p == "tools" || p == "loadtest" })
				if !oneShot[name] && !onDemand && (s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) == 0) {
					t.Errorf("service %s runs for good but has no health check", name)
				}
				for dep, d := range s.DependsOn {
					if !oneShot[dep] && d.Condition != types.ServiceConditionHealthy {
						t.Errorf("service %s waits for %s by %q; want service_healthy", name, dep, d.Condition)
					}
				}
				for _, v := range s.Volumes {
					if v.Type != types.VolumeTypeBind {
						continue
					}
					if _, err := os.Stat(v.Source); err != nil && !strings.HasPrefix(v.Source, filepath.Join(repoRoot, "loadtest", "out")) {
						t.Errorf("service %s mounts %s, which does not exist: %v", name, v.Source, err)
					}
				}
			}
			for v, byName := range policy {
				values := slices.Compact(slices.Sorted(maps.Values(byName)))
				if len(values) != 1 || values[0] == "" {
					t.Errorf("the fan-out and timeline containers set %s to %v; want one value, the same in every one", v, byName)
				}
			}
			if heraldContainers == 0 {
				t.Errorf("%s runs no Herald container (image herald:local, or built from deploy/docker/Dockerfile)", file)
			}
		})
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
