package allinone_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/herald-feed/herald/services/herald/systemtest"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// chromium returns Debian's chromium, installed by deploy/local/chromium.sh
// if it is missing.
func chromium(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot, "deploy", "local", "chromium.sh"), "path")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("deploy/local/chromium.sh path: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// TestConsoleInBrowser drives the web console in a real, headless
// Chromium (chromedp): it signs in as a user through the development-key
// endpoint, follows another user from the page, sees a post that user
// makes (from this test, over gRPC) arrive on the home timeline through
// the live stream, then posts from the page and sees the fan-out panel
// count the one active follower's timeline. It saves a screenshot
// (HERALD_CONSOLE_SCREENSHOT names the file; docs/console.png is one).
func TestConsoleInBrowser(t *testing.T) {
	exe := chromium(t)
	cfg := testConfig(t, t.TempDir())
	cfg.Node.HTTPAddr = "127.0.0.1:0"
	conn, sys, _ := startSystemWith(t, cfg)
	base := "http://" + sys.Node.HTTPAddr()
	api := systemtest.NewClient(conn, conn, conn)
	const me, author, fan = "console_bob", "console_alice", "console_carol"
	// A follower of the page's user with a cached timeline (she has read
	// it), so that the page's post has a timeline to reach.
	api.Follow(t, fan, me)
	api.Home(t, fan)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // the test may run as root
		chromedp.DisableGPU,
		chromedp.WindowSize(1100, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(bctx, 2*time.Minute)
	defer cancel()

	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		start := time.Now()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: %v", what, time.Since(start).Round(time.Millisecond))
	}
	step("open the console and sign in as "+me,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.ID("signin-user")),
		chromedp.SendKeys(chromedp.ID("signin-user"), me),
		chromedp.Click(chromedp.CSS(`#signin-form button[type="submit"]`)), // a click fires the form's submit event; form.submit() would not
		chromedp.WaitVisible(chromedp.ID("client")),
	)
	step("follow "+author+" from the page",
		chromedp.SendKeys(chromedp.ID("follow-user"), author),
		chromedp.Click(chromedp.CSS(`#follow-form button[value="follow"]`)),
		chromedp.Poll[chromedp.Void](`document.getElementById("following").textContent.includes("`+author+`")`, chromedp.WithPollingTimeout(waitfor.Deadline)),
		chromedp.Poll[chromedp.Void](`document.getElementById("stream-state").classList.contains("live")`, chromedp.WithPollingTimeout(waitfor.Deadline)),
	)

	const text = "posted by the browser test's other user"
	api.CreatePost(t, author, text, "")
	step("see "+author+"'s post arrive on the home timeline",
		chromedp.Poll[chromedp.Void](`document.getElementById("timeline").textContent.includes("`+text+`")`, chromedp.WithPollingTimeout(waitfor.Deadline)),
	)

	step("post from the page and watch it reach "+fan+"'s timeline",
		chromedp.SendKeys(chromedp.ID("post-text"), "hello from the console"),
		chromedp.Click(chromedp.CSS(`#post-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("fanout")),
		chromedp.Poll[chromedp.Void](`(document.getElementById("delivered") || {}).textContent === "1"`, chromedp.WithPollingTimeout(waitfor.Deadline)),
		chromedp.Poll[chromedp.Void](`document.getElementById("fanout-summary").textContent.includes("pushed")`, chromedp.WithPollingTimeout(waitfor.Deadline)),
	)
	api.WaitHome(t, fan, waitfor.Deadline, "the post made in the console", func(ids []string) bool { return len(ids) >= 1 })

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG; less is JPEG
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := os.Getenv("HERALD_CONSOLE_SCREENSHOT")
	if path == "" {
		path = filepath.Join(t.TempDir(), "console.png")
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the console: %s (%d bytes)", path, len(png))
}
