package cluster_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium returns Debian's headless browser, or skips the test where it is
// missing (fails in CI, which installs it: .ci/run).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	why := "no chromium (apt-get install -y chromium)"
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s cannot run in CI: %s", t.Name(), why)
	}
	fmt.Fprintf(os.Stderr, "SKIP %s: %s\n", t.Name(), why)
	t.Skip(why)
	return ""
}

// artifactsDir is where tests keep what a person may want to look at
// afterwards (HEARSAY_ARTIFACTS, else a directory under the system's
// temporary directory).
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("HEARSAY_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "hearsay-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDashboardShowsSpread opens the dashboard of one of three agents in
// headless Chromium, writes on another agent, and waits until the page
// shows the write held by all three members; the screenshot is kept.
func TestDashboardShowsSpread(t *testing.T) {
	browser := chromium(t)
	a1 := newAgent(t, "ui1")
	a1.start()
	a2 := newAgent(t, "ui2", a1.gossip)
	a2.start()
	a3 := newAgent(t, "ui3", a1.gossip)
	a3.start()
	for _, a := range []*agent{a1, a2, a3} {
		a.waitFor(20*time.Second, "three live members", func() bool { return allAlive(a, "ui1", "ui2", "ui3") })
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	// The page is live once the stats stream has filled the members table.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(a1.url("/ui/")),
		chromedp.WaitVisible(chromedp.CSS(`#members tbody tr[data-member="ui3"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#traffic tbody tr[data-mechanism="direct-mail"]`)),
	); err != nil {
		t.Fatalf("dashboard did not load: %v", err)
	}
	members, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#members tbody`)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ui1 (this node)", "ui2", "ui3", "alive"} {
		if !strings.Contains(members, want) {
			t.Errorf("members table lacks %q:\n%s", want, members)
		}
	}

	// A write on another node appears, and its spread reaches 3/3.
	const key = "dashboard/greeting"
	a2.put(key, "hello")
	sel := chromedp.CSS(fmt.Sprintf(`#updates tbody tr[data-key="%s"] td.spread.complete`, base64.StdEncoding.EncodeToString([]byte(key))))
	err = chromedp.Do(ctx, chromedp.WaitVisible(sel))
	shot := filepath.Join(artifactsDir(t), "dashboard.png")
	if png, serr := chromedp.Run(ctx, chromedp.FullScreenshot(100)); serr == nil {
		if werr := os.WriteFile(shot, png, 0o644); werr == nil {
			t.Logf("screenshot: %s", shot)
		}
	}
	if err != nil {
		t.Fatalf("the write's spread never showed complete: %v (screenshot %s)", err, shot)
	}
	spread, err := chromedp.Run(ctx, chromedp.Text(sel))
	if err != nil {
		t.Fatal(err)
	}
	row, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#updates tbody tr:first-child`)))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(spread) != "3/3" {
		t.Fatalf("spread shows %q, want 3/3", spread)
	}
	if !strings.Contains(row, key) {
		t.Errorf("the newest update row does not name the key: %q", row)
	}
}
