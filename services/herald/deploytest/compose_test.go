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
	"github.com/herald-feed/herald/services/platform/tracing"
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
// its variable, package flagenv), with the OTEL_* ones of tracing,
// feedctl's from its source, where it reads them with os.Getenv.
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
		vars[name] = append(fs.Vars(), tracing.Variables...)
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
				if s.Build != nil && s.Build.Target == "feedload" {
					continue // the load generator's image, a client
				}
				if s.Image == "herald:local" || s.Build != nil && s.Build.Dockerfile == "deploy/docker/Dockerfile" {
					heraldContainers++
					if s.User != "" {
						t.Errorf("service %s runs Herald's image as user %q; want the image's nonroot user", name, s.User)
					}
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
						if (strings.HasPrefix(v, "HERALD_") || strings.HasPrefix(v, "OTEL_")) && !slices.Contains(accepted, v) && !slices.Contains(vars["feedctl"], v) {
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
			if file == "docker-compose.yml" {
				// Every server starts after the one-shot schema job.
				for name, s := range p.Services {
					if len(s.Entrypoint) == 0 || !slices.Contains([]string{"post", "graph", "fanout", "timeline"}, filepath.Base(s.Entrypoint[0])) {
						continue
					}
					if d, ok := s.DependsOn["schema"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
						t.Errorf("service %s does not wait for the schema job to complete", name)
					}
				}
				if sj, ok := p.Services["schema"]; !ok || len(sj.Entrypoint) < 2 || sj.Entrypoint[1] != "migrate" {
					t.Errorf("the schema job is missing, or does not run feedctl migrate")
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

// TestDockerfile checks what the compose files and Kubernetes take from
// deploy/docker/Dockerfile: its base images are named once, as build
// arguments pinned by digest, and every image it makes runs as a nonroot
// user.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "docker", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	pinned := regexp.MustCompile(`^ARG ([A-Z_]+_IMAGE)=\S+@sha256:[0-9a-f]{64}$`)
	args := map[string]bool{}
	var stage string
	users := map[string]string{} // final stage → its USER
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if m := pinned.FindStringSubmatch(line); m != nil {
			args[m[1]] = true
			continue
		}
		if strings.HasPrefix(line, "ARG ") && strings.HasSuffix(strings.Fields(line)[1], "_IMAGE") {
			t.Errorf("base image %q is not pinned by digest", line)
		}
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "FROM" {
			ref := strings.TrimSuffix(strings.TrimPrefix(f[1], "${"), "}")
			if !args[ref] {
				t.Errorf("%q: want FROM one of the pinned base-image arguments %v", line, slices.Sorted(maps.Keys(args)))
			}
			stage = ""
			if len(f) == 4 && strings.EqualFold(f[2], "AS") {
				stage = f[3]
			}
			users[stage] = ""
		}
		if u, ok := strings.CutPrefix(line, "USER "); ok {
			users[stage] = u
		}
	}
	for _, final := range []string{"herald", "feedload"} {
		u, ok := users[final]
		if !ok {
			t.Errorf("no stage %s", final)
			continue
		}
		if uid, _, _ := strings.Cut(u, ":"); uid == "" || uid == "0" || uid == "root" {
			t.Errorf("stage %s runs as %q; want a nonroot user", final, u)
		}
	}
	if len(args) < 2 {
		t.Errorf("pinned base images %v; want the Go build image and the runtime image", args)
	}
}
