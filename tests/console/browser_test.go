package console

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// newBrowser starts a headless Chromium with a fresh profile for the
// test; each tab it opens is a separate browser context (its own cookies),
// as a separate person's browser would be.
func newBrowser(t *testing.T) context.Context {
	return testenv.Browser(t, "the console test", 1360, 900)
}

// tab is one person's browser: a browser context with its own cookies
// and downloads folder.
type tab struct {
	t         *testing.T
	ctx       context.Context
	name      string
	downloads string
}

func openTab(t *testing.T, root context.Context, name string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(root, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	b := &tab{t: t, ctx: ctx, name: name, downloads: t.TempDir()}
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: b.downloads,
			BrowserContextID: chromedp.FromContext(ctx).BrowserContextID,
		})
		return err
	})); err != nil {
		t.Fatalf("opening a tab for %s: %v", name, err)
	}
	// A failed test leaves a picture of what this person saw.
	t.Cleanup(func() {
		if t.Failed() {
			b.shot("failed-" + strings.ReplaceAll(t.Name(), "/", "_") + "-" + name)
		}
	})
	return b
}

// shot saves a screenshot: always into $AUTOGLM_SCREENSHOTS if it is
// set, and into the suite's scratch folder (kept when a run fails).
func (b *tab) shot(name string) {
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	dirs := []string{filepath.Join(suite.Dir, "screenshots")}
	if d := os.Getenv("AUTOGLM_SCREENSHOTS"); d != "" {
		dirs = append(dirs, d)
	}
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.t.Logf("screenshot %s: %v", name, err)
			continue
		}
		path := filepath.Join(dir, name+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			b.t.Logf("screenshot %s: %v", name, err)
			continue
		}
		b.t.Logf("screenshot: %s", path)
	}
}

// text is the page's visible text.
func (b *tab) text() string {
	s, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	return s
}

// waitText waits until the page shows every one of want, in any case
// (state badges are upper-cased by the style sheet), and returns its
// text; the page may change on its own meanwhile (live refresh).
func (b *tab) waitText(ctx context.Context, want ...string) string {
	b.t.Helper()
	var text, missing string
	for {
		text, missing = b.text(), ""
		for _, w := range want {
			if !strings.Contains(strings.ToLower(text), strings.ToLower(w)) {
				missing = w
				break
			}
		}
		if missing == "" {
			return text
		}
		select {
		case <-ctx.Done():
			b.t.Fatalf("%s's page never showed %q; it shows:\n%.3000s", b.name, missing, text)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// open navigates to the console's path and waits for want.
func (b *tab) open(ctx context.Context, path string, want ...string) string {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, chromedp.Navigate(suite.url+path)); err != nil {
		b.t.Fatalf("opening %s: %v", path, err)
	}
	return b.waitText(ctx, want...)
}

// do runs browser actions, failing the test on an error.
func (b *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %s: %v", b.name, what, err)
	}
}

// eval runs a script in the page and returns its value.
func (b *tab) eval(script string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](script))
	if err != nil {
		b.t.Fatalf("%s: %s: %v", b.name, script, err)
	}
	return v
}

// signInWithKey signs in with user's API key, from the keyboard.
func (b *tab) signInWithKey(ctx context.Context, user string) {
	b.t.Helper()
	b.open(ctx, "/console/login", "Sign in")
	b.do("typing the key", chromedp.SendKeys(chromedp.CSS("#key"), suite.keys[user]+"\r"))
	b.waitText(ctx, user, "Tasks")
}

// signInWithOIDC signs in through the stand-in identity provider as user.
func (b *tab) signInWithOIDC(ctx context.Context, user string) {
	b.t.Helper()
	suite.idp.SignInAs(user)
	b.open(ctx, "/console/login", "Sign in with your identity provider")
	b.do("following the identity provider's link", chromedp.Click(chromedp.CSS(`a[href="/console/oidc/start"]`)))
	b.waitText(ctx, user, "Tasks")
}

// downloaded waits until a file named name is in the tab's downloads
// folder, complete, and returns its content.
func (b *tab) downloaded(ctx context.Context, name string) string {
	b.t.Helper()
	path := filepath.Join(b.downloads, name)
	for {
		if data, err := os.ReadFile(path); err == nil {
			if _, err := os.Stat(path + ".crdownload"); os.IsNotExist(err) {
				return string(data)
			}
		}
		select {
		case <-ctx.Done():
			entries, _ := os.ReadDir(b.downloads)
			b.t.Fatalf("%s never downloaded %s (the folder holds %v)", b.name, name, entries)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func css(format string, args ...any) chromedp.CSS { return chromedp.CSS(fmt.Sprintf(format, args...)) }
