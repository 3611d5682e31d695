package deploytest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// walkthroughDir holds the system-design walkthrough.
var walkthroughDir = filepath.Join(repoRoot, "docs", "walkthrough")

// mdLink is a markdown link: its text and its target.
var mdLink = regexp.MustCompile(`\[([^\]]*)\]\(([^)\s]+)\)`)

// slug is GitHub's anchor of a heading: lower case, every character but
// letters, digits, '-' and '_' dropped (punctuation and symbols such as
// '→'), spaces to dashes.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors returns the anchors of a markdown file's headings, with
// GitHub's -1, -2 suffixes for repeats; headings inside code blocks do not
// count.
func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	seen := map[string]int{}
	fenced := false
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimLeft(line, "#")
		// Markdown in a heading (`code`, **bold**, [links](...)) keeps its text.
		h = mdLink.ReplaceAllString(h, "$1")
		h = strings.NewReplacer("`", "", "*", "").Replace(h)
		s := slug(h)
		if n := seen[s]; n > 0 {
			out[s+"-"+itoa(n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// declares reports whether the Go file declares name: a function or
// method, a type, a variable or constant, or a field or entry in a block.
func declares(src, name string) bool {
	q := regexp.QuoteMeta(name)
	for _, p := range []string{
		`(?m)^func (\([^)]*\) )?` + q + `[\[(]`,
		`(?m)^(type|var|const) ` + q + `\b`,
		`(?m)^\t+` + q + `\b[^\n]*=`,
		`(?m)^\t+` + q + `\s+[\[\]*A-Za-z]`,
	} {
		if regexp.MustCompile(p).MatchString(src) {
			return true
		}
	}
	return false
}

// binaries are the programs make build puts in bin/.
var binaries = []string{"herald", "feedctl", "post", "graph", "fanout", "timeline", "feedload", "staticcheck"}

// makeTargets returns the Makefile's targets.
func makeTargets(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^([a-z][a-z0-9-]*):`).FindAllStringSubmatch(string(b), -1) {
		out = append(out, m[1])
	}
	return out
}

// TestWalkthrough checks docs/walkthrough as a reader relies on it: every
// relative link and #anchor resolves; every code link (a backticked
// identifier linking a .go file) names a file that declares it; every
// command of a "Try it" block is a make target, a deploy/local script, a
// built binary or a go test of packages that exist, and the block is
// followed by the figure it printed here; and the index answers every
// question of questions.md, which holds the seed's IDs.
func TestWalkthrough(t *testing.T) {
	pages, err := filepath.Glob(filepath.Join(walkthroughDir, "*.md"))
	if err != nil || len(pages) < 5 {
		t.Fatalf("walkthrough pages: %v, %v; want the index and the theme pages", pages, err)
	}
	targets := makeTargets(t)
	anchorCache := map[string]map[string]bool{}
	anchorsOf := func(path string) map[string]bool {
		if a, ok := anchorCache[path]; ok {
			return a
		}
		a := anchors(t, path)
		anchorCache[path] = a
		return a
	}
	for _, page := range pages {
		name := filepath.Base(page)
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		src := string(b)
		prose := stripFences(src)
		for _, m := range mdLink.FindAllStringSubmatch(prose, -1) {
			text, target := m[1], m[2]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := page
			if file != "" {
				path = filepath.Join(filepath.Dir(page), file)
			}
			info, err := os.Stat(path)
			if err != nil {
				t.Errorf("%s: link [%s](%s): %v", name, text, target, err)
				continue
			}
			if anchor != "" && strings.HasSuffix(path, ".md") && !anchorsOf(path)[anchor] {
				t.Errorf("%s: link [%s](%s): no heading with anchor #%s in %s", name, text, target, anchor, filepath.Base(path))
			}
			if ident, ok := strings.CutPrefix(text, "`"); ok && strings.HasSuffix(path, ".go") && !info.IsDir() {
				ident = strings.TrimSuffix(ident, "`")
				parts := strings.Split(strings.TrimSuffix(ident, "()"), ".")
				code, _ := os.ReadFile(path)
				if last := parts[len(parts)-1]; !declares(string(code), last) {
					t.Errorf("%s: code link [%s](%s): %s declares no %s", name, text, target, file, last)
				}
			}
		}
		checkTryIt(t, name, src, targets)
	}

	// The index covers every question.
	ids := questionIDs(t, filepath.Join(walkthroughDir, "questions.md"))
	if len(ids) != 34 {
		t.Errorf("questions.md holds %d question IDs; want Q1 to Q34", len(ids))
	}
	if seed := filepath.Join(repoRoot, "..", "shared", "seed", "QUESTIONS.md"); fileExists(seed) {
		if got := questionIDs(t, seed); !slices.Equal(got, ids) {
			t.Errorf("questions.md's IDs %v differ from the seed's %v", ids, got)
		}
	}
	index, err := os.ReadFile(filepath.Join(walkthroughDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		row := regexp.MustCompile(`(?m)^\|\s*` + id + `\s*\|.*\]\([a-z-]+\.md#[^)]+\)`)
		if !row.Match(index) {
			t.Errorf("the index has no row for %s linking to the section that answers it", id)
		}
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// stripFences blanks fenced code blocks, whose brackets are not links.
func stripFences(src string) string {
	var b strings.Builder
	fenced := false
	for line := range strings.Lines(src) {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			b.WriteString("\n")
			continue
		}
		if fenced {
			b.WriteString("\n")
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// questionIDs returns the IDs (Q1, Q2, ...) in a file's table rows.
func questionIDs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range regexp.MustCompile(`(?m)^\|\s*(Q\d+)\s*\|`).FindAllStringSubmatch(string(b), -1) {
		if !slices.Contains(ids, m[1]) {
			ids = append(ids, m[1])
		}
	}
	return ids
}

// checkTryIt checks each "**Try it**" block of a page.
func checkTryIt(t *testing.T, name, src string, targets []string) {
	t.Helper()
	lines := strings.Split(src, "\n")
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "**Try it**" {
			continue
		}
		j := i + 1
		for j < len(lines) && strings.TrimSpace(lines[j]) == "" {
			j++
		}
		if j >= len(lines) || !strings.HasPrefix(strings.TrimSpace(lines[j]), "```sh") {
			t.Errorf("%s:%d: **Try it** is not followed by a ```sh block", name, i+1)
			continue
		}
		k := j + 1
		for ; k < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[k]), "```"); k++ {
			checkCommand(t, name, k+1, lines[k], targets)
		}
		m := k + 1
		for m < len(lines) && strings.TrimSpace(lines[m]) == "" {
			m++
		}
		if m >= len(lines) || !strings.HasPrefix(strings.TrimSpace(lines[m]), "Printed here") {
			t.Errorf("%s:%d: the try-it block is not followed by a \"Printed here\" line with its figure", name, k+1)
		}
		i = k
	}
}

// checkCommand checks one line of a try-it block.
func checkCommand(t *testing.T, name string, line int, cmd string, targets []string) {
	t.Helper()
	cmd = strings.TrimSpace(cmd)
	if c, _, ok := strings.Cut(cmd, " #"); ok {
		cmd = strings.TrimSpace(c)
	}
	if cmd == "" || strings.HasPrefix(cmd, "#") {
		return
	}
	for _, part := range regexp.MustCompile(`\s*(&&|\|\||;|\|)\s*`).Split(cmd, -1) {
		f := strings.Fields(part)
		for len(f) > 0 && regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`).MatchString(f[0]) {
			f = f[1:] // VAR=value before a command
		}
		if len(f) == 0 {
			continue
		}
		switch c := f[0]; {
		case c == "make":
			for _, a := range f[1:] {
				if strings.Contains(a, "=") || strings.HasPrefix(a, "-") {
					continue
				}
				if !slices.Contains(targets, a) {
					t.Errorf("%s:%d: make %s: no such target in the Makefile", name, line, a)
				}
			}
		case strings.HasPrefix(c, "deploy/") || strings.HasPrefix(c, "scripts/"):
			if !fileExists(filepath.Join(repoRoot, c)) {
				t.Errorf("%s:%d: %s does not exist", name, line, c)
			}
		case strings.HasPrefix(c, "bin/"):
			if !slices.Contains(binaries, strings.TrimPrefix(c, "bin/")) {
				t.Errorf("%s:%d: %s is not a binary make build makes", name, line, c)
			}
		case c == "go" && len(f) > 1 && f[1] == "test":
			for _, a := range f[2:] {
				if p, ok := strings.CutPrefix(a, "./"); ok {
					if !fileExists(filepath.Join(repoRoot, strings.TrimSuffix(p, "/..."))) {
						t.Errorf("%s:%d: go test %s: no such package directory", name, line, a)
					}
				}
			}
		}
	}
}
