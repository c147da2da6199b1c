package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	oaoption "github.com/openai/openai-go/v3/option"
)

// requireChromiumEnv turns a missing chromium into a failure (CI sets it
// after installing Debian's chromium package).
const requireChromiumEnv = "LLMROUTE_REQUIRE_CHROMIUM"

// chromiumPath finds Debian's chromium, or skips the test (fails it with
// LLMROUTE_REQUIRE_CHROMIUM=1).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv(requireChromiumEnv) == "1" {
		t.Fatalf("chromium is not installed (apt-get install chromium) and %s=1", requireChromiumEnv)
	}
	t.Skipf("chromium is not installed: apt-get install chromium (set %s=1 to fail instead)", requireChromiumEnv)
	return ""
}

// The dashboard, in a real headless chromium, shows the traffic driven
// through the gateway: the routing decisions with their attempts and
// reasons, the totals per model and provider and chart data, without a
// console error. With LLMROUTE_DASHBOARD_SHOT=<file> it saves a
// screenshot of the page (the README's docs/dashboard.png).
func TestDashboardInBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	// chat priced, so the cost shows
	s := setup{Route: strings.Replace(defaultRoute, "upstream_name mock-chat\n", "upstream_name mock-chat\n\t\t\tprice 2.5 10\n", 1), Mocks: defaultMocks()}
	if !strings.Contains(s.Route, "price 2.5 10") {
		t.Fatal("defaultRoute changed: the test cannot price chat")
	}
	s.Extra = fmt.Sprintf("http://localhost:%d {\n\tbind 127.0.0.1\n\tllm_route_dashboard {\n\t\trefresh 300ms\n\t}\n}\n", portExtra1)
	start(t, s)
	pageURL := fmt.Sprintf("http://localhost:%d/", portExtra1)

	c := oaClient(t)
	var resp *http.Response
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), faultHeader("alpha:status,code=503"),
		oaoption.WithResponseInto(&resp)); err != nil {
		t.Fatal(err)
	}
	fallbackID := resp.Header.Get("X-LLM-Request-Id")
	if fallbackID == "" {
		t.Fatal("no X-LLM-Request-Id")
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // the tests may run as root
		chromedp.WindowSize(1400, 1000),
		chromedp.Flag("disable-gpu", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	// Every console error, uncaught exception and browser log error of
	// the page (the subscription starts the browser).
	var mu sync.Mutex
	var consoleErrors []string
	messages := chromedp.Console(bctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				mu.Lock()
				consoleErrors = append(consoleErrors, m.String())
				mu.Unlock()
			}
		}
	}()
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second) // generous: a loaded machine
	defer cancel()

	row := fmt.Sprintf(`#decisions tr[data-request-id=%q]`, fallbackID)
	if err := chromedp.Do(ctx, chromedp.Navigate(pageURL), chromedp.WaitVisible(chromedp.CSS(row))); err != nil {
		t.Fatalf("the page did not show request %s: %v", fallbackID, err)
	}
	// The row's cells, read in one go in the page: each refresh renders
	// the table anew, so a node found by one query may be gone by the
	// next.
	cells, err := chromedp.Run(ctx, chromedp.Poll[[]string](fmt.Sprintf(`(() => {
		const r = document.querySelector(%q);
		return r && [r.querySelector("td.attempts").innerText, r.querySelector("td:nth-child(5)").innerText];
	})()`, row), chromedp.WithPollingInterval(20*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	attempts, provider := cells[0], cells[1]
	if attempts != "chat@alpha:5xx chat@beta:ok" || provider != "beta" {
		t.Errorf("decision row: provider %q attempts %q", provider, attempts)
	}

	// Traffic while the page watches, over a few refreshes (one round
	// with a fallback): the charts plot it.
	refreshes := func() int {
		v, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS("body"), "data-refreshes"))
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(v.Value)
		return n
	}
	for round := range 6 {
		for range round%3 + 1 {
			var opts []oaoption.RequestOption
			if round == 3 {
				opts = append(opts, faultHeader("alpha:status,code=503"))
			}
			if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), opts...); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(`Number(document.body.getAttribute("data-refreshes")) > %d`, refreshes()),
			chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`Number(document.querySelector("#chart-requests").getAttribute("data-max")) >= 1 &&
			document.querySelector('#chart-requests polyline[data-series="chat@alpha"]') !== null &&
			Number(document.querySelector("#chart-fallbacks").getAttribute("data-max")) >= 1`,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second))); err != nil {
		t.Fatalf("the charts did not plot the traffic: %v", err)
	}
	tokens, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#chart-tokens").getAttribute("data-max")`))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := strconv.ParseFloat(tokens, 64); v <= 0 {
		t.Errorf("the tokens chart has no data (max %q) after answers with usage", tokens)
	}
	cost, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#chart-cost").getAttribute("data-max")`))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := strconv.ParseFloat(cost, 64); v <= 0 {
		t.Errorf("the cost chart has no data (max %q) after priced answers", cost)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#models tr[data-model="chat@alpha"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#pairs tbody tr`))); err != nil {
		t.Fatal(err)
	}
	// Each pair's badge names its health as the admin API does.
	badges, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#pairs tbody .badge"), b => b.textContent)`))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range badges {
		if !slices.Contains([]string{"healthy", "cooling", "half_open", "probing", "ramping"}, b) {
			t.Errorf("a pair's health reads %q (badges %q)", b, badges)
		}
	}
	if len(badges) == 0 {
		t.Error("the pairs table shows no health")
	}

	if shot := os.Getenv("LLMROUTE_DASHBOARD_SHOT"); shot != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(shot, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// A few more refreshes, to catch an error in a later render.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(`Number(document.body.getAttribute("data-refreshes")) >= %d`, refreshes()+3),
		chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(consoleErrors) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(consoleErrors, "\n"))
	}
}
